//! The HTTP transport: `POST /slack/events`, `/slack/commands`,
//! `/slack/interactions` — signatures, limits, malformed input, dedupe,
//! durable ack, and what handling does with each stored event.

use std::time::Duration;

use serde_json::json;

use crate::{
    fakes::{recorder::Scripted, slack::TEAM_ID},
    helpers::*,
};

pub const USER: &str = "U0TEST001";
pub const DM_CHANNEL: &str = "D0TEST001";

pub fn now() -> String {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string()
}

/// An Events API `event_callback` around `event`.
pub fn callback(event_id: &str, event: serde_json::Value) -> serde_json::Value {
    json!({
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "A0ROBEING", "type": "event_callback",
        "event_id": event_id, "event_time": 1764000000, "event": event,
        "authorizations": [{ "team_id": TEAM_ID, "user_id": crate::fakes::slack::BOT_USER_ID, "is_bot": true }]
    })
}

/// A fresh message `ts`.
pub fn next_ts() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    format!("1764000000.{:06}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// A human's DM to robeing.
pub fn dm(event_id: &str, user: &str, text: &str) -> serde_json::Value {
    callback(
        event_id,
        json!({ "type": "message", "channel": DM_CHANNEL, "channel_type": "im", "user": user, "text": text,
                "ts": next_ts(), "event_ts": "1764000000.000100" }),
    )
}

pub struct Post<'a> {
    pub path: &'a str,
    pub body: Vec<u8>,
    pub content_type: &'a str,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub retry_num: Option<u32>,
}

impl<'a> Post<'a> {
    /// A correctly signed request.
    pub fn signed(path: &'a str, body: impl Into<Vec<u8>>, content_type: &'a str) -> Self {
        let body = body.into();
        let ts = now();
        Self {
            path,
            signature: Some(slack_signature(SIGNING_SECRET, &ts, &body)),
            timestamp: Some(ts),
            body,
            content_type,
            retry_num: None,
        }
    }
    pub fn event(v: &serde_json::Value) -> Self {
        Self::signed("/slack/events", v.to_string(), "application/json")
    }
    pub async fn send(&self, app: &TestApp) -> reqwest::Response {
        let mut r = app
            .http
            .post(format!("{}{}", app.address, self.path))
            .header("content-type", self.content_type)
            .body(self.body.clone());
        if let Some(s) = &self.signature {
            r = r.header("x-slack-signature", s);
        }
        if let Some(t) = &self.timestamp {
            r = r.header("x-slack-request-timestamp", t);
        }
        if let Some(n) = self.retry_num {
            r = r.header("x-slack-retry-num", n.to_string()).header("x-slack-retry-reason", "http_timeout");
        }
        r.send().await.unwrap()
    }
}

pub async fn count(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db).await.unwrap()
}

/// Waits until the job for `event_id` is finished (done or dead); returns
/// its state and last error.
pub async fn job_outcome(db: &sqlx::PgPool, event_id: &str) -> (String, Option<String>) {
    job_outcome_within(db, event_id, Duration::from_secs(10)).await
}

