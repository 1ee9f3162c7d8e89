//! Socket Mode against a fake Socket Mode server: acks after recording,
//! dedupe across connections and with HTTP, reconnects, `link_disabled`,
//! a refused app token, and Postgres down → no ack.

use std::time::Duration;

use serde_json::json;

use crate::{
    fakes::{recorder::Scripted, slack::TEAM_ID, socket_mode::FakeSocketMode},
    helpers::*,
    slack_http::{Post, USER, callback, count, dm, job_outcome},
};

const APP_TOKEN: &str = "xapp-1-A0ROBEING-test";
const WAIT: Duration = Duration::from_secs(10);

async fn spawn_socket_app(
    extra: Vec<(String, String)>,
    embedded: Option<std::path::PathBuf>,
) -> (TestApp, FakeSocketMode) {
    let fake = FakeSocketMode::start().await;
    let mut vars = vec![("SLACK_APP_TOKEN".to_owned(), APP_TOKEN.to_owned())];
    vars.extend(extra);
    let app = spawn_app_with(Options { vars, embedded_data_dir: embedded }).await;
    (app, fake)
}

async fn readyz_slack(app: &TestApp) -> (u16, String) {
    let r = app.get("/readyz").await;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    let slack = body["checks"].as_array().unwrap().iter().find(|c| c["name"] == "slack").unwrap()["detail"].to_string();
    (status, slack)
}

async fn wait_readyz(app: &TestApp, needle: &str) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = readyz_slack(app).await;
        if last.1.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readyz never said {needle}: {last:?}");
}

fn command_payload(trigger: &str, response_url: &str) -> serde_json::Value {
    json!({"token": "x", "team_id": TEAM_ID, "team_domain": "robeing", "channel_id": "C0GENERAL", "channel_name": "general",
           "user_id": USER, "user_name": "jane", "command": "/brief", "text": "", "api_app_id": "A0ROBEING",
           "response_url": response_url, "trigger_id": trigger})
}

