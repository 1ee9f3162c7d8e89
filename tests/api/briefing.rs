//! Morning briefings: each user's own 09:00 across zones and daylight
//! saving, exactly once across restarts, catch-up and recorded skips, every
//! Gmail state said out loud (the seed's incident), news with a failed feed
//! named, the cron endpoint, `/brief`, and `brief`/`status` on the binary.
//!
//! The scheduler loop is off in these apps (`BRIEFING_SCHEDULER=off`): the
//! tests drive `run_due` with injected instants, so nothing sleeps until 09:00.

use std::time::Duration;

use chrono::{DateTime, Utc};
use robeing::briefing::{
    self, Section,
    deliver::Via,
    email::{self, EmailSection},
    scheduler::{DueSummary, Trigger, run_due},
};
use serde_json::Value;
use sqlx::PgPool;

use crate::{
    fakes::{feeds, gmail, recorder::Recorder, slack::TEAM_ID},
    helpers::*,
};

const POST: &str = "/api/chat.postMessage";
const WAIT: Duration = Duration::from_secs(15);
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Briefed {
    app: TestApp,
    feeds: Recorder,
}

async fn spawn(feed_paths: &[&str], extra: &[(&str, &str)]) -> Briefed {
    let fake_feeds = feeds::start().await;
    let mut vars = vec![
        ("BRIEFING_SCHEDULER".to_string(), "off".to_string()),
        ("NEWS_FEEDS".to_string(), feeds::feeds(&fake_feeds, feed_paths)),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = spawn_app_with(Options { vars, ..Default::default() }).await;
    Briefed { app, feeds: fake_feeds }
}

fn google_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GOOGLE_CLIENT_ID", "client-id.apps.example"),
        ("GOOGLE_CLIENT_SECRET", "gsecret"),
        ("TOKEN_ENCRYPTION_KEY", KEY),
    ]
}

/// A user known since `first_seen` (so earlier 09:00s are not "missed").
async fn add_user(db: &PgPool, id: &str, tz: Option<&str>, locale: &str, time: Option<&str>, first_seen: &str) {
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(TEAM_ID)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO slack_users (user_id, team_id, real_name, display_name, tz, locale, briefing_time, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $3, $4, $5, $6::time, $7::timestamptz, $7::timestamptz)",
    )
    .bind(id)
    .bind(TEAM_ID)
    .bind(format!("Name of {id}"))
    .bind(tz)
    .bind(locale)
    .bind(time)
    .bind(first_seen)
    .execute(db)
    .await
    .unwrap();
}

async fn rows(
    db: &PgPool,
    user: &str,
) -> Vec<(String, String, String, String, Option<String>, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT local_date::text, kind, trigger, status, email_status, news_status, COALESCE(skip_reason, failure_reason)
         FROM briefings WHERE user_id = $1 ORDER BY claimed_at, local_date",
    )
    .bind(user)
    .fetch_all(db)
    .await
    .unwrap()
}

/// Waits until no briefing of `user` is still `claimed`.
async fn settled(db: &PgPool, user: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM briefings WHERE user_id = $1 AND status = 'claimed'")
            .bind(user)
            .fetch_one(db)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "briefing of {user} still claimed after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn posts_to(slack: &Recorder, channel: &str) -> Vec<Value> {
    slack.requests_to(POST).into_iter().map(|r| r.json()).filter(|j| j["channel"] == channel).collect()
}

fn all_text(message: &Value) -> String {
    let mut out = vec![message["text"].as_str().unwrap_or_default().to_owned()];
    for b in message["blocks"].as_array().into_iter().flatten() {
        out.push(b["text"]["text"].as_str().unwrap_or_default().to_owned());
        for e in b["elements"].as_array().into_iter().flatten() {
            out.push(e["text"].as_str().unwrap_or_default().to_owned());
        }
        if let Some(t) = b["accessory"]["text"]["text"].as_str() {
            out.push(format!("[button {t}]"));
        }
    }
    out.join("\n")
}

fn summary(claimed: u32, already_sent: u32, skipped: u32) -> DueSummary {
    DueSummary { claimed, already_sent, skipped, failed: 0 }
}

