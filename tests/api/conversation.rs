//! DM conversation: replies, the exchange log in Postgres, ChromaDB memory,
//! forget and export — against real Postgres, a REAL ChromaDB server, the
//! fake Slack Web API and a fake LLM.
//!
//! The transport's event parser lives on another branch, so these tests call
//! `conversation::handle_message` with the `DirectMessage` it would produce,
//! inside the real running application (its job workers feed ChromaDB). The
//! dead-job path goes through the real job runner.

use std::time::Duration;

use robeing::{
    conversation::{self, handle_message},
    slack::events::{DirectMessage, SlackEvent, SlackFile},
    storage::users::{self, Profile},
};
use serde_json::Value;

use crate::{
    fakes::{
        chroma::Chroma,
        llm,
        recorder::{Recorded, Recorder, Scripted},
        slack::TEAM_ID,
    },
    helpers::*,
};

const KIM: &str = "U0KIMJT01";
const JANE: &str = "U0JANE001";
const BOB: &str = "U0BOB0001";

fn channel_of(user: &str) -> String {
    format!("D{}", user.trim_start_matches('U'))
}

/// Starts the app with the given ChromaDB and LLM fakes.
async fn app(chroma: Option<&Chroma>, llm: Option<&Recorder>, extra: &[(&str, &str)]) -> TestApp {
    app_with_slack(chroma, llm, extra, crate::fakes::slack::start().await).await
}

/// [`app`] against a fake Slack the test started itself.
async fn app_with_slack(
    chroma: Option<&Chroma>,
    llm: Option<&Recorder>,
    extra: &[(&str, &str)],
    slack: Recorder,
) -> TestApp {
    let mut vars: Vec<(String, String)> = Vec::new();
    if let Some(c) = chroma {
        vars.push(("CHROMA_URL".into(), c.url()));
    }
    if let Some(l) = llm {
        vars.push(("LLM_BASE_URL".into(), llm::base_url(l)));
        vars.push(("LLM_MODEL".into(), llm::MODEL.into()));
        vars.push(("LLM_API_KEY".into(), llm::API_KEY.into()));
    }
    for (k, v) in extra {
        vars.push(((*k).into(), (*v).into()));
    }
    let app = spawn_app_with_slack(Options { vars, ..Default::default() }, slack).await;
    add_user(&app, KIM, "김종태", "김종태", "Asia/Seoul", "ko-KR").await;
    add_user(&app, JANE, "Jane Doe", "jane", "Asia/Seoul", "en-US").await;
    add_user(&app, BOB, "Bob Stone", "Bob", "Europe/London", "en-GB").await;
    app
}

async fn add_user(app: &TestApp, user: &str, real: &str, display: &str, tz: &str, locale: &str) {
    users::ensure_team(&app.db, TEAM_ID).await.unwrap();
    let profile = Profile {
        real_name: Some(real.into()),
        display_name: Some(display.into()),
        tz: Some(tz.into()),
        locale: Some(locale.into()),
    };
    users::upsert_profile(&app.db, TEAM_ID, user, &profile).await.unwrap();
}

static TS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A DM as the transport hands it over.
fn dm(user: &str, text: &str) -> DirectMessage {
    let n = TS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    DirectMessage {
        event_id: format!("Ev0CONV{n:06}"),
        team_id: TEAM_ID.into(),
        user_id: user.into(),
        channel_id: channel_of(user),
        ts: format!("1764300000.{n:06}"),
        thread_ts: None,
        text: text.into(),
        files: Vec::new(),
        shared: Vec::new(),
    }
}

/// An image attached to a DM, as the event describes it.
fn image(name: &str) -> SlackFile {
    SlackFile { name: name.into(), mimetype: Some("image/jpeg".into()), size: Some(48_213), ..SlackFile::default() }
}

/// A DM with files, parsed by robeing's own event parser from the
/// `file_share` message Slack sends (`files`: file objects, e.g. from
/// `Workspace::host_file`).
fn dm_with_files(user: &str, text: &str, files: Vec<Value>) -> DirectMessage {
    let m = dm(user, text);
    let payload = serde_json::json!({
        "type": "event_callback", "team_id": m.team_id, "event_id": m.event_id,
        "event": { "type": "message", "subtype": "file_share", "channel": m.channel_id, "channel_type": "im",
                   "user": user, "text": text, "files": files, "upload": false, "display_as_bot": false, "ts": m.ts },
        "authorizations": [{ "team_id": m.team_id, "user_id": "U0BOT0001", "is_bot": true }]
    });
    match robeing::slack::events::parse(&m.event_id, "message", &payload, &Default::default()).unwrap() {
        SlackEvent::DirectMessage(parsed) => parsed,
        other => panic!("not a DM: {other:?}"),
    }
}

/// The fake Slack's file downloads, in order.
fn downloads(app: &TestApp) -> Vec<Recorded> {
    app.slack.requests().into_iter().filter(|r| r.path.starts_with("/files-pri/")).collect()
}

/// The raw `message.im` event of a DM, as Slack delivers it.
fn event_payload(m: &DirectMessage) -> Value {
    serde_json::json!({
        "token": "verification-token",
        "team_id": m.team_id,
        "api_app_id": "A0ROBEING",
        "event": {
            "type": "message",
            "channel_type": "im",
            "user": m.user_id,
            "text": m.text,
            "ts": m.ts,
            "channel": m.channel_id,
            "event_ts": m.ts,
            "client_msg_id": uuid::Uuid::new_v4().to_string()
        },
        "type": "event_callback",
        "event_id": m.event_id,
        "event_time": 1_764_300_000,
        "authorizations": [{ "team_id": m.team_id, "user_id": "U0BOT0001", "is_bot": true }]
    })
}

/// Stores the raw `message.im` event the way Slack delivers it (the row the
/// transport writes before the conversation runs), as already handled: the
/// test drives the handling itself.
async fn record_event(app: &TestApp, m: &DirectMessage) {
    let payload = event_payload(m);
    sqlx::query(
        "INSERT INTO slack_events (event_id, team_id, kind, source, payload, state, finished_at)
         VALUES ($1, $2, 'message', 'http', $3, 'done', now())",
    )
    .bind(&m.event_id)
    .bind(&m.team_id)
    .bind(payload)
    .execute(&app.db)
    .await
    .unwrap();
}

/// Queues the recorded event of `m` for its last attempt and wakes the
/// real job runner: if that attempt fails, the event dies.
async fn run_last_attempt(app: &TestApp, m: &DirectMessage) {
    sqlx::query("UPDATE slack_events SET state = 'queued', attempts = $2 - 1, finished_at = NULL WHERE event_id = $1")
        .bind(&m.event_id)
        .bind(robeing::storage::events::MAX_ATTEMPTS)
        .execute(&app.db)
        .await
        .unwrap();
    app.state.wake_workers.notify_one();
}

async fn say(app: &TestApp, user: &str, text: &str) -> DirectMessage {
    let m = dm(user, text);
    handle_message(&app.state, &m, None).await.unwrap_or_else(|e| panic!("handle_message({text:?}) failed: {e:?}"));
    m
}

/// Slack writes (postMessage and update) to one channel, in order.
fn writes_to(app: &TestApp, channel: &str) -> Vec<Recorded> {
    app.slack
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/chat.postMessage" || r.path == "/api/chat.update")
        .filter(|r| r.param("channel").as_deref() == Some(channel))
        .collect()
}

