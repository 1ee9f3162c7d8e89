//! Korean and English: every user-facing surface follows the user's Slack
//! locale (ko-* → Korean, else English) — the Gmail reconnect prompt DM, the
//! OAuth result pages (the stored locale of the flow's user wins over the
//! browser's Accept-Language, which decides only while the user is unknown),
//! App Home, the briefing, and the `/brief` acknowledgement.

use std::time::Duration;

use serde_json::Value;

use crate::{
    fakes::{google::FakeGoogle, recorder::Recorder, slack::TEAM_ID},
    helpers::*,
    slack_http::Post,
};

const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// A user whose Slack locale is Korean, and their DM channel at the fake.
const KO: &str = "U0KIMJT01";
const KO_DM: &str = "D0KIMJT01";
/// A user whose Slack locale is English.
const EN: &str = "U0JANE001";
const EN_DM: &str = "D0JANE001";
const WAIT: Duration = Duration::from_secs(15);

fn has_hangul(s: &str) -> bool {
    s.chars().any(robeing::i18n::is_hangul)
}

async fn add_users(app: &TestApp) {
    use robeing::storage::users::{Profile, ensure_team, upsert_profile};
    ensure_team(&app.db, TEAM_ID).await.unwrap();
    for (id, name, locale) in [(KO, "김종태", "ko-KR"), (EN, "Jane", "en-US")] {
        let profile = Profile {
            display_name: Some(name.into()),
            tz: Some("Asia/Seoul".into()),
            locale: Some(locale.into()),
            ..Default::default()
        };
        upsert_profile(&app.db, TEAM_ID, id, &profile).await.unwrap();
    }
}

/// Every text of a Slack message or view: `text`, block texts, element
/// texts, button labels and confirmation dialogs.
fn all_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("text", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.join("\n")
}

/// The messages posted to a channel so far.
fn posted_to(slack: &Recorder, channel: &str) -> Vec<String> {
    slack
        .requests_to("/api/chat.postMessage")
        .into_iter()
        .map(|r| r.json())
        .filter(|j| j["channel"] == channel)
        .map(|j| all_text(&j))
        .collect()
}

/// Waits (bounded) for a post to `channel` containing `needle`.
async fn wait_for_post(slack: &Recorder, channel: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = posted_to(slack, channel).into_iter().find(|t| t.contains(needle)) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no post to {channel} containing `{needle}`; got {:?}",
            posted_to(slack, channel)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn local(app: &TestApp, url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}{}?{}", app.address, u.path(), u.query().unwrap_or(""))
}