#[tokio::test]
async fn seoul_and_new_york_each_get_one_briefing_at_their_own_nine_even_across_a_restart() {
    let Briefed { app, feeds: _feeds } = spawn(&[feeds::RSS, feeds::ATOM], &[]).await;
    add_user(&app.db, "U0SEOUL01", Some("Asia/Seoul"), "ko-KR", None, "2026-11-30T20:00:00Z").await;
    add_user(&app.db, "U0NYC0001", Some("America/New_York"), "en-US", None, "2026-11-30T20:00:00Z").await;
    let s = &app.state;

    // 08:59 in Seoul: nothing is due anywhere.
    assert_eq!(run_due(s, at("2026-11-30T23:59:00Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    // 09:00:05 in Seoul (19:00 in New York).
    assert_eq!(run_due(s, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(1, 0, 0));
    app.slack.wait_for(POST, 1, WAIT).await;
    settled(&app.db, "U0SEOUL01").await;

    // A restart at 09:00:30: a new process on the same database sends nothing twice.
    let db_url = app.db_url.clone().unwrap();
    let first_slack = app.slack.clone();
    app.stop().await.unwrap();
    let Briefed { app, feeds: _feeds2 } = spawn(&[feeds::RSS, feeds::ATOM], &[("DATABASE_URL", db_url.as_str())]).await;
    let s = &app.state;
    assert_eq!(run_due(s, at("2026-12-01T00:00:30Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    // 08:59 in New York: still only Seoul's, already sent.
    assert_eq!(run_due(s, at("2026-12-01T13:59:00Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    // 09:00:10 in New York.
    assert_eq!(run_due(s, at("2026-12-01T14:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 1, 0));
    app.slack.wait_for(POST, 1, WAIT).await;
    settled(&app.db, "U0NYC0001").await;
    assert_eq!(run_due(s, at("2026-12-01T14:05:00Z"), Trigger::Scheduler).await.unwrap(), summary(0, 2, 0));
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Exactly one message each, in each one's language, nothing else.
    let seoul = posts_to(&first_slack, "D0SEOUL01");
    assert_eq!(seoul.len(), 1, "Seoul got {} briefings", seoul.len());
    assert_eq!(first_slack.requests_to(POST).len(), 1);
    assert_eq!(app.slack.requests_to(POST).len(), 1);
    let nyc = posts_to(&app.slack, "D0NYC0001");
    assert_eq!(nyc.len(), 1);
    let (ko, en) = (all_text(&seoul[0]), all_text(&nyc[0]));
    assert!(ko.contains("오늘의 브리핑") && ko.contains("2026년 12월 1일 (화)"), "{ko}");
    assert!(en.contains("Your briefing") && en.contains("Tuesday, 1 December 2026"), "{en}");
    for text in [&ko, &en] {
        // Google is not configured here: the Gmail line says so; news arrived.
        assert!(
            text.contains("Gmail") && (text.contains("not set up") || text.contains("설정되어 있지 않아")),
            "{text}"
        );
        assert!(text.contains("Rust 1.95 released with faster builds"), "{text}");
        assert!(text.contains("Central bank holds rates &amp; signals &lt;cuts&gt; next year"), "escaped: {text}");
    }

    for (user, date) in [("U0SEOUL01", "2026-12-01"), ("U0NYC0001", "2026-12-01")] {
        let r = rows(&app.db, user).await;
        assert_eq!(r.len(), 1, "{user}: {r:?}");
        let (d, kind, trigger, status, email, news, _) = &r[0];
        assert_eq!(
            (d.as_str(), kind.as_str(), trigger.as_str(), status.as_str()),
            (date, "daily", "scheduler", "delivered")
        );
        assert_eq!((email.as_deref(), news.as_deref()), (Some("not_configured"), Some("ok")));
    }
    let ts: Option<String> = sqlx::query_scalar("SELECT message_ts FROM briefings WHERE user_id = 'U0NYC0001'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(ts.is_some_and(|t| t.contains('.')));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn down_from_eight_to_ten_catches_up_and_later_ones_are_recorded_as_missed() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    let known = "2026-12-01T22:00:00Z"; // 07:00 in Seoul
    add_user(&app.db, "U0CATCH01", Some("Asia/Seoul"), "en-US", None, known).await;
    add_user(&app.db, "U0EARLY01", Some("Asia/Seoul"), "en-US", Some("06:30"), "2026-12-01T20:00:00Z").await;
    add_user(&app.db, "U0OFF0001", Some("Asia/Seoul"), "en-US", None, known).await;
    sqlx::query("UPDATE slack_users SET briefing_enabled = false WHERE user_id = 'U0OFF0001'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO slack_teams (team_id, active, inactive_reason, inactive_since) VALUES ('T0GONE', false, 'app_uninstalled', now())")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id, tz, first_seen_at, last_seen_at) VALUES ('U0GONE001', 'T0GONE', 'Asia/Seoul', $1::timestamptz, $1::timestamptz)")
        .bind(known)
        .execute(&app.db)
        .await
        .unwrap();
    let s = &app.state;

    // Up at 06:00 (before the 06:30 user), down from 08:00, back at 10:00 KST.
    assert_eq!(run_due(s, at("2026-12-01T21:00:00Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    let back = run_due(s, at("2026-12-02T01:00:00Z"), Trigger::Scheduler).await.unwrap();
    // 09:00 was one hour ago: caught up. 06:30 was 3.5 h ago: past the 3 h
    // window, recorded. The inactive workspace's user: recorded.
    assert_eq!(back, summary(1, 0, 2));
    settled(&app.db, "U0CATCH01").await;
    let r = rows(&app.db, "U0CATCH01").await;
    assert_eq!((r[0].2.as_str(), r[0].3.as_str()), ("catch_up", "delivered"), "{r:?}");
    assert_eq!(posts_to(&app.slack, "D0CATCH01").len(), 1);

    let r = rows(&app.db, "U0EARLY01").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].3, "skipped");
    let reason = r[0].6.clone().unwrap();
    assert!(reason.starts_with("missed: service was down at 2026-12-02 06:30 Asia/Seoul"), "{reason}");
    assert!(reason.contains("3 h catch-up window"), "{reason}");

    let r = rows(&app.db, "U0GONE001").await;
    assert_eq!((r[0].3.as_str(), r[0].6.as_deref()), ("skipped", Some("workspace inactive: app_uninstalled")));
    assert!(rows(&app.db, "U0OFF0001").await.is_empty(), "briefing_enabled = false gets none");

    // Running again records nothing twice; only one message was ever sent.
    assert_eq!(run_due(s, at("2026-12-02T01:00:30Z"), Trigger::Scheduler).await.unwrap(), summary(0, 3, 0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.slack.requests_to(POST).len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_seeds_incident_gmail_needs_reconnect_is_said_with_a_button_and_news_still_arrives() {
    let mut extra = google_vars();
    extra.push(("ROBEING_PUBLIC_URL", "https://robeing.lan.example"));
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS, feeds::ATOM], &extra).await;
    let since = "2026-11-30T20:00:00Z";
    for user in ["U0KIMJT01", "U0NOGMAIL", "U0CONNECT"] {
        add_user(&app.db, user, Some("Asia/Seoul"), "en-US", None, since).await;
    }
    // The seed: Google refused the refresh token; the connection says so.
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, google_email, broken_at, broken_reason)
         VALUES ('U0KIMJT01', 'needs_reconnect', 'jt@example.com', '2026-11-27T00:00:05Z', 'invalid_grant: Token has been expired or revoked.')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // Connected, but with a token no key can decrypt: the section says it could not be read.
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, google_email, refresh_token_ciphertext, token_key_id, connected_at)
         VALUES ('U0CONNECT', 'connected', 'c@example.com', decode(repeat('ab', 40), 'hex'), 'k1', now())",
    )
    .execute(&app.db)
    .await
    .unwrap();

    assert_eq!(run_due(&app.state, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(3, 0, 0));
    app.slack.wait_for(POST, 3, WAIT).await;
    for user in ["U0KIMJT01", "U0NOGMAIL", "U0CONNECT"] {
        settled(&app.db, user).await;
    }

    let seed = posts_to(&app.slack, "D0KIMJT01");
    assert_eq!(seed.len(), 1);
    let text = all_text(&seed[0]);
    assert!(text.contains("access to Gmail stopped working on 2026-11-27 09:00 (Asia/Seoul)"), "{text}");
    assert!(text.contains("invalid_grant: Token has been expired or revoked."), "{text}");
    assert!(text.contains("Rust 1.95 released with faster builds"), "news still arrives: {text}");
    assert!(seed[0]["text"].as_str().unwrap().contains("reconnect Gmail"), "the notification says it too");
    let button = seed[0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| (b["accessory"]["action_id"] == "gmail_reconnect").then(|| b["accessory"].clone()))
        .expect("a Reconnect Gmail button");
    assert_eq!(button["text"]["text"], "Reconnect Gmail");
    let link = button["url"].as_str().unwrap();
    assert!(link.starts_with("https://robeing.lan.example/oauth/google/start?t="), "a signed connect link: {link}");
    let token = url::Url::parse(link).unwrap().query_pairs().find(|(k, _)| k == "t").unwrap().1.to_string();
    assert_eq!(
        robeing::google::links::verify(&app.state.config, &token, chrono::Utc::now()).unwrap(),
        "U0KIMJT01",
        "the link is bound to that user"
    );

    let r = rows(&app.db, "U0KIMJT01").await;
    assert_eq!(
        (r[0].3.as_str(), r[0].4.as_deref(), r[0].5.as_deref()),
        ("delivered", Some("needs_reconnect"), Some("ok"))
    );
    let detail: String = sqlx::query_scalar("SELECT email_detail FROM briefings WHERE user_id = 'U0KIMJT01'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(detail.contains("invalid_grant"), "the operator sees why: {detail}");

    let none = all_text(&posts_to(&app.slack, "D0NOGMAIL")[0]);
    assert!(none.contains("Your Gmail is not connected") && none.contains("[button Connect Gmail]"), "{none}");
    assert_eq!(rows(&app.db, "U0NOGMAIL").await[0].4.as_deref(), Some("not_connected"));

    let broken = all_text(&posts_to(&app.slack, "D0CONNECT")[0]);
    assert!(broken.contains("could not be read this time"), "{broken}");
    assert!(!broken.contains("[button"), "{broken}");
    assert_eq!(rows(&app.db, "U0CONNECT").await[0].4.as_deref(), Some("error"));
    assert_eq!(app.slack.requests_to(POST).len(), 3);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_feed_returning_garbage_is_named_and_the_rest_arrives_through_the_response_url() {
    let Briefed { app, feeds: fake_feeds } = spawn(&[feeds::RSS, feeds::GARBAGE, feeds::ATOM, feeds::DOWN], &[]).await;
    add_user(&app.db, "U0BRIEF01", Some("Asia/Seoul"), "en-US", None, "2026-11-01T00:00:00Z").await;
    let response_url = app.slack.url("/commands/T0ROBEING/1234/abcd");

    let done = briefing::on_demand(&app.state, "U0BRIEF01", None, Some(response_url)).await.unwrap();
    assert_eq!(done.via, Via::ResponseUrl);
    assert_eq!(done.news_status, Some("partial"));
    let sent = app.slack.requests_to("/commands/T0ROBEING/1234/abcd");
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(body["response_type"], "ephemeral");
    let text = all_text(&body);
    // Headlines from both good feeds, newest first, the shared story once.
    let order: Vec<usize> = [
        "Rust 1.95 released with faster builds",
        "Leaders agree climate finance deal",
        "Central bank holds rates",
        "Chip makers report record quarter",
        "Seoul subway opens new line",
    ]
    .iter()
    .map(|t| text.find(t).unwrap_or_else(|| panic!("{t} missing: {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first: {text}");
    assert!(!text.to_lowercase().contains("long-awaited"), "top 5 only: {text}");
    assert!(
        text.contains("<https://news.example.com/world/climate-deal-001?at_medium=RSS&amp;at_campaign=rss|"),
        "{text}"
    );
    // The failed feeds are named, with why.
    assert!(text.contains("2 of 4 news feeds could not be read"), "{text}");
    assert!(text.contains(&format!("{} (not an RSS or Atom feed", fake_feeds.url(feeds::GARBAGE))), "{text}");
    assert!(text.contains(&format!("{} (HTTP 500)", fake_feeds.url(feeds::DOWN))), "{text}");
    assert!(app.slack.requests_to(POST).is_empty(), "no DM when the response_url worked");

    let r = rows(&app.db, "U0BRIEF01").await;
    assert_eq!(
        (r[0].1.as_str(), r[0].2.as_str(), r[0].3.as_str(), r[0].5.as_deref()),
        ("on_demand", "command", "delivered", Some("partial"))
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn brief_email_and_brief_news_give_one_section_and_are_not_limited_per_day() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0BRIEF02", Some("Asia/Seoul"), "ko-KR", None, "2026-11-01T00:00:00Z").await;

    let news = briefing::on_demand(&app.state, "U0BRIEF02", Some(Section::News), None).await.unwrap();
    assert!(matches!(news.via, Via::Dm { ref channel_id, .. } if channel_id == "D0BRIEF02"));
    let mail = briefing::on_demand(&app.state, "U0BRIEF02", Some(Section::Email), None).await.unwrap();
    let posts = posts_to(&app.slack, "D0BRIEF02");
    assert_eq!(posts.len(), 2);
    let (n, m) = (all_text(&posts[0]), all_text(&posts[1]));
    assert!(n.contains("뉴스") && !n.contains("Gmail"), "{n}");
    assert!(m.contains("Gmail") && !m.contains("뉴스"), "{m}");
    assert_eq!((news.email_status, news.news_status), (None, Some("ok")));
    assert_eq!((mail.email_status, mail.news_status), (Some("not_configured"), None));
    let r = rows(&app.db, "U0BRIEF02").await;
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].4.as_deref(), r[0].5.as_deref()), (Some("not_requested"), Some("ok")));
    assert_eq!((r[1].4.as_deref(), r[1].5.as_deref()), (Some("not_configured"), Some("not_requested")));

    let err = briefing::on_demand(&app.state, "U0NOBODY1", None, None).await.unwrap_err();
    assert!(err.to_string().contains("U0NOBODY1"), "{err}");
    assert_eq!(app.slack.requests_to(POST).len(), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn cron_endpoint_needs_the_bearer_secret_and_sends_nothing_twice() {
    let secret = "cron-secret-rotated-7f3a";
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[("CRON_SECRET", secret)]).await;
    // A user whose briefing time (UTC) was a minute ago, known for an hour.
    let now = Utc::now();
    let time = (now - chrono::Duration::minutes(1)).format("%H:%M").to_string();
    let known = (now - chrono::Duration::hours(1)).to_rfc3339();
    add_user(&app.db, "U0CRON001", Some("Etc/UTC"), "en-US", Some(&time), &known).await;
    let url = format!("{}/api/cron/daily-summary", app.address);

    for auth in [None, Some("Bearer wrong".to_string()), Some(secret.to_string()), Some(format!("Bearer {secret}x"))] {
        let mut req = app.http.post(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(secret), "{body}");
    }
    assert!(rows(&app.db, "U0CRON001").await.is_empty(), "refused calls did nothing");

    let call = || app.http.post(&url).bearer_auth(secret).send();
    let first: Value = call().await.unwrap().json().await.unwrap();
    assert_eq!(first, serde_json::json!({ "ok": true, "claimed": 1, "already_sent": 0, "skipped": 0, "failed": 0 }));
    let second: Value = call().await.unwrap().json().await.unwrap();
    assert_eq!(second, serde_json::json!({ "ok": true, "claimed": 0, "already_sent": 1, "skipped": 0, "failed": 0 }));
    app.slack.wait_for(POST, 1, WAIT).await;
    settled(&app.db, "U0CRON001").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.slack.requests_to(POST).len(), 1);
    let r = rows(&app.db, "U0CRON001").await;
    assert_eq!((r.len(), r[0].2.as_str(), r[0].3.as_str()), (1, "cron", "delivered"));
    app.stop().await.unwrap();

    // Without CRON_SECRET the route does not exist.
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    let r = app.http.post(format!("{}/api/cron/daily-summary", app.address)).bearer_auth(secret).send().await.unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn new_york_daylight_saving_days_get_one_briefing_at_local_nine() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    let s = &app.state;
    // Spring forward, 2026-03-08: 02:00 EST → 03:00 EDT. 09:00 is 13:00 UTC
    // (14:00 the day before); 02:30 does not exist and becomes 03:00 EDT.
    add_user(&app.db, "U0SPRING1", Some("America/New_York"), "en-US", None, "2026-03-07T12:00:00Z").await;
    add_user(&app.db, "U0SPRING2", Some("America/New_York"), "en-US", Some("02:30"), "2026-03-07T12:00:00Z").await;
    assert_eq!(run_due(s, at("2026-03-07T13:59:50Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    assert_eq!(run_due(s, at("2026-03-07T14:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 0, 0));
    assert_eq!(run_due(s, at("2026-03-08T06:59:50Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    assert_eq!(run_due(s, at("2026-03-08T07:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 1, 0));
    assert_eq!(run_due(s, at("2026-03-08T12:59:50Z"), Trigger::Scheduler).await.unwrap(), summary(0, 2, 0));
    assert_eq!(run_due(s, at("2026-03-08T13:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 1, 0));
    assert_eq!(run_due(s, at("2026-03-08T14:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(0, 2, 0));

    // (The spring users are turned off so their missed autumn days stay out of the counts.)
    sqlx::query("UPDATE slack_users SET briefing_enabled = false WHERE user_id LIKE 'U0SPRING%'")
        .execute(&app.db)
        .await
        .unwrap();
    // Fall back, 2026-11-01: 02:00 EDT → 01:00 EST, a 25-hour day. 09:00 is
    // 14:00 UTC; 01:30 happens twice and is sent at the first, once.
    add_user(&app.db, "U0FALL001", Some("America/New_York"), "en-US", None, "2026-10-31T16:00:00Z").await;
    add_user(&app.db, "U0FALL002", Some("America/New_York"), "en-US", Some("01:30"), "2026-10-31T16:00:00Z").await;
    assert_eq!(run_due(s, at("2026-11-01T05:29:50Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    assert_eq!(run_due(s, at("2026-11-01T05:30:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 0, 0));
    assert_eq!(run_due(s, at("2026-11-01T06:30:10Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    assert_eq!(run_due(s, at("2026-11-01T13:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    assert_eq!(run_due(s, at("2026-11-01T14:00:10Z"), Trigger::Scheduler).await.unwrap(), summary(1, 1, 0));

    for (user, dates) in [
        ("U0SPRING1", vec!["2026-03-07", "2026-03-08"]),
        ("U0SPRING2", vec!["2026-03-08"]),
        ("U0FALL001", vec!["2026-11-01"]),
        ("U0FALL002", vec!["2026-11-01"]),
    ] {
        settled(&app.db, user).await;
        let got: Vec<String> = rows(&app.db, user).await.into_iter().map(|r| r.0).collect();
        assert_eq!(got, dates, "{user}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.slack.requests_to(POST).len(), 5);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_gmail_reader_lists_the_inbox_with_metadata_and_reports_refusal() {
    robeing::startup::install_crypto_provider();
    let fake = gmail::start().await;
    let http = reqwest::Client::new();
    let since = at("2026-11-29T00:00:00Z");
    let items = list_inbox(&http, &fake.url(""), gmail::ACCESS_TOKEN, since).await.unwrap();
    let subjects: Vec<&str> = items.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, vec!["Re: Lunch on Tuesday", "계약서 초안 검토 요청", "Last chance: 50% off"], "newest first");
    assert_eq!(items[1].from, "\"박서연\" <seoyeon.park@partner.example>");
    assert!(items[1].labels.contains(&"IMPORTANT".to_string()));

    let list = fake.server.requests_to("/gmail/v1/users/me/messages");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].param("q").as_deref(), Some(format!("in:inbox after:{}", since.timestamp()).as_str()));
    // Two HTTP requests in all: the listing, then one batch of three gets.
    assert_eq!(fake.server.requests().len(), 2, "no single messages.get");
    let batches = fake.server.requests_to(gmail::BATCH_PATH);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].headers["authorization"], format!("Bearer {}", gmail::ACCESS_TOKEN));
    let gets = fake.inner.requests();
    let mut ids: Vec<&str> = gets.iter().filter_map(|g| g.path.strip_prefix("/gmail/v1/users/me/messages/")).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["18c2ee1122334455", "18c2ef9988776655", "18c2f0a1b2c3d4e5"], "one inner get per listed message");
    for g in &gets {
        let q = g.query.clone().unwrap_or_default();
        assert!(q.contains("format=metadata") && q.contains("metadataHeaders=Subject"), "{q}");
        assert_eq!(g.headers["authorization"], format!("Bearer {}", gmail::ACCESS_TOKEN));
    }

    // The section built from them ranks the important personal mail first.
    let s = briefing::compose::summarize(&items);
    assert_eq!(s.top[0].subject, "계약서 초안 검토 요청");
    assert_eq!(s.top[0].from, "박서연");
    assert_eq!(s.top[0].gist, "종태님, 첨부한 계약서 초안 검토 부탁드립니다.");

    let refused = list_inbox(&http, &fake.url(""), "ya29.revoked", since).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert!(!refused.to_string().contains("ya29"), "no token in errors: {refused}");
    let _ = EmailSection::NotConnected;
}

#[tokio::test]
async fn brief_dry_run_prints_and_status_reports_each_user_through_the_binary() {
    let fake_feeds = feeds::start().await;
    let slack = crate::fakes::slack::start().await;
    let (db_url, _) = fresh_database().await;
    let pool = PgPool::connect(&db_url).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    add_user(&pool, "U0KIMJT01", Some("Asia/Seoul"), "ko-KR", None, "2026-11-01T00:00:00Z").await;
    add_user(&pool, "U0NYC0001", Some("America/New_York"), "en-US", Some("07:30"), "2026-11-01T00:00:00Z").await;
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, broken_at, broken_reason)
         VALUES ('U0KIMJT01', 'needs_reconnect', '2026-11-27T00:00:05Z', 'invalid_grant')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let news = feeds::feeds(&fake_feeds, &[feeds::RSS]);
    let slack_api = slack.url("/api");
    let mut vars: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db_url),
        ("NEWS_FEEDS", &news),
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_API_URL", &slack_api),
    ];
    vars.extend(google_vars());

    let out = run_binary(&["brief", "--user", "U0KIMJT01", "--dry-run"], &vars).await;
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains("Gmail 다시 연결"), "the reconnect button is shown: {printed}");
    assert!(
        printed.contains("Central bank holds rates & signals <cuts> next year"),
        "unescaped for a terminal: {printed}"
    );
    assert!(slack.requests_to(POST).is_empty(), "a dry run sends nothing");
    assert!(rows(&pool, "U0KIMJT01").await.is_empty(), "a dry run records nothing");

    let out = run_binary(&["brief", "--user", "U0NOBODY1"], &vars).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("U0NOBODY1"), "{}", text(&out));

    let out = run_binary(&["brief", "--user", "U0NYC0001"], &vars).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(posts_to(&slack, "D0NYC0001").len(), 1);
    let r = rows(&pool, "U0NYC0001").await;
    assert_eq!((r[0].1.as_str(), r[0].2.as_str(), r[0].3.as_str()), ("on_demand", "cli", "delivered"));

    let out = run_binary(&["status"], &vars).await;
    let table = text(&out);
    assert_eq!(out.status.code(), Some(0), "{table}");
    let kim = table.lines().find(|l| l.starts_with("U0KIMJT01")).unwrap_or_else(|| panic!("{table}"));
    assert!(kim.contains("Asia/Seoul") && kim.contains("needs reconnect since 2026-11-27"), "{kim}");
    assert!(kim.contains("never"), "{kim}");
    let nyc = table.lines().find(|l| l.starts_with("U0NYC0001")).unwrap();
    assert!(nyc.contains("not connected") && nyc.contains("delivered") && nyc.contains("email not_connected"), "{nyc}");

    let out = run_binary(&["status", "--json"], &vars).await;
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = json.as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["user_id"], "U0KIMJT01");
    assert_eq!(users[0]["gmail_state"], "needs_reconnect");
    assert_eq!(users[0]["exchanges"], 0);
    assert_eq!(users[1]["last_briefing_status"], "delivered");
}

/// Inserts a briefing row and its delivery job as a crashed worker left it:
/// `running`, with a lease that has expired.
async fn crashed_job(db: &PgPool, user: &str, status: &str) -> uuid::Uuid {
    let id = briefing_row(db, user, status).await;
    job_left_running(db, id).await;
    id
}

/// A daily briefing row for 2026-12-01, `claimed` or `delivered`.
async fn briefing_row(db: &PgPool, user: &str, status: &str) -> uuid::Uuid {
    if status == "delivered" {
        sqlx::query_scalar(
            "INSERT INTO briefings (user_id, local_date, kind, trigger, status, email_status, news_status, channel_id, message_ts, delivered_at)
             VALUES ($1, '2026-12-01', 'daily', 'scheduler', 'delivered', 'not_configured', 'ok', 'D0DONE001', '1764000000.000001', now()) RETURNING id",
        )
    } else {
        sqlx::query_scalar(
            "INSERT INTO briefings (user_id, local_date, kind, trigger) VALUES ($1, '2026-12-01', 'daily', 'scheduler') RETURNING id",
        )
    }
    .bind(user)
    .fetch_one(db)
    .await
    .unwrap()
}

/// The briefing's delivery job as a worker that died mid-attempt left it:
/// running, its lease expired, so the next worker claims it at once.
async fn job_left_running(db: &PgPool, id: uuid::Uuid) {
    sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, locked_until)
         VALUES ('briefing_deliver', 'briefing:' || $1::text, jsonb_build_object('briefing_id', $1::text), 'running', 1, now() - interval '1 second')",
    )
    .bind(id)
    .execute(db)
    .await
    .unwrap();
}

async fn job_states(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'briefing_deliver' ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn wait_jobs_done(db: &PgPool, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while job_states(db).await != vec!["done".to_string(); n] {
        assert!(tokio::time::Instant::now() < deadline, "jobs: {:?}", job_states(db).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_crashed_delivery_is_finished_once_by_the_next_worker_and_a_recorded_one_is_not_resent() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0CRASH01", Some("Asia/Seoul"), "en-US", None, "2026-11-30T20:00:00Z").await;
    add_user(&app.db, "U0DONE001", Some("Asia/Seoul"), "en-US", None, "2026-11-30T20:00:00Z").await;
    // Died after claiming, before sending: the briefing must still arrive.
    let crashed = crashed_job(&app.db, "U0CRASH01", "claimed").await;
    // Died after recording the delivery, before finishing the job: nothing more.
    crashed_job(&app.db, "U0DONE001", "delivered").await;

    wait_jobs_done(&app.db, 2).await;
    settled(&app.db, "U0CRASH01").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted = posts_to(&app.slack, "D0CRASH01");
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["metadata"]["event_type"], "robeing_briefing");
    assert_eq!(posted[0]["metadata"]["event_payload"]["briefing_id"], crashed.to_string());
    // The message carries what its row records: a retry that finds it needs them.
    let (email, news): (String, String) =
        sqlx::query_as("SELECT email_status, news_status FROM briefings WHERE id = $1")
            .bind(crashed)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(posted[0]["metadata"]["event_payload"]["email_status"], email.as_str());
    assert_eq!(posted[0]["metadata"]["event_payload"]["news_status"], news.as_str());
    assert_eq!(app.slack.requests_to(POST).len(), 1, "the recorded one was not sent again");
    assert_eq!(rows(&app.db, "U0CRASH01").await[0].3, "delivered");
    // The scheduler, running after the crash, does not claim a second one.
    assert_eq!(run_due(&app.state, at("2026-12-01T00:01:00Z"), Trigger::Scheduler).await.unwrap(), summary(0, 2, 0));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_workspace_uninstalled_between_claim_and_delivery_gets_a_recorded_skip_not_a_stuck_claim() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0LATE001", Some("Asia/Seoul"), "en-US", None, "2026-11-30T20:00:00Z").await;
    // The bot's own workspace is uninstalled after the claim: the delivery
    // job (queued without a team) finds it inactive when it runs.
    sqlx::query("UPDATE slack_teams SET active = false, inactive_reason = 'app_uninstalled', inactive_since = now() WHERE team_id = $1")
        .bind(TEAM_ID)
        .execute(&app.db)
        .await
        .unwrap();
    crashed_job(&app.db, "U0LATE001", "claimed").await;

    settled(&app.db, "U0LATE001").await;
    let r = rows(&app.db, "U0LATE001").await;
    assert_eq!((r[0].3.as_str(), r[0].6.as_deref()), ("skipped", Some("workspace inactive: app_uninstalled")));
    wait_jobs_done(&app.db, 1).await;
    assert!(app.slack.requests_to(POST).is_empty(), "nothing is sent to an uninstalled workspace");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_slack_rate_limit_is_retried_and_a_refusal_is_recorded_as_failed() {
    use crate::fakes::recorder::Scripted;
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0RETRY01", Some("Asia/Seoul"), "en-US", Some("09:00"), "2026-11-30T20:00:00Z").await;
    add_user(&app.db, "U0REFUSE1", Some("Asia/Seoul"), "en-US", Some("10:00"), "2026-11-30T20:00:00Z").await;

    app.slack.script(
        POST,
        [Scripted::json(429, serde_json::json!({ "ok": false, "error": "ratelimited" }))
            .with_header("retry-after", "1")],
    );
    assert_eq!(run_due(&app.state, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(1, 0, 0));
    settled(&app.db, "U0RETRY01").await;
    assert_eq!(rows(&app.db, "U0RETRY01").await[0].3, "delivered");
    let attempts = app.slack.requests_to(POST);
    assert_eq!(attempts.len(), 2, "one refused with 429, one accepted");
    assert_eq!(attempts[0].json()["channel"], attempts[1].json()["channel"]);

    app.slack.script(POST, [Scripted::json(200, serde_json::json!({ "ok": false, "error": "account_inactive" }))]);
    assert_eq!(run_due(&app.state, at("2026-12-01T01:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(1, 1, 0));
    settled(&app.db, "U0REFUSE1").await;
    let r = rows(&app.db, "U0REFUSE1").await;
    assert_eq!((r[0].3.as_str(), r[0].6.as_deref()), ("failed", Some("Slack refused: account_inactive")));
    wait_jobs_done(&app.db, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.slack.requests_to(POST).len(), 3, "a refusal is not retried");
    app.stop().await.unwrap();
}

fn budget_waited(budget: &str) -> f64 {
    robeing::metrics::metrics()
        .budget_wait_seconds
        .get_or_create(&robeing::metrics::BudgetLabel { budget: budget.to_owned() })
        .get()
}

#[tokio::test]
async fn briefings_go_through_the_clients_workspace_post_budget() {
    // 4 posts a second, 4 at once: eight briefings due together cannot all
    // go at once; the last four wait 0.25, 0.5, 0.75 and 1 s for their slots.
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[("SLACK_MAX_POSTS_PER_SECOND", "4")]).await;
    let users: Vec<String> = (1..=8).map(|i| format!("U0PACED0{i}")).collect();
    for u in &users {
        add_user(&app.db, u, Some("Asia/Seoul"), "en-US", Some("09:00"), "2026-11-30T20:00:00Z").await;
    }
    let waited_before = budget_waited("slack_posts");
    let started = std::time::Instant::now();
    assert_eq!(run_due(&app.state, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(8, 0, 0));
    for u in &users {
        settled(&app.db, u).await;
    }
    let elapsed = started.elapsed();
    let posts = app.slack.requests_to(POST);
    assert_eq!(posts.len(), 8, "each briefing posted once");
    for (u, p) in users.iter().zip(0..) {
        assert_eq!(rows(&app.db, u).await[0].3, "delivered", "post {p}");
    }
    assert!(posts.iter().all(|p| p.json()["metadata"]["event_type"] == "robeing_briefing"), "metadata kept");
    // A lower bound the budget guarantees (not a speed target): 8 posts at 4/s with a burst of 4.
    assert!(elapsed >= Duration::from_millis(950), "8 posts at 4/s took only {elapsed:?}");
    let waited = budget_waited("slack_posts") - waited_before;
    assert!(waited > 0.0, "the waits are counted in /metrics: {waited} s");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("robeing_budget_wait_seconds_total{budget=\"slack_posts\"}"), "{metrics}");
    assert!(metrics.contains("robeing_slack_api_calls_total{method=\"chat.postMessage\",status=\"ok\"}"), "{metrics}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_slack_clients_post_budget_spaces_simultaneous_posts() {
    robeing::startup::install_crypto_provider();
    let slack = crate::fakes::slack::start().await;
    let api = robeing::slack::client::SlackApi::new(
        &url::Url::parse(&slack.url("/api")).unwrap(),
        &secrecy::SecretString::from(BOT_TOKEN.to_owned()),
    )
    .unwrap()
    .with_post_rate(4.0);
    let waited_before = budget_waited("slack_posts");
    let started = std::time::Instant::now();
    // Eight posts to eight channels at once: each reserves its slot on its
    // first poll, so the last four wait 0.25, 0.5, 0.75 and 1 s.
    let posts = (1..=8).map(|i| {
        let api = api.clone();
        async move {
            let channel = format!("D0BUDGET{i}");
            let tag = robeing::slack::client::Tag {
                event_type: "robeing_briefing",
                key: "briefing_id",
                value: "b",
                also: &[],
            };
            api.post_bulk_tagged_message(&channel, "hi", None, Some(&tag)).await
        }
    });
    let results = futures_util::future::join_all(posts).await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert!(elapsed >= Duration::from_millis(990), "8 posts at 4/s took only {elapsed:?}");
    let waited = budget_waited("slack_posts") - waited_before;
    assert!(waited >= 2.45, "0.25 + 0.5 + 0.75 + 1 s waited, counted in /metrics: {waited} s");
    let sent = slack.requests_to(POST);
    assert_eq!(sent.len(), 8);
    assert_eq!(sent[0].json()["metadata"]["event_payload"]["briefing_id"], "b");
}

#[tokio::test]
async fn gmail_calls_take_the_users_budget_and_the_shared_one() {
    use robeing::{google::gmail, ratelimit::Budget};
    robeing::startup::install_crypto_provider();
    let fake = crate::fakes::gmail::start_bulk(10, Duration::ZERO).await;
    let user = std::sync::Arc::new(gmail::user_budget(20.0));
    let shared = std::sync::Arc::new(Budget::per_second("gmail_shared_test", 1000.0, 1000));
    let client = gmail::GmailClient::new(reqwest::Client::new(), url::Url::parse(&fake.url("")).unwrap())
        .with_budgets(user, shared);
    let token = secrecy::SecretString::from(format!("{}U0BUDGET1", crate::fakes::gmail::BULK_TOKEN_PREFIX));
    let waited_before = budget_waited("gmail_user");
    let started = std::time::Instant::now();
    let ids = client.list_inbox_since(&token, at("2026-11-30T00:00:00Z"), 50).await.unwrap();
    let metas = client.metadata_many(&token, &ids).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(metas.len(), 10);
    assert_eq!(fake.server.requests().len(), 2, "the listing and one batch");
    assert_eq!(fake.inner.count(), 10, "ten gets inside the batch");
    // 11 calls (each batched get counts) at 20/s with 8 at once: however long
    // the listing took, the last three gets wait 50, 100 and 150 ms for their
    // slots before the batch goes.
    assert!(elapsed >= Duration::from_millis(140), "11 calls at 20/s took only {elapsed:?}");
    assert!(budget_waited("gmail_user") - waited_before >= 0.14, "the user's waits are counted");
    // A budget that is far behind refuses instead of holding the caller.
    let slow = gmail::GmailClient::new(reqwest::Client::new(), url::Url::parse(&fake.url("")).unwrap()).with_budgets(
        std::sync::Arc::new(Budget::per_second("gmail_user", 0.01, 1)),
        std::sync::Arc::new(gmail::shared_budget(1000.0)),
    );
    slow.profile(&token).await.unwrap_err();
    let refused = slow.profile(&token).await.unwrap_err();
    assert!(matches!(refused, gmail::GmailError::RateLimited), "{refused}");
}

/// Gmail calls the fake saw: HTTP requests other than batches, plus the
/// calls inside batches (what Google counts against quota).
fn gmail_calls_seen(fake: &gmail::FakeGmail) -> usize {
    let batches = fake.server.requests_to(gmail::BATCH_PATH).len();
    fake.server.requests().len() - batches + fake.inner.count()
}

/// User + system CPU time and peak resident memory of a process (Linux `/proc`).
fn cpu_and_peak_rss(pid: &str) -> (Duration, u64) {
    (Duration::from_secs_f64(procfs::cpu_secs(pid)), procfs::peak_rss_kib(pid))
}

/// One configuration of the briefing benchmark.
#[derive(Debug, Clone, Copy)]
struct BenchRun {
    users: i64,
    gmail_per_second: f64,
    slack_posts_per_second: f64,
}

/// `BENCH_RUNS`: `users:gmail_per_second:slack_posts_per_second`, comma-separated.
fn bench_runs() -> Vec<BenchRun> {
    let spec = std::env::var("BENCH_RUNS").unwrap_or_else(|_| "10000:1000:1000,10000:2000:1000,5000:4000:50".into());
    spec.split(',')
        .map(|r| {
            let p: Vec<f64> = r.split(':').map(|v| v.trim().parse().expect("BENCH_RUNS: numbers")).collect();
            assert_eq!(p.len(), 3, "BENCH_RUNS entries are users:gmail_per_second:slack_posts_per_second");
            BenchRun { users: p[0] as i64, gmail_per_second: p[1], slack_posts_per_second: p[2] }
        })
        .collect()
}

/// Seeds `users` users due a minute ago (UTC), each with a known DM channel
/// (the steady state: `conversations.open` happened on an earlier day) and
/// Gmail connected: tokens sealed by the vault with `KEY`, the access token
/// valid for two hours (no refresh during the run).
async fn seed_connected_users(pool: &PgPool, users: i64) {
    let now = Utc::now();
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(TEAM_ID)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO slack_users (user_id, team_id, real_name, tz, locale, briefing_time, dm_channel_id, first_seen_at, last_seen_at)
         SELECT 'U' || lpad(i::text, 8, '0'), $1, 'User ' || i, 'Etc/UTC', CASE WHEN i % 2 = 0 THEN 'ko-KR' ELSE 'en-US' END,
                $3::time, 'D' || lpad(i::text, 8, '0'), $4, $4
         FROM generate_series(1, $2) AS i",
    )
    .bind(TEAM_ID)
    .bind(users)
    .bind((now - chrono::Duration::minutes(1)).format("%H:%M").to_string())
    .bind(now - chrono::Duration::hours(1))
    .execute(pool)
    .await
    .unwrap();
    let config =
        robeing::config::Config::from_lookup(|k| (k == "TOKEN_ENCRYPTION_KEY").then(|| KEY.to_owned())).unwrap();
    let vault = robeing::google::vault::Vault::from_config(&config).unwrap();
    let expires = now + chrono::Duration::hours(2);
    let (mut ids, mut refresh, mut access) = (Vec::new(), Vec::new(), Vec::new());
    let mut key_id = String::new();
    for i in 1..=users {
        let user = format!("U{i:08}");
        let sealed = robeing::google::oauth::seal(
            &vault,
            &user,
            &secrecy::SecretString::from(format!("1//bench-refresh-{user}")),
            &secrecy::SecretString::from(format!("{}{user}", gmail::BULK_TOKEN_PREFIX)),
            expires,
        )
        .unwrap();
        key_id = sealed.key_id;
        ids.push(user);
        refresh.push(sealed.refresh);
        access.push(sealed.access);
    }
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, google_email, refresh_token_ciphertext, access_token_ciphertext,
                                        access_token_expires_at, token_key_id, scopes, connected_at)
         SELECT u, 'connected', lower(u) || '@example.com', r, a, $4, $5, ARRAY['https://www.googleapis.com/auth/gmail.readonly'], $6
         FROM UNNEST($1::text[], $2::bytea[], $3::bytea[]) AS t(u, r, a)",
    )
    .bind(&ids)
    .bind(&refresh)
    .bind(&access)
    .bind(expires)
    .bind(&key_id)
    .bind(now - chrono::Duration::days(1))
    .execute(pool)
    .await
    .unwrap();
}

/// `robeing_budget_wait_seconds_total{budget=…}` from a `/metrics` text.
fn budget_waits(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("robeing_budget_wait_seconds_total{"))
        .filter_map(|l| {
            let budget = l.split('"').nth(1)?.to_owned();
            Some((budget, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The "Briefing" benchmark of `docs/benchmarks.md`: the real binary
/// (`robeing serve`, its own process, so its CPU and memory are measured
/// alone) against fakes in this process — Slack, two news feeds, and a Gmail
/// answering every request (a batch: once) after 50 ms — for every user with Gmail connected,
/// at each configured pair of budgets (`BENCH_RUNS`). Run by hand, in release:
/// `cargo test --release --test api bench_briefing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see docs/benchmarks.md"]
async fn bench_briefing_10k_users() {
    robeing::startup::install_crypto_provider();
    const MESSAGES: usize = 10;
    let fake_feeds = feeds::start().await;
    let slack = crate::fakes::slack::start().await;
    let fake_gmail = gmail::start_bulk(MESSAGES, Duration::from_millis(50)).await;
    for run in bench_runs() {
        let BenchRun { users, gmail_per_second, slack_posts_per_second } = run;
        let (db_url, _) = fresh_database().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let secret = "bench-cron-secret";
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_robeing"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .envs([
                ("DATABASE_URL", db_url.as_str()),
                ("ROBEING_LISTEN", &format!("127.0.0.1:{port}")),
                ("SLACK_BOT_TOKEN", BOT_TOKEN),
                ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
                ("SLACK_API_URL", &slack.url("/api")),
                ("SLACK_MAX_POSTS_PER_SECOND", &slack_posts_per_second.to_string()),
                ("GOOGLE_CLIENT_ID", "bench-client.apps.example"),
                ("GOOGLE_CLIENT_SECRET", "bench-secret"),
                ("GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token"),
                ("TOKEN_ENCRYPTION_KEY", KEY),
                ("GMAIL_API_URL", &fake_gmail.url("")),
                ("GMAIL_MAX_REQUESTS_PER_SECOND", &gmail_per_second.to_string()),
                ("NEWS_FEEDS", &feeds::feeds(&fake_feeds, &[feeds::RSS, feeds::ATOM])),
                ("BRIEFING_SCHEDULER", "off"),
                ("CRON_SECRET", secret),
                ("RUST_LOG", "warn"),
                ("LOG_FORMAT", "json"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap().to_string();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "robeing serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pool = PgPool::connect(&db_url).await.unwrap();
        seed_connected_users(&pool, users).await;
        let (http_before, gmail_before, posts_before) =
            (fake_gmail.server.requests().len(), gmail_calls_seen(&fake_gmail), slack.requests_to(POST).len());
        let load_before = procfs::load_average();

        let (cpu0, rss_idle) = cpu_and_peak_rss(&pid);
        let started = std::time::Instant::now();
        let r: Value = http
            .post(format!("{base}/api/cron/daily-summary"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let claim_wall = started.elapsed();
        assert_eq!(r["claimed"].as_i64(), Some(users), "{r}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
        loop {
            let open: i64 = sqlx::query_scalar("SELECT count(*) FROM briefings WHERE status = 'claimed'")
                .fetch_one(&pool)
                .await
                .unwrap();
            if open == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{open} still claimed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let wall = started.elapsed();
        let (cpu1, rss_peak) = cpu_and_peak_rss(&pid);
        let load_after = procfs::load_average();
        let complete: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM briefings WHERE status = 'delivered' AND email_status = 'ok' AND news_status = 'ok'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(complete, users, "every briefing delivered with its Gmail and news sections");
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let gmail_calls = gmail_calls_seen(&fake_gmail) - gmail_before;
        let gmail_http = fake_gmail.server.requests().len() - http_before;
        let posts = slack.requests_to(POST).len() - posts_before;
        assert_eq!(gmail_calls, users as usize * (MESSAGES + 1), "one list and {MESSAGES} gets per user");
        assert_eq!(gmail_http, users as usize * 2, "one list and one batch request per user");
        assert_eq!(posts, users as usize);
        // The floor each budget sets on the wall time.
        let gmail_floor = gmail_calls as f64 / gmail_per_second;
        let slack_floor = posts as f64 / slack_posts_per_second;
        let cpu = (cpu1 - cpu0).as_secs_f64();
        println!(
            "BENCH briefing: users={users} gmail_limit={gmail_per_second}/s slack_limit={slack_posts_per_second}/s \
             claim_wall={:.2}s total_wall={:.1}s gmail_floor={gmail_floor:.1}s slack_floor={slack_floor:.1}s \
             wall/floor={:.2} gmail_calls={gmail_calls} ({:.0}/s) gmail_http_requests={gmail_http} posts={posts} ({:.0}/s) \
             robeing_cpu={cpu:.1}s cpu_per_briefing={:.3}ms cpu_cores={:.2} rss_idle={}MB peak_rss={}MB \
             budget_waits={:?} load={load_before}→{load_after}",
            claim_wall.as_secs_f64(),
            wall.as_secs_f64(),
            wall.as_secs_f64() / gmail_floor.max(slack_floor),
            gmail_calls as f64 / wall.as_secs_f64(),
            posts as f64 / wall.as_secs_f64(),
            cpu * 1000.0 / users as f64,
            cpu / wall.as_secs_f64(),
            rss_idle / 1024,
            rss_peak / 1024,
            budget_waits(&metrics),
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().unwrap()), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        pool.close().await;
    }
}

#[tokio::test]
async fn the_llm_summarises_mail_from_metadata_only_when_configured() {
    use crate::fakes::recorder::{Recorded, Scripted};
    robeing::startup::install_crypto_provider();
    let llm_fake = Recorder::start(std::sync::Arc::new(|_: &Recorded| {
        Scripted::json(
            200,
            serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "small-model",
                "choices": [ { "index": 0, "finish_reason": "stop",
                    "message": { "role": "assistant", "content": "박서연 님의 계약서 검토 요청이\n가장 급합니다." } } ]
            }),
        )
    }))
    .await;
    let gmail_fake = gmail::start().await;
    let http = reqwest::Client::new();
    let items = list_inbox(&http, &gmail_fake.url(""), gmail::ACCESS_TOKEN, at("2026-11-29T00:00:00Z")).await.unwrap();
    let llm = robeing::config::OpenAiCompatible {
        base_url: url::Url::parse(&llm_fake.url("/v1")).unwrap(),
        api_key: Some(secrecy::SecretString::from("llm-key-123")),
        model: "small-model".into(),
    };
    let summary = briefing::compose::llm_summary(&http, &llm, &items, robeing::i18n::Lang::Ko).await.unwrap();
    assert_eq!(summary, "박서연 님의 계약서 검토 요청이 가장 급합니다.");

    let calls = llm_fake.requests_to("/v1/chat/completions");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["authorization"], "Bearer llm-key-123");
    let body = calls[0].json();
    assert_eq!(body["model"], "small-model");
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Korean"), "{system}");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.starts_with("3 new messages:"), "{user}");
    // The most important message first; snippets unescaped; no token.
    let first = user.lines().nth(1).unwrap();
    assert!(first.contains("From: 박서연 | Subject: 계약서 초안 검토 요청 | Labels: IMPORTANT"), "{first}");
    assert!(user.contains("our biggest deals won't last"), "{user}");
    assert!(!user.contains(gmail::ACCESS_TOKEN));

    // An LLM that fails is an error the caller records (the extractive summary stands).
    llm_fake.script("/v1/chat/completions", [Scripted::json(503, serde_json::json!({ "error": "overloaded" }))]);
    let err = briefing::compose::llm_summary(&http, &llm, &items, robeing::i18n::Lang::En).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn the_scheduler_inside_serve_sends_a_due_briefing_on_its_own() {
    let fake_feeds = feeds::start().await;
    let (db_url, _) = fresh_database().await;
    let pool = PgPool::connect(&db_url).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    let now = Utc::now();
    let time = (now - chrono::Duration::minutes(1)).format("%H:%M").to_string();
    add_user(
        &pool,
        "U0LOOP001",
        Some("Etc/UTC"),
        "en-US",
        Some(&time),
        &(now - chrono::Duration::hours(1)).to_rfc3339(),
    )
    .await;
    add_user(
        &pool,
        "U0LATER01",
        Some("Etc/UTC"),
        "en-US",
        Some(&(now + chrono::Duration::hours(2)).format("%H:%M").to_string()),
        &(now - chrono::Duration::hours(1)).to_rfc3339(),
    )
    .await;

    // The scheduler loop is on (as in production): nothing calls run_due.
    let app = spawn_app_with(Options {
        vars: vec![
            ("DATABASE_URL".into(), db_url.clone()),
            ("NEWS_FEEDS".into(), feeds::feeds(&fake_feeds, &[feeds::RSS])),
            ("BRIEFING_SCHEDULER".into(), "on".into()),
        ],
        ..Default::default()
    })
    .await;
    let posts = app.slack.wait_for(POST, 1, WAIT).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].json()["channel"], "D0LOOP001");
    settled(&app.db, "U0LOOP001").await;
    let r = rows(&app.db, "U0LOOP001").await;
    assert_eq!((r.len(), r[0].2.as_str(), r[0].3.as_str()), (1, "scheduler", "delivered"));
    assert!(rows(&app.db, "U0LATER01").await.is_empty(), "not due yet");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn app_home_shows_the_next_and_last_briefing_and_its_actions_change_the_schedule() {
    use robeing::briefing::home::{self, HomeOutcome};
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0HOME001", Some("Asia/Seoul"), "en-US", None, "2026-11-30T20:00:00Z").await;
    let s = &app.state;
    let view_text = |v: &Value| {
        let blocks: Vec<slack_morphism::prelude::SlackBlock> = serde_json::from_value(v["blocks"].clone()).unwrap();
        assert_eq!(blocks.len(), 4);
        all_text(v)
    };

    let v = home::view(s, "U0HOME001", at("2026-11-30T23:00:00Z")).await.unwrap();
    assert_eq!(v["type"], "home");
    let t = view_text(&v);
    assert!(t.contains("Next briefing: *Tue 1 Dec, 09:00* (Asia/Seoul)") && t.contains("No briefing yet."), "{t}");
    assert_eq!(v["blocks"][3]["elements"][0]["initial_option"]["value"], "default");

    // 08:00 in Seoul: move it to 10:00.
    let done = home::handle_action(s, "U0HOME001", home::ACTION_TIME, Some("10:00"), at("2026-11-30T23:00:00Z")).await;
    assert_eq!(done.unwrap(), HomeOutcome::TimeSet(chrono::NaiveTime::from_hms_opt(10, 0, 0)));
    assert_eq!(run_due(s, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    assert_eq!(run_due(s, at("2026-12-01T01:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(1, 0, 0));
    settled(&app.db, "U0HOME001").await;
    let t = view_text(&home::view(s, "U0HOME001", at("2026-12-01T02:00:00Z")).await.unwrap());
    assert!(t.contains("Next briefing: *Wed 2 Dec, 10:00*"), "{t}");
    // (Delivered at the real clock's time: only the scheduler's clock is injected.)
    assert!(t.contains("Last briefing: ") && t.contains(" · delivered · email not_configured, news ok"), "{t}");

    // Off: the next day has none.
    assert_eq!(
        home::handle_action(s, "U0HOME001", home::ACTION_TOGGLE, Some("off"), at("2026-12-01T02:00:00Z"))
            .await
            .unwrap(),
        HomeOutcome::Enabled(false)
    );
    assert!(view_text(&home::view(s, "U0HOME001", at("2026-12-01T02:00:00Z")).await.unwrap()).contains("is *off*"));
    assert_eq!(run_due(s, at("2026-12-02T01:00:05Z"), Trigger::Scheduler).await.unwrap(), summary(0, 0, 0));
    // On again at 15:00, long after 10:00: today says why it has none (not "service was down").
    home::handle_action(s, "U0HOME001", home::ACTION_TOGGLE, Some("on"), at("2026-12-02T06:00:00Z")).await.unwrap();
    assert_eq!(run_due(s, at("2026-12-02T06:00:30Z"), Trigger::Scheduler).await.unwrap(), summary(0, 1, 0));
    let r = rows(&app.db, "U0HOME001").await;
    assert_eq!((r[1].0.as_str(), r[1].3.as_str()), ("2026-12-02", "skipped"));
    assert!(r[1].6.as_deref().unwrap().starts_with("settings changed in App Home at 15:00"), "{r:?}");

    // Send one now: a DM, recorded as on demand from App Home.
    let sent = home::handle_action(s, "U0HOME001", home::ACTION_SEND_NOW, None, Utc::now()).await.unwrap();
    assert!(matches!(sent, HomeOutcome::Sent(Via::Dm { .. })));
    assert_eq!(posts_to(&app.slack, "D0HOME001").len(), 2);
    assert_eq!(rows(&app.db, "U0HOME001").await[2].2, "app_home");

    for (action, value) in
        [(home::ACTION_TIME, Some("25:00")), ("briefing_nope", None), (home::ACTION_TOGGLE, Some("maybe"))]
    {
        assert!(home::handle_action(s, "U0HOME001", action, value, Utc::now()).await.is_err(), "{action} {value:?}");
    }
    assert_eq!(app.slack.requests_to(POST).len(), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_retry_after_a_crash_between_posting_and_recording_finds_the_message_instead_of_reposting() {
    use crate::fakes::recorder::Scripted;
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    // Each first attempt posted and died before recording the post:
    // 1. the message carries its sections (what robeing posts);
    // 2. the row carries them (what robeing before them recorded first);
    // 3. neither does: recorded as unknown, so it shows as incomplete;
    // 4. the message's statuses are not ones robeing writes: the same.
    let mut ids = Vec::new();
    for n in 1..=4 {
        let user = format!("U0POSTED{n}");
        add_user(&app.db, &user, Some("Asia/Seoul"), "en-US", None, "2026-11-30T20:00:00Z").await;
        sqlx::query("UPDATE slack_users SET dm_channel_id = 'D' || substr(user_id, 2) WHERE user_id = $1")
            .bind(&user)
            .execute(&app.db)
            .await
            .unwrap();
        ids.push(briefing_row(&app.db, &user, "claimed").await);
    }
    sqlx::query("UPDATE briefings SET email_status = 'not_configured', news_status = 'ok' WHERE id = $1")
        .bind(ids[1])
        .execute(&app.db)
        .await
        .unwrap();
    let tagged = |id: uuid::Uuid, ts: &str, sections: Option<(&str, &str)>| {
        let mut payload = serde_json::json!({ "briefing_id": id.to_string() });
        if let Some((email, news)) = sections {
            payload["email_status"] = email.into();
            payload["email_detail"] = "Gmail refused the token (invalid_grant)".into();
            payload["news_status"] = news.into();
        }
        serde_json::json!({ "type": "message", "user": "U0BOT0001", "text": "Your briefing", "ts": ts,
                            "metadata": { "event_type": "robeing_briefing", "event_payload": payload } })
    };
    // One history answers all three (each finds its own by briefing id).
    let history = serde_json::json!({
        "ok": true, "has_more": false,
        "messages": [
            { "type": "message", "user": "U0POSTED1", "text": "thanks", "ts": "1764000000.000900" },
            tagged(ids[0], "1764000000.000777", Some(("needs_reconnect", "partial"))),
            tagged(ids[1], "1764000000.000778", None),
            tagged(ids[2], "1764000000.000779", None),
            tagged(ids[3], "1764000000.000780", Some(("fine", "partial"))),
        ]
    });
    app.slack.script("/api/conversations.history", (0..4).map(|_| Scripted::json(200, history.clone())));
    // Only now the jobs: a worker claims them at once.
    for id in &ids {
        job_left_running(&app.db, *id).await;
    }

    wait_jobs_done(&app.db, 4).await;
    // status, message_ts, email_status, news_status, email_detail
    type Recorded = (String, Option<String>, Option<String>, Option<String>, Option<String>);
    let recorded: Vec<Recorded> = sqlx::query_as(
        "SELECT status, message_ts, email_status, news_status, email_detail FROM briefings WHERE id = ANY($1) ORDER BY user_id",
    )
    .bind(&ids)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let expect = |ts: &str, email: &str, news: &str| {
        ("delivered".to_owned(), Some(ts.to_owned()), Some(email.to_owned()), Some(news.to_owned()))
    };
    let got: Vec<_> = recorded.iter().map(|r| (r.0.clone(), r.1.clone(), r.2.clone(), r.3.clone())).collect();
    assert_eq!(
        got,
        vec![
            expect("1764000000.000777", "needs_reconnect", "partial"),
            expect("1764000000.000778", "not_configured", "ok"),
            expect("1764000000.000779", "error", "error"),
            expect("1764000000.000780", "error", "error"),
        ]
    );
    assert_eq!(recorded[0].4.as_deref(), Some("Gmail refused the token (invalid_grant)"));
    assert!(recorded[2].4.as_deref().unwrap().contains("stopped before recording"), "{recorded:?}");
    let looked = app.slack.requests_to("/api/conversations.history");
    assert_eq!(looked.len(), 4);
    let mut channels: Vec<_> = looked.iter().map(|r| r.param("channel").unwrap()).collect();
    channels.sort();
    assert_eq!(channels, ["D0POSTED1", "D0POSTED2", "D0POSTED3", "D0POSTED4"]);
    assert!(looked.iter().all(|r| r.param("include_all_metadata").as_deref() == Some("true")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.slack.requests_to(POST).is_empty(), "not posted a second time");
    app.stop().await.unwrap();
}

/// Reads an inbox through the Gmail connection's client, as the briefing's
/// Gmail section does (after it obtained a token).
async fn list_inbox(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<email::MailItem>, robeing::google::gmail::GmailError> {
    let client = robeing::google::gmail::GmailClient::new(http.clone(), url::Url::parse(base).unwrap());
    let token = secrecy::SecretString::from(token.to_owned());
    let ids = client.list_inbox_since(&token, since, email::MAX_MESSAGES as u32).await?;
    let mut items: Vec<email::MailItem> =
        client.metadata_many(&token, &ids).await?.into_iter().map(email::from_meta).collect();
    items.sort_by_key(|m| std::cmp::Reverse(m.received_at));
    Ok(items)
}

#[tokio::test]
async fn an_on_demand_briefing_abandoned_mid_send_is_recorded_failed_not_left_claimed() {
    let Briefed { app, feeds: _f } = spawn(&[feeds::RSS], &[]).await;
    add_user(&app.db, "U0ABANDON", Some("Asia/Seoul"), "en-US", Some("23:00"), "2026-11-30T20:00:00Z").await;
    // A /brief whose process died ten minutes ago, one being sent right now,
    // and a daily one (its job finishes it; not this sweep's).
    let insert = |kind: &'static str, age_secs: i32, date: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "INSERT INTO briefings (user_id, local_date, kind, trigger, claimed_at)
                 VALUES ('U0ABANDON', $3::date, $1, CASE WHEN $1 = 'daily' THEN 'scheduler' ELSE 'command' END,
                         now() - make_interval(secs => $2)) RETURNING id",
            )
            .bind(kind)
            .bind(age_secs as f64)
            .bind(date)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let abandoned = insert("on_demand", 600, "2026-11-28").await;
    let in_flight = insert("on_demand", 5, "2026-11-28").await;
    let daily = insert("daily", 600, "2026-11-29").await;

    run_due(&app.state, at("2026-12-01T00:00:05Z"), Trigger::Scheduler).await.unwrap();
    let state = |id: uuid::Uuid| {
        let db = app.db.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>("SELECT status, failure_reason FROM briefings WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let (status, reason) = state(abandoned).await;
    assert_eq!(status, "failed");
    assert!(reason.as_deref().unwrap().starts_with("abandoned: robeing stopped while sending it"), "{reason:?}");
    assert_eq!(state(in_flight).await, ("claimed".to_owned(), None), "one still being sent is left alone");
    assert_eq!(state(daily).await, ("claimed".to_owned(), None), "a daily one belongs to its job");
    app.stop().await.unwrap();
}