fn text_of(r: &Recorded) -> String {
    r.param("text").unwrap_or_default()
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: uuid::Uuid,
    user_text: String,
    reply_text: Option<String>,
    reply_ts: Option<String>,
    status: String,
    failure_reason: Option<String>,
    memorized_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn exchange(app: &TestApp, m: &DirectMessage) -> Row {
    sqlx::query_as(
        "SELECT id, user_text, reply_text, reply_ts, status, failure_reason, memorized_at FROM exchanges WHERE channel_id = $1 AND user_ts = $2",
    )
    .bind(&m.channel_id)
    .bind(&m.ts)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn exchanges_of(app: &TestApp, user: &str) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, user_text, reply_text, reply_ts, status, failure_reason, memorized_at FROM exchanges WHERE user_id = $1 ORDER BY received_at, user_ts",
    )
    .bind(user)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Waits (bounded) until every exchange of the user is in ChromaDB.
async fn wait_memorized(app: &TestApp, user: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = exchanges_of(app, user).await;
        if rows.iter().all(|r| r.memorized_at.is_some()) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            // Say why: each memory write's state, attempts and last error.
            let jobs: Vec<(String, i32, Option<String>, chrono::DateTime<chrono::Utc>)> =
                sqlx::query_as("SELECT state, attempts, last_error, run_at FROM jobs WHERE kind = $1 ORDER BY id")
                    .bind(robeing::memory::UPSERT_JOB)
                    .fetch_all(&app.db)
                    .await
                    .unwrap();
            panic!(
                "not memorized within {within:?}: {:?}; memory writes (state, attempts, last error, due): {jobs:?}",
                rows.iter().filter(|r| r.memorized_at.is_none()).map(|r| &r.user_text).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hai_from_kim_jong_tae_is_greeted_by_name_and_both_stores_hold_the_exchange() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;

    let m = say(&app, KIM, "하이").await;
    let writes = writes_to(&app, &channel_of(KIM));
    assert_eq!(writes.len(), 1, "exactly one reply: {writes:?}");
    assert_eq!(writes[0].path, "/api/chat.postMessage");
    let reply = text_of(&writes[0]);
    assert!(reply.starts_with("안녕하세요, 김종태님!"), "{reply}");
    assert_eq!(writes[0].headers["authorization"], format!("Bearer {BOT_TOKEN}"));

    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    assert_eq!(row.user_text, "하이");
    assert!(row.reply_text.as_deref().unwrap().starts_with("안녕하세요, 김종태님!"));
    assert!(row.reply_ts.is_some());

    wait_memorized(&app, KIM, Duration::from_secs(60)).await;
    let records = chroma.records_of(KIM).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, row.id.to_string(), "the record id is the exchange id");
    assert!(records[0].1.contains("user: 하이") && records[0].1.contains("김종태님"), "{}", records[0].1);
    let collection = chroma.collection_of(KIM).await.expect("Kim's own collection");
    assert_eq!(collection["metadata"]["embedder"], "robeing-hashed-ngrams-v1");
    assert_eq!(collection["metadata"]["dimension"], 384);
    assert_eq!(collection["metadata"]["user_id"], KIM);
    assert_eq!(
        collection["configuration_json"]["hnsw"]["sync_threshold"],
        robeing::memory::HNSW_SYNC_THRESHOLD,
        "made with robeing's HNSW settings: {collection}"
    );

    // English: "hi" from Jane.
    say(&app, JANE, "hi").await;
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), 1);
    assert!(text_of(&writes[0]).starts_with("Hi, Jane!"), "{}", text_of(&writes[0]));

    // Nothing else reached Slack but start-up's auth.test and the two replies.
    let other: Vec<String> = app
        .slack
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p != "/api/auth.test" && p != "/api/chat.postMessage")
        .collect();
    assert!(other.is_empty(), "unexpected Slack calls: {other:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_later_question_recalls_what_was_said_earlier_in_english_and_korean() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;

    say(&app, JANE, "My cat's name is Nabi and she likes tuna").await;
    say(&app, JANE, "The quarterly report is due on Friday").await;
    say(&app, KIM, "우리 고양이 이름은 나비야").await;
    say(&app, KIM, "내일 회의는 세 시야").await;
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    wait_memorized(&app, KIM, Duration::from_secs(60)).await;

    say(&app, JANE, "What did I tell you about my cat?").await;
    let last = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(last.contains("My cat's name is Nabi"), "{last}");
    assert!(!last.contains("quarterly"), "only what is about the cat: {last}");

    say(&app, KIM, "고양이에 대해 뭐라고 했지?").await;
    let last = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(last.contains("우리 고양이 이름은 나비야"), "{last}");
    assert!(!last.contains("회의"), "{last}");

    // Memory is per user: Kim's cat is not Jane's.
    say(&app, JANE, "what did I say about 고양이?").await;
    let last = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(!last.contains("나비야"), "another user's memory leaked: {last}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn chroma_down_while_20_messages_arrive_then_back_every_exchange_reaches_it_exactly_once() {
    let mut chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    say(&app, BOB, "before the outage").await;
    wait_memorized(&app, BOB, Duration::from_secs(60)).await;

    chroma.stop().await;
    for i in 0..20 {
        say(&app, BOB, &format!("note number {i} while memory is down")).await;
    }
    // Every message was answered and stored in Postgres meanwhile.
    let rows = exchanges_of(&app, BOB).await;
    assert_eq!(rows.len(), 21);
    assert!(rows.iter().all(|r| r.status == "replied"));
    assert_eq!(writes_to(&app, &channel_of(BOB)).len(), 21);
    // The backlog is visible in /readyz.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    let memory_backlog = ready["backlog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "memory_upsert")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(memory_backlog["pending"].as_i64().unwrap_or(0) > 0, "readyz: {ready}");
    let chroma_check = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == "chroma").unwrap().clone();
    assert_eq!(chroma_check["ok"], false, "{chroma_check}");

    chroma.restart().await;
    wait_memorized(&app, BOB, Duration::from_secs(90)).await;
    let ids: std::collections::BTreeSet<String> = chroma.records_of(BOB).await.into_iter().map(|(id, _)| id).collect();
    let expected: std::collections::BTreeSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, expected, "ChromaDB holds exactly the stored exchanges");
    assert_eq!(chroma.count().await, 21, "no duplicates");
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'memory_upsert' AND state <> 'done'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(pending, 0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_llm_down_for_a_whole_attempt_leaves_a_note_that_the_answer_is_late_which_the_answer_replaces() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::error(500), llm::error(502), llm::error(503)]);
    let app = app(None, Some(&fake), &[]).await;
    let m = dm(KIM, "오늘 저녁 뭐 먹을까?");
    handle_message(&app.state, &m, None).await.expect_err("three 500s: the attempt fails");
    let posts = app.slack.requests_to("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "one message while the reply waits");
    let late = app.slack.requests().into_iter().rfind(|r| r.path.starts_with("/api/chat.")).unwrap();
    assert!(
        text_of(&late).starts_with("… 답이 늦어지고 있어요."),
        "the user is told the answer is late, in their language: {}",
        text_of(&late)
    );
    let waiting = exchange(&app, &m).await;
    assert_eq!(waiting.status, "received");
    let ts = waiting.reply_ts.expect("the note's ts is kept, for the answer to replace");

    // The outbox's retry: the LLM is back; the answer replaces the note.
    handle_message(&app.state, &m, None).await.unwrap();
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 1, "still one message");
    let last = app.slack.requests_to("/api/chat.update").pop().expect("the note was updated");
    assert_eq!(last.param("ts").as_deref(), Some(ts.as_str()));
    assert_eq!(text_of(&last), "LLM says: 오늘 저녁 뭐 먹을까?");
    let done = exchange(&app, &m).await;
    assert_eq!((done.status.as_str(), done.reply_ts.as_deref()), ("replied", Some(ts.as_str())));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn llm_500s_are_retried_and_the_answer_is_posted_once() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::error(500), llm::error(503)]);
    let app = app(None, Some(&fake), &[]).await;
    let m = say(&app, JANE, "What should I cook tonight?").await;

    assert_eq!(fake.requests_to(llm::PATH).len(), 3, "two failures, then the answer");
    let writes = writes_to(&app, &channel_of(JANE));
    let posts = writes.iter().filter(|w| w.path == "/api/chat.postMessage").count();
    assert_eq!(posts, 1, "one message in the DM (a placeholder is updated in place): {writes:?}");
    assert_eq!(text_of(writes.last().unwrap()), "LLM says: What should I cook tonight?");
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    assert_eq!(row.reply_text.as_deref(), Some("LLM says: What should I cook tonight?"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_llm_that_keeps_timing_out_ends_in_an_apology_and_a_failed_exchange() {
    let fake = llm::start().await;
    let slow = || llm::answer("too late").delayed(Duration::from_secs(3));
    fake.script(llm::PATH, (0..12).map(|_| slow()));
    let app = app(None, Some(&fake), &[("LLM_TIMEOUT_SECS", "1")]).await;
    let m = dm(JANE, "Tell me something");
    record_event(&app, &m).await;

    // First attempt: times out three times; meanwhile a placeholder is
    // shown, which then says the answer is late.
    let err = handle_message(&app.state, &m, None).await.expect_err("the LLM never answers in time");
    assert!(matches!(err, robeing::jobs::JobError::Retry { .. }), "{err:?}");
    assert_eq!(fake.requests_to(llm::PATH).len(), 3);
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!((writes[0].path.as_str(), text_of(&writes[0]).as_str()), ("/api/chat.postMessage", "…"));
    assert_eq!(writes[1].path, "/api/chat.update");
    assert!(text_of(&writes[1]).starts_with("… My answer is late: the language model (LLM) is not answering"));
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "received");
    let placeholder_ts = row.reply_ts.clone().expect("the placeholder's ts is stored");
    assert_eq!(writes[1].param("ts").as_deref(), Some(placeholder_ts.as_str()), "the placeholder itself says so");

    // The outbox's retry: no second placeholder.
    handle_message(&app.state, &m, None).await.expect_err("still too slow");
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 1, "no second placeholder");

    // The last attempt dies: the real job runner handles the event once
    // more and calls the conversation's dead-job hook.
    run_last_attempt(&app, &m).await;
    let sorry = |r: &Recorded| text_of(r).starts_with("Sorry, I could not reply");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let updates = loop {
        let updates = app.slack.requests_to("/api/chat.update");
        if updates.iter().any(sorry) || tokio::time::Instant::now() > deadline {
            break updates;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let apologies: Vec<&Recorded> = updates.iter().filter(|r| sorry(r)).collect();
    assert_eq!(apologies.len(), 1, "the apology replaces the placeholder: {updates:?}");
    assert_eq!(apologies[0].param("ts").as_deref(), Some(placeholder_ts.as_str()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let row = exchange(&app, &m).await;
        if row.status != "received" || tokio::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.status, "failed");
    assert!(!row.failure_reason.unwrap_or_default().is_empty());
    // Nothing more: no second message, and a late redelivery does not reply.
    handle_message(&app.state, &m, None).await.unwrap();
    let posts = app.slack.requests_to("/api/chat.postMessage").len();
    assert_eq!(posts, 1, "only the placeholder was ever posted");
    app.stop().await.unwrap();
}

/// Slack unavailable when a reply dies: the apology does not die with it.
/// It waits in the outbox until Slack takes it, goes out once, and its ts
/// is recorded on the failed exchange.
#[tokio::test]
async fn an_apology_that_slack_cannot_take_waits_in_the_outbox_until_it_can() {
    let app = app(None, None, &[]).await;
    let m = dm(BOB, "what is on my calendar today?");
    record_event(&app, &m).await;
    // Slack fails the reply, the apology posted at once, and the queued
    // apology's first attempt; then it is back.
    app.slack.script("/api/chat.postMessage", (0..3).map(|_| slack_unavailable()));
    // The reply's last attempt.
    run_last_attempt(&app, &m).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (key, _) = conversation::apology_job(exchange_id_of(&app, &m, deadline).await);
    let (state, attempts) = job_finished(&app, &key, Duration::from_secs(20)).await;
    assert_eq!((state.as_str(), attempts), ("done", 2), "failed once while Slack was down, then posted");
    let posts = app.slack.requests_to("/api/chat.postMessage");
    assert_eq!(posts.len(), 4, "the reply, the apology twice while Slack failed, the apology once it did not");
    assert!(text_of(&posts[3]).starts_with("Sorry, I could not reply"), "{}", text_of(&posts[3]));
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "failed");
    assert!(row.reply_ts.is_some(), "the apology's ts is recorded");
    let reason = row.failure_reason.unwrap_or_default();
    assert!(reason.contains("waits until Slack takes it"), "{reason}");
    app.stop().await.unwrap();
}

/// Slack answering 503: unavailable.
fn slack_unavailable() -> Scripted {
    Scripted::json(503, serde_json::json!({ "ok": false, "error": "service_unavailable" }))
}

/// Waits (bounded) until the job with this dedupe key is done or dead;
/// returns its state and attempts.
async fn job_finished(app: &TestApp, key: &str, within: Duration) -> (String, i32) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let row: Option<(String, i32)> = sqlx::query_as("SELECT state, attempts FROM jobs WHERE dedupe_key = $1")
            .bind(key)
            .fetch_optional(&app.db)
            .await
            .unwrap();
        if let Some(row) = row.as_ref().filter(|(state, _)| state == "done" || state == "dead") {
            return row.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "job {key} did not finish within {within:?}: {row:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The id of the exchange stored for `m`, once it is.
async fn exchange_id_of(app: &TestApp, m: &DirectMessage, deadline: tokio::time::Instant) -> uuid::Uuid {
    loop {
        let id: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM exchanges WHERE channel_id = $1 AND user_ts = $2")
                .bind(&m.channel_id)
                .bind(&m.ts)
                .fetch_optional(&app.db)
                .await
                .unwrap();
        if let Some(id) = id {
            return id;
        }
        assert!(tokio::time::Instant::now() < deadline, "the message was never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn llm_output_mentioning_channel_is_neutralised() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::answer("Sure! <!channel> look & see <@U0BOB0001> <https://evil.example|click>")]);
    let app = app(None, Some(&fake), &[]).await;
    let m = say(&app, JANE, "announce it").await;
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), 1);
    let sent = text_of(&writes[0]);
    assert_eq!(sent, "Sure! &lt;!channel&gt; look &amp; see &lt;@U0BOB0001&gt; &lt;https://evil.example|click&gt;");
    assert!(!sent.contains('<') && !sent.contains('>'));
    // The log keeps what the LLM said.
    assert_eq!(
        exchange(&app, &m).await.reply_text.as_deref(),
        Some("Sure! <!channel> look & see <@U0BOB0001> <https://evil.example|click>")
    );
    // Commands never go to the LLM.
    say(&app, JANE, "forget me").await;
    assert_eq!(fake.requests_to(llm::PATH).len(), 1, "forget is not the LLM's to handle");
    assert!(writes_to(&app, &channel_of(JANE)).last().unwrap().json()["blocks"].is_array());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_llm_prompt_carries_name_locale_local_time_history_and_memories() {
    let chroma = Chroma::start().await;
    let fake = llm::start().await;
    let app = app(Some(&chroma), Some(&fake), &[]).await;

    say(&app, JANE, "My cat's name is Nabi").await;
    say(&app, JANE, "How are you today?").await;
    let requests = fake.requests_to(llm::PATH);
    assert_eq!(requests.len(), 2);
    let r = &requests[1];
    assert_eq!(r.headers["authorization"], format!("Bearer {}", llm::API_KEY));
    assert_eq!(r.json()["model"], llm::MODEL);
    let messages = llm::messages(r);
    let system = &messages[0].1;
    assert_eq!(messages[0].0, "system");
    assert!(system.contains("Jane") && system.contains("en-US") && system.contains("Asia/Seoul"), "{system}");
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Seoul).format("%Y-%m-%d").to_string();
    assert!(system.contains(&today), "local date in the prompt: {system}");
    assert_eq!(
        &messages[1..],
        &[
            ("user".to_owned(), "My cat's name is Nabi".to_owned()),
            ("assistant".to_owned(), "LLM says: My cat's name is Nabi".to_owned()),
            ("user".to_owned(), "How are you today?".to_owned()),
        ],
        "history, then the message"
    );

    // A long message pushes the cat out of the history budget; memory brings it back.
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    say(&app, JANE, &"lorem ipsum dolor ".repeat(500)).await;
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    say(&app, JANE, "what is my cat called?").await;
    let last = fake.requests_to(llm::PATH).pop().unwrap();
    let messages = llm::messages(&last);
    assert_eq!(messages.len(), 2, "no history fits the budget: {messages:?}");
    assert!(messages[0].1.contains("user: My cat's name is Nabi"), "memory in the prompt: {}", messages[0].1);
    app.stop().await.unwrap();
}

/// A loopback stand-in for ChromaDB that speaks its v2 wire format and
/// records every request: it opens the collection, answers queries with no
/// hits, and refuses writes (503), so nothing is ever memorized unless the
/// test marks it so in Postgres.
async fn chroma_that_stores_nothing() -> Recorder {
    chroma_that_answers_queries_with(
        serde_json::json!({ "ids": [[]], "documents": [[]], "metadatas": [[]], "distances": [[]] }),
    )
    .await
}

/// A fake ChromaDB that opens one collection, answers every query with
/// `hits` and refuses every write.
async fn chroma_that_answers_queries_with(hits: Value) -> Recorder {
    Recorder::start(std::sync::Arc::new(move |r: &Recorded| {
        if r.path.ends_with("/collections") {
            Scripted::json(
                200,
                serde_json::json!({ "id": "0c0ffee0-0000-4000-8000-000000000001", "name": "robeing_memory",
                                    "metadata": { "dimension": 384, "embedder": "local" } }),
            )
        } else if r.path.ends_with("/query") {
            Scripted::json(200, hits.clone())
        } else {
            Scripted::json(503, serde_json::json!({ "error": "writes refused by the test" }))
        }
    }))
    .await
}

/// Records the user's oldest exchange as held by ChromaDB.
async fn memorize_oldest(app: &TestApp, user: &str) {
    sqlx::query(
        "UPDATE exchanges SET memorized_at = now() WHERE id = (SELECT id FROM exchanges WHERE user_id = $1 ORDER BY received_at LIMIT 1)",
    )
    .bind(user)
    .execute(&app.db)
    .await
    .unwrap();
}

/// A user whose memory added to their last prompt most likely needs a
/// recall again: it is sent while their message is being stored, so the
/// reply waits for the longer of the two, not for both in turn. Shown by
/// holding the store back (a lock on `exchanges`): the recall reaches
/// ChromaDB meanwhile, once, and its memory is in the prompt.
#[tokio::test]
async fn a_likely_recall_goes_to_chromadb_while_the_message_is_being_stored() {
    // A ChromaDB that remembers one thing, from long before the history.
    const REMEMBERED: &str = "user: my first note was about tulips\nrobeing: noted";
    let chroma = chroma_that_answers_queries_with(serde_json::json!({
        "ids": [["0c0ffee0-0000-4000-8000-0000000000aa"]], "documents": [[REMEMBERED]],
        "metadatas": [[{ "received_at": "2026-01-02T03:04:05Z" }]], "distances": [[0.2]]
    }))
    .await;
    let fake = llm::start().await;
    let base = chroma.url("");
    let app = app(None, Some(&fake), &[("CHROMA_URL", &base)]).await;
    let queries = || chroma.requests().into_iter().filter(|r| r.path.ends_with("/query")).count();
    for i in 0..(conversation::HISTORY_MAX_EXCHANGES as usize + 2) {
        say(&app, JANE, &format!("note number {i}")).await;
    }
    assert_eq!(queries(), 0, "a recall is never started for a user whose memory adds nothing");
    memorize_oldest(&app, JANE).await;
    say(&app, JANE, "what was my first note?").await;
    assert_eq!(queries(), 1, "memory may add: recalled after the history was read");

    // Storing is held back; the recall for the next message goes anyway.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE exchanges IN SHARE MODE").execute(&mut *lock).await.unwrap();
    let m = dm(JANE, "and my second note?");
    let handling = tokio::spawn({
        let (state, m) = (app.state.clone(), m.clone());
        async move { handle_message(&state, &m, None).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queries() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no recall while the message was being stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!handling.is_finished(), "the message is still being stored");
    let asked = chroma.requests().into_iter().rfind(|r| r.path.ends_with("/query")).unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM exchanges WHERE user_text = $1")
        .bind(&m.text)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the recall went before the message was stored");
    lock.rollback().await.unwrap();
    handling.await.unwrap().unwrap();

    assert_eq!(queries(), 2, "one recall for the message, not a second once it was stored");
    assert_eq!(asked.json()["n_results"], conversation::MEMORY_TOP_K);
    let prompt = llm::messages(&fake.requests_to(llm::PATH).pop().unwrap());
    assert!(
        prompt[0].1.contains("my first note was about tulips"),
        "the early recall's memory is in the prompt: {prompt:?}"
    );
    assert_eq!(prompt.last().unwrap().1, m.text);
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), conversation::HISTORY_MAX_EXCHANGES as usize + 4, "every message answered once");
    app.stop().await.unwrap();
}

/// How long the fake ChromaDB below takes to answer its first write: long,
/// but inside robeing's ChromaDB timeout, so the write succeeds.
const STALLED_WRITE: Duration = Duration::from_secs(8);

/// Where the fake below takes every write: it answers every collection
/// request with this one collection.
const STALLED_COLLECTION_UPSERT: &str =
    "/api/v2/tenants/default_tenant/databases/default_database/collections/0c0ffee0-0000-4000-8000-000000000002/upsert";

/// A ChromaDB speaking the v2 wire format that takes [`STALLED_WRITE`] to
/// answer its first upsert and answers the rest at once.
async fn chroma_with_a_stalled_first_write() -> Recorder {
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Recorder::start(std::sync::Arc::new(move |r: &Recorded| {
        if r.path.ends_with("/collections") {
            Scripted::json(
                200,
                serde_json::json!({ "id": "0c0ffee0-0000-4000-8000-000000000002", "name": "robeing_memory_any",
                                    "metadata": { "dimension": 384, "embedder": "local", "created_by": "robeing" } }),
            )
        } else if r.path.ends_with("/upsert") {
            let first = writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Scripted::json(200, serde_json::json!({})).delayed(if first { STALLED_WRITE } else { Duration::ZERO })
        } else {
            Scripted::json(
                200,
                serde_json::json!({ "ids": [[]], "documents": [[]], "metadatas": [[]], "distances": [[]] }),
            )
        }
    }))
    .await
}

/// Memory writes never hold the job workers that replies need. While one
/// ChromaDB write hangs, more messages than there are workers arrive over
/// `POST /slack/events`; every one is answered before the write returns,
/// and afterwards their exchanges are memorized in one write per user.
#[tokio::test]
async fn a_hanging_chromadb_write_delays_no_reply_and_the_backlog_goes_in_one_write_per_user() {
    assert!(STALLED_WRITE < robeing::memory::chroma::TIMEOUT);
    let chroma = chroma_with_a_stalled_first_write().await;
    let app = app(None, None, &[("CHROMA_URL", &chroma.url(""))]).await;
    let upserts = || chroma.requests().into_iter().filter(|r| r.path.ends_with("/upsert")).collect::<Vec<_>>();
    let send = |user: &'static str, text: String| {
        let mut m = dm(user, &text);
        // A channel per message: Slack's per-channel pacing is not under test.
        m.channel_id = format!("D0H{}", m.ts.replace('.', ""));
        let app = &app;
        async move {
            let r = crate::slack_http::Post::event(&event_payload(&m)).send(app).await;
            assert_eq!(r.status(), 200, "event {} acknowledged", m.event_id);
        }
    };
    let replied = || crate::slack_http::count(&app.db, "SELECT count(*) FROM exchanges WHERE status = 'replied'");

    send(JANE, "the first note".into()).await;
    let hanging = chroma.wait_for(STALLED_COLLECTION_UPSERT, 1, Duration::from_secs(20)).await;
    let write_started = tokio::time::Instant::now();
    assert_eq!(hanging.len(), 1, "the first exchange's memory write reached ChromaDB");

    let users = [JANE, BOB, KIM];
    let more = robeing::jobs::CONCURRENCY + 16;
    for i in 0..more {
        send(users[i % users.len()], format!("note {i} while ChromaDB hangs")).await;
    }
    let deadline = write_started + STALLED_WRITE;
    while replied().await < 1 + more as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} messages were answered while one ChromaDB write hung",
            replied().await,
            1 + more
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upserts().len(), 1, "the hanging write was still the only one when every reply was posted");
    assert!(write_started.elapsed() < STALLED_WRITE, "and it had not returned yet");

    for user in users {
        wait_memorized(&app, user, STALLED_WRITE + Duration::from_secs(60)).await;
    }
    let writes = upserts();
    let ids_of = |w: &Recorded| w.json()["ids"].clone();
    assert_eq!(
        writes.len(),
        1 + users.len(),
        "the backlog went in one write per user: {:?}",
        writes.iter().map(ids_of).collect::<Vec<_>>()
    );
    let carried: Vec<usize> = writes[1..].iter().map(|w| w.json()["ids"].as_array().map_or(0, Vec::len)).collect();
    assert_eq!(carried.iter().sum::<usize>(), more, "each exchange once: {carried:?}");
    let unfinished = "SELECT count(*) FROM jobs WHERE kind = 'memory_upsert' AND state <> 'done'";
    assert_eq!(crate::slack_http::count(&app.db, unfinished).await, 0);
    app.stop().await.unwrap();
}