#[tokio::test]
async fn gmail_prompts_and_oauth_pages_speak_the_users_language() {
    let google = FakeGoogle::start().await;
    let mut vars = google.vars();
    vars.push(("TOKEN_ENCRYPTION_KEY".into(), KEY.into()));
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    add_users(&app).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |url: String, accept: &'static str| {
        let browser = browser.clone();
        async move { browser.get(url).header("accept-language", accept).send().await.unwrap() }
    };

    // Connect both, each from a browser set to the *other* language: the
    // page follows the Slack user's stored locale.
    let mut callbacks = Vec::new();
    for (user, browser_lang) in [(KO, "en-US,en;q=0.9"), (EN, "ko-KR,ko;q=0.9")] {
        let link = robeing::google::connect_link(&app.state.config, user).unwrap();
        let r = get(local(&app, link.as_str()), browser_lang).await;
        assert_eq!(r.status(), 302, "{user}: start redirects to Google");
        let auth = r.headers()["location"].to_str().unwrap().to_owned();
        let r = get(auth, browser_lang).await;
        assert_eq!(r.status(), 302, "{user}: the fake consents");
        let callback = local(&app, r.headers()["location"].to_str().unwrap());
        let r = get(callback.clone(), browser_lang).await;
        assert_eq!(r.status(), 200);
        callbacks.push((user, callback, r.text().await.unwrap()));
    }
    let (_, ko_callback, ko_page) = &callbacks[0];
    assert!(ko_page.contains("<html lang=\"ko\">") && ko_page.contains("Gmail이 연결되었어요"), "{ko_page}");
    assert!(ko_page.contains("김종태") && ko_page.contains("읽기 전용"), "{ko_page}");
    assert!(!ko_page.contains("Gmail connected"), "{ko_page}");
    let (_, _, en_page) = &callbacks[1];
    assert!(en_page.contains("<html lang=\"en\">") && en_page.contains("<h1>Gmail connected</h1>"), "{en_page}");
    assert!(!has_hangul(&en_page.replace("김종태", "")), "{en_page}");
    // ...and the DM that says so.
    wait_for_post(&app.slack, KO_DM, "Gmail이 kim@example.com 계정으로 연결되었어요").await;
    wait_for_post(&app.slack, EN_DM, "Gmail connected as kim@example.com").await;

    // A user-known failure (the same callback again): the user's language,
    // on the page and in the DM with its fresh button.
    let r = get(ko_callback.clone(), "en-US").await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("이미 사용된 로그인이에요") && page.contains("lang=\"ko\""), "{page}");
    let dm = wait_for_post(&app.slack, KO_DM, "이미 사용되었어요").await;
    assert!(dm.contains("Gmail 연결"), "the button speaks Korean too: {dm}");

    // Before any user is known (a state robeing never issued), the browser's
    // Accept-Language decides.
    let forged = format!("{}/oauth/google/callback?state=forged-state&code=4/0x", app.address);
    let page = get(forged.clone(), "ko-KR,ko;q=0.9,en;q=0.5").await.text().await.unwrap();
    assert!(page.contains("올바르지 않은 로그인 링크예요") && page.contains("lang=\"ko\""), "{page}");
    let page = get(forged, "en-GB,en;q=0.9").await.text().await.unwrap();
    assert!(page.contains("This sign-in link is not valid") && !has_hangul(&page), "{page}");

    // Google revokes both: each gets the reconnect prompt in their language.
    google.revoke_all();
    sqlx::query("UPDATE gmail_connections SET access_token_expires_at = now() + interval '2 minutes'")
        .execute(&app.db)
        .await
        .unwrap();
    for user in [KO, EN] {
        assert!(robeing::google::access_token(&app.state, user).await.is_err(), "{user}: revoked");
    }
    let ko_prompt = wait_for_post(&app.slack, KO_DM, "Gmail을 더 이상 읽을 수 없어요").await;
    assert!(ko_prompt.contains("*이유:*") && ko_prompt.contains("invalid_grant"), "{ko_prompt}");
    assert!(ko_prompt.contains("Gmail 다시 연결") && !ko_prompt.contains("Reconnect Gmail"), "{ko_prompt}");
    let en_prompt = wait_for_post(&app.slack, EN_DM, "I can no longer read your Gmail").await;
    assert!(en_prompt.contains("*Why:*") && en_prompt.contains("Reconnect Gmail"), "{en_prompt}");
    assert!(!has_hangul(&en_prompt), "{en_prompt}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn app_home_the_briefing_and_the_brief_ack_speak_the_users_language() {
    let app = spawn_app().await;
    add_users(&app).await;

    // App Home (Google is not configured on this app).
    for user in [KO, EN] {
        robeing::slack::dispatch::publish_home(&app.state, user).await.unwrap();
    }
    let views: Vec<Value> = app.slack.requests_to("/api/views.publish").into_iter().map(|r| r.json()).collect();
    let view_of = |user: &str| {
        all_text(&views.iter().find(|v| v["user_id"] == user).unwrap_or_else(|| panic!("{user}: {views:?}"))["view"])
    };
    let ko = view_of(KO);
    for needle in [
        "안녕하세요, *김종태*님",
        "Gmail: 연결되지 않음",
        "`/brief`",
        "☀️ 모닝 브리핑",
        "지금 받기",
        "나를 잊어줘",
        "모두 잊을까요?",
        "Gmail이 설정되어 있지 않아",
    ] {
        assert!(ko.contains(needle), "Korean App Home has `{needle}`: {ko}");
    }
    for english in ["Hi *", "Send one now", "Forget me", "Morning briefing", "not configured"] {
        assert!(!ko.contains(english), "no English `{english}` in the Korean App Home: {ko}");
    }
    let en = view_of(EN);
    for needle in [
        "Hi *Jane*",
        "Gmail: not connected",
        "☀️ Morning briefing",
        "Send one now",
        "Forget me",
        "Forget everything?",
        "Gmail is not configured",
    ] {
        assert!(en.contains(needle), "English App Home has `{needle}`: {en}");
    }
    assert!(!has_hangul(&en), "no Korean in the English App Home: {en}");

    // The briefing, by DM.
    for user in [KO, EN] {
        robeing::briefing::on_demand(&app.state, user, None, None).await.unwrap();
    }
    let ko = wait_for_post(&app.slack, KO_DM, "☀️ 오늘의 브리핑").await;
    assert!(ko.contains("김종태님, 좋은 아침입니다") && ko.contains("📰 *뉴스*"), "{ko}");
    assert!(ko.contains("Gmail 연동이 설정되어 있지 않아"), "{ko}");
    assert!(!ko.contains("Your briefing") && !ko.contains("Good morning"), "{ko}");
    let en = wait_for_post(&app.slack, EN_DM, "☀️ Your briefing").await;
    assert!(en.contains("Good morning, Jane") && en.contains("📰 *News*"), "{en}");
    assert!(!has_hangul(&en), "{en}");

    // The /brief acknowledgement: the stored locale, or the command's own
    // words for someone robeing has not met.
    let ack = |user: &'static str, text: &'static str| {
        let form = format!(
            "team_id={TEAM_ID}&channel_id=C0GENERAL&user_id={user}&command=%2Fbrief&text={}&response_url=&trigger_id=1.2.{user}{}",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>(),
            text.len()
        );
        let app = &app;
        async move {
            let r = Post::signed("/slack/commands", form, "application/x-www-form-urlencoded").send(app).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["response_type"], "ephemeral");
            v["text"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(ack(KO, "").await, "브리핑을 준비하고 있어요…");
    assert_eq!(ack(EN, "").await, "Preparing your briefing…");
    assert_eq!(ack("U0NEWCOME1", "뉴스").await, "브리핑을 준비하고 있어요…");
    assert_eq!(ack("U0NEWCOME2", "").await, "Preparing your briefing…");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_brief_ack_over_socket_mode_speaks_the_users_language() {
    use crate::fakes::socket_mode::FakeSocketMode;
    let fake = FakeSocketMode::start().await;
    let vars = vec![("SLACK_APP_TOKEN".to_owned(), "xapp-1-A0ROBEING-i18n".to_owned())];
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    add_users(&app).await;
    fake.serve_urls_from(&app.slack, 3);
    let mut conn = fake.accept(WAIT).await.expect("robeing connects");
    conn.hello();
    let response_url = app.slack.url("/commands/1/2/3");
    for (n, (user, expected)) in
        [(KO, "브리핑을 준비하고 있어요…"), (EN, "Preparing your briefing…")].into_iter().enumerate()
    {
        let payload = serde_json::json!({"team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": user,
            "command": "/brief", "text": "", "response_url": response_url, "trigger_id": format!("5.6.sock{n}")});
        conn.envelope("slash_commands", &format!("env-i18n-{n}"), payload);
        let ack = conn.next(WAIT).await.expect("the envelope is acked");
        assert_eq!(ack["envelope_id"], format!("env-i18n-{n}"));
        assert_eq!(ack["payload"]["text"], expected, "{user}: {ack}");
    }
    app.stop().await.unwrap();
}