/// [`job_outcome`], waiting up to `within`.
pub async fn job_outcome_within(db: &sqlx::PgPool, event_id: &str, within: Duration) -> (String, Option<String>) {
    for _ in 0..within.as_millis() / 50 {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT state, last_error FROM slack_events WHERE event_id = $1 AND state IN ('done', 'dead')",
        )
        .bind(event_id)
        .fetch_optional(db)
        .await
        .unwrap();
        if let Some(row) = row {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job for {event_id} did not finish within {within:?}");
}

/// Requests the app sent to the fake Slack after start-up (`auth.test` excluded).
fn slack_calls(app: &TestApp) -> Vec<String> {
    app.slack.requests().into_iter().map(|r| r.path).filter(|p| p != "/api/auth.test").collect()
}

#[tokio::test]
async fn a_signed_event_is_recorded_with_its_job_then_acked() {
    let app = spawn_app().await;
    let r = Post::event(&dm("Ev0SIGNED", USER, "하이")).send(&app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0SIGNED' AND source = 'http' AND kind = 'message' AND team_id = 'T0ROBEING'").await,
        1
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0SIGNED' AND state <> 'dead'").await,
        1,
        "stored once, as work to do"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_signatures_are_401_without_detail_and_store_nothing() {
    let app = spawn_app().await;
    let body = dm("Ev0FORGED", USER, "hi").to_string();
    let good = Post::event(&dm("Ev0FORGED", USER, "hi"));
    let stale_ts = (now().parse::<i64>().unwrap() - 301).to_string();
    let cases: Vec<(&str, Post)> = vec![
        ("unsigned", Post { signature: None, timestamp: None, ..Post::event(&dm("Ev0FORGED", USER, "hi")) }),
        ("no timestamp", Post { timestamp: None, ..Post::event(&dm("Ev0FORGED", USER, "hi")) }),
        (
            "stale",
            Post {
                signature: Some(slack_signature(SIGNING_SECRET, &stale_ts, body.as_bytes())),
                timestamp: Some(stale_ts.clone()),
                ..Post::event(&dm("Ev0FORGED", USER, "hi"))
            },
        ),
        ("tampered", Post { body: body.replace("hi", "hj").into_bytes(), ..Post::event(&dm("Ev0FORGED", USER, "hi")) }),
        (
            "wrong prefix",
            Post {
                signature: Some(good.signature.clone().unwrap().replacen("v0=", "v1=", 1)),
                ..Post::event(&dm("Ev0FORGED", USER, "hi"))
            },
        ),
        (
            "wrong secret",
            Post {
                signature: Some(slack_signature("not-the-secret", good.timestamp.as_ref().unwrap(), body.as_bytes())),
                ..Post::event(&dm("Ev0FORGED", USER, "hi"))
            },
        ),
        ("garbage", Post { signature: Some("v0=zz".into()), ..Post::event(&dm("Ev0FORGED", USER, "hi")) }),
    ];
    for (name, post) in cases {
        for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
            let r = Post {
                path,
                body: post.body.clone(),
                signature: post.signature.clone(),
                timestamp: post.timestamp.clone(),
                ..Post::event(&json!({}))
            }
            .send(&app)
            .await;
            assert_eq!(r.status(), 401, "{name} {path}");
            let text = r.text().await.unwrap();
            assert!(
                !text.contains("signature") && !text.contains("timestamp") && !text.contains(SIGNING_SECRET),
                "{name}: the 401 leaks detail: {text}"
            );
        }
    }
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events").await, 0);
    assert_eq!(count(&app.db, "SELECT count(*) FROM jobs").await, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_are_413_and_malformed_ones_400() {
    let app = spawn_app().await;
    // 1 MB + 1 byte, correctly signed.
    let mut big = br#"{"type":"event_callback","pad":""#.to_vec();
    big.resize(1024 * 1024 + 1 - 2, b'a');
    big.extend_from_slice(b"\"}");
    assert_eq!(big.len(), 1024 * 1024 + 1);
    for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
        let r = Post::signed(path, big.clone(), "application/json").send(&app).await;
        assert_eq!(r.status(), 413, "{path}");
    }

    let r = Post::signed("/slack/events", "{not json", "application/json").send(&app).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid JSON"));
    let r = Post::signed(
        "/slack/events",
        json!({"type": "event_callback", "event": {"type": "message"}}).to_string(),
        "application/json",
    )
    .send(&app)
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("event_id"));
    let r = Post::signed("/slack/commands", "command=%ZZ&&=", "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 400);
    let r =
        Post::signed("/slack/commands", "command=%2Fbrief&text=", "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("trigger_id"));
    let r = Post::signed("/slack/interactions", "nopayload=1", "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("payload"));
    let r =
        Post::signed("/slack/interactions", "payload=%7Bbroken", "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid JSON"));
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events").await, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn url_verification_answers_the_challenge() {
    let app = spawn_app().await;
    let v = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
    let r = Post::event(&v).send(&app).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events").await, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_signing_secret_the_routes_answer_503_naming_it() {
    // Socket Mode only (its token is refused by the fake: that is fine here).
    let app = spawn_app_with(Options {
        vars: vec![("SLACK_SIGNING_SECRET".into(), "".into()), ("SLACK_APP_TOKEN".into(), "xapp-1-test".into())],
        ..Default::default()
    })
    .await;
    for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
        let r = Post::signed(path, dm("Ev0NOSECRET", USER, "hi").to_string(), "application/json").send(&app).await;
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.text().await.unwrap().contains("SLACK_SIGNING_SECRET"), "{path}");
    }
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events").await, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_event_is_stored_once_sequentially_and_concurrently() {
    let app = spawn_app().await;
    let event = dm("Ev0TWICE", USER, "hello");
    assert_eq!(Post::event(&event).send(&app).await.status(), 200);
    let retry = Post { retry_num: Some(1), ..Post::event(&event) };
    assert_eq!(retry.send(&app).await.status(), 200, "a retry is acked too");

    let event = dm("Ev0CONCURRENT", USER, "hello again");
    let posts: Vec<Post> = (0..8).map(|i| Post { retry_num: (i > 0).then_some(i), ..Post::event(&event) }).collect();
    let answers = futures_util::future::join_all(posts.iter().map(|p| p.send(&app))).await;
    assert!(answers.iter().all(|r| r.status() == 200));

    for id in ["Ev0TWICE", "Ev0CONCURRENT"] {
        assert_eq!(count(&app.db, &format!("SELECT count(*) FROM slack_events WHERE event_id = '{id}'")).await, 1);
        assert_eq!(
            count(&app.db, &format!("SELECT count(*) FROM slack_events WHERE event_id = '{id}' AND attempts <= 1"))
                .await,
            1,
            "queued once, however often it was delivered"
        );
    }
    // The first delivery is the one kept.
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0TWICE' AND retry_num IS NULL").await,
        1
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn own_bot_messages_edits_and_channels_are_ignored_and_nothing_is_sent() {
    let app = spawn_app().await;
    let ignored = [
        (
            "Ev0OWN",
            callback(
                "Ev0OWN",
                json!({"type": "message", "channel": DM_CHANNEL, "channel_type": "im", "user": crate::fakes::slack::BOT_USER_ID, "text": "my own reply", "ts": "1.1"}),
            ),
        ),
        (
            "Ev0BOTID",
            callback(
                "Ev0BOTID",
                json!({"type": "message", "channel": DM_CHANNEL, "channel_type": "im", "bot_id": "B0OTHER", "text": "beep", "ts": "1.2"}),
            ),
        ),
        (
            "Ev0BOTMSG",
            callback(
                "Ev0BOTMSG",
                json!({"type": "message", "subtype": "bot_message", "channel": DM_CHANNEL, "channel_type": "im", "text": "beep", "ts": "1.3"}),
            ),
        ),
        (
            "Ev0EDIT",
            callback(
                "Ev0EDIT",
                json!({"type": "message", "subtype": "message_changed", "channel": DM_CHANNEL, "channel_type": "im", "message": {"user": USER, "text": "edited"}, "ts": "1.4"}),
            ),
        ),
        (
            "Ev0DELETED",
            callback(
                "Ev0DELETED",
                json!({"type": "message", "subtype": "message_deleted", "channel": DM_CHANNEL, "channel_type": "im", "previous_message": {"user": USER, "text": "gone"}, "ts": "1.6"}),
            ),
        ),
        (
            "Ev0CHANNEL",
            callback(
                "Ev0CHANNEL",
                json!({"type": "message", "channel": "C0GENERAL", "channel_type": "channel", "user": USER, "text": "hi all", "ts": "1.5"}),
            ),
        ),
    ];
    for (id, event) in &ignored {
        assert_eq!(Post::event(event).send(&app).await.status(), 200, "{id}");
    }
    for (id, _) in &ignored {
        let (state, error) = job_outcome(&app.db, id).await;
        assert_eq!(state, "done", "{id}: {error:?}");
    }
    assert_eq!(slack_calls(&app), Vec::<String>::new(), "nothing is sent for ignored events");
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_users").await, 0);
    app.stop().await.unwrap();
}

/// A message with files (`file_share`), as Slack sends it for a screenshot
/// dropped into the DM.
fn file_share(event_id: &str, text: &str, names: &[&str]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (mimetype, filetype) = match n.rsplit('.').next() {
                Some("heic") => ("image/heic", "heic"),
                Some("zip") => ("application/zip", "zip"),
                Some("mov") => ("video/quicktime", "mov"),
                _ => ("image/png", "png"),
            };
            json!({ "id": format!("F0SHARE{i:03}"), "name": n, "title": n, "mimetype": mimetype, "filetype": filetype,
                    "size": 48213, "mode": "hosted", "is_external": false, "user": USER,
                    "url_private": format!("https://files.slack.com/files-pri/T0ROBEING-F0SHARE{i:03}/{n}") })
        })
        .collect();
    callback(
        event_id,
        json!({ "type": "message", "subtype": "file_share", "channel": DM_CHANNEL, "channel_type": "im", "user": USER,
                "text": text, "files": files, "upload": false, "display_as_bot": false, "ts": next_ts() }),
    )
}

#[tokio::test]
async fn a_dm_with_files_is_answered_and_the_reply_names_the_files_it_could_not_read() {
    let app = spawn_app().await;
    let posted = |app: &TestApp| -> Vec<String> {
        app.slack
            .requests_to("/api/chat.postMessage")
            .iter()
            .filter(|r| r.param("channel").as_deref() == Some(DM_CHANNEL))
            .map(|r| r.param("text").unwrap_or_default())
            .collect()
    };

    // Text with a file: the text is answered, and the file is named.
    assert_eq!(Post::event(&file_share("Ev0FILE1", "help", &["screenshot <1>.png"])).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0FILE1").await.0, "done");
    let replies = posted(&app);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].starts_with("Here is what I can do:"), "the text is answered: {}", replies[0]);
    assert!(
        replies[0].ends_with(
            "(I could not read \"screenshot &lt;1&gt;.png\": not a text file, PDF, Office or Hangul document (I cannot read images and the like yet), so I answered from the rest.)"
        ),
        "the file is named, escaped: {}",
        replies[0]
    );

    // Only files: the reply says what arrived and what to do instead, in
    // the user's Slack language (ko-KR: there is no text to tell by).
    let names = ["a.png", "b.heic", "c.zip", "d.mov"];
    assert_eq!(Post::event(&file_share("Ev0FILE2", "", &names)).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0FILE2").await.0, "done");
    let replies = posted(&app);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(
        replies[1],
        "보내 주신 파일을 읽지 못했어요 (\"a.png\", \"b.heic\", \"c.zip\" +1: 텍스트 파일, PDF, 오피스나 한글 문서가 아니에요 (이미지 등은 아직 읽지 못해요)). 필요한 내용을 글로 적어 보내 주시면 도와드릴게요."
    );

    // Both are stored with their files' names.
    let rows: Vec<(String, Vec<String>, String, bool)> = sqlx::query_as(
        "SELECT user_text, user_files, status, kept_out_of_memory FROM exchanges ORDER BY received_at, user_ts",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("help".to_owned(), vec!["screenshot <1>.png".to_owned()], "replied".to_owned(), false),
            (String::new(), names.iter().map(|n| n.to_string()).collect(), "replied".to_owned(), true),
        ]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_text_file_sent_over_the_events_api_is_read_and_answered() {
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = spawn_app_with_slack(Options::default(), slack).await;
    let list = "milk\neggs\ncoffee beans\n";
    let file = workspace.host_file(&base, "shopping list.txt", "text/plain", list.as_bytes());
    let event = callback(
        "Ev0FILE3",
        json!({ "type": "message", "subtype": "file_share", "channel": DM_CHANNEL, "channel_type": "im", "user": USER,
                "text": "", "files": [file], "upload": false, "display_as_bot": false, "ts": next_ts() }),
    );
    assert_eq!(Post::event(&event).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0FILE3").await.0, "done");
    let reply = app
        .slack
        .requests_to("/api/chat.postMessage")
        .into_iter()
        .rfind(|r| r.param("channel").as_deref() == Some(DM_CHANNEL))
        .and_then(|r| r.param("text"))
        .unwrap();
    // In the user's Slack language (ko-KR: there is no text to tell by).
    assert!(reply.starts_with("파일(\"shopping list.txt\", 23자)을 읽고 기억해 두었어요."), "{reply}");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT file_text FROM exchanges").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored.as_deref(), Some(format!("[file \"shopping list.txt\"]\n{list}").as_str()));
    app.stop().await.unwrap();
}

/// A DM carrying a forwarded message, as Slack attaches it ("Forward
/// message", or a pasted message link), plus an ordinary link preview.
fn forwarded(event_id: &str, text: &str, forwarded_text: &str) -> serde_json::Value {
    callback(
        event_id,
        json!({ "type": "message", "channel": DM_CHANNEL, "channel_type": "im", "user": USER, "text": text, "ts": next_ts(),
                "attachments": [
                    { "ts": "1764000000.000001", "channel_id": "C0GENERAL", "channel_name": "general",
                      "is_msg_unfurl": true, "is_share": true, "text": forwarded_text,
                      "fallback": format!("[November 24th, 2025 9:00 AM] Jane Doe: {forwarded_text}"),
                      "author_id": "U0JANE001", "author_name": "Jane Doe", "author_subname": "Jane Doe",
                      "from_url": "https://robeing.slack.com/archives/C0GENERAL/p1764000000000001",
                      "footer": "Posted in #general", "mrkdwn_in": ["text"] },
                    { "service_name": "Example", "title": "Example Domain", "title_link": "https://example.com/",
                      "text": "This domain is for use in examples.", "fallback": "Example: Example Domain" }
                ] }),
    )
}

#[tokio::test]
async fn a_forwarded_message_is_stored_with_the_dm_and_is_never_taken_as_a_command() {
    let app = spawn_app().await;
    let stored = |app: &TestApp, event_id: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT user_text FROM exchanges WHERE event_id = $1")
                .bind(event_id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    // The forwarded text says "export"; the user's own text does not.
    let event = forwarded("Ev0FWD1", "remember this", "export the Q3 report by Friday");
    assert_eq!(Post::event(&event).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0FWD1").await.0, "done");
    assert_eq!(
        stored(&app, "Ev0FWD1").await,
        "remember this\n\n[forwarded message from Jane Doe]\nexport the Q3 report by Friday",
        "the forward is kept with the DM; the link preview is not a forward"
    );
    let reply = app.slack.requests_to("/api/chat.postMessage").pop().unwrap().param("text").unwrap();
    assert!(reply.starts_with("Got it, "), "answered as a message, not as an export: {reply}");
    assert!(app.slack.requests_to("/api/files.getUploadURLExternal").is_empty());

    // A forward with nothing added is kept the same way.
    let event = forwarded("Ev0FWD2", "", "lunch moved to 12:30");
    assert_eq!(Post::event(&event).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0FWD2").await.0, "done");
    assert_eq!(stored(&app, "Ev0FWD2").await, "[forwarded message from Jane Doe]\nlunch moved to 12:30");
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 2, "each DM answered once");
    app.stop().await.unwrap();
}

/// `app_home_opened` on the Messages tab (the DM), as Slack sends it.
fn messages_tab_opened(event_id: &str, user: &str) -> serde_json::Value {
    callback(
        event_id,
        json!({ "type": "app_home_opened", "user": user, "channel": DM_CHANNEL, "tab": "messages",
                "event_ts": "1764000000.000200" }),
    )
}

#[tokio::test]
async fn a_new_user_opening_the_messages_tab_is_welcomed_once_and_nobody_else_is() {
    let app = spawn_app().await;
    let posts = |app: &TestApp| app.slack.requests_to("/api/chat.postMessage");

    // Two opens at once (switching tabs back and forth): one welcome.
    let (first, second) = (messages_tab_opened("Ev0TAB1", USER), messages_tab_opened("Ev0TAB2", USER));
    let (first, second) = (Post::event(&first), Post::event(&second));
    let (a, b) = tokio::join!(first.send(&app), second.send(&app));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(job_outcome(&app.db, "Ev0TAB1").await.0, "done");
    assert_eq!(job_outcome(&app.db, "Ev0TAB2").await.0, "done");
    let welcome = posts(&app);
    assert_eq!(welcome.len(), 1, "one welcome");
    let body = welcome[0].json();
    assert_eq!(body["channel"], DM_CHANNEL);
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("안녕하세요, ") && text.contains("저는 robeing이에요"), "in the user's language: {text}");
    assert!(text.contains("*내보내기*") && text.contains("`/brief`"), "what robeing can do: {text}");
    assert_eq!(body["metadata"]["event_type"], "robeing_welcome");
    let welcomed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT welcomed_at FROM slack_users WHERE user_id = $1")
            .bind(USER)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(welcomed.is_some());

    // Opening it again later: nothing.
    assert_eq!(Post::event(&messages_tab_opened("Ev0TAB3", USER)).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0TAB3").await.0, "done");
    assert_eq!(posts(&app).len(), 1);

    // Someone who wrote first is answered, not welcomed afterwards.
    let other = "U0OTHER01";
    assert_eq!(Post::event(&dm("Ev0OTHERDM", other, "hello")).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0OTHERDM").await.0, "done");
    assert_eq!(Post::event(&messages_tab_opened("Ev0TAB4", other)).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0TAB4").await.0, "done");
    let after = posts(&app);
    assert_eq!(after.len(), 2, "the reply to hello, and no welcome");
    assert_ne!(after[1].json()["metadata"]["event_type"], "robeing_welcome");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn first_contact_fetches_users_info_once_and_stores_the_profile() {
    let app = spawn_app().await;
    assert_eq!(Post::event(&dm("Ev0FIRST", "U0KIMJT01", "하이")).send(&app).await.status(), 200);
    // The transport's part is the user row (the reply is the conversation's).
    let _ = job_outcome(&app.db, "Ev0FIRST").await;
    type Row = (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
    let row: Row = sqlx::query_as(
        "SELECT team_id, real_name, display_name, tz, locale, dm_channel_id FROM slack_users WHERE user_id = 'U0KIMJT01'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "T0ROBEING".into(),
            Some("김종태".into()),
            Some("김종태".into()),
            Some("Asia/Seoul".into()),
            Some("ko-KR".into()),
            Some(DM_CHANNEL.into())
        )
    );
    let calls = app.slack.requests_to("/api/users.info");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("user").as_deref(), Some("U0KIMJT01"));
    assert_eq!(calls[0].param("include_locale").as_deref(), Some("true"));
    assert_eq!(calls[0].headers["authorization"], format!("Bearer {BOT_TOKEN}"));
    // The profile was stored before the reply was composed: it greets by name.
    let greeting = app.slack.requests_to("/api/chat.postMessage");
    assert!(greeting[0].json()["text"].as_str().unwrap_or_default().contains("김종태"), "{:?}", greeting[0].json());
    // The statement that recorded the reply also recorded the event
    // handled: one transaction, so both carry the same `now()`; and it was
    // handled once.
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM exchanges x JOIN slack_events e ON e.event_id = x.event_id
             WHERE x.event_id = 'Ev0FIRST' AND x.status = 'replied' AND e.state = 'done'
               AND e.finished_at = x.replied_at AND e.attempts = 1"
        )
        .await,
        1
    );

    // A second message: no second users.info.
    assert_eq!(Post::event(&dm("Ev0SECOND0", "U0KIMJT01", "또 하이")).send(&app).await.status(), 200);
    let _ = job_outcome(&app.db, "Ev0SECOND0").await;
    assert_eq!(app.slack.requests_to("/api/users.info").len(), 1);

    // user_change refreshes it.
    app.slack.script(
        "/api/users.info",
        [Scripted::json(
            200,
            json!({"ok": true, "user": {"id": "U0KIMJT01", "team_id": TEAM_ID, "real_name": "김종태", "tz": "Europe/Berlin", "locale": "de-DE", "profile": {"real_name": "김종태", "display_name": "JT"}}}),
        )],
    );
    let change = callback(
        "Ev0CHANGE",
        json!({"type": "user_change", "user": {"id": "U0KIMJT01", "team_id": TEAM_ID}, "event_ts": "1.1"}),
    );
    assert_eq!(Post::event(&change).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0CHANGE").await.0, "done");
    let (tz, name): (String, String) =
        sqlx::query_as("SELECT tz, display_name FROM slack_users WHERE user_id = 'U0KIMJT01'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((tz.as_str(), name.as_str()), ("Europe/Berlin", "JT"));
    assert_eq!(app.slack.requests_to("/api/users.info").len(), 2);
    // Each of the two DMs got exactly one reply; user_change sent nothing.
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn app_home_opened_publishes_the_home_tab_waiting_out_a_429() {
    let app = spawn_app().await;
    app.slack.script(
        "/api/views.publish",
        [Scripted::json(429, json!({"ok": false, "error": "ratelimited"})).with_header("retry-after", "1")],
    );
    let started = std::time::Instant::now();
    let home = callback(
        "Ev0HOME",
        json!({"type": "app_home_opened", "user": USER, "channel": DM_CHANNEL, "tab": "home", "event_ts": "1.1"}),
    );
    assert_eq!(Post::event(&home).send(&app).await.status(), 200);
    let (state, error) = job_outcome(&app.db, "Ev0HOME").await;
    assert_eq!(state, "done", "{error:?}");
    let published = app.slack.requests_to("/api/views.publish");
    assert_eq!(published.len(), 2, "one rate-limited call, one that succeeded, nothing more");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    let body = published[1].json();
    assert_eq!(body["user_id"], USER);
    assert_eq!(body["view"]["type"], "home");
    let text = body["view"]["blocks"].to_string();
    // The fixture's Slack locale is ko-KR, so the Home tab is in Korean.
    assert!(text.contains("jane") && text.contains("/brief") && text.contains("Gmail: 연결되지 않음"), "{text}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn slash_commands_and_interactions_are_acked_and_recorded() {
    let app = spawn_app().await;
    let response_url: String =
        url::form_urlencoded::byte_serialize(app.slack.url("/commands/1/2/3").as_bytes()).collect();
    let form = format!(
        "token=x&team_id={TEAM_ID}&team_domain=robeing&channel_id=C0GENERAL&channel_name=general&user_id={USER}&user_name=jane&command=%2Fbrief&text=news&api_app_id=A0ROBEING&response_url={response_url}&trigger_id=13345224609.738474920.8088930838d88f008e0"
    );
    let r = Post::signed("/slack/commands", form.clone(), "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    let ack: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(ack["text"].as_str().unwrap().contains("briefing"), "{ack}");
    // The same invocation again (same trigger_id) is one event.
    let r = Post::signed("/slack/commands", form, "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'cmd:13345224609.738474920.8088930838d88f008e0' AND kind = 'slash_command'").await,
        1
    );

    let payload = json!({"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER, "team_id": TEAM_ID},
        "trigger_id": "999.888.abc", "response_url": "https://hooks.slack.com/actions/1/2/3",
        "actions": [{"action_id": "gmail_reconnect", "value": "x", "type": "button", "action_ts": "1764000000.1"}]});
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let r = Post::signed("/slack/interactions", form, "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'act:999.888.abc' AND kind = 'interaction:block_actions'").await,
        1
    );
    // Slack's certificate check on the command URL: 200, nothing recorded.
    let r =
        Post::signed("/slack/commands", "ssl_check=1&token=x", "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(count(&app.db, "SELECT count(*) FROM slack_events").await, 2);
    assert_eq!(job_outcome(&app.db, "cmd:13345224609.738474920.8088930838d88f008e0").await.0, "done");
    assert_eq!(job_outcome(&app.db, "act:999.888.abc").await.0, "done");
    // `/brief news` answered once, privately, at its response_url: the news
    // section only, saying the (unreachable) feed could not be read. The
    // Reconnect URL button needed nothing beyond the ack.
    let answers = app.slack.requests_to("/commands/1/2/3");
    assert_eq!(answers.len(), 1, "{:?}", slack_calls(&app));
    let answer = answers[0].json();
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(answer.to_string().contains("127.0.0.1:9/feed.xml"), "the failed feed is named: {answer}");
    assert!(!answer.to_string().contains("Gmail"), "only the news section: {answer}");
    assert_eq!(slack_calls(&app), vec!["/api/users.info".to_owned(), "/commands/1/2/3".to_owned()]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_uninstalled_workspace_is_inactive_and_its_later_work_stops() {
    let app = spawn_app().await;
    let gone = callback("Ev0UNINSTALL", json!({"type": "app_uninstalled", "event_ts": "1.1"}));
    assert_eq!(Post::event(&gone).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0UNINSTALL").await.0, "done");
    let (active, reason): (bool, String) =
        sqlx::query_as("SELECT active, inactive_reason FROM slack_teams WHERE team_id = 'T0ROBEING'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!active);
    assert_eq!(reason, "app_uninstalled");
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert!(ready.to_string().contains("T0ROBEING (app_uninstalled)"), "{ready}");

    // A later event for that workspace is buried, saying why, and nothing is sent.
    assert_eq!(Post::event(&dm("Ev0AFTER", USER, "hello?")).send(&app).await.status(), 200);
    let (state, error) = job_outcome(&app.db, "Ev0AFTER").await;
    assert_eq!(state, "dead");
    assert!(error.unwrap().contains("inactive (app_uninstalled)"));
    assert_eq!(slack_calls(&app), Vec::<String>::new());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_reinstalled_workspace_is_active_again_once_its_bot_token_is_accepted() {
    let app = spawn_app().await;
    let gone = callback("Ev0UNINSTALL", json!({"type": "app_uninstalled", "event_ts": "1.1"}));
    assert_eq!(Post::event(&gone).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0UNINSTALL").await.0, "done");
    let url = app.db_url.clone().unwrap();
    app.stop().await.unwrap();

    // The operator reinstalls the app and restarts robeing with its token:
    // auth.test accepts it for T0ROBEING, so the workspace works again.
    let app = spawn_app_with(Options { vars: vec![("DATABASE_URL".into(), url)], ..Default::default() }).await;
    let (active, reason): (bool, Option<String>) =
        sqlx::query_as("SELECT active, inactive_reason FROM slack_teams WHERE team_id = 'T0ROBEING'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(active, "reactivated at start-up");
    assert_eq!(reason, None);
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert!(!ready.to_string().contains("app_uninstalled"), "{ready}");
    assert_eq!(Post::event(&dm("Ev0AGAIN", USER, "hello again")).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0AGAIN").await.0, "done", "work for the workspace runs again");
    assert!(slack_calls(&app).contains(&"/api/chat.postMessage".to_owned()), "{:?}", slack_calls(&app));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn postgres_down_at_receipt_is_503_and_the_redelivery_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options { embedded_data_dir: Some(dir.path().to_path_buf()), ..Default::default() }).await;
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();

    let event = dm("Ev0OUTAGE", USER, "are you there?");
    let r = Post::event(&event).send(&app).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    assert_eq!(r.status(), 503);

    let _pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    // Slack redelivers; the pool reconnects.
    let mut status = 0;
    for n in 1..=20 {
        status = Post { retry_num: Some(n), ..Post::event(&event) }.send(&app).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0OUTAGE' AND retry_num >= 1").await,
        1,
        "the redelivery is what was stored"
    );
    app.stop().await.unwrap();
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn post_message_waits_out_a_429_and_posts_exactly_once() {
    robeing::startup::install_crypto_provider();
    let slack = crate::fakes::slack::start().await;
    slack.script(
        "/api/chat.postMessage",
        [Scripted::json(429, json!({"ok": false, "error": "ratelimited"})).with_header("Retry-After", "1")],
    );
    let api = robeing::slack::client::SlackApi::new(
        &url::Url::parse(&slack.url("/api")).unwrap(),
        &secrecy::SecretString::from(BOT_TOKEN),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let ts = api.post_message(DM_CHANNEL, "hello &lt;", None, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let posts = slack.requests_to("/api/chat.postMessage");
    assert_eq!(posts.len(), 2, "the 429'd attempt and one real post");
    assert_eq!(posts[1].json()["channel"], DM_CHANNEL);
    assert!(!ts.is_empty());

    // A 5xx on a post is not repeated by the client (the outbox decides).
    slack.script("/api/chat.postMessage", [Scripted::json(503, json!({"ok": false}))]);
    let err = api.post_message("D0OTHER01", "x", None, None).await.unwrap_err();
    assert!(matches!(err, robeing::slack::client::SlackError::Transient { .. }), "{err:?}");
    assert_eq!(slack.requests_to("/api/chat.postMessage").len(), 3);
    // A refusal is permanent.
    slack.script("/api/chat.postMessage", [Scripted::json(200, json!({"ok": false, "error": "channel_not_found"}))]);
    let err = api.post_message("D0OTHER02", "x", None, None).await.unwrap_err();
    assert_eq!(err.code(), Some("channel_not_found"));
    // A 5xx on a safe call is retried.
    slack.script("/api/views.publish", [Scripted::json(502, json!({"ok": false}))]);
    api.publish_home(USER, vec![]).await.unwrap();
    assert_eq!(slack.requests_to("/api/views.publish").len(), 2);
}

#[tokio::test]
async fn the_one_statement_group_commit_keeps_first_wins_and_one_job_per_event() {
    let pool = migrated_pool().await;
    let ev = |id: &str, retry: Option<i32>| robeing::storage::events::NewEvent {
        event_id: id.into(),
        team_id: Some(TEAM_ID.into()),
        kind: "message".into(),
        source: "http",
        retry_num: retry,
        payload: json!({ "n": retry }),
    };
    let batch = [ev("Ev0A", None), ev("Ev0A", Some(1)), ev("Ev0B", None)];
    let new = robeing::storage::events::record_batch(&pool, &batch.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(new.len(), 2);
    assert!(new.contains("Ev0A") && new.contains("Ev0B"));
    let again =
        robeing::storage::events::record_batch(&pool, &[&ev("Ev0A", Some(2)), &ev("Ev0C", None)]).await.unwrap();
    assert_eq!(again.into_iter().collect::<Vec<_>>(), vec!["Ev0C".to_owned()]);
    assert_eq!(count(&pool, "SELECT count(*) FROM slack_events").await, 3);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM slack_events WHERE event_id = 'Ev0A' AND retry_num IS NULL").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM slack_events WHERE team_id = 'T0ROBEING' AND state = 'queued' AND attempts = 0"
        )
        .await,
        3,
        "each new event is queued once, as its own work item"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM jobs").await, 0, "no job row beside the event");
}

#[tokio::test]
async fn app_home_buttons_change_settings_and_republish_the_home_tab() {
    let app = spawn_app().await;
    let action = |trigger: &str, action_id: &str, value: &str| {
        let payload = json!({"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER, "team_id": TEAM_ID},
            "trigger_id": trigger, "view": {"id": "V0HOME", "type": "home"},
            "actions": [{"action_id": action_id, "value": value, "type": "button", "action_ts": "1764000000.1"}]});
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    };
    let r = Post::signed(
        "/slack/interactions",
        action("1.1.off", "briefing_toggle", "off"),
        "application/x-www-form-urlencoded",
    )
    .send(&app)
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(job_outcome(&app.db, "act:1.1.off").await.0, "done");
    let enabled: bool = sqlx::query_scalar("SELECT briefing_enabled FROM slack_users WHERE user_id = $1")
        .bind(USER)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!enabled, "the toggle turned the daily briefing off");
    let published = app.slack.requests_to("/api/views.publish");
    assert_eq!(published.len(), 1, "Home is republished after the change");
    let view = published[0].json().to_string();
    assert!(view.contains("briefing_toggle") && view.contains("Gmail"), "settings and Gmail sections: {view}");
    assert!(
        view.contains("forget_confirm") && view.contains("\"confirm\""),
        "a Forget me button with a confirmation: {view}"
    );

    // An action nobody handles is acknowledged and changes nothing.
    let r = Post::signed(
        "/slack/interactions",
        action("1.2.x", "no_such_action", "x"),
        "application/x-www-form-urlencoded",
    )
    .send(&app)
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(job_outcome(&app.db, "act:1.2.x").await.0, "done");
    assert_eq!(app.slack.requests_to("/api/views.publish").len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn forget_me_from_app_home_without_a_dm_yet_opens_the_dm_through_the_client() {
    let app = spawn_app().await;
    // A user robeing knows (seen on the Home tab) but has never written to:
    // no DM channel stored and no exchange to take one from.
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(TEAM_ID)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id, locale) VALUES ($1, $2, 'en-US')")
        .bind(USER)
        .bind(TEAM_ID)
        .execute(&app.db)
        .await
        .unwrap();
    let payload = json!({"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER, "team_id": TEAM_ID},
        "trigger_id": "1.3.forget", "view": {"id": "V0HOME", "type": "home"},
        "actions": [{"action_id": "forget_confirm", "value": "confirm", "type": "button", "action_ts": "1764000000.2"}]});
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let r = Post::signed("/slack/interactions", form, "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    let outcome = job_outcome(&app.db, "act:1.3.forget").await;
    assert_eq!(outcome.0, "done", "{outcome:?}");
    // The user never wrote to robeing: the DM is opened (conversations.open,
    // counted in /metrics like every Slack call) and the confirmation lands there.
    let opened = app.slack.requests_to("/api/conversations.open");
    assert_eq!(opened.len(), 1, "{:?}", slack_calls(&app));
    assert!(opened[0].json().to_string().contains(USER), "{}", opened[0].json());
    let posts = app.slack.requests_to("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "{:?}", slack_calls(&app));
    let channel = posts[0].json()["channel"].as_str().unwrap().to_owned();
    assert!(channel.starts_with('D'), "posted in the opened DM: {channel}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("method=\"conversations.open\""), "{metrics}");
    app.stop().await.unwrap();
}

/// Forget and a reply group take their row locks in the same order
/// (exchanges, then their events), so a user who presses "forget" while a
/// reply of theirs is being recorded does not deadlock either of them. The
/// test's transaction plays the reply group: it holds the exchange's row
/// (as the group's UPDATE does), lets the forget start, then runs the group's
/// real statement, which also marks the exchange's event handled.
#[tokio::test]
async fn forget_while_a_reply_is_being_recorded_does_not_deadlock() {
    let app = spawn_app().await;
    assert_eq!(Post::event(&dm("Ev0LOCKORDER", USER, "hi")).send(&app).await.status(), 200);
    assert_eq!(job_outcome(&app.db, "Ev0LOCKORDER").await.0, "done");
    let (exchange, reply_ts): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, reply_ts FROM exchanges WHERE event_id = 'Ev0LOCKORDER'")
            .fetch_one(&app.db)
            .await
            .unwrap();

    let mut group = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM exchanges WHERE id = $1 FOR UPDATE").bind(exchange).execute(&mut *group).await.unwrap();
    let payload = json!({"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": USER, "team_id": TEAM_ID},
        "trigger_id": "1.4.forget", "channel": {"id": DM_CHANNEL},
        "actions": [{"action_id": "forget_confirm", "value": "confirm", "type": "button", "action_ts": "1764000000.3"}]});
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let r = Post::signed("/slack/interactions", form, "application/x-www-form-urlencoded").send(&app).await;
    assert_eq!(r.status(), 200);
    // Until the forget waits for a row lock held here.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the forget never reached the exchange's row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record = robeing::storage::exchanges::ReplyRecord {
        id: exchange,
        reply_text: "hello".into(),
        reply_ts,
        follow_up: None,
        event_id: Some("Ev0LOCKORDER".into()),
        kept_out_of_memory: false,
    };
    let recorded = robeing::storage::exchanges::mark_replied_many(&mut *group, &[&record]).await;
    assert!(recorded.is_ok(), "the reply group failed: {recorded:?}");
    group.commit().await.unwrap();

    let outcome = job_outcome(&app.db, "act:1.4.forget").await;
    assert_eq!(outcome.0, "done", "{outcome:?}");
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM slack_events WHERE event_id = 'act:1.4.forget'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "the forget ran more than once (a deadlock makes it retry)");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM exchanges WHERE user_id = $1")
        .bind(USER)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "the forget deleted the user's exchanges");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_received_deduplicated_and_rejected_events() {
    let app = spawn_app().await;
    let ev = dm("Ev0METRICS", USER, "hi");
    assert_eq!(Post::event(&ev).send(&app).await.status(), 200);
    assert_eq!(Post::event(&ev).send(&app).await.status(), 200);
    let _ = job_outcome(&app.db, "Ev0METRICS").await;
    let unsigned = app
        .http
        .post(format!("{}/slack/events", app.address))
        .header("content-type", "application/json")
        .body(ev.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let text = app.get("/metrics").await.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix}:\n{text}"))
    };
    // Counters are process-wide and tests share the process: at least ours.
    assert!(value("robeing_events_received_total{source=\"http\",kind=\"message\"}") >= 1.0, "{text}");
    assert!(value("robeing_events_deduplicated_total{source=\"http\",kind=\"message\"}") >= 1.0, "{text}");
    assert!(value("robeing_events_rejected_total{reason=\"bad_signature\"}") >= 1.0, "{text}");
    assert!(value("robeing_jobs_finished_total{source=\"done\",kind=\"slack_event\"}") >= 1.0, "{text}");
    assert!(value("robeing_slack_api_calls_total{method=\"chat.postMessage\",status=\"ok\"}") >= 1.0, "{text}");
    // The two deliveries were acknowledged after two group commits, each timed.
    assert!(value("robeing_ingest_commit_seconds_count") >= 2.0, "{text}");
    assert!(value("robeing_ingest_commit_seconds_sum") > 0.0, "{text}");
    assert!(value("robeing_ingest_group_events_sum") >= 2.0, "{text}");
    app.stop().await.unwrap();
}

/// Inbound events and outbox jobs are two queues: a flood of events must not
/// hold back the outbox (memory writes, briefing deliveries). 200 events,
/// each of whose handling waits 300 ms on Slack, are queued before one
/// outbox job; the job runs while most events still wait, not after them.
#[tokio::test]
async fn a_flood_of_events_leaves_the_outbox_its_share_of_workers() {
    const EVENTS: usize = 200;
    let app = spawn_app().await;
    let slow = Scripted::json(200, json!({"ok": true})).delayed(Duration::from_millis(300));
    app.slack.script("/api/views.publish", (0..EVENTS).map(|_| slow.clone()));
    let events: Vec<robeing::storage::events::NewEvent> = (0..EVENTS)
        .map(|i| {
            let id = format!("Ev0FLOOD{i:04}");
            robeing::storage::events::NewEvent {
                payload: callback(
                    &id,
                    json!({"type": "app_home_opened", "user": USER, "channel": DM_CHANNEL, "tab": "home", "event_ts": "1.1"}),
                ),
                event_id: id,
                team_id: Some(TEAM_ID.into()),
                kind: "app_home_opened".into(),
                source: "http",
                retry_num: None,
            }
        })
        .collect();
    let stored = robeing::storage::events::record_batch(&app.db, &events.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(stored.len(), EVENTS);
    // Queued after every event: a kind without a handler, which dies at once.
    robeing::storage::jobs::enqueue(&app.db, "fairness_probe", None, &json!({}), None).await.unwrap();
    app.state.wake_workers.notify_one();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (handled_before_job, handled): (i64, i64) = loop {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM slack_events WHERE state = 'done' AND finished_at <= j.finished_at),
                    (SELECT count(*) FROM slack_events WHERE state = 'done')
             FROM jobs j WHERE j.kind = 'fairness_probe' AND j.state = 'dead'",
        )
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the outbox job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // At most one round of workers' worth of events may finish first.
    assert!(
        handled_before_job <= robeing::jobs::CONCURRENCY as i64,
        "the job waited behind the events: {handled_before_job} of {EVENTS} were handled first ({handled} by now)"
    );
    app.stop().await.unwrap();
}