/// Memory writes queued while ChromaDB was configured, found by a robeing
/// started without it: each is recorded dead with the reason, not left
/// waiting where nobody would ever take it.
#[tokio::test]
async fn memory_writes_queued_while_memory_was_on_are_dead_with_the_reason_when_it_is_off() {
    let app = app(None, None, &[]).await;
    let (key, payload) = robeing::memory::upsert_job(uuid::Uuid::new_v4());
    let id = robeing::storage::jobs::enqueue(&app.db, robeing::memory::UPSERT_JOB, Some(&key), &payload, None)
        .await
        .unwrap()
        .expect("queued");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (state, error) = loop {
        let row: (String, Option<String>) = sqlx::query_as("SELECT state, last_error FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
        if row.0 != "queued" && row.0 != "running" {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the memory write is still {}", row.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state, "dead");
    assert!(error.as_deref().is_some_and(|e| e.contains("CHROMA_URL unset")), "{error:?}");
    app.stop().await.unwrap();
}

/// A job's state, attempts and last error.
async fn job_row(app: &TestApp, key: &str) -> (String, i32, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, max_attempts, last_error FROM jobs WHERE dedupe_key = $1")
        .bind(key)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The history of a robeing run without memory is put into ChromaDB when
/// it starts with memory: the exchanges that had no write at all, and the
/// one whose write a memory-off robeing recorded dead.
#[tokio::test]
async fn history_replied_while_memory_was_off_goes_into_chromadb_when_memory_is_turned_on() {
    let without_memory = app(None, None, &[]).await;
    say(&without_memory, KIM, "내 고양이 이름은 나비야").await;
    say(&without_memory, BOB, "my cat is called Tom").await;
    say(&without_memory, BOB, "and my dog is called Rex").await;
    let export = say(&without_memory, BOB, "export").await;
    let export_id = exchange(&without_memory, &export).await.id;
    let mut before = exchanges_of(&without_memory, KIM).await;
    before.extend(exchanges_of(&without_memory, BOB).await.into_iter().filter(|r| r.id != export_id));
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|r| r.status == "replied" && r.memorized_at.is_none()));
    let no_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'memory_upsert'")
        .fetch_one(&without_memory.db)
        .await
        .unwrap();
    assert_eq!(no_jobs, 0, "memory off queues no memory writes");
    // A write queued while memory was on, found by this memory-off robeing.
    let (dead_key, payload) = robeing::memory::upsert_job(before[2].id);
    robeing::storage::jobs::enqueue(&without_memory.db, robeing::memory::UPSERT_JOB, Some(&dead_key), &payload, None)
        .await
        .unwrap()
        .expect("queued");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while job_row(&without_memory, &dead_key).await.0 != "dead" {
        assert!(tokio::time::Instant::now() < deadline, "the memory-off robeing did not bury the write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let database_url =
        sqlx::query_scalar::<_, String>("SELECT current_database()").fetch_one(&without_memory.db).await.unwrap();
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(&database_url);
    without_memory.stop().await.unwrap();

    let chroma = Chroma::start().await;
    let with_memory = app(Some(&chroma), None, &[("DATABASE_URL", url.as_str())]).await;
    wait_memorized(&with_memory, KIM, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while exchanges_of(&with_memory, BOB).await.iter().filter(|r| r.memorized_at.is_some()).count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "Bob's history did not reach ChromaDB");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_chroma: std::collections::BTreeSet<String> =
        [chroma.records_of(KIM).await, chroma.records_of(BOB).await].concat().into_iter().map(|(id, _)| id).collect();
    let stored: std::collections::BTreeSet<String> = before.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(in_chroma, stored, "ChromaDB holds exactly the history");
    assert_eq!(chroma.count().await, 3, "no duplicates, and the export kept out of memory");
    let (state, _, _, error) = job_row(&with_memory, &dead_key).await;
    assert_eq!((state.as_str(), error), ("done", None), "the dead write was queued again and went through");
    // What was said before memory was on is recalled now.
    let hits = with_memory.state.memory.as_ref().unwrap().recall(BOB, "what is my cat called?", 1).await.unwrap();
    assert!(hits[0].document.as_deref().unwrap_or_default().contains("Tom"), "{hits:?}");
    let health = robeing::storage::health::data_health(&with_memory.db, chrono_tz::UTC).await.unwrap();
    assert_eq!(health.not_in_memory, 0, "the export is not counted as waiting for memory");
    with_memory.stop().await.unwrap();
}

/// A ChromaDB outage longer than a job's attempts costs no memory: the
/// write past its last attempt is queued again, not buried, and it goes in
/// as soon as ChromaDB takes a write again (not after its five-minute
/// backoff).
#[tokio::test]
async fn a_memory_write_outlasts_a_chromadb_outage_longer_than_its_attempts() {
    let mut chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    chroma.stop().await;
    let m = say(&app, BOB, "remember: the spare key is under the blue pot").await;
    let (key, _) = robeing::memory::upsert_job(exchange(&app, &m).await.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (state, _, _, error) = job_row(&app, &key).await;
        if state == "queued" && error.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first failed write was not recorded: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // As if ChromaDB had been down for every attempt but the last.
    sqlx::query("UPDATE jobs SET attempts = max_attempts, run_at = now() WHERE dedupe_key = $1 AND state = 'queued'")
        .bind(&key)
        .execute(&app.db)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (error, attempts, max_attempts) = loop {
        let (state, attempts, max_attempts, error) = job_row(&app, &key).await;
        assert_ne!(state, "dead", "buried after its last attempt: {error:?}");
        if state == "queued" && attempts > max_attempts {
            break (error, attempts, max_attempts);
        }
        assert!(tokio::time::Instant::now() < deadline, "the last attempt did not run: {state} {attempts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.as_deref().is_some_and(|e| e.contains("unavailable")), "{error:?} after {attempts}/{max_attempts}");

    chroma.restart().await;
    say(&app, BOB, "ChromaDB is back").await;
    wait_memorized(&app, BOB, Duration::from_secs(30)).await;
    assert_eq!(chroma.count().await, 2);
    assert_eq!(job_row(&app, &key).await.0, "done");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn memory_is_queried_only_when_it_holds_something_beyond_the_history_in_the_prompt() {
    let chroma = chroma_that_stores_nothing().await;
    let fake = llm::start().await;
    let base = chroma.url("");
    let app = app(None, Some(&fake), &[("CHROMA_URL", &base)]).await;
    let queries = || chroma.requests().into_iter().filter(|r| r.path.ends_with("/query")).count();
    // More exchanges than the prompt's history holds, none of them in ChromaDB.
    for i in 0..(conversation::HISTORY_MAX_EXCHANGES as usize + 4) {
        say(&app, JANE, &format!("note number {i}")).await;
    }
    assert_eq!(queries(), 0, "ChromaDB holds nothing of Jane's, so there is nothing to ask it");
    let prompt = llm::messages(&fake.requests_to(llm::PATH).pop().unwrap());
    assert_eq!(prompt.len(), 1 + 2 * conversation::HISTORY_MAX_EXCHANGES as usize + 1, "full history: {prompt:?}");

    // The oldest exchange, long out of the history, is in ChromaDB: now memory may add it.
    memorize_oldest(&app, JANE).await;
    say(&app, JANE, "what was my first note?").await;
    let asked: Vec<Recorded> = chroma.requests().into_iter().filter(|r| r.path.ends_with("/query")).collect();
    assert_eq!(asked.len(), 1, "one recall query for the message");
    assert_eq!(asked[0].json().get("where"), None, "Jane's own collection needs no filter");
    let opened: Vec<Value> = chroma
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/collections"))
        .map(|r| r.json()["name"].clone())
        .collect();
    assert_eq!(opened, vec![Value::from(format!("robeing_memory_{JANE}"))], "only Jane's collection was opened");
    assert_eq!(asked[0].json()["n_results"], conversation::MEMORY_TOP_K);
    // Another user's memories are not Jane's.
    say(&app, BOB, "hello").await;
    assert_eq!(queries(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn nul_rtl_override_and_a_40000_character_message_are_handled_and_stored_faithfully() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;

    let nul = say(&app, BOB, "before\0after").await;
    let rtl_text = "invoice \u{202E}fdp.exe\u{202C} and \u{2067}isolate\u{2069}";
    let rtl = say(&app, BOB, rtl_text).await;
    let long_text: String =
        (0..40_000).map(|i| if i % 7 == 0 { '가' } else { (b'a' + (i % 26) as u8) as char }).collect();
    assert_eq!(long_text.chars().count(), 40_000);
    let long = say(&app, BOB, &long_text).await;

    // Postgres text cannot hold NUL: it is stored as U+FFFD, everything else as sent.
    assert_eq!(exchange(&app, &nul).await.user_text, "before\u{FFFD}after");
    assert_eq!(exchange(&app, &rtl).await.user_text, rtl_text);
    let row = exchange(&app, &long).await;
    assert_eq!(row.user_text, long_text);
    assert_eq!(row.status, "replied");
    assert_eq!(writes_to(&app, &channel_of(BOB)).len(), 3, "one reply each");
    wait_memorized(&app, BOB, Duration::from_secs(30)).await;
    assert_eq!(chroma.records_of(BOB).await.len(), 3);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn forget_removes_the_users_data_from_both_stores_and_nothing_else() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    for user in [JANE, BOB, KIM] {
        say(&app, user, "I live in Busan").await;
        say(&app, user, "My favourite colour is green").await;
    }
    for user in [JANE, BOB, KIM] {
        wait_memorized(&app, user, Duration::from_secs(60)).await;
    }
    let names = |cs: Vec<Value>| {
        let mut n: Vec<String> = cs.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
        n.sort();
        n
    };
    let own = |user: &str| format!("robeing_memory_{user}");
    assert_eq!(names(chroma.robeing_collections().await), vec![own(BOB), own(JANE), own(KIM)], "one collection each");

    // Jane asks, gets Confirm/Cancel buttons, confirms with the button.
    say(&app, JANE, "forget me").await;
    let prompt = writes_to(&app, &channel_of(JANE)).pop().unwrap();
    let blocks = prompt.json()["blocks"].clone();
    let actions: Vec<String> = blocks
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| e["action_id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(actions, vec!["forget_confirm", "forget_cancel"]);
    assert_eq!(exchanges_of(&app, JANE).await.len(), 3, "asking deletes nothing");
    conversation::handle_forget_action(&app.state, JANE, true).await.unwrap();
    assert!(exchanges_of(&app, JANE).await.is_empty());
    let confirmation = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(confirmation.starts_with("Done: I deleted 3 conversations"), "{confirmation}");

    // Bob cancels: everything stays.
    conversation::handle_forget_action(&app.state, BOB, false).await.unwrap();
    assert_eq!(text_of(writes_to(&app, &channel_of(BOB)).last().unwrap()), "OK, I kept everything.");

    // Kim confirms in words, in Korean.
    say(&app, KIM, "네, 잊어줘").await;
    let kim_reply = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(kim_reply.starts_with("대화 기록 2건을 지웠고"), "{kim_reply}");
    let kim_rows = exchanges_of(&app, KIM).await;
    assert_eq!(kim_rows.len(), 1, "only the confirmation itself remains");
    assert_eq!(kim_rows[0].user_text, "네, 잊어줘");

    // ChromaDB: Jane's and Kim's records go (the forget jobs run), Bob's stay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (!chroma.records_of(JANE).await.is_empty() || !chroma.records_of(KIM).await.is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(chroma.records_of(JANE).await.is_empty());
    assert!(chroma.records_of(KIM).await.is_empty());
    assert!(chroma.collection_of(JANE).await.is_none(), "Jane's collection is deleted, not just emptied");
    assert_eq!(chroma.records_of(BOB).await.len(), 2);
    assert_eq!(exchanges_of(&app, BOB).await.len(), 2);
    assert_eq!(chroma.count().await, 2, "nothing else in the collection");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_message_gets_exactly_one_reply() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    let m = dm(JANE, "hello");
    handle_message(&app.state, &m, None).await.unwrap();
    handle_message(&app.state, &m, None).await.unwrap();
    let mut again = m.clone();
    again.event_id = "Ev0CONVREDELIVERED".into();
    handle_message(&app.state, &again, None).await.unwrap();
    assert_eq!(writes_to(&app, &channel_of(JANE)).len(), 1);
    assert_eq!(exchanges_of(&app, JANE).await.len(), 1);
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'memory_upsert'").fetch_one(&app.db).await.unwrap();
    assert_eq!(jobs, 1);
    app.stop().await.unwrap();
}

/// The files shared by `files.completeUploadExternal` calls: (channel,
/// file id, title) of each call that Slack answered ok.
fn files_shared(app: &TestApp) -> Vec<(String, String, String)> {
    app.slack
        .requests_to("/api/files.completeUploadExternal")
        .iter()
        .map(|r| r.json())
        .flat_map(|body| {
            let channel = body["channel_id"].as_str().unwrap_or_default().to_owned();
            body["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |f| (channel.clone(), f["id"].as_str().unwrap_or_default().into(), f["title"].to_string()))
        })
        .collect()
}

/// The bytes uploaded for a file id, as text.
fn uploaded(app: &TestApp, file_id: &str) -> String {
    let uploads = app.slack.requests_to(&format!("/upload/v1/{file_id}"));
    assert_eq!(uploads.len(), 1, "one upload of {file_id}");
    String::from_utf8(uploads[0].body.to_vec()).expect("the export is UTF-8")
}

#[tokio::test]
async fn export_sends_the_whole_history_as_one_file() {
    let app = app(None, None, &[]).await;
    say(&app, KIM, "첫 번째 메모: 우유 사기").await;
    let long = "긴 메모 ".repeat(1_000);
    say(&app, KIM, &long).await;
    for i in 0..40 {
        say(&app, KIM, &format!("메모 {i}번: {}", "가나다라 ".repeat(200))).await;
    }
    say(&app, KIM, "세 번째 <메모> & 끝").await;
    let mut receipt = dm(KIM, "");
    receipt.files = vec![image("영수증.png")];
    handle_message(&app.state, &receipt, None).await.unwrap();
    let before = writes_to(&app, &channel_of(KIM)).len();
    let m = say(&app, KIM, "내보내기").await;

    let writes = writes_to(&app, &channel_of(KIM));
    let new: Vec<String> = writes[before..].iter().map(text_of).collect();
    assert_eq!(new, ["대화 기록 내보내기: 44건을 파일로 보내 드려요."], "one message, then the file");
    let shared = files_shared(&app);
    assert_eq!(shared.len(), 1, "{shared:?}");
    let (channel, file_id, title) = &shared[0];
    assert_eq!(channel, &channel_of(KIM));
    assert!(title.contains("robeing 대화 기록"), "{title}");
    let asked = app.slack.requests_to("/api/files.getUploadURLExternal");
    let filename = asked[0].param("filename").unwrap();
    assert!(filename.starts_with("robeing-history-") && filename.ends_with(".txt"), "{filename}");

    let file = uploaded(&app, file_id);
    assert_eq!(asked[0].param("length"), Some(file.len().to_string()), "the announced length is the byte length");
    assert!(file.starts_with("robeing 대화 기록: 김종태님 (U0KIMJT01)"), "{}", &file[..200]);
    assert!(file.contains("44건"), "{}", &file[..200]);
    assert!(file.contains("나: [파일: 영수증.png]\n"), "a message that was only a file");
    assert!(file.contains("나: 첫 번째 메모: 우유 사기"));
    assert!(file.contains(&long), "the long memo, whole");
    assert!(file.contains("메모 0번") && file.contains("메모 39번"), "nothing cut: the file has no size limit here");
    assert!(file.contains("세 번째 <메모> & 끝"), "a file is plain text: nothing escaped");
    assert!(!file.contains("내보내기"), "the request itself is not exported");
    assert!(file.find("첫 번째 메모").unwrap() < file.find("세 번째 <메모>").unwrap(), "oldest first, as it happened");

    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    assert_eq!(row.reply_text.as_deref(), Some(new[0].as_str()));
    let kept_out: bool = sqlx::query_scalar("SELECT kept_out_of_memory FROM exchanges WHERE id = $1")
        .bind(row.id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(kept_out, "an export never goes into memory");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_export_slack_will_not_take_as_a_file_comes_as_messages_and_says_why() {
    let app = app(None, None, &[]).await;
    say(&app, BOB, "first note: buy milk").await;
    say(&app, BOB, &"long note ".repeat(1_000)).await;
    say(&app, BOB, "third <note> & end").await;
    // Installed before robeing asked for files:write.
    app.slack.script(
        "/api/files.getUploadURLExternal",
        [Scripted::json(
            200,
            serde_json::json!({ "ok": false, "error": "missing_scope", "needed": "files:write", "provided": "chat:write,im:history" }),
        )],
    );
    let before = writes_to(&app, &channel_of(BOB)).len();
    let m = say(&app, BOB, "export").await;

    let new: Vec<String> = writes_to(&app, &channel_of(BOB))[before..].iter().map(text_of).collect();
    assert_eq!(new[0], "Your history export: 3 conversations, in the file below.");
    assert!(
        new[1].starts_with("Slack would not take the file (missing_scope), so here it is in the next"),
        "the user is told why: {}",
        new[1]
    );
    let parts = &new[2..];
    assert!(new[1].contains(&format!("in the next {} messages", parts.len())), "{}", new[1]);
    assert!(parts.len() >= 3, "the long note needs several parts: {}", parts.len());
    for (i, p) in parts.iter().enumerate() {
        assert!(p.starts_with(&format!("*History export ({}/{})*", i + 1, parts.len())), "{p}");
        assert!(p.chars().count() <= 3_000);
    }
    let all = parts.concat();
    assert!(all.contains("you: first note: buy milk"));
    assert!(all.contains("third &lt;note&gt; &amp; end"), "messages are escaped: {all}");
    assert!(files_shared(&app).is_empty());
    assert_eq!(exchange(&app, &m).await.status, "replied");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_retried_export_does_not_share_its_file_twice() {
    use crate::fakes::slack::{PostFault, start_with_workspace};
    let (fake, workspace) = start_with_workspace().await;
    let app = app_with_slack(None, None, &[], fake).await;
    say(&app, JANE, "remember the blue door").await;
    // Slack shares the file, then its answer is lost.
    workspace.fault_completes([PostFault::PostedThenFails(500)]);
    let m = dm(JANE, "export my history");
    let err = handle_message(&app.state, &m, None).await.expect_err("the share's answer was a 500");
    assert!(matches!(err, robeing::jobs::JobError::Retry { .. }), "{err:?}");
    assert_eq!(exchange(&app, &m).await.status, "received");

    // The outbox's retry finds the shared file in the DM's history.
    handle_message(&app.state, &m, None).await.unwrap();
    assert_eq!(workspace.uploads().len(), 1, "uploaded once");
    let messages = workspace.messages_in(&channel_of(JANE));
    let with_files: Vec<_> = messages.iter().filter(|msg| !msg.files.is_empty()).collect();
    assert_eq!(with_files.len(), 1, "shared once: {messages:?}");
    let intro: Vec<_> = messages.iter().filter(|msg| msg.text.starts_with("Your history export: 1")).collect();
    assert_eq!(intro.len(), 1, "the intro posted once (the retry updates it): {messages:?}");
    let history_reads = app.slack.requests_to("/api/conversations.history");
    assert!(!history_reads.is_empty(), "the retry looked before sharing");
    assert_eq!(exchange(&app, &m).await.status, "replied");
    app.stop().await.unwrap();
}

/// `word` repeated to about `chars` characters.
fn repeated(word: &str, chars: usize) -> String {
    format!("{word} ").repeat(chars / (word.len() + 1)).trim_end().to_owned()
}

/// A paragraph of about 2,500 characters: each is a chunk of its own.
fn paragraph(word: &str) -> String {
    repeated(word, 2_500)
}

#[tokio::test]
async fn a_long_reply_retried_after_a_partial_delivery_leaves_each_part_once_in_the_retrys_words() {
    use crate::fakes::slack::{PostFault, start_with_workspace};
    let (fake, workspace) = start_with_workspace().await;
    let llm = llm::start().await;
    // The first attempt's answer has three parts; the retry's (an LLM says
    // it again in other words) has two.
    let first = [paragraph("alpha"), paragraph("bravo"), paragraph("charlie")].join("\n\n");
    let again = [paragraph("delta"), paragraph("echo")].join("\n\n");
    llm.script(llm::PATH, [llm::answer(&first), llm::answer(&again)]);
    let app = app_with_slack(None, Some(&llm), &[], fake).await;
    // Parts one and two are posted; the third is taken by Slack but its
    // answer is lost.
    workspace.fault_posts([PostFault::Passes, PostFault::Passes, PostFault::PostedThenFails(500)]);
    let m = dm(JANE, "Tell me everything about the Greek alphabet");
    let err = handle_message(&app.state, &m, None).await.expect_err("the third part's answer was a 500");
    assert!(matches!(err, robeing::jobs::JobError::Retry { .. }), "{err:?}");
    let shown: Vec<String> = workspace.messages_in(&channel_of(JANE)).into_iter().map(|m| m.text).collect();
    assert_eq!(shown, [paragraph("alpha"), paragraph("bravo"), paragraph("charlie")], "three parts in Slack");

    // The outbox's retry: the user ends up with the retry's answer, each
    // part once, in order; nothing of the first answer is left.
    handle_message(&app.state, &m, None).await.unwrap();
    let shown = workspace.messages_in(&channel_of(JANE));
    let texts: Vec<&str> = shown.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, [paragraph("delta"), paragraph("echo")], "{shown:#?}");
    assert!(shown.iter().all(|m| m.updates == 1), "both parts were updated in place: {shown:#?}");
    assert_eq!(app.slack.requests_to("/api/chat.delete").len(), 1, "the third part was removed");
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 3, "nothing was posted again");
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    assert_eq!(row.reply_text.as_deref(), Some(again.as_str()));
    assert_eq!(row.reply_ts.as_deref(), Some(shown[0].ts.as_str()));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_reply_that_finally_fails_leaves_only_the_apology() {
    use crate::fakes::slack::{PostFault, start_with_workspace};
    let (fake, workspace) = start_with_workspace().await;
    let llm = llm::start().await;
    let answer = [paragraph("alpha"), paragraph("bravo"), paragraph("charlie")].join("\n\n");
    // The first attempt's answer; then the LLM fails every call.
    llm.script(llm::PATH, std::iter::once(llm::answer(&answer)).chain((0..9).map(|_| llm::error(500))));
    let app = app_with_slack(None, Some(&llm), &[], fake).await;
    let m = dm(JANE, "Tell me everything about the Greek alphabet");
    record_event(&app, &m).await;
    // Parts one and two are posted; the answer to the second is lost.
    workspace.fault_posts([PostFault::Passes, PostFault::PostedThenFails(500)]);
    handle_message(&app.state, &m, None).await.expect_err("the second part's answer was a 500");
    assert_eq!(workspace.messages_in(&channel_of(JANE)).len(), 2);

    // The last attempt dies on the LLM: the apology replaces the first
    // part, and the second goes.
    run_last_attempt(&app, &m).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = exchange(&app, &m).await;
        if row.status == "failed" || tokio::time::Instant::now() > deadline {
            assert_eq!(row.status, "failed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = workspace.messages_in(&channel_of(JANE));
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(shown[0].text.starts_with("Sorry, I could not reply"), "{}", shown[0].text);
    assert_eq!(app.slack.requests_to("/api/chat.delete").len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_export_sent_as_messages_and_retried_midway_sends_each_message_once() {
    use crate::fakes::slack::{PostFault, start_with_workspace};
    let (fake, workspace) = start_with_workspace().await;
    let app = app_with_slack(None, None, &[], fake).await;
    // Each exchange fills most of one history message.
    let fruit = ["mango", "papaya", "guava", "lychee", "durian", "quince"];
    for word in fruit {
        say(&app, BOB, &repeated(word, 1_400)).await;
    }
    let missing_scope =
        || Scripted::json(200, serde_json::json!({ "ok": false, "error": "missing_scope", "needed": "files:write" }));
    app.slack.script("/api/files.getUploadURLExternal", [missing_scope(), missing_scope()]);
    let before = workspace.messages_in(&channel_of(BOB)).len();
    // The intro, the note and two history messages go out; the third
    // history message is taken by Slack but its answer is lost.
    workspace.fault_posts([
        PostFault::Passes,
        PostFault::Passes,
        PostFault::Passes,
        PostFault::Passes,
        PostFault::PostedThenFails(502),
    ]);
    let m = dm(BOB, "export");
    let err = handle_message(&app.state, &m, None).await.expect_err("a history message's answer was a 502");
    assert!(matches!(err, robeing::jobs::JobError::Retry { .. }), "{err:?}");
    assert_eq!(workspace.messages_in(&channel_of(BOB)).len(), before + 5);

    handle_message(&app.state, &m, None).await.unwrap();
    let shown: Vec<String> = workspace.messages_in(&channel_of(BOB))[before..].iter().map(|m| m.text.clone()).collect();
    assert!(shown[0].starts_with("Your history export: 6 conversations"), "{shown:#?}");
    assert!(shown[1].starts_with("Slack would not take the file (missing_scope)"), "{}", shown[1]);
    let parts = &shown[2..];
    assert!(parts.len() >= 4, "{} history messages", parts.len());
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.starts_with(&format!("*History export ({}/{})*", i + 1, parts.len())),
            "part {i} once, in order: {p}"
        );
    }
    for word in fruit {
        let holding = parts.iter().filter(|p| p.contains(word)).count();
        assert_eq!(holding, 1, "{word} is in exactly one message");
    }
    assert!(app.slack.requests_to("/api/chat.delete").is_empty(), "the retry's export is the same: nothing to remove");
    assert_eq!(exchange(&app, &m).await.status, "replied");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_llm_a_dm_with_a_file_gives_the_llm_its_name_and_tells_the_user_it_was_not_opened() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::answer("It was blue, as you told me.")]);
    let app = app(None, Some(&fake), &[]).await;
    let mut m = dm(JANE, "what colour was the door in this photo?");
    m.files = vec![image("door.jpg")];
    handle_message(&app.state, &m, None).await.unwrap();

    let prompt = fake.requests_to(llm::PATH)[0].json();
    let last = prompt["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(last.starts_with("what colour was the door in this photo?"), "{last}");
    assert!(
        last.ends_with("[The user attached the file \"door.jpg\", which you cannot see (only its name).]"),
        "{last}"
    );
    let reply = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert_eq!(
        reply,
        "It was blue, as you told me.\n\n(I could not read \"door.jpg\": not a text file, PDF, Office or Hangul document (I cannot read images and the like yet), so I answered from the rest.)"
    );
    assert!(app.slack.requests().iter().all(|r| !r.path.starts_with("/files-pri/")), "an image is not downloaded");
    assert_eq!(exchange(&app, &m).await.user_text, "what colour was the door in this photo?", "stored as typed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_built_in_responder_understands_requests_in_korean_and_english_and_says_what_it_cannot_do() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    let reply = |user: &'static str| {
        let app = &app;
        async move { text_of(writes_to(app, &channel_of(user)).last().unwrap()) }
    };

    say(&app, JANE, "help").await;
    let r = reply(JANE).await;
    assert!(r.contains("forget me") && r.contains("export") && r.contains("/brief"), "{r}");
    assert!(r.contains("no language model (LLM) is connected"), "says what it cannot do: {r}");
    say(&app, KIM, "뭐 할 수 있어?").await;
    let r = reply(KIM).await;
    assert!(r.contains("나를 잊어줘") && r.contains("내보내기"), "{r}");
    assert!(r.contains("언어 모델(LLM)이 연결되어 있지 않아서"), "{r}");

    say(&app, JANE, "can I get my morning briefing?").await;
    assert!(reply(JANE).await.contains("type `/brief`"));
    say(&app, KIM, "브리핑 언제 와?").await;
    assert!(reply(KIM).await.contains("`/brief`"));

    // This robeing has no Google client: said plainly (the button is in gmail.rs's test).
    say(&app, JANE, "reconnect gmail").await;
    assert!(reply(JANE).await.starts_with("Gmail is not configured on this robeing"));
    say(&app, KIM, "지메일 다시 연결하고 싶어").await;
    assert!(reply(KIM).await.contains("Gmail이 설정되어 있지 않아"));

    say(&app, JANE, "status").await;
    let r = reply(JANE).await;
    assert!(r.contains("Conversations stored: 4") && r.contains("Memory (ChromaDB): on"), "{r}");
    say(&app, KIM, "상태").await;
    assert!(reply(KIM).await.contains("저장된 대화: 4건"));

    say(&app, JANE, "Tell me a joke about penguins").await;
    let r = reply(JANE).await;
    assert!(r.starts_with("Got it, Jane") && r.contains("No language model"), "{r}");
    say(&app, KIM, "펭귄 농담 해줘").await;
    assert!(reply(KIM).await.starts_with("김종태님, 메시지를 저장해 두었어요."));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_collection_of_another_dimension_is_refused_not_mixed() {
    let chroma = Chroma::start().await;
    chroma
        .create_collection(
            &format!("robeing_memory_{JANE}"),
            serde_json::json!({ "embedder": "openai-compatible:text-embedding-3-small", "dimension": 1536 }),
        )
        .await;
    let app = app(Some(&chroma), None, &[]).await;
    let m = say(&app, JANE, "hello").await;
    assert_eq!(exchange(&app, &m).await.status, "replied", "the reply does not depend on memory");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let error = loop {
        let e: Option<String> = sqlx::query_scalar("SELECT last_error FROM jobs WHERE kind = 'memory_upsert'")
            .fetch_one(&app.db)
            .await
            .unwrap();
        if e.is_some() || tokio::time::Instant::now() > deadline {
            break e.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("1536-dimensional") && error.contains("384 dimensions"), "{error}");
    assert!(error.contains("Fix: set CHROMA_COLLECTION"), "{error}");
    assert_eq!(chroma.count().await, 0, "nothing was mixed in");
    assert!(exchange(&app, &m).await.memorized_at.is_none());
    app.stop().await.unwrap();
}

/// A 384-dimensional unit vector along axis `i`.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 384];
    v[i % 384] = 1.0;
    v
}

#[tokio::test]
async fn the_shared_collection_of_an_earlier_version_is_moved_into_per_user_collections_at_start() {
    let chroma = Chroma::start().await;
    // An earlier robeing's state: exchanges in Postgres, their records in one
    // shared collection filtered by user_id, no per-user collections yet.
    let before = app(Some(&chroma), None, &[]).await;
    say(&before, JANE, "I live in Busan").await;
    say(&before, JANE, "My cat is called Nabi").await;
    say(&before, BOB, "I like tea").await;
    for user in [JANE, BOB] {
        wait_memorized(&before, user, Duration::from_secs(60)).await;
    }
    let db_url = before.db_url.clone().unwrap();
    before.stop().await.unwrap();
    for user in [JANE, BOB] {
        chroma.delete_collection(&format!("robeing_memory_{user}")).await;
    }
    let shared = chroma
        .create_collection(
            "robeing_memory",
            serde_json::json!({ "embedder": "robeing-hashed-ngrams-v1", "dimension": 384, "created_by": "robeing" }),
        )
        .await;
    let mut legacy = Vec::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    for user in [JANE, BOB] {
        rows.extend(
            sqlx::query_as::<_, (uuid::Uuid,)>("SELECT id FROM exchanges WHERE user_id = $1")
                .bind(user)
                .fetch_all(&sqlx::PgPool::connect(&db_url).await.unwrap())
                .await
                .unwrap()
                .into_iter()
                .map(|(id,)| (user.to_owned(), id.to_string())),
        );
    }
    assert_eq!(rows.len(), 3);
    for (i, (user, id)) in rows.iter().enumerate() {
        legacy.push((id.clone(), axis(i), format!("legacy document {i}"), serde_json::json!({ "user_id": user })));
    }
    // A record whose exchange was forgotten after it was stored: it must not come back.
    let forgotten = uuid::Uuid::new_v4().to_string();
    legacy.push((forgotten.clone(), axis(9), "forgotten".into(), serde_json::json!({ "user_id": JANE })));
    chroma.upsert(&shared, &legacy).await;

    // The new version starts on the same database and ChromaDB.
    let after = app(Some(&chroma), None, &[("DATABASE_URL", &db_url)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while chroma.collection_named("robeing_memory").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the shared collection was not retired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut moved = chroma.records_of(JANE).await;
    moved.sort();
    let mut want: Vec<(String, String)> =
        legacy[..3].iter().filter(|r| r.3["user_id"] == JANE).map(|r| (r.0.clone(), r.2.clone())).collect();
    want.sort();
    assert_eq!(moved, want, "Jane's records moved as they were (not re-embedded), the forgotten one dropped");
    assert_eq!(chroma.records_of(BOB).await.len(), 1);
    assert_eq!(chroma.count().await, 3, "nothing else anywhere");
    // Recall searches the moved records.
    let hits = after.state.memory.as_ref().unwrap().recall(JANE, "anything", 5).await.unwrap();
    let mut hit_ids: Vec<String> = hits.into_iter().map(|h| h.id).collect();
    hit_ids.sort();
    assert_eq!(hit_ids, want.iter().map(|w| w.0.clone()).collect::<Vec<_>>());
    after.stop().await.unwrap();
}

#[tokio::test]
async fn a_collection_made_with_chromas_default_settings_is_given_robeings_sync_threshold() {
    let chroma = Chroma::start().await;
    let name = format!("robeing_memory_{JANE}");
    chroma
        .create_collection(
            &name,
            serde_json::json!({ "embedder": "robeing-hashed-ngrams-v1", "dimension": 384, "created_by": "robeing" }),
        )
        .await;
    let threshold = |c: Value| c["configuration_json"]["hnsw"]["sync_threshold"].as_u64();
    let before = threshold(chroma.collection_named(&name).await.unwrap());
    assert!(
        before.is_some() && before != Some(robeing::memory::HNSW_SYNC_THRESHOLD),
        "ChromaDB's own default: {before:?}"
    );

    let app = app(Some(&chroma), None, &[]).await;
    say(&app, JANE, "remember the milk").await;
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    assert_eq!(chroma.records_of(JANE).await.len(), 1, "the write went into the existing collection");
    assert_eq!(threshold(chroma.collection_named(&name).await.unwrap()), Some(robeing::memory::HNSW_SYNC_THRESHOLD));
    app.stop().await.unwrap();

    // ChromaDB keeps the change: it applies it from its next start.
    let mut chroma = chroma;
    chroma.stop().await;
    chroma.restart().await;
    assert_eq!(threshold(chroma.collection_named(&name).await.unwrap()), Some(robeing::memory::HNSW_SYNC_THRESHOLD));
    assert_eq!(chroma.records_of(JANE).await.len(), 1);
}

#[tokio::test]
async fn a_collection_named_like_the_prefix_that_robeing_did_not_make_is_left_alone() {
    let chroma = Chroma::start().await;
    let theirs = chroma.create_collection("robeing_memory", serde_json::json!({ "owner": "someone else" })).await;
    chroma.upsert(&theirs, &[("x1".into(), axis(1), "not ours".into(), serde_json::json!({ "k": "v" }))]).await;
    let app = app(Some(&chroma), None, &[]).await;
    let memory = app.state.memory.clone().unwrap();
    assert_eq!(memory.retire_shared_collection(&app.db).await.unwrap(), robeing::memory::Retired::NotOurs);
    assert_eq!(chroma.records_in(&theirs).await.len(), 1, "their record stays");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_shared_collection_of_another_dimension_is_left_in_place_with_an_error() {
    let chroma = Chroma::start().await;
    let shared = chroma
        .create_collection(
            "robeing_memory",
            serde_json::json!({ "embedder": "openai-compatible:big", "dimension": 3, "created_by": "robeing" }),
        )
        .await;
    chroma
        .upsert(&shared, &[("x1".into(), vec![1.0, 0.0, 0.0], "old".into(), serde_json::json!({ "user_id": JANE }))])
        .await;
    let app = app(Some(&chroma), None, &[]).await;
    let memory = app.state.memory.clone().unwrap();
    let error = format!("{:#}", memory.retire_shared_collection(&app.db).await.unwrap_err());
    assert!(error.contains("left in place") && error.contains("3-dimensional"), "{error}");
    assert_eq!(chroma.records_in(&shared).await.len(), 1, "nothing moved or deleted");
    assert!(chroma.collection_of(JANE).await.is_none(), "no collection made with the old vectors");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn embeddings_come_from_an_openai_compatible_api_when_configured() {
    let chroma = Chroma::start().await;
    let embeddings = Recorder::start(std::sync::Arc::new(|r: &Recorded| {
        let n = r.json()["input"].as_array().map(Vec::len).unwrap_or(0);
        let data: Vec<Value> = (0..n)
            .map(|i| serde_json::json!({ "object": "embedding", "index": i, "embedding": [0.6, 0.8, 0.0] }))
            .collect();
        crate::fakes::recorder::Scripted::json(
            200,
            serde_json::json!({ "object": "list", "data": data, "model": "embed-test", "usage": { "prompt_tokens": 3, "total_tokens": 3 } }),
        )
    }))
    .await;
    let base = embeddings.url("/v1");
    let app = app(
        Some(&chroma),
        None,
        &[("EMBEDDING_BASE_URL", &base), ("EMBEDDING_MODEL", "embed-test"), ("EMBEDDING_API_KEY", "emb-key-1")],
    )
    .await;
    say(&app, JANE, "remember the milk").await;
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    let collection = chroma.collection_of(JANE).await.unwrap();
    assert_eq!(collection["metadata"]["embedder"], "openai-compatible:embed-test");
    assert_eq!(collection["metadata"]["dimension"], 3);
    let calls = embeddings.requests_to("/v1/embeddings");
    assert_eq!(calls.len(), 1, "one document embedded");
    assert_eq!(calls[0].json()["model"], "embed-test");
    assert_eq!(calls[0].headers["authorization"], "Bearer emb-key-1");
    assert!(calls[0].json()["input"][0].as_str().unwrap().starts_with("user: remember the milk"));
    assert_eq!(chroma.records_of(JANE).await.len(), 1);
    app.stop().await.unwrap();
}

/// Pids of processes whose command line contains `needle`.
fn pids_matching(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{name}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(name);
        }
    }
    out
}

/// Where the benchmark's CPU goes: this process (robeing plus the in-process
/// fake Slack and LLM), the Postgres backends serving its database, and
/// ChromaDB's server process, each in CPU seconds so far.
#[derive(Clone, Copy, Default)]
struct Cpu {
    app: f64,
    postgres: f64,
    chroma: f64,
}

async fn cpu_now(app: &TestApp, chroma_port: Option<u16>) -> Cpu {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    Cpu {
        app: procfs::cpu_secs("self"),
        postgres: pids.iter().map(|p| procfs::cpu_secs(&p.to_string())).sum(),
        chroma: chroma_port
            .map(|port| pids_matching(&format!("--port\0{port}")).iter().map(|p| procfs::cpu_secs(p)).sum())
            .unwrap_or(0.0),
    }
}

/// The conversation benchmark (docs/benchmarks.md, "Conversation"). Not a
/// test of speed (nothing is asserted about time); run it with
/// `cargo test --release --test api bench_conversation -- --ignored --nocapture`.
/// `BENCH_CHROMA=off` or `on` runs one setup only (default: both). Each
/// message comes in its own DM channel: the Slack client paces a channel at
/// Slack's one message per second, which would otherwise be all it measures;
/// history and memory are per user, so they are exercised as in one channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly with --ignored --nocapture"]
async fn bench_conversation() {
    use std::{sync::Arc, time::Instant};

    fn pct(sorted: &[Duration], p: f64) -> f64 {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i].as_secs_f64() * 1000.0
    }

    let setups = chroma_setups();
    let fake = llm::start().await;
    for chroma_on in setups {
        let (chroma, chroma_port, app) = bench_app(chroma_on, &fake).await;
        let users: Vec<String> = (0..50).map(|i| format!("U0BENCH{i:03}")).collect();
        for u in &users {
            add_user(&app, u, "Bench User", "bench", "Asia/Seoul", "en-US").await;
        }
        let phase_start = Instant::now();
        let mut total = 0usize;
        for (concurrent, per_user) in [(1usize, 1_000usize), (50, 60)] {
            let load = procfs::load_average();
            let cpu0 = cpu_now(&app, chroma_port).await;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for u in users.iter().take(concurrent) {
                let state = app.state.clone();
                let u = u.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_user);
                    let phase = Instant::now();
                    for k in 0..per_user {
                        let mut m =
                            dm(&u, &format!("benchmark message {k}: what should I remember about the weather?"));
                        // A channel per message: the Slack client paces each channel at Slack's
                        // 1 message/s, which would otherwise be all this measures.
                        m.channel_id = format!("D0B{}", m.ts.replace('.', ""));
                        let t = Instant::now();
                        if let Err(e) = handle_message(&state, &m, None).await {
                            return Err(format!("{u}'s message {k} after {:?}: {e:?}", t.elapsed()));
                        }
                        lat.push(t.elapsed());
                        if k % 250 == 249 {
                            println!(
                                "BENCH progress {u}: {} messages in {:.1} s",
                                k + 1,
                                phase.elapsed().as_secs_f64()
                            );
                        }
                    }
                    Ok(lat)
                }));
            }
            let mut lat: Vec<Duration> = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    Ok(l) => lat.extend(l),
                    Err(e) => {
                        // Say why the application stopped under the benchmark, if it did.
                        let app_ended = app.task.is_finished();
                        let ended_with = if app_ended { format!("{:?}", app.task.await) } else { "running".into() };
                        panic!("benchmark exchange failed: {e}; application: {ended_with}");
                    }
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            let cpu1 = cpu_now(&app, chroma_port).await;
            lat.sort();
            total += lat.len();
            let n = lat.len() as f64;
            let per = |a: f64, b: f64| (b - a) / n * 1e6;
            println!(
                "BENCH chroma={chroma_on} users={concurrent} exchanges={} secs={elapsed:.2} rate={:.0}/s p50={:.1}ms p99={:.1}ms max={:.1}ms \
                 cpu_us_per_exchange app={:.0} postgres={:.0} chroma={:.0} load=[{load}]->[{}]",
                lat.len(),
                n / elapsed,
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                pct(&lat, 1.0),
                per(cpu0.app, cpu1.app),
                per(cpu0.postgres, cpu1.postgres),
                per(cpu0.chroma, cpu1.chroma),
                procfs::load_average(),
            );
        }
        if let Some(chroma) = &chroma {
            // The memory backlog the replies left behind, drained by the job workers.
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let pending: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'memory_upsert' AND state <> 'done'")
                        .fetch_one(&app.db)
                        .await
                        .unwrap();
                if pending == 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let elapsed = phase_start.elapsed().as_secs_f64();
            println!(
                "BENCH memory: {} exchanges in ChromaDB {elapsed:.2} s after the first message ({:.0}/s end to end)",
                chroma.count().await,
                total as f64 / elapsed
            );
            // Raw upserts through robeing's memory client (embed + upsert), 16 at a time.
            let memory = app.state.memory.clone().unwrap();
            let ids: Vec<uuid::Uuid> = robeing::storage::exchanges::all_for_user(&app.db, &users[0])
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            let rows = Arc::new(robeing::storage::exchanges::get_by_ids(&app.db, &ids).await.unwrap());
            let started = Instant::now();
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (memory, rows, next) = (memory.clone(), rows.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(e) = rows.get(i) else { break };
                        memory.remember(e).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "BENCH upsert: {} single-record upserts (16 concurrent) in {elapsed:.2} s = {:.0}/s",
                rows.len(),
                rows.len() as f64 / elapsed
            );
        }
        app.stop().await.unwrap();
    }
}

/// The conversation through the outbox, as in production (docs/benchmarks.md,
/// "Conversation", "through the outbox"): DM events are committed with their
/// `slack_event` jobs exactly as the transport's ingest commits them (group
/// commit, `storage::events::record_batch`), and the running
/// application's job workers do the rest — claim, read the event, store the
/// exchange with its history, ask the (fake) LLM, post to the (fake) Slack,
/// mark it replied (with its `memory_upsert` job), record the job done, and
/// with ChromaDB on, memorize it. Two phases per setup: a burst of 3,000
/// events (50 users) drained as fast as the workers go (throughput, CPU per
/// exchange), then 3,000 events fed at a steady rate of 70 % of that burst
/// rate in groups every 10 ms (event-to-reply latency: the exchange's
/// `replied_at` minus its event's `received_at`, both Postgres clocks). An
/// exchange counts when it is replied and, with ChromaDB, memorized.
/// `cargo test --release --test api bench_outbox_conversation -- --ignored --nocapture`
/// (`BENCH_CHROMA=off|on` as for `bench_conversation`; `BENCH_PACE=N` feeds
/// the paced phase at N events/s instead, to compare two builds' latency at
/// one rate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly with --ignored --nocapture"]
async fn bench_outbox_conversation() {
    use std::time::Instant;

    use robeing::storage::events::{NewEvent, record_batch};

    const USERS: usize = 50;
    const EVENTS: usize = 3_000;
    let setups = chroma_setups();
    let fake = llm::start().await;
    for chroma_on in setups {
        let (_chroma, chroma_port, app) = bench_app(chroma_on, &fake).await;
        let users: Vec<String> = (0..USERS).map(|i| format!("U0OUTBX{i:03}")).collect();
        for u in &users {
            add_user(&app, u, "Bench User", "bench", "Asia/Seoul", "en-US").await;
        }
        let events = |phase: usize| -> Vec<NewEvent> {
            (0..EVENTS)
                .map(|k| {
                    let mut m = dm(
                        &users[k % USERS],
                        &format!("outbox message {phase}/{k}: what should I remember about the weather?"),
                    );
                    // A channel per message (see bench_conversation).
                    m.channel_id = format!("D0O{}", m.ts.replace('.', ""));
                    NewEvent {
                        event_id: m.event_id.clone(),
                        team_id: Some(m.team_id.clone()),
                        kind: "message".into(),
                        source: "http",
                        retry_num: None,
                        payload: event_payload(&m),
                    }
                })
                .collect()
        };
        // Everything stored: replied and, with ChromaDB, memorized.
        let stored = |app: &TestApp| {
            let db = app.db.clone();
            async move {
                let sql = if chroma_on {
                    "SELECT count(*) FROM exchanges WHERE memorized_at IS NOT NULL"
                } else {
                    "SELECT count(*) FROM exchanges WHERE status = 'replied'"
                };
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await.unwrap() as usize
            }
        };
        let mut burst_rate = 0.0;
        for (phase, paced) in [(0usize, false), (1, true)] {
            let batch = events(phase);
            let done_before = stored(&app).await;
            let load = procfs::load_average();
            let cpu0 = cpu_now(&app, chroma_port).await;
            let started = Instant::now();
            // BENCH_PG_SAMPLE=1: what the database's backends are busy with,
            // sampled every 10 ms (a statement-level profile without
            // pg_stat_statements).
            let sampling = tokio_util::sync::CancellationToken::new();
            let sampler = (std::env::var("BENCH_PG_SAMPLE").as_deref() == Ok("1")).then(|| {
                let (db, stop) = (app.db.clone(), sampling.clone());
                tokio::spawn(async move {
                    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
                    while !stop.is_cancelled() {
                        let rows: Vec<(String, String)> = sqlx::query_as(
                            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), COALESCE(wait_event_type || ':' || wait_event, 'CPU')
                             FROM pg_stat_activity
                             WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()",
                        )
                        .fetch_all(&db)
                        .await
                        .unwrap_or_default();
                        for (q, w) in rows {
                            *seen.entry(format!("{w:<24} {q}")).or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let mut top: Vec<_> = seen.into_iter().collect();
                    top.sort_by_key(|b| std::cmp::Reverse(b.1));
                    top.truncate(15);
                    top
                })
            });
            if paced {
                // Groups every 10 ms at the paced rate.
                let rate = pace(burst_rate);
                let mut sent = 0usize;
                while sent < batch.len() {
                    let due = ((started.elapsed().as_secs_f64() * rate) as usize).clamp(sent, batch.len());
                    if due > sent {
                        let group: Vec<&NewEvent> = batch[sent..due].iter().collect();
                        record_batch(&app.db, &group).await.unwrap();
                        app.state.wake_workers.notify_one();
                        sent = due;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            } else {
                for chunk in batch.chunks(500) {
                    let group: Vec<&NewEvent> = chunk.iter().collect();
                    record_batch(&app.db, &group).await.unwrap();
                    app.state.wake_workers.notify_one();
                }
            }
            let deadline = Instant::now() + Duration::from_secs(900);
            while stored(&app).await < done_before + EVENTS {
                assert!(Instant::now() < deadline, "the outbox did not drain within 15 minutes");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let cpu1 = cpu_now(&app, chroma_port).await;
            sampling.cancel();
            if let Some(sampler) = sampler {
                for (what, n) in sampler.await.unwrap() {
                    println!("BENCH pg busy samples {n:>6}  {what}");
                }
            }
            let ids: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
            let (p50, p99): (f64, f64) = sqlx::query_as(
                "SELECT (percentile_cont(0.5) WITHIN GROUP (ORDER BY d)) * 1000, (percentile_cont(0.99) WITHIN GROUP (ORDER BY d)) * 1000
                 FROM (SELECT EXTRACT(EPOCH FROM x.replied_at - e.received_at)::float8 AS d
                       FROM exchanges x JOIN slack_events e ON e.event_id = x.event_id
                       WHERE x.event_id = ANY($1)) t",
            )
            .bind(&ids)
            .fetch_one(&app.db)
            .await
            .unwrap();
            let replied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM exchanges WHERE event_id = ANY($1) AND status = 'replied'")
                    .bind(&ids)
                    .fetch_one(&app.db)
                    .await
                    .unwrap();
            assert_eq!(replied as usize, EVENTS, "every event became one replied exchange");
            let rate = EVENTS as f64 / elapsed;
            if !paced {
                burst_rate = rate;
            }
            let per = |a: f64, b: f64| (b - a) / EVENTS as f64 * 1e6;
            println!(
                "BENCH outbox chroma={chroma_on} {} users={USERS} exchanges={EVENTS} secs={elapsed:.2} rate={rate:.0}/s \
                 event_to_reply p50={p50:.1}ms p99={p99:.1}ms cpu_us_per_exchange app={:.0} postgres={:.0} chroma={:.0} load=[{load}]->[{}]",
                if paced { format!("paced at {:.0}/s", pace(burst_rate)) } else { "burst".to_owned() },
                per(cpu0.app, cpu1.app),
                per(cpu0.postgres, cpu1.postgres),
                per(cpu0.chroma, cpu1.chroma),
                procfs::load_average(),
            );
        }
        app.stop().await.unwrap();
    }
}

/// The paced phase's rate: `BENCH_PACE` events/s, or 70 % of the burst's.
fn pace(burst_rate: f64) -> f64 {
    std::env::var("BENCH_PACE").ok().and_then(|v| v.parse().ok()).unwrap_or(burst_rate * 0.7)
}

#[tokio::test]
async fn a_slow_llm_reply_shows_a_placeholder_that_is_updated_in_place() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::answer("Here is a considered answer.").delayed(Duration::from_millis(2_500))]);
    let app = app(None, Some(&fake), &[]).await;
    let m = say(&app, JANE, "Think hard about this").await;
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!((writes[0].path.as_str(), text_of(&writes[0]).as_str()), ("/api/chat.postMessage", "…"));
    assert_eq!(writes[1].path, "/api/chat.update");
    assert_eq!(text_of(&writes[1]), "Here is a considered answer.");
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    assert_eq!(writes[1].param("ts"), row.reply_ts, "the update targets the placeholder, whose ts is the reply's");
    assert_eq!(fake.requests_to(llm::PATH).len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_workers_on_the_same_message_reply_once() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::answer("only once").delayed(Duration::from_millis(800))]);
    let app = app(None, Some(&fake), &[]).await;
    let m = dm(JANE, "are you there?");
    let (first, second) = tokio::join!(handle_message(&app.state, &m, None), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        handle_message(&app.state, &m, None).await
    });
    first.unwrap();
    match second {
        Err(robeing::jobs::JobError::Retry { after: Some(_), .. }) => {}
        other => panic!("the second worker must back off while the first replies: {other:?}"),
    }
    // Its retry finds the exchange answered.
    handle_message(&app.state, &m, None).await.unwrap();
    let writes = writes_to(&app, &channel_of(JANE));
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(text_of(&writes[0]), "only once");
    assert_eq!(fake.requests_to(llm::PATH).len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_dm_whose_job_dies_before_it_is_stored_still_gets_an_apology() {
    let app = app(None, None, &[]).await;
    // A sender robeing never managed to store (Slack keeps rate-limiting
    // the first-contact `users.info`): the exchange cannot be written.
    let mut m = dm("U0GHOST01", "하이");
    m.channel_id = "D0GHOST01".into();
    record_event(&app, &m).await;
    app.slack.script(
        "/api/users.info",
        [Scripted::json(429, serde_json::json!({ "ok": false, "error": "ratelimited" }))
            .with_header("Retry-After", "120")],
    );
    let err = handle_message(&app.state, &m, None).await.expect_err("no user row");
    assert!(matches!(err, robeing::jobs::JobError::Retry { .. }), "{err:?}");
    assert_eq!(app.slack.requests_to("/api/users.info").len(), 1, "first contact asks Slack who the sender is");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM exchanges WHERE user_id = 'U0GHOST01'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing is stored for a sender without a user row");
    // The job runner's dead-job hook (the runner path itself is exercised by
    // the LLM-timeout test; here the hook is called as the runner calls it).
    conversation::on_event_dead(&app.state, &m.event_id, &anyhow::anyhow!("user U0GHOST01 is not stored yet")).await;
    let posts = app.slack.wait_for("/api/chat.postMessage", 1, Duration::from_secs(20)).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].param("channel").as_deref(), Some("D0GHOST01"));
    assert!(text_of(&posts[0]).starts_with("죄송해요"), "{}", text_of(&posts[0]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.slack.requests_to("/api/chat.postMessage").len(), 1, "one apology, nothing else");
    app.stop().await.unwrap();
}

/// The same, with Slack not taking the apology at first: it waits in the
/// outbox and is posted once when Slack takes it.
#[tokio::test]
async fn a_dm_never_stored_gets_its_apology_once_slack_takes_it() {
    let app = app(None, None, &[]).await;
    let mut m = dm("U0GHOST02", "hello?");
    m.channel_id = "D0GHOST02".into();
    record_event(&app, &m).await;
    app.slack.script("/api/chat.postMessage", [slack_unavailable(), slack_unavailable()]);
    conversation::on_event_dead(&app.state, &m.event_id, &anyhow::anyhow!("user U0GHOST02 is not stored yet")).await;
    let key = format!("apology:event:{}", m.event_id);
    let (state, attempts) = job_finished(&app, &key, Duration::from_secs(20)).await;
    assert_eq!((state.as_str(), attempts), ("done", 2), "failed once while Slack was down, then posted");
    let posts = app.slack.requests_to("/api/chat.postMessage");
    assert_eq!(posts.len(), 3, "the apology at once and its first retry failed; the second went out");
    assert_eq!(posts[2].param("channel").as_deref(), Some("D0GHOST02"));
    assert!(text_of(&posts[2]).starts_with("Sorry, I could not reply"), "{}", text_of(&posts[2]));
    assert!(
        !app.slack.requests_to("/api/conversations.history").is_empty(),
        "the retry looked for an apology posted before posting"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn forgetting_while_chroma_is_down_finishes_when_it_returns() {
    let mut chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    say(&app, JANE, "my passport number is X1234567").await;
    say(&app, BOB, "I like trains").await;
    wait_memorized(&app, JANE, Duration::from_secs(60)).await;
    wait_memorized(&app, BOB, Duration::from_secs(60)).await;

    chroma.stop().await;
    conversation::handle_forget_action(&app.state, JANE, true).await.unwrap();
    assert!(exchanges_of(&app, JANE).await.is_empty(), "Postgres forgets at once");
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'memory_forget' AND state IN ('queued', 'running')")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(queued, 1, "the ChromaDB deletion waits, durably");

    chroma.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !chroma.records_of(JANE).await.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(chroma.records_of(JANE).await.is_empty(), "Jane's memory is gone once ChromaDB is back");
    assert_eq!(chroma.records_of(BOB).await.len(), 1, "Bob's stays");
    app.stop().await.unwrap();
}

/// The benchmarks' setups: without and with ChromaDB, or the one
/// `BENCH_CHROMA=off|on` names.
fn chroma_setups() -> Vec<bool> {
    match std::env::var("BENCH_CHROMA").as_deref() {
        Ok("off") => vec![false],
        Ok("on") => vec![true],
        _ => vec![false, true],
    }
}

/// A benchmark's application with the fake LLM, and ChromaDB (with its
/// port, for its CPU readings) when `chroma_on`.
async fn bench_app(chroma_on: bool, llm: &Recorder) -> (Option<Chroma>, Option<u16>, TestApp) {
    let chroma = if chroma_on { Some(Chroma::start().await) } else { None };
    let chroma_port = chroma.as_ref().and_then(|c| c.url().rsplit(':').next().and_then(|p| p.parse().ok()));
    let app = app(chroma.as_ref(), Some(llm), &[]).await;
    (chroma, chroma_port, app)
}

/// The inbound event of `m`, stored as a worker holds it while handling it
/// (running, leased far ahead, so the app's own runner leaves it alone).
async fn record_event_in_hand(app: &TestApp, m: &DirectMessage) {
    sqlx::query(
        "INSERT INTO slack_events (event_id, team_id, kind, source, payload, state, attempts, locked_until)
         VALUES ($1, $2, 'message', 'http', $3, 'running', 1, now() + interval '1 hour')",
    )
    .bind(&m.event_id)
    .bind(&m.team_id)
    .bind(event_payload(m))
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dms_handled_together_are_stored_and_recorded_together_each_exactly_once() {
    let app = std::sync::Arc::new(app(None, None, &[]).await);
    let users = [KIM, JANE, BOB];
    // Ten DMs per user, three users: within each channel's burst of three
    // posts a second, so nothing waits for Slack's pacing.
    let messages: Vec<DirectMessage> = (0..30)
        .map(|i| {
            let mut m = dm(users[i % 3], &format!("help {i}"));
            m.channel_id = format!("D0GROUP{i:03}");
            m
        })
        .collect();
    for m in &messages {
        record_event_in_hand(&app, m).await;
    }
    let handled = futures_util::future::join_all(messages.iter().map(|m| {
        let app = app.clone();
        let m = m.clone();
        tokio::spawn(async move { handle_message(&app.state, &m, Some(&m.event_id)).await })
    }))
    .await;
    for h in handled {
        assert!(matches!(h.unwrap(), Ok(robeing::jobs::Done::Recorded)));
    }
    let ids: Vec<String> = messages.iter().map(|m| m.event_id.clone()).collect();
    let (replied, with_ts, groups, stored_groups): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE x.status = 'replied'), count(x.reply_ts), count(DISTINCT x.replied_at),
                count(DISTINCT x.received_at)
         FROM exchanges x WHERE x.event_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((replied, with_ts), (30, 30), "every DM replied once and recorded with its ts");
    // A group's statement stamps all its replies with one `now()`.
    assert!(groups < 30, "30 replies posted at once were recorded in {groups} separate commits");
    // Likewise the statement that stores the messages (`received_at` is its `now()`).
    assert!(stored_groups < 30, "30 DMs taken up at once were stored in {stored_groups} separate commits");
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_events WHERE event_id = ANY($1) AND state = 'done'")
        .bind(&ids)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(done, 30, "each reply's statement records its event handled");
    let posts = app.slack.requests().into_iter().filter(|r| r.path == "/api/chat.postMessage").count();
    assert_eq!(posts, 30);
    std::sync::Arc::try_unwrap(app).ok().unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_reply_group_marks_only_waiting_exchanges_and_queues_only_their_jobs() {
    use robeing::storage::exchanges::{FollowUp, ReplyRecord, mark_replied_many};

    let app = app(None, None, &[]).await;
    // Three stored DMs: two still waiting for a reply, one answered already.
    let (waiting, plain, answered) = (dm(KIM, "one"), dm(JANE, "two"), dm(BOB, "three"));
    for m in [&waiting, &plain, &answered] {
        record_event_in_hand(&app, m).await;
        sqlx::query(
            "INSERT INTO exchanges (user_id, channel_id, user_ts, user_text, event_id, status, reply_text, reply_ts, replied_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&m.user_id)
        .bind(&m.channel_id)
        .bind(&m.ts)
        .bind(&m.text)
        .bind(&m.event_id)
        .bind(if m.ts == answered.ts { "replied" } else { "received" })
        .bind((m.ts == answered.ts).then_some("the first answer"))
        .bind((m.ts == answered.ts).then_some("1764300000.900001"))
        .bind((m.ts == answered.ts).then(chrono::Utc::now))
        .execute(&app.db)
        .await
        .unwrap();
    }
    let record = |m: &DirectMessage, id: uuid::Uuid, memorize: bool| ReplyRecord {
        id,
        reply_text: format!("reply to {}", m.text),
        reply_ts: format!("1764300001.{}", &m.ts[11..]),
        follow_up: memorize.then(|| FollowUp {
            kind: "memory_upsert",
            dedupe_key: format!("memory:{id}"),
            payload: serde_json::json!({ "exchange_id": id }),
        }),
        event_id: Some(m.event_id.clone()),
        kept_out_of_memory: !memorize,
    };
    let records = [
        record(&waiting, exchange(&app, &waiting).await.id, true),
        record(&plain, exchange(&app, &plain).await.id, false),
        record(&answered, exchange(&app, &answered).await.id, true),
    ];
    let marked = mark_replied_many(&app.db, &records.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(marked, [records[0].id, records[1].id].into_iter().collect());

    let rows: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT status, reply_text, kept_out_of_memory FROM exchanges WHERE id = ANY($1) ORDER BY array_position($1, id)",
    )
    .bind(records.iter().map(|r| r.id).collect::<Vec<_>>())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("replied".to_owned(), Some("reply to one".to_owned()), false),
            ("replied".to_owned(), Some("reply to two".to_owned()), true),
            ("replied".to_owned(), Some("the first answer".to_owned()), false),
        ],
        "the answered exchange keeps its first reply; the one without memory is recorded kept out of it"
    );
    let jobs: Vec<String> = sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE kind = 'memory_upsert'")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(jobs, [format!("memory:{}", records[0].id)], "a job only for the exchange marked with one");
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM slack_events WHERE event_id = ANY($1) ORDER BY event_id")
            .bind([&waiting.event_id, &plain.event_id, &answered.event_id])
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(states, ["done", "done", "done"], "every event recorded handled, marked or not");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_message_group_answers_each_message_in_order_new_once_existing_or_unknown() {
    use robeing::storage::exchanges::{HistoryWanted, Inserted, NewExchange, insert_many};

    use crate::slack_http::count;

    let app = app(None, None, &[]).await;
    // Kim has three replied exchanges already; Jane has none.
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let m = dm(KIM, text);
        sqlx::query(
            "INSERT INTO exchanges (user_id, channel_id, user_ts, user_text, status, reply_text, reply_ts, replied_at, received_at)
             VALUES ($1, $2, $3, $4, 'replied', $5, $6, now(), now() - make_interval(mins => $7))",
        )
        .bind(&m.user_id)
        .bind(&m.channel_id)
        .bind(&m.ts)
        .bind(text)
        .bind(format!("reply to {text}"))
        .bind(format!("1764300009.00000{i}"))
        .bind(10 - i as i32)
        .execute(&app.db)
        .await
        .unwrap();
    }
    let stored_before = dm(JANE, "stored before");
    let new = |m: &DirectMessage, limit: i64| NewExchange {
        user_id: m.user_id.clone(),
        channel_id: m.channel_id.clone(),
        thread_ts: None,
        user_ts: m.ts.clone(),
        user_text: m.text.clone(),
        user_files: Vec::new(),
        event_id: None,
        wanted: HistoryWanted { limit, memorized_beyond: true },
    };
    insert_many(&app.db, &[&new(&stored_before, 0)], 60.0).await.unwrap();

    let (kim, jane, stranger) = (dm(KIM, "four"), dm(JANE, "hello"), dm("U0STRANGER", "who?"));
    let group = [new(&kim, 2), new(&jane, 0), new(&stored_before, 0), new(&stranger, 5), new(&kim, 2)];
    let answers = insert_many(&app.db, &group.iter().collect::<Vec<_>>(), 60.0).await.unwrap();
    assert_eq!(answers.len(), 5, "one answer per message");
    match &answers[0] {
        Inserted::New(user, exchange, history) => {
            assert_eq!(user.user_id, KIM);
            assert_eq!(exchange.user_text, "four");
            let past: Vec<&str> = history.past.iter().map(|p| p.user_text.as_str()).collect();
            assert_eq!(past, ["three", "two"], "the latest replied exchanges, newest first, as many as asked");
            assert!(!history.memorized_beyond, "nothing of Kim's is in ChromaDB");
        }
        other => panic!("Kim's new message: {other:?}"),
    }
    match &answers[1] {
        Inserted::New(user, exchange, history) => {
            assert_eq!((user.user_id.as_str(), exchange.user_text.as_str()), (JANE, "hello"));
            assert!(history.past.is_empty(), "no history asked for");
        }
        other => panic!("Jane's new message: {other:?}"),
    }
    assert!(
        matches!(&answers[2], Inserted::Existing(user, _) if user.user_id == JANE),
        "stored before: {:?}",
        answers[2]
    );
    assert!(matches!(answers[3], Inserted::UnknownUser), "a sender who is not stored: {:?}", answers[3]);
    assert!(
        matches!(&answers[4], Inserted::Existing(user, _) if user.user_id == KIM),
        "the same message twice in one group is new only once: {:?}",
        answers[4]
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM exchanges WHERE user_text = 'four'").await, 1);
    assert_eq!(count(&app.db, "SELECT count(*) FROM exchanges WHERE user_id = 'U0STRANGER'").await, 0);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM exchanges WHERE status = 'received' AND reply_claimed_until > now()")
            .await,
        3,
        "each new message is claimed (the one stored before as well)"
    );
    app.stop().await.unwrap();
}

/// Exchanges stored before `kept_out_of_memory` existed: the migration that
/// adds it recognises the replies kept out of memory until then (the forget
/// confirmation and export intros, in both languages, as the version before
/// it worded them), and no other exchange.
#[tokio::test]
async fn the_migration_recognises_replies_kept_out_of_memory_before_it_existed() {
    use robeing::i18n::{Lang, chat};
    let (url, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    robeing::storage::MIGRATOR.run_to(20261130000000, &pool).await.unwrap();
    users::ensure_team(&pool, TEAM_ID).await.unwrap();
    users::upsert_profile(&pool, TEAM_ID, BOB, &Profile::default()).await.unwrap();
    let replies = [
        (chat::forget_prompt(Lang::Ko).to_owned(), true, true),
        (chat::forget_prompt(Lang::En).to_owned(), true, true),
        // The export intros of that version (exports were messages then).
        ("대화 기록 내보내기: 12건을 다음 메시지 2개에 나눠 보내 드려요.".to_owned(), true, true),
        ("Your history export: 3 conversations, in the next 1 messages.".to_owned(), true, true),
        ("Your history export: memorized already".to_owned(), false, false),
        ("my cat is called Tom".to_owned(), true, false),
    ];
    for (i, (reply, waiting, _)) in replies.iter().enumerate() {
        sqlx::query(
            "INSERT INTO exchanges (user_id, channel_id, user_ts, user_text, reply_text, reply_ts, status, replied_at, memorized_at)
             VALUES ($1, 'D0BOB0001', $2, 'x', $3, $2, 'replied', now(), CASE WHEN $4 THEN NULL ELSE now() END)",
        )
        .bind(BOB)
        .bind(format!("1764300000.00000{i}"))
        .bind(reply)
        .bind(waiting)
        .execute(&pool)
        .await
        .unwrap();
    }
    robeing::storage::migrate(&pool).await.unwrap();
    let kept_out: Vec<bool> =
        sqlx::query_scalar("SELECT kept_out_of_memory FROM exchanges ORDER BY user_ts").fetch_all(&pool).await.unwrap();
    assert_eq!(kept_out, replies.iter().map(|(_, _, kept_out)| *kept_out).collect::<Vec<_>>());
    let memorized_and_kept_out =
        sqlx::query("UPDATE exchanges SET memorized_at = now() WHERE kept_out_of_memory").execute(&pool).await;
    assert!(memorized_and_kept_out.is_err(), "a reply kept out of memory cannot be memorized");
}

#[tokio::test]
async fn a_text_file_sent_alone_is_read_stored_remembered_recalled_and_exported() {
    let chroma = Chroma::start().await;
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(Some(&chroma), None, &[], slack).await;
    let notes = "11월 회의록\n\n다음 분기 예산은 3억 원으로 확정.\n담당: 박지민\n";
    let file = workspace.host_file(&base, "회의록.txt", "text/plain", notes.as_bytes());
    let m = dm_with_files(KIM, "", vec![file]);
    handle_message(&app.state, &m, None).await.unwrap();

    let reply = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert_eq!(
        reply,
        format!(
            "파일(\"회의록.txt\", {}자)을 읽고 기억해 두었어요. 나중에 \"…에 대해 뭐라고 했지?\" 하고 물어보시면 찾아 드릴게요.",
            notes.chars().count()
        )
    );
    let got = downloads(&app);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].path.ends_with("/download/%ED%9A%8C%EC%9D%98%EB%A1%9D.txt"),
        "url_private_download: {}",
        got[0].path
    );
    assert_eq!(got[0].headers["authorization"], format!("Bearer {BOT_TOKEN}"), "downloaded with the bot token");

    let (file_text, user_files, kept_out): (Option<String>, Vec<String>, bool) =
        sqlx::query_as("SELECT file_text, user_files, kept_out_of_memory FROM exchanges WHERE user_ts = $1")
            .bind(&m.ts)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(file_text.as_deref(), Some(format!("[file \"회의록.txt\"]\n{notes}").as_str()));
    assert_eq!((user_files, kept_out), (vec!["회의록.txt".to_owned()], false));
    wait_memorized(&app, KIM, Duration::from_secs(60)).await;
    let records = chroma.records_of(KIM).await;
    assert!(
        records.iter().any(|(_, doc)| doc.contains("3억 원으로 확정")),
        "memory holds the file's text: {records:?}"
    );

    // Asked later, the line of the file that says it comes back.
    say(&app, KIM, "예산에 대해 뭐라고 했지?").await;
    let recalled = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(recalled.starts_with("\"예산\"에 대해 예전에 이렇게 말씀하셨어요:"), "{recalled}");
    assert!(recalled.contains("[회의록.txt] 다음 분기 예산은 3억 원으로 확정."), "{recalled}");

    // And the export carries it.
    say(&app, KIM, "내보내기").await;
    let shared = files_shared(&app);
    assert_eq!(shared.len(), 1, "{shared:?}");
    let exported = uploaded(&app, &shared[0].1);
    assert!(exported.contains(&format!("나: [파일: 회의록.txt]\n[file \"회의록.txt\"]\n{notes}")), "{exported}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_llm_the_prompt_carries_the_text_of_the_files_read_and_the_reply_names_the_rest() {
    let fake = llm::start().await;
    fake.script(llm::PATH, [llm::answer("The plan: ship on Friday.")]);
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(None, Some(&fake), &[], slack).await;
    let plan = "# Plan\n- ship on Friday\n- <!channel> & friends\n";
    let notes = workspace.host_file(&base, "plan.md", "text/markdown", plan.as_bytes());
    let photo = workspace.host_file(&base, "photo.png", "image/png", b"\x89PNG\r\n\x1a\n");
    let mut big = workspace.host_file(&base, "big.log", "text/plain", b"2026-11-29 started\n");
    big["size"] = 2_000_000.into();
    let m = dm_with_files(JANE, "summarise these, please", vec![notes, photo, big]);
    handle_message(&app.state, &m, None).await.unwrap();

    let got = downloads(&app);
    assert_eq!(got.len(), 1, "only the text file within the limit is downloaded: {got:?}");
    assert!(got[0].path.ends_with("/plan.md"), "{}", got[0].path);
    let prompt = fake.requests_to(llm::PATH)[0].json();
    let last = prompt["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(last.starts_with("summarise these, please"), "{last}");
    assert!(last.contains(&format!("[The user sent the file \"plan.md\"; its text:]\n{plan}")), "{last}");
    assert!(last.contains("[The user attached the file \"photo.png\", which you cannot see (only its name).]"));
    assert!(last.contains("[The user attached the file \"big.log\", which you cannot see (only its name).]"));
    let reply = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert_eq!(
        reply,
        "The plan: ship on Friday.\n\n(I could not read \"photo.png\": not a text file, PDF, Office or Hangul document (I cannot read images and the like yet); \"big.log\": too large (I read text files up to 1 MB and documents up to 10 MB), so I answered from the rest.)"
    );
    assert_eq!(exchange(&app, &m).await.user_text, "summarise these, please", "the message is stored as typed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_named_with_why_and_the_bot_token_goes_nowhere_else() {
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(None, None, &[], slack).await;
    let send = |file: Value| {
        let app = &app;
        async move {
            let m = dm_with_files(JANE, "", vec![file]);
            handle_message(&app.state, &m, None).await.unwrap();
            let reply = text_of(writes_to(app, &channel_of(JANE)).last().unwrap());
            let file_text: Option<String> = sqlx::query_scalar("SELECT file_text FROM exchanges WHERE user_ts = $1")
                .bind(&m.ts)
                .fetch_one(&app.db)
                .await
                .unwrap();
            (reply, file_text)
        }
    };
    let cannot = |why: &str| {
        format!("I could not read what you sent (\"a.txt\": {why}). Write what you need in a message and I will help.")
    };

    // Installed before robeing asked for files:read: Slack serves its sign-in page.
    workspace.set_files_read(false);
    let (reply, stored) = send(workspace.host_file(&base, "a.txt", "text/plain", b"hello")).await;
    assert_eq!(
        reply,
        cannot(
            "I am not allowed to read files in this workspace (the app lacks the files:read permission; ask your Slack admin to reinstall it)"
        )
    );
    assert_eq!(stored, None);
    workspace.set_files_read(true);

    // Slack failing once is tried again; failing twice is said.
    workspace.fail_downloads(1);
    let (reply, stored) = send(workspace.host_file(&base, "a.txt", "text/plain", b"hello again")).await;
    assert!(reply.starts_with("I read \"a.txt\" (11 characters)"), "{reply}");
    assert_eq!(stored.as_deref(), Some("[file \"a.txt\"]\nhello again"));
    workspace.fail_downloads(2);
    let (reply, stored) = send(workspace.host_file(&base, "a.txt", "text/plain", b"hello")).await;
    assert_eq!(reply, cannot("Slack did not hand it over just now; send it again in a moment"));
    assert_eq!(stored, None);

    // Bytes that are no text; a Korean Windows text file (EUC-KR) is read.
    let binary = [0x89, b'P', b'N', b'G', 0xFF, 0xFF, 0x00, 0xC8];
    let (reply, _) = send(workspace.host_file(&base, "a.txt", "text/plain", &binary)).await;
    assert_eq!(reply, cannot("its text is not in UTF-8, UTF-16 or EUC-KR"));
    let (euc_kr, _, _) = encoding_rs::EUC_KR.encode("회의록: 3시");
    let (_, stored) = send(workspace.host_file(&base, "a.txt", "text/plain", &euc_kr)).await;
    assert_eq!(stored.as_deref(), Some("[file \"a.txt\"]\n회의록: 3시"));

    // An address outside SLACK_FILES_URL never gets the token.
    let elsewhere = Recorder::start(std::sync::Arc::new(|_: &Recorded| Scripted::text(200, "secret?"))).await;
    let mut foreign = workspace.host_file(&base, "a.txt", "text/plain", b"hello");
    foreign["url_private_download"] = elsewhere.url("/files-pri/T0ROBEING-F1/download/a.txt").into();
    let (reply, stored) = send(foreign).await;
    assert_eq!(reply, cannot("Slack offered no way to download it (it may have been deleted)"));
    assert_eq!(stored, None);
    assert!(elsewhere.requests().is_empty(), "nothing was sent to another host");
    let all = downloads(&app);
    assert_eq!(all.len(), 1 + 2 + 2 + 1 + 1, "each attempt counted: {}", all.len());
    assert!(all.iter().all(|r| r.headers["authorization"] == format!("Bearer {BOT_TOKEN}").as_str()));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_recall_with_nothing_in_memory_is_not_reported_as_memory_being_down() {
    let chroma = Chroma::start().await;
    let app = app(Some(&chroma), None, &[]).await;
    let ask = || async {
        say(&app, BOB, "what did I tell you about my bike?").await;
        text_of(writes_to(&app, &channel_of(BOB)).last().unwrap())
    };
    let nothing = "I could not find anything you told me about \"bike\".";
    // A new user asks at once: the recall makes their collection, empty.
    assert_eq!(ask().await, nothing, "no false alarm");
    // After their memory was forgotten (the collection deleted).
    say(&app, BOB, "my bike is a green Brompton").await;
    wait_memorized(&app, BOB, Duration::from_secs(60)).await;
    assert!(ask().await.contains("green Brompton"));
    conversation::handle_forget_action(&app.state, BOB, true).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while chroma.collection_of(BOB).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the collection was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ask().await, nothing, "no false alarm after forget");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_llm_answer_cut_short_or_filtered_is_posted_at_once_and_says_so() {
    let fake = llm::start().await;
    fake.script(
        llm::PATH,
        [
            llm::answer_ending(Some("Here are the first three steps: 1. Plan 2. Build 3."), "length"),
            llm::answer_ending(None, "content_filter"),
            llm::answer_ending(Some("가나다"), "length"),
        ],
    );
    let app = app(None, Some(&fake), &[]).await;
    let cut = say(&app, JANE, "write me a very long plan").await;
    assert_eq!(
        text_of(writes_to(&app, &channel_of(JANE)).last().unwrap()),
        "Here are the first three steps: 1. Plan 2. Build 3.\n\n(The language model's answer was cut off here by its length limit. Send \"go on\" for the rest.)"
    );
    let filtered = say(&app, JANE, "something the filter dislikes").await;
    assert_eq!(
        text_of(writes_to(&app, &channel_of(JANE)).last().unwrap()),
        "(The language model provider's content filter withheld the answer to this message. Try asking in other words.)"
    );
    say(&app, KIM, "긴 계획을 써 줘").await;
    assert!(
        text_of(writes_to(&app, &channel_of(KIM)).last().unwrap())
            .starts_with("가나다\n\n(언어 모델의 답이 길이 제한에 걸려"),
        "in the user's language"
    );
    assert_eq!(fake.requests_to(llm::PATH).len(), 3, "neither is retried");
    for m in [&cut, &filtered] {
        assert_eq!(exchange(&app, m).await.status, "replied");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_reply_in_the_thread_of_a_briefing_gives_the_llm_what_the_briefing_said() {
    let fake = llm::start().await;
    let news = crate::fakes::feeds::start().await;
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let feeds = crate::fakes::feeds::feeds(&news, &[crate::fakes::feeds::RSS]);
    let app = app_with_slack(None, Some(&fake), &[("NEWS_FEEDS", &feeds)], slack).await;
    robeing::briefing::on_demand(&app.state, JANE, None, None).await.unwrap();
    let briefing = workspace.messages_in(&channel_of(JANE)).pop().expect("the briefing was posted");
    assert!(briefing.blocks.is_some(), "a briefing is Block Kit");

    let mut m = dm(JANE, "tell me more about the second headline");
    m.thread_ts = Some(briefing.ts.clone());
    handle_message(&app.state, &m, None).await.unwrap();
    let system = fake.requests_to(llm::PATH)[0].json()["messages"][0]["content"].as_str().unwrap().to_owned();
    let (_, parent) = system
        .split_once("The user is replying in the thread of an earlier message of yours (for example their briefing), which says:\n")
        .unwrap_or_else(|| panic!("{system}"));
    assert!(parent.contains("Central bank holds rates & signals <cuts> next year"), "unescaped: {parent}");
    assert!(parent.contains("Leaders agree climate finance deal"), "{parent}");
    let reply = writes_to(&app, &channel_of(JANE)).pop().unwrap();
    assert_eq!(reply.param("thread_ts").as_deref(), Some(briefing.ts.as_str()), "answered in the thread");
    assert!(text_of(&reply).starts_with("LLM says: tell me more"), "{}", text_of(&reply));

    // Slack not giving the thread's first message: answered without it, and said.
    app.slack.script(
        "/api/conversations.history",
        [Scripted::json(200, serde_json::json!({"ok": false, "error": "missing_scope", "needed": "im:history"}))],
    );
    let mut again = dm(JANE, "and the third?");
    again.thread_ts = Some(briefing.ts.clone());
    handle_message(&app.state, &again, None).await.unwrap();
    let system = fake.requests_to(llm::PATH)[1].json()["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(!system.contains("The user is replying in the thread"), "{system}");
    assert!(
        text_of(&writes_to(&app, &channel_of(JANE)).pop().unwrap())
            .ends_with("(I could not read the message you replied to, so I answered without it.)")
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_llm_images_on_an_image_is_shown_to_the_llm_and_a_model_that_refuses_it_is_asked_without() {
    use base64::Engine as _;
    let fake = llm::start().await;
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(None, Some(&fake), &[("LLM_IMAGES", "on")], slack).await;
    // Any bytes: robeing passes them on as Slack gave them.
    let png = b"\x89PNG\r\n\x1a\n robeing test image".to_vec();
    fake.script(llm::PATH, [llm::answer("A test card with the word robeing on it.")]);
    let m = dm_with_files(
        JANE,
        "what is in this picture?",
        vec![workspace.host_file(&base, "photo.png", "image/png", &png)],
    );
    handle_message(&app.state, &m, None).await.unwrap();

    let request = fake.requests_to(llm::PATH)[0].json();
    let last = request["messages"].as_array().unwrap().last().unwrap().clone();
    let parts = last["content"].as_array().unwrap_or_else(|| panic!("content parts: {last}"));
    assert_eq!(parts.len(), 2, "{last}");
    assert_eq!(parts[0]["type"], "text");
    let text = parts[0]["text"].as_str().unwrap();
    assert!(text.starts_with("what is in this picture?"), "{text}");
    assert!(text.contains("[The user attached the image \"photo.png\"; it is shown with this message.]"), "{text}");
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    assert_eq!(parts[1], serde_json::json!({ "type": "image_url", "image_url": { "url": url } }));
    assert_eq!(text_of(writes_to(&app, &channel_of(JANE)).last().unwrap()), "A test card with the word robeing on it.");
    let row = exchange(&app, &m).await;
    assert_eq!(row.status, "replied");
    let stored: Option<String> = sqlx::query_scalar("SELECT file_text FROM exchanges WHERE id = $1")
        .bind(row.id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, None, "an image is shown, never stored");

    // A model that takes no images answers 400: asked once more without
    // the image, and the reply says so.
    fake.script(llm::PATH, [llm::error(400), llm::answer("From its name, a photo of a cat.")]);
    let m = dm_with_files(JANE, "and this one?", vec![workspace.host_file(&base, "cat.jpg", "image/jpeg", &png)]);
    handle_message(&app.state, &m, None).await.unwrap();
    let requests = fake.requests_to(llm::PATH);
    assert_eq!(requests.len(), 3, "the first, then the refused one and its retry");
    let retried = requests[2].json();
    let last = retried["messages"].as_array().unwrap().last().unwrap().clone();
    let text = last["content"].as_str().unwrap_or_else(|| panic!("plain text again: {last}"));
    assert!(text.contains("[The user attached the file \"cat.jpg\", which you cannot see (only its name).]"), "{text}");
    assert_eq!(
        text_of(writes_to(&app, &channel_of(JANE)).last().unwrap()),
        "From its name, a photo of a cat.\n\n(The language model would not take images, so I answered without seeing \"cat.jpg\", from the name only.)"
    );
    app.stop().await.unwrap();
}

/// What the exchange of `m` stored of its files.
async fn file_text(app: &TestApp, m: &DirectMessage) -> String {
    sqlx::query_scalar("SELECT file_text FROM exchanges WHERE user_ts = $1")
        .bind(&m.ts)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A real document from `tests/fixtures/documents` (see its README).
fn document(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/documents/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An app (no LLM, no memory) that `user` sent `files` (name, type, bytes)
/// to, with no text, and has answered.
async fn sent_files(user: &str, files: &[(&str, &str, Vec<u8>)]) -> (TestApp, DirectMessage) {
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(None, None, &[], slack).await;
    let hosted =
        files.iter().map(|(name, mimetype, bytes)| workspace.host_file(&base, name, mimetype, bytes)).collect();
    let m = dm_with_files(user, "", hosted);
    handle_message(&app.state, &m, None).await.unwrap();
    (app, m)
}

#[tokio::test]
async fn korean_pdfs_from_chrome_and_libreoffice_are_read_and_recalled() {
    let (app, m) = sent_files(
        KIM,
        &[
            ("회의록.pdf", "application/pdf", document("korean-memo-chromium.pdf")),
            ("memo.pdf", "application/pdf", document("korean-memo-libreoffice.pdf")),
        ],
    )
    .await;

    let stored = file_text(&app, &m).await;
    let (chromium, libreoffice) = stored.split_once("[file \"memo.pdf\"]").unwrap_or_else(|| panic!("{stored}"));
    for (maker, text) in [("Chrome", chromium), ("LibreOffice", libreoffice)] {
        // Word spacing differs by maker (LibreOffice spaces digits from
        // Hangul); the words are what matters.
        let words: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let squeezed: String = text.split_whitespace().collect();
        assert!(squeezed.contains("회의록:2026년12월1일"), "{maker}: {text}");
        assert!(words.contains("참석자: 김종태, 이서연, 박민수"), "{maker}: {text}");
        assert!(
            words.contains("다음 주 화요일까지 예산안을 제출하기로 했습니다. 담당자는 이서연입니다."),
            "{maker}: {text}"
        );
        assert!(squeezed.contains("서버이전은1월15일에진행합니다."), "{maker}: {text}");
    }
    let reply = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(reply.contains("회의록.pdf") && reply.contains("memo.pdf"), "{reply}");
    assert!(!reply.contains("읽을 수 없었어요"), "{reply}");

    // Asked later, the memo's line is found.
    let recall = say(&app, KIM, "예산안에 대해 뭐라고 했지?").await;
    let answer = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(answer.contains("예산안을 제출하기로"), "{answer}");
    assert_eq!(exchange(&app, &recall).await.status, "replied");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn word_excel_and_powerpoint_files_are_read_and_a_broken_one_is_named_with_why() {
    const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";
    // A password-protected .docx is no ZIP archive (an OLE container).
    let locked = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1 EncryptedPackage".to_vec();
    let (app, m) = sent_files(
        JANE,
        &[
            ("memo.docx", DOCX, document("korean-memo-libreoffice.docx")),
            ("budget.xlsx", XLSX, document("budget-libreoffice.xlsx")),
            ("plan.pptx", PPTX, document("plan-python-pptx.pptx")),
            ("old.xls", "application/vnd.ms-excel", document("budget-libreoffice.xls")),
            ("locked.docx", DOCX, locked),
        ],
    )
    .await;

    let stored = file_text(&app, &m).await;
    assert!(stored.starts_with("[file \"memo.docx\"]\n회의록: 2026년 12월 1일\n"), "{stored}");
    assert!(stored.contains("서버 이전\t1,200,000원\n"), "a table row, cells by tabs: {stored}");
    assert!(stored.contains("[file \"budget.xlsx\"]\n# 예산\n항목\t금액\t담당자\n"), "{stored}");
    assert!(stored.contains("[file \"plan.pptx\"]\n# Slide 1\n2026년 1분기 계획\n"), "{stored}");
    assert!(stored.contains("[file \"old.xls\"]\n# 예산\n항목\t금액\t담당자\n"), "Excel 97–2003: {stored}");
    assert!(!stored.contains("locked.docx"), "{stored}");
    let reply = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(reply.starts_with("I read \"memo.docx\", \"budget.xlsx\", \"plan.pptx\" +1 ("), "{reply}");
    assert!(
        reply.contains("\"locked.docx\": I could not read this document (damaged, password-protected or too complex)"),
        "{reply}"
    );

    // Asked later, the sheet's row is found.
    say(&app, JANE, "what did I tell you about Migrate servers?").await;
    let answer = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(answer.contains("2027-01-15"), "{answer}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn word_and_powerpoint_97_2003_and_rtf_files_are_read_and_a_word_95_one_is_named() {
    // A Word 6/95 file: the same compound file, an older FIB version.
    let mut word_95 = document("korean-memo-libreoffice.doc");
    let fib = word_95.windows(2).position(|w| w == [0xEC, 0xA5]).unwrap();
    word_95[fib + 2..fib + 4].copy_from_slice(&[0x65, 0x00]);
    let (app, m) = sent_files(
        KIM,
        &[
            ("회의록.doc", "application/msword", document("korean-memo-libreoffice.doc")),
            ("계획.ppt", "application/vnd.ms-powerpoint", document("plan-libreoffice.ppt")),
            ("보고.DOC", "application/octet-stream", document("report-libreoffice.doc")),
            ("old.doc", "application/msword", word_95),
            ("메모.rtf", "text/rtf", document("korean-memo-libreoffice.rtf")),
        ],
    )
    .await;

    let stored = file_text(&app, &m).await;
    assert!(stored.starts_with("[file \"회의록.doc\"]\n회의록: 2026년 12월 1일\n"), "{stored}");
    assert!(stored.contains("항목\t금액\n서버 이전\t1,200,000원\n"), "a table row, cells by tabs: {stored}");
    assert!(stored.contains("[file \"계획.ppt\"]\n# Slide 1\n2026년 1분기 계획\n"), "{stored}");
    assert!(stored.contains("# Slide 2\n할 일\n예산안 제출: 화요일까지\n"), "{stored}");
    assert!(stored.contains("[file \"보고.DOC\"]\n주간 보고\n자세한 내용은 보고서 링크를 보세요."), "{stored}");
    assert!(!stored.contains("HYPERLINK") && !stored.contains("각주"), "field codes and notes are left out: {stored}");
    assert!(!stored.contains("old.doc"), "{stored}");
    // RTF is read, not stored as its markup.
    assert!(stored.contains("[file \"메모.rtf\"]\n회의록: 2026년 12월 1일\n"), "{stored}");
    assert!(!stored.contains("\\rtf1") && !stored.contains("\\par"), "{stored}");
    let reply = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(reply.contains("\"회의록.doc\", \"계획.ppt\", \"보고.DOC\""), "{reply}");
    assert!(reply.contains("\"old.doc\": 문서를 읽을 수 없었어요"), "the file it could not read is named: {reply}");

    // Asked later, the slide's line is found.
    say(&app, KIM, "서버 이전에 대해 뭐라고 했지?").await;
    let answer = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(answer.contains("1월 15일") || answer.contains("1,200,000원"), "{answer}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn hangul_hwp_and_hwpx_files_are_read_whatever_type_the_browser_gave_them() {
    // Browsers without Hancom Office installed know no type for them.
    let (app, m) = sent_files(
        KIM,
        &[
            ("회의록.hwp", "application/octet-stream", document("korean-memo-python-hwpx.hwp")),
            ("회의록.HWPX", "application/haansofthwpx", document("korean-memo-python-hwpx.hwpx")),
            ("공고.hwp", "application/x-hwp", document("korean-memo-distribution.hwp")),
            ("not-really.hwp", "application/octet-stream", b"HWP Document File V3.00".to_vec()),
        ],
    )
    .await;

    let stored = file_text(&app, &m).await;
    let texts: Vec<&str> = stored.split("[file ").filter(|t| !t.is_empty()).collect();
    assert_eq!(texts.len(), 3, "{stored}");
    // The distribution document (배포용) is decrypted.
    for text in texts {
        assert!(text.contains("회의록: 2026년 12월 1일\n참석자: 김종태, 이서연, 박민수\n"), "{stored}");
        assert!(text.contains("서버 이전\t1,200,000원\n"), "a table row, cells by tabs: {stored}");
        assert!(text.contains("Server migration happens on January 15."), "the second section: {stored}");
        assert!(!text.contains("공유 폴더"), "the footnote is left out: {stored}");
    }
    let reply = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(reply.contains("\"회의록.hwp\", \"회의록.HWPX\", \"공고.hwp\""), "{reply}");
    assert!(reply.contains("\"not-really.hwp\""), "the file it could not read is named: {reply}");

    // Asked later, the memo's line is found.
    say(&app, KIM, "서버 이전에 대해 뭐라고 했지?").await;
    let answer = text_of(writes_to(&app, &channel_of(KIM)).last().unwrap());
    assert!(answer.contains("1,200,000원"), "{answer}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_pdf_is_read_by_a_child_process_and_one_without_text_or_broken_is_named_with_why() {
    let fake = llm::start().await;
    let (slack, workspace) = crate::fakes::slack::start_with_workspace().await;
    let base = slack.url("");
    let app = app_with_slack(None, Some(&fake), &[], slack).await;
    let report =
        robeing::documents::pdf::simple(&["Quarterly report (Q3)", "Revenue grew 12 percent to 4.2 billion won."]);
    let scan = robeing::documents::pdf::simple(&[]);
    let mut broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R".to_vec();
    broken.extend(std::iter::repeat_n(b'[', 5_000));
    let m = dm_with_files(
        JANE,
        "what does the report say?",
        vec![
            workspace.host_file(&base, "report.pdf", "application/pdf", &report),
            workspace.host_file(&base, "scan.pdf", "application/pdf", &scan),
            workspace.host_file(&base, "broken.pdf", "application/pdf", &broken),
        ],
    );
    handle_message(&app.state, &m, None).await.unwrap();

    let prompt = fake.requests_to(llm::PATH)[0].json();
    let last = prompt["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    let (_, text) =
        last.split_once("[The user sent the file \"report.pdf\"; its text:]\n").unwrap_or_else(|| panic!("{last}"));
    assert!(text.contains("Quarterly report (Q3)"), "{text}");
    assert!(text.contains("Revenue grew 12 percent to 4.2 billion won."), "{text}");
    let reply = text_of(writes_to(&app, &channel_of(JANE)).last().unwrap());
    assert!(
        reply.ends_with(
            "(I could not read \"scan.pdf\": a PDF without text in it (a scan, or images only); \"broken.pdf\": I could not read this PDF (damaged, encrypted or too complex), so I answered from the rest.)"
        ),
        "{reply}"
    );
    let stored = file_text(&app, &m).await;
    assert!(stored.starts_with("[file \"report.pdf\"]\nQuarterly report (Q3)"), "{stored}");
    app.stop().await.unwrap();
}