#[tokio::test]
async fn envelopes_are_acked_after_they_are_recorded_and_dedupe_with_http() {
    let (app, fake) = spawn_socket_app(vec![], None).await;
    fake.serve_urls_from(&app.slack, 5);
    // The supervisor may already have asked before the script was queued:
    // its first attempt failed (unknown_method) and it retries after 1 s.
    let mut conn = fake.accept(WAIT).await.expect("robeing connects");
    let open = app.slack.requests_to("/api/apps.connections.open");
    assert!(!open.is_empty());
    assert_eq!(
        open.last().unwrap().headers["authorization"],
        format!("Bearer {APP_TOKEN}"),
        "the app token, not the bot token"
    );
    conn.hello();
    wait_readyz(&app, "Socket Mode connected").await;

    conn.envelope("events_api", "env-1", dm("Ev0SOCKET", USER, "하이"));
    assert_eq!(conn.next(WAIT).await.unwrap(), json!({"envelope_id": "env-1"}));
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0SOCKET' AND source = 'socket_mode'")
            .await,
        1
    );

    conn.envelope("slash_commands", "env-2", command_payload("111.222.sock", &app.slack.url("/commands/1/2/3")));
    let ack = conn.next(WAIT).await.unwrap();
    assert_eq!(ack["envelope_id"], "env-2");
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    // English, or Korean once the DM's job has stored the user's ko-KR locale
    // (users.info); which one depends on timing (tests/api/i18n.rs pins it).
    let text = ack["payload"]["text"].as_str().unwrap();
    assert!(text == "Preparing your briefing…" || text == "브리핑을 준비하고 있어요…", "{text}");
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'cmd:111.222.sock'").await, 1);

    let action = json!({"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER}, "trigger_id": "333.444.sock",
                        "actions": [{"action_id": "gmail_reconnect", "action_ts": "1.2"}]});
    conn.envelope("interactive", "env-3", action);
    assert_eq!(conn.next(WAIT).await.unwrap(), json!({"envelope_id": "env-3"}));
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'act:333.444.sock'").await, 1);

    // The same event redelivered over Socket Mode and over HTTP: acked, stored once.
    conn.envelope("events_api", "env-4", dm("Ev0SOCKET", USER, "하이"));
    assert_eq!(conn.next(WAIT).await.unwrap(), json!({"envelope_id": "env-4"}));
    assert_eq!(Post::event(&dm("Ev0SOCKET", USER, "하이")).send(&app).await.status(), 200);
    let http_first = dm("Ev0HTTPFIRST", USER, "hi");
    assert_eq!(Post::event(&http_first).send(&app).await.status(), 200);
    conn.envelope("events_api", "env-5", http_first);
    assert_eq!(conn.next(WAIT).await.unwrap(), json!({"envelope_id": "env-5"}));
    for id in ["Ev0SOCKET", "Ev0HTTPFIRST"] {
        assert_eq!(count(&app.db, &format!("SELECT count(*) FROM slack_events WHERE event_id = '{id}'")).await, 1);
        assert_eq!(
            count(&app.db, &format!("SELECT count(*) FROM slack_events WHERE event_id = '{id}' AND attempts <= 1"))
                .await,
            1
        );
    }
    // Jobs ran: each of the two DMs got exactly one reply, whichever
    // transport delivered it first; /brief answered once at its response_url.
    assert_eq!(job_outcome(&app.db, "cmd:111.222.sock").await.0, "done");
    for id in ["Ev0SOCKET", "Ev0HTTPFIRST"] {
        assert_eq!(job_outcome(&app.db, id).await.0, "done");
    }
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 2);
    assert_eq!(app.slack.requests_to("/commands/1/2/3").len(), 1);
    assert!(conn.next(Duration::from_millis(300)).await.is_none(), "nothing but acks was sent");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refresh_opens_a_second_connection_and_a_dropped_socket_is_replaced() {
    let (app, fake) = spawn_socket_app(vec![], None).await;
    fake.serve_urls_from(&app.slack, 10);
    let mut first = fake.accept(WAIT).await.expect("first connection");
    first.hello();
    wait_readyz(&app, "Socket Mode connected").await;

    first.disconnect("refresh_requested");
    let mut second = fake.accept(WAIT).await.expect("a second connection after refresh_requested");
    second.hello();
    // Slack may deliver the same event on both while it moves us: one row, both acked.
    let event =
        callback("Ev0MOVING", json!({"type": "app_home_opened", "user": USER, "tab": "home", "event_ts": "1.1"}));
    first.envelope("events_api", "env-a", event.clone());
    second.envelope("events_api", "env-b", event);
    assert_eq!(first.next(WAIT).await.unwrap()["envelope_id"], "env-a", "the old connection still acks while draining");
    assert_eq!(second.next(WAIT).await.unwrap()["envelope_id"], "env-b");
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0MOVING'").await, 1);
    assert_eq!(job_outcome(&app.db, "Ev0MOVING").await.0, "done");
    assert_eq!(app.slack.requests_to("/api/views.publish").len(), 1, "one Home tab for one event");

    // Slack closes the old one: no extra connection for it.
    first.close();
    assert!(fake.accept(Duration::from_millis(1500)).await.is_none(), "closing a replaced connection opens nothing");
    // The live one drops: it is replaced (after a 1 s backoff, as it lived
    // less than STABLE_AFTER).
    second.close();
    let third = fake.accept(WAIT).await.expect("a dropped socket is replaced");
    third.hello();
    wait_readyz(&app, "Socket Mode connected").await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn link_disabled_stops_reconnecting_and_turns_readyz_not_ready() {
    let (app, fake) = spawn_socket_app(vec![("SLACK_SIGNING_SECRET".into(), "".into())], None).await;
    fake.serve_urls_from(&app.slack, 10);
    let conn = fake.accept(WAIT).await.expect("connects");
    conn.hello();
    assert_eq!(wait_readyz(&app, "Socket Mode connected").await.0, 200);
    let opened = app.slack.requests_to("/api/apps.connections.open").len();
    conn.disconnect("link_disabled");
    let (status, detail) = wait_readyz(&app, "link_disabled").await;
    assert_eq!(status, 503, "{detail}");
    assert!(fake.accept(Duration::from_secs(3)).await.is_none(), "no reconnect after link_disabled");
    assert_eq!(app.slack.requests_to("/api/apps.connections.open").len(), opened);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_app_token_is_reported_once_and_not_retried() {
    let fake = FakeSocketMode::start().await;
    // Script the refusal before robeing starts: a fake Slack of our own.
    let app = spawn_app_with(Options {
        vars: vec![("SLACK_APP_TOKEN".into(), APP_TOKEN.into()), ("SLACK_SIGNING_SECRET".into(), "".into())],
        ..Default::default()
    })
    .await;
    // The default fake answers apps.connections.open with a refusal
    // (`unknown_method`, retried); script invalid_auth for the next attempt.
    app.slack
        .script("/api/apps.connections.open", [Scripted::json(200, json!({"ok": false, "error": "invalid_auth"}))]);
    let (status, detail) = wait_readyz(&app, "invalid_auth").await;
    assert_eq!(status, 503, "{detail}");
    let calls = app.slack.requests_to("/api/apps.connections.open").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.slack.requests_to("/api/apps.connections.open").len(), calls, "not retried");
    assert!(fake.accept(Duration::from_millis(100)).await.is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn postgres_down_withholds_the_ack_and_the_redelivery_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (app, fake) = spawn_socket_app(vec![], Some(dir.path().to_path_buf())).await;
    fake.serve_urls_from(&app.slack, 10);
    let mut conn = fake.accept(WAIT).await.expect("connects");
    conn.hello();
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();

    let event = dm("Ev0SOCKOUT", USER, "anyone?");
    conn.envelope("events_api", "env-down", event.clone());
    assert!(conn.next(Duration::from_secs(4)).await.is_none(), "no ack for an event that is not stored");

    let _pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    let mut acked = false;
    for n in 0..20 {
        conn.envelope("events_api", &format!("env-retry-{n}"), event.clone());
        if let Some(ack) = conn.next(Duration::from_secs(3)).await {
            assert_eq!(ack["envelope_id"], format!("env-retry-{n}"));
            acked = true;
            break;
        }
    }
    assert!(acked, "the redelivery is acked once Postgres is back");
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0SOCKOUT'").await, 1);
    app.stop().await.unwrap();
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn doctor_checks_the_app_token() {
    let slack = crate::fakes::slack::start().await;
    let fake = FakeSocketMode::start().await;
    let (db, _) = fresh_database().await;
    let api = slack.url("/api");
    let vars = [
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_APP_TOKEN", APP_TOKEN),
        ("SLACK_API_URL", api.as_str()),
        ("DATABASE_URL", db.as_str()),
    ];
    slack.script("/api/apps.connections.open", [Scripted::json(200, json!({"ok": false, "error": "invalid_auth"}))]);
    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Socket Mode") && t.contains("invalid_auth") && t.contains("SLACK_APP_TOKEN"), "{t}");
    assert!(!t.contains(APP_TOKEN), "the token is never printed: {t}");

    fake.serve_urls_from(&slack, 1);
    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("apps.connections.open ok"), "{t}");
    let calls = slack.requests_to("/api/apps.connections.open");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].headers["authorization"], format!("Bearer {APP_TOKEN}"));
}
