//! Fault injection against real processes: Postgres restarted under a
//! stream of signed events, ChromaDB SIGKILLed mid-upsert, Slack answering
//! 429/5xx/late, Google answering 5xx then `invalid_grant`, and robeing
//! itself SIGKILLed mid-reply and mid-briefing. Each test counts what it
//! sent and what arrived: nothing lost, nothing twice.
//!
//! Slack is the recording fake with its [`Workspace`] (what a user would
//! see in the DM); a fault that "posted then failed" leaves a message there
//! that the client never learned about — the case that would duplicate.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    fakes::{
        chroma::Chroma,
        google::FakeGoogle,
        recorder::{Recorder, Scripted},
        slack::{self, Message, PostFault, Workspace},
    },
    helpers::*,
    process::Server,
    slack_http::callback,
};

/// What every test gives the binary (plus its own database and fakes).
fn base_vars(slack: &Recorder) -> Vec<(String, String)> {
    [
        ("SLACK_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_owned()),
        ("SLACK_API_URL", slack.url("/api")),
        ("NEWS_FEEDS", "http://127.0.0.1:9/feed.xml".to_owned()),
        ("BRIEFING_SCHEDULER", "off".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn channel_of(user: &str) -> String {
    format!("D{}", user.trim_start_matches('U'))
}

/// A human's DM as the Events API delivers it. Message ts are in the past
/// (Slack's ts of a message the bot answers is always older than the answer).
fn dm_event(event_id: &str, user: &str, n: usize, text: &str) -> Value {
    let ts = format!("1700000000.{n:06}");
    callback(
        event_id,
        json!({ "type": "message", "channel": channel_of(user), "channel_type": "im", "user": user,
                "text": text, "ts": ts, "event_ts": ts }),
    )
}

/// What one event's delivery took.
#[derive(Debug, Default, Clone)]
struct Delivery {
    attempts: u32,
    /// Answers other than 200 (5xx, or no answer at all).
    failures: u32,
}

/// Delivers one event like Slack does: signed afresh on every attempt,
/// redelivered with `X-Slack-Retry-Num` after a failure (5xx, or the
/// connection refused while robeing is down), until it is acked with 200.
async fn deliver(http: &reqwest::Client, address: &str, event: &Value, within: Duration) -> Delivery {
    let body = event.to_string();
    let deadline = tokio::time::Instant::now() + within;
    let mut d = Delivery::default();
    loop {
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
        let mut req = http
            .post(format!("{address}/slack/events"))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", slack_signature(SIGNING_SECRET, &ts, body.as_bytes()))
            .body(body.clone());
        if d.attempts > 0 {
            req = req.header("x-slack-retry-num", d.attempts.to_string()).header("x-slack-retry-reason", "http_error");
        }
        d.attempts += 1;
        match req.send().await {
            Ok(r) if r.status() == 200 => return d,
            Ok(r) => assert!(r.status().is_server_error(), "a valid event must never be refused: {}", r.status()),
            Err(_) => {}
        }
        d.failures += 1;
        assert!(tokio::time::Instant::now() < deadline, "event {} not acked within {within:?}", event["event_id"]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db).await.unwrap()
}

/// Polls `sql` (a count) until it reaches `want`, within `within`.
async fn wait_count(db: &PgPool, sql: &str, want: i64, within: Duration, context: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db).await.unwrap_or(-1);
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "`{sql}` is {got}, wanted {want}\n{}", context());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ExchangeRow {
    id: uuid::Uuid,
    event_id: Option<String>,
    channel_id: String,
    status: String,
    reply_ts: Option<String>,
}

async fn exchanges(db: &PgPool) -> Vec<ExchangeRow> {
    sqlx::query_as("SELECT id, event_id, channel_id, status, reply_ts FROM exchanges ORDER BY user_ts")
        .fetch_all(db)
        .await
        .unwrap()
}

fn tagged<'a>(messages: &'a [Message], event_type: &str, key: &str, value: &str) -> Vec<&'a Message> {
    messages
        .iter()
        .filter(|m| {
            m.metadata
                .as_ref()
                .is_some_and(|md| md["event_type"] == event_type && md["event_payload"][key].as_str() == Some(value))
        })
        .collect()
}

/// Every sent event has exactly one exchange, replied, and the DM shows
/// exactly one reply for it: each channel holds as many messages (other
/// than briefings) as it has exchanges, each exchange's `reply_ts` names
/// one of them, and no two exchanges name the same one. The workspace holds
/// nothing else but `others` messages. Returns the number of exchanges.
async fn assert_one_reply_each(db: &PgPool, ws: &Workspace, event_ids: &[String], others: usize) -> usize {
    let rows = exchanges(db).await;
    let by_event: BTreeMap<&str, &ExchangeRow> =
        rows.iter().filter_map(|r| Some((r.event_id.as_deref()?, r))).collect();
    assert_eq!(rows.len(), event_ids.len(), "one exchange per event: {rows:?}");
    let messages = ws.messages();
    let mut per_channel: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reply_ts = std::collections::BTreeSet::new();
    for e in event_ids {
        let row = by_event.get(e.as_str()).unwrap_or_else(|| panic!("event {e} has no exchange (lost)"));
        assert_eq!(row.status, "replied", "{row:?}");
        let ts = row.reply_ts.as_deref().unwrap();
        assert!(reply_ts.insert(ts), "two exchanges recorded the same reply {ts}");
        assert!(
            messages.iter().any(|m| m.channel == row.channel_id && m.ts == ts),
            "the recorded reply of {e} is a message the user sees"
        );
        *per_channel.entry(row.channel_id.as_str()).or_default() += 1;
    }
    for (channel, exchanges) in per_channel {
        let replies: Vec<&Message> = messages
            .iter()
            .filter(|m| m.channel == channel)
            .filter(|m| m.metadata.as_ref().is_none_or(|md| md["event_type"] != "robeing_briefing"))
            .collect();
        assert_eq!(replies.len(), exchanges, "one reply per message in {channel}: {replies:#?}");
    }
    assert_eq!(messages.len(), event_ids.len() + others, "nothing else was posted: {messages:#?}");
    rows.len()
}

/// A user robeing knows (as `users.info` would have stored it).
async fn add_user(db: &PgPool, user: &str, tz: &str) {
    robeing::storage::users::ensure_team(db, slack::TEAM_ID).await.unwrap();
    let profile = robeing::storage::users::Profile {
        real_name: Some(format!("User {user}")),
        display_name: Some(user.to_lowercase()),
        tz: Some(tz.into()),
        locale: Some("en-US".into()),
    };
    robeing::storage::users::upsert_profile(db, slack::TEAM_ID, user, &profile).await.unwrap();
}

/// Makes a briefing due for `user` for the cron endpoint (which runs the
/// briefings due within the next 10 minutes): their briefing time is five
/// minutes from now in a zone where that is still today.
/// Makes exactly `users`' briefings due for a cron run now: everyone else
/// met so far is switched off, since a user with Slack's default Asia/Seoul
/// and 09:00 is due for a cron from 23:50 UTC (`CRON_EARLY`), which made
/// these tests fail for ten minutes a day.
async fn make_briefings_due(db: &PgPool, users: &[&str]) {
    sqlx::query("UPDATE slack_users SET briefing_enabled = (user_id = ANY($1))")
        .bind(users.iter().map(|u| u.to_string()).collect::<Vec<_>>())
        .execute(db)
        .await
        .unwrap();
    for u in users {
        make_briefing_due(db, u).await;
    }
}

async fn make_briefing_due(db: &PgPool, user: &str) {
    use chrono::Timelike as _;
    let now = chrono::Utc::now();
    let tz = if now.hour() == 23 && now.minute() >= 50 { "Etc/GMT+2" } else { "UTC" };
    let local = now.with_timezone(&tz.parse::<chrono_tz::Tz>().unwrap()) + chrono::Duration::minutes(5);
    sqlx::query("UPDATE slack_users SET tz = $2, briefing_time = $3 WHERE user_id = $1")
        .bind(user)
        .bind(tz)
        .bind(local.time().with_second(0).unwrap().with_nanosecond(0).unwrap())
        .execute(db)
        .await
        .unwrap();
}

async fn run_cron(http: &reqwest::Client, address: &str, secret: &str) -> Value {
    let r = http
        .post(format!("{address}/api/cron/daily-summary"))
        .bearer_auth(secret)
        .send()
        .await
        .expect("the cron endpoint answers");
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A job lease or a reply claim left by a killed process expires after
/// 90-120 s (`jobs::LEASE`, the exchange claim). The tests do not wait
/// that long: they move the expiry to now, which is exactly what waiting
/// would do, and nothing else.
async fn expire_leases_of_the_dead(db: &PgPool) -> (u64, u64) {
    let mut leases = 0;
    for table in ["jobs", "slack_events"] {
        let sql = format!("UPDATE {table} SET locked_until = now() - interval '1 second' WHERE state = 'running'");
        leases += sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db).await.unwrap().rows_affected();
    }
    let claims = sqlx::query(
        "UPDATE exchanges SET reply_claimed_until = now() - interval '1 second' WHERE status = 'received' AND reply_claimed_until IS NOT NULL",
    )
    .execute(db)
    .await
    .unwrap()
    .rows_affected();
    (leases, claims)
}

fn http() -> reqwest::Client {
    robeing::startup::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

// ---------------------------------------------------------------------------
// 1. Postgres restarted under a steady stream of signed DM events.

/// A failed test SIGKILLs robeing (`kill_on_drop`), which cannot stop its
/// embedded cluster; this stops it so no postgres outlives the test.
struct StopClusterIfPanicking(std::path::PathBuf);

impl Drop for StopClusterIfPanicking {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dir = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(pg) = robeing::storage::embedded::EmbeddedPostgres::start(&dir).await {
                    let _ = pg.stop().await;
                }
            })
        })
        .join();
    }
}

#[tokio::test]
async fn postgres_restarted_under_a_stream_of_events_loses_nothing_and_replies_once() {
    use robeing::storage::embedded::EmbeddedPostgres;
    const USERS: usize = 20;
    const PER_USER: usize = 2;
    let (fake, ws) = slack::start_with_workspace().await;
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = StopClusterIfPanicking(dir.path().to_path_buf());
    let mut vars = base_vars(&fake);
    vars.push(("ROBEING_DATA_DIR".into(), dir.path().display().to_string()));
    let server = Server::start(vars).await;
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let db = PgPool::connect_with(pg.connect_options()).await.unwrap();
    let http = http();
    assert_eq!(http.get(format!("{}/readyz", server.address)).send().await.unwrap().status(), 200);

    // A steady stream: one event every 100 ms, each delivered (and
    // redelivered) independently, as Slack does.
    let mut events = Vec::new();
    for n in 0..USERS * PER_USER {
        let user = format!("U0PGR{:04}", n % USERS);
        events.push(dm_event(&format!("Ev0PGR{n:04}"), &user, n + 1, &format!("message {n} from {user}")));
    }
    let mut senders = Vec::new();
    for (i, e) in events.iter().cloned().enumerate() {
        let (http, address) = (http.clone(), server.address.clone());
        senders.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i as u64)).await;
            deliver(&http, &address, &e, Duration::from_secs(45)).await
        }));
    }

    // An eighth of the way in, Postgres goes down for two seconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut saw_503 = false;
    while tokio::time::Instant::now() < deadline {
        let r = http.get(format!("{}/readyz", server.address)).send().await;
        if r.unwrap_or_else(|e| panic!("robeing stopped answering: {e}\n{}", server.logs())).status() == 503 {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_503, "/readyz turns 503 while Postgres is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.get(format!("{}/readyz", server.address)).send().await;
        if r.unwrap_or_else(|e| panic!("robeing stopped answering: {e}\n{}", server.logs())).status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz recovers when Postgres is back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut deliveries = Vec::new();
    for s in senders {
        deliveries.push(s.await.unwrap());
    }
    let refused: u32 = deliveries.iter().map(|d| d.failures).sum();
    let met_outage = deliveries.iter().filter(|d| d.failures > 0).count();
    assert!(met_outage > 0, "some deliveries met the outage (else it tested nothing)");

    let db = {
        drop(db);
        PgPool::connect_with(pg.connect_options()).await.unwrap()
    };
    let total = (USERS * PER_USER) as i64;
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE status = 'replied'", total, Duration::from_secs(40), || {
        server.logs()
    })
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM slack_events WHERE kind = 'message'").await, total);
    let ids: Vec<String> = events.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    // Let any straggling duplicate show itself before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = assert_one_reply_each(&db, &ws, &ids, 0).await;
    let logs = server.logs();
    eprintln!(
        "faults: postgres restart: {} events sent, {met_outage} met the outage ({refused} attempts answered 503 and redelivered), {} bookkeeping writes retried through it, {stored} exchanges stored, {} replies, lost 0, duplicates 0",
        ids.len(),
        logs.matches("the database is unreachable; retrying").count(),
        ws.messages().len()
    );
    server.stop().await;
    pg.stop().await.ok();
}

// ---------------------------------------------------------------------------
// 2. ChromaDB SIGKILLed while upserts stream in, then restarted.

#[tokio::test]
async fn chroma_killed_mid_upserts_then_restarted_holds_every_exchange_once() {
    const USERS: usize = 10;
    let (fake, _ws) = slack::start_with_workspace().await;
    let mut chroma = Chroma::start().await;
    let (db_url, _) = fresh_database().await;
    let mut vars = base_vars(&fake);
    vars.push(("DATABASE_URL".into(), db_url.clone()));
    vars.push(("CHROMA_URL".into(), chroma.url()));
    let server = Server::start(vars).await;
    let db = PgPool::connect(&db_url).await.unwrap();
    let http = http();

    let mut sent = Vec::new();
    let send_batch = |from: usize, to: usize| {
        let (http, address) = (http.clone(), server.address.clone());
        async move {
            let mut ids = Vec::new();
            let tasks: Vec<_> = (from..to)
                .map(|n| {
                    let e = dm_event(
                        &format!("Ev0CHR{n:04}"),
                        &format!("U0CHR{:04}", n % USERS),
                        n + 1,
                        &format!("fact number {n}: the sky was {n} shades of blue"),
                    );
                    ids.push(e["event_id"].as_str().unwrap().to_owned());
                    let (http, address) = (http.clone(), address.clone());
                    tokio::spawn(async move { deliver(&http, &address, &e, Duration::from_secs(20)).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            ids
        }
    };
    // First batch; kill ChromaDB with SIGKILL as soon as the first upserts land.
    sent.extend(send_batch(0, 20).await);
    wait_count(
        &db,
        "SELECT least(count(*) FILTER (WHERE memorized_at IS NOT NULL), 1) FROM exchanges",
        1,
        Duration::from_secs(30),
        || server.logs(),
    )
    .await;
    let memorized_at_kill = count(&db, "SELECT count(*) FROM exchanges WHERE memorized_at IS NOT NULL").await;
    chroma.kill9().await;
    // Second batch while ChromaDB is gone: replies go on, upserts queue.
    sent.extend(send_batch(20, 40).await);
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE status = 'replied'", 40, Duration::from_secs(30), || {
        server.logs()
    })
    .await;
    let backlog = count(&db, "SELECT count(*) FROM jobs WHERE kind = 'memory_upsert' AND state <> 'done'").await;
    assert!(backlog > 0, "upserts wait while ChromaDB is down");
    let ready: Value = http.get(format!("{}/readyz", server.address)).send().await.unwrap().json().await.unwrap();
    let chroma_check = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == "chroma").cloned().unwrap();
    assert_eq!(chroma_check["ok"], false, "{ready}");

    chroma.restart().await;
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE memorized_at IS NULL", 0, Duration::from_secs(50), || {
        server.logs()
    })
    .await;
    wait_count(
        &db,
        "SELECT count(*) FROM jobs WHERE kind = 'memory_upsert' AND state <> 'done'",
        0,
        Duration::from_secs(10),
        || server.logs(),
    )
    .await;
    let rows = exchanges(&db).await;
    assert_eq!(rows.len(), sent.len(), "one exchange per event");
    let mut in_chroma = chroma.all_ids().await;
    in_chroma.sort();
    let mut in_pg: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    in_pg.sort();
    assert_eq!(in_chroma, in_pg, "ChromaDB holds exactly Postgres' exchanges");
    assert_eq!(chroma.count().await, rows.len() as u64, "no duplicate records");
    eprintln!(
        "faults: chroma kill -9: {} events sent, {} exchanges stored, {memorized_at_kill} memorized before the kill, backlog {backlog} drained, chroma count {} = postgres {}, lost 0, duplicates 0",
        sent.len(),
        rows.len(),
        chroma.count().await,
        rows.len()
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Slack answering 429 with Retry-After, 5xx and late (timeouts), mixed.

#[tokio::test]
async fn slack_429s_5xx_and_timeouts_still_post_every_reply_and_briefing_exactly_once() {
    const USERS: usize = 6;
    const CRON: &str = "cron-secret-faults-3f9a";
    let (fake, ws) = slack::start_with_workspace().await;
    let (db_url, _) = fresh_database().await;
    let mut vars = base_vars(&fake);
    vars.push(("DATABASE_URL".into(), db_url.clone()));
    vars.push(("CRON_SECRET".into(), CRON.into()));
    let server = Server::start(vars).await;
    let db = PgPool::connect(&db_url).await.unwrap();
    let http = http();

    // Replies: every kind of failure, including the two ambiguous ones
    // (Slack posted, the answer was a 5xx or came too late).
    let reply_faults = vec![
        PostFault::RateLimited(1),
        PostFault::Fails(500),
        PostFault::PostedThenFails(502),
        PostFault::PostedThenLate(Duration::from_secs(11)),
        PostFault::Fails(503),
        PostFault::RateLimited(2),
        PostFault::PostedThenFails(500),
    ];
    let injected_replies = reply_faults.len();
    ws.fault_posts(reply_faults);
    let mut ids = Vec::new();
    for n in 0..USERS * 2 {
        let user = format!("U0SLF{:04}", n % USERS);
        let e = dm_event(&format!("Ev0SLF{n:04}"), &user, n + 1, &format!("question {n}"));
        ids.push(e["event_id"].as_str().unwrap().to_owned());
        let d = deliver(&http, &server.address, &e, Duration::from_secs(10)).await;
        assert_eq!(d.attempts, 1);
    }
    wait_count(
        &db,
        "SELECT count(*) FROM exchanges WHERE status = 'replied'",
        ids.len() as i64,
        Duration::from_secs(40),
        || server.logs(),
    )
    .await;
    assert_eq!(ws.faults_left(), 0, "every fault was served");

    // Briefings for two users, through the cron endpoint, under 429 and 5xx.
    let briefed = ["U0SLF0000", "U0SLF0001"];
    make_briefings_due(&db, &briefed).await;
    let briefing_faults = vec![PostFault::RateLimited(1), PostFault::PostedThenFails(500), PostFault::Fails(503)];
    let injected_briefings = briefing_faults.len();
    ws.fault_posts(briefing_faults);
    let summary = run_cron(&http, &server.address, CRON).await;
    assert_eq!(summary["claimed"], 2, "{summary}");
    wait_count(&db, "SELECT count(*) FROM briefings WHERE status = 'delivered'", 2, Duration::from_secs(30), || {
        server.logs()
    })
    .await;
    assert_eq!(ws.faults_left(), 0);
    // Calling the cron again sends nothing.
    let again = run_cron(&http, &server.address, CRON).await;
    assert_eq!(again["claimed"], 0, "{again}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = assert_one_reply_each(&db, &ws, &ids, briefed.len()).await;
    let messages = ws.messages();
    let rows: Vec<(uuid::Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, user_id, message_ts FROM briefings ORDER BY user_id").fetch_all(&db).await.unwrap();
    assert_eq!(rows.len(), 2);
    for (id, user, ts) in rows {
        let posted = tagged(&messages, "robeing_briefing", "briefing_id", &id.to_string());
        assert_eq!(posted.len(), 1, "exactly one briefing for {user}: {posted:?}");
        assert_eq!(posted[0].channel, channel_of(&user));
        assert_eq!(Some(&posted[0].ts), ts.as_ref());
    }
    eprintln!(
        "faults: slack: {} faults injected ({injected_replies} on replies, {injected_briefings} on briefings), {} events sent, {stored} exchanges, {} replies + {} briefings posted, lost 0, duplicates 0",
        ws.faults_served(),
        ids.len(),
        stored,
        briefed.len()
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Google answering 5xx, then invalid_grant.

#[tokio::test]
async fn google_5xx_changes_nothing_then_invalid_grant_breaks_once_with_one_prompt() {
    const USER: &str = "U0GGL0001";
    let (fake, ws) = slack::start_with_workspace().await;
    let google = FakeGoogle::start().await;
    let mut vars = google.vars();
    vars.push(("TOKEN_ENCRYPTION_KEY".into(), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into()));
    let app = spawn_app_with_slack(Options { vars, ..Default::default() }, fake.clone()).await;
    add_user(&app.db, USER, "Asia/Seoul").await;
    let state = &app.state;

    // Connect through the real OAuth flow.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let local = |url: &str| {
        let u = url::Url::parse(url).unwrap();
        format!("{}{}?{}", app.address, u.path(), u.query().unwrap_or(""))
    };
    let link = robeing::google::connect_link(&state.config, USER).unwrap().to_string();
    let r = browser.get(local(&link)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let r = browser.get(r.headers()["location"].to_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let r = browser.get(local(r.headers()["location"].to_str().unwrap())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    ws.wait_for_messages(1, Duration::from_secs(10)).await; // "Gmail connected as …"
    let connected_notices = ws.messages().len();
    let gmail_state = || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM gmail_connections WHERE user_id = $1")
            .bind(USER)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let expire = || async {
        sqlx::query(
            "UPDATE gmail_connections SET access_token_expires_at = now() + interval '2 minutes' WHERE user_id = $1",
        )
        .bind(USER)
        .execute(&app.db)
        .await
        .unwrap();
    };
    let prompt_jobs = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE kind = 'gmail_reconnect_prompt'")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let user = robeing::storage::users::get(&app.db, USER).await.unwrap().unwrap();
    let outage = |status: u16| Scripted::json(status, json!({ "error": "backend_error" }));
    let mut injected = 0;

    // Round 1: Google fails three times (every attempt of one refresh): the
    // briefing says Gmail could not be read; the connection is untouched.
    expire().await;
    google.server.script("/token", [outage(503), outage(500), outage(502)]);
    injected += 3;
    let b1 = robeing::briefing::deliver::on_demand_for(state, &user, None, None, "cli").await.unwrap();
    assert_eq!(b1.email_status, Some("error"), "{b1:?}");
    assert_eq!(gmail_state().await, "connected", "a Google outage is not a broken connection");
    assert_eq!(prompt_jobs().await, 0);
    assert_eq!(google.token_requests("refresh_token").len(), 3);

    // Round 2: two more 5xx, then Google says invalid_grant (revoked). The
    // prompt's first post is taken by Slack but answered 500.
    google.server.script("/token", [outage(503), outage(504)]);
    google.revoke_all();
    ws.fault_posts([PostFault::PostedThenFails(500)]);
    injected += 3 + 1;
    let err = robeing::google::access_token(state, USER).await.unwrap_err();
    assert!(matches!(err, robeing::google::GmailAccessError::NeedsReconnect { .. }), "{err:?}");
    assert_eq!(gmail_state().await, "needs_reconnect");
    assert_eq!(google.token_requests("refresh_token").len(), 6);
    robeing::google::prompt_if_needed(state, USER).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT reconnect_prompt_ts FROM gmail_connections WHERE user_id = $1")
                .bind(USER)
                .fetch_one(&app.db)
                .await
                .unwrap();
        if recorded.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the prompt was recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Round 3: later briefings and checks: no Google call, no new prompt.
    let b2 = robeing::briefing::deliver::on_demand_for(state, &user, None, None, "cli").await.unwrap();
    assert_eq!(b2.email_status, Some("needs_reconnect"), "{b2:?}");
    assert!(!robeing::google::prompt_if_needed(state, USER).await.unwrap());
    assert_eq!(google.token_requests("refresh_token").len(), 6, "a broken grant is not tried again");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let prompts: Vec<Message> =
        ws.messages().into_iter().filter(|m| m.text.contains("I can no longer read your Gmail")).collect();
    assert_eq!(prompts.len(), 1, "exactly one reconnect prompt: {prompts:#?}");
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT reconnect_prompt_ts FROM gmail_connections WHERE user_id = $1")
            .bind(USER)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(recorded.as_ref(), Some(&prompts[0].ts), "the recorded prompt is the one the user sees");
    assert_eq!(ws.messages().len(), connected_notices + 2 + 1, "notice, two briefings, one prompt: nothing else");
    eprintln!(
        "faults: google: {injected} faults injected (5 x 5xx, 1 invalid_grant, 1 ambiguous Slack 500), state changed once, prompts 1"
    );
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// 5. robeing SIGKILLed mid-reply and mid-briefing, then restarted.

#[tokio::test]
async fn robeing_killed_mid_reply_and_mid_briefing_replies_and_briefs_exactly_once() {
    const CRON: &str = "cron-secret-faults-kill";
    let (fake, ws) = slack::start_with_workspace().await;
    let (db_url, _) = fresh_database().await;
    let mut vars = base_vars(&fake);
    vars.push(("DATABASE_URL".into(), db_url.clone()));
    vars.push(("CRON_SECRET".into(), CRON.into()));
    let llm = crate::fakes::llm::start().await;
    vars.push(("LLM_BASE_URL".into(), crate::fakes::llm::base_url(&llm)));
    vars.push(("LLM_MODEL".into(), crate::fakes::llm::MODEL.into()));
    vars.push(("LLM_API_KEY".into(), crate::fakes::llm::API_KEY.into()));
    let mut server = Server::start(vars).await;
    let db = PgPool::connect(&db_url).await.unwrap();
    let http = http();
    let mut ids = Vec::new();
    let mut kills = 0;

    // A message answered normally.
    let e = dm_event("Ev0KIL0000", "U0KIL0000", 1, "hello before the crash");
    ids.push("Ev0KIL0000".to_owned());
    deliver(&http, &server.address, &e, Duration::from_secs(10)).await;
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE status = 'replied'", 1, Duration::from_secs(20), || {
        server.logs()
    })
    .await;

    // Mid-reply: Slack takes the post and holds the answer; robeing is
    // killed while waiting for it.
    ws.fault_posts([PostFault::PostedThenLate(Duration::from_secs(60))]);
    let e = dm_event("Ev0KIL0001", "U0KIL0001", 2, "hello during the crash");
    ids.push("Ev0KIL0001".to_owned());
    deliver(&http, &server.address, &e, Duration::from_secs(10)).await;
    ws.wait_for_messages(2, Duration::from_secs(20)).await;
    assert_eq!(ws.messages().len(), 2, "the held reply reached Slack");
    server.kill9().await;
    kills += 1;

    // While it is down, Slack keeps delivering: one more message.
    let e = dm_event("Ev0KIL0002", "U0KIL0002", 3, "hello while it is down");
    ids.push("Ev0KIL0002".to_owned());
    let down = {
        let (http, address) = (http.clone(), server.address.clone());
        tokio::spawn(async move { deliver(&http, &address, &e, Duration::from_secs(40)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (No process is alive, so no live lease is touched.)
    let (leases, claims) = expire_leases_of_the_dead(&db).await;
    assert!(leases >= 1 && claims >= 1, "the killed process left its reply job running ({leases}, {claims})");
    server.restart().await;
    let d = down.await.unwrap();
    assert!(d.failures >= 1, "the delivery met the dead process");
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE status = 'replied'", 3, Duration::from_secs(20), || {
        server.logs()
    })
    .await;

    // Mid-LLM: the model takes its time, the placeholder ("…") is up and
    // recorded, and robeing is killed while the completion is in flight.
    llm.script(crate::fakes::llm::PATH, [crate::fakes::llm::answer("too late").delayed(Duration::from_secs(60))]);
    let before = ws.messages().len();
    let e = dm_event("Ev0KIL0003", "U0KIL0003", 4, "think hard about this");
    ids.push("Ev0KIL0003".to_owned());
    deliver(&http, &server.address, &e, Duration::from_secs(10)).await;
    ws.wait_for_messages(before + 1, Duration::from_secs(20)).await;
    wait_count(
        &db,
        "SELECT count(*) FROM exchanges WHERE event_id = 'Ev0KIL0003' AND status = 'received' AND reply_ts IS NOT NULL",
        1,
        Duration::from_secs(10),
        || server.logs(),
    )
    .await;
    server.kill9().await;
    kills += 1;
    assert!(expire_leases_of_the_dead(&db).await.0 >= 1, "the killed process left its reply job running");
    server.restart().await;
    wait_count(&db, "SELECT count(*) FROM exchanges WHERE status = 'replied'", 4, Duration::from_secs(20), || {
        server.logs()
    })
    .await;
    let placeholder = ws.messages_in(&channel_of("U0KIL0003"));
    assert_eq!(placeholder.len(), 1, "{placeholder:#?}");
    assert_eq!(placeholder[0].text, "LLM says: think hard about this", "the placeholder became the answer");

    // Mid-briefing: the cron claims two briefings; the first post is held,
    // and robeing is killed while it waits.
    make_briefings_due(&db, &["U0KIL0000", "U0KIL0001"]).await;
    let before = ws.messages().len();
    ws.fault_posts([PostFault::PostedThenLate(Duration::from_secs(60))]);
    let summary = run_cron(&http, &server.address, CRON).await;
    assert_eq!(summary["claimed"], 2, "{summary}");
    ws.wait_for_messages(before + 2, Duration::from_secs(20)).await;
    wait_count(&db, "SELECT count(*) FROM briefings WHERE status = 'delivered'", 1, Duration::from_secs(20), || {
        server.logs()
    })
    .await;
    server.kill9().await;
    kills += 1;
    assert_eq!(
        count(&db, "SELECT count(*) FROM briefings WHERE status = 'claimed'").await,
        1,
        "one briefing in flight"
    );
    assert!(expire_leases_of_the_dead(&db).await.0 >= 1, "the killed process left its briefing job running");
    server.restart().await;
    wait_count(&db, "SELECT count(*) FROM briefings WHERE status = 'delivered'", 2, Duration::from_secs(20), || {
        server.logs()
    })
    .await;
    let again = run_cron(&http, &server.address, CRON).await;
    assert_eq!(again["claimed"], 0, "{again}");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stored = assert_one_reply_each(&db, &ws, &ids, 2).await;
    let messages = ws.messages();
    let rows: Vec<(uuid::Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, user_id, message_ts FROM briefings").fetch_all(&db).await.unwrap();
    for (id, user, ts) in &rows {
        let posted = tagged(&messages, "robeing_briefing", "briefing_id", &id.to_string());
        assert_eq!(posted.len(), 1, "exactly one briefing for {user}: {posted:?}");
        assert_eq!(Some(&posted[0].ts), ts.as_ref());
    }
    let held_ts =
        exchanges(&db).await.into_iter().find(|r| r.event_id.as_deref() == Some("Ev0KIL0001")).unwrap().reply_ts;
    let held = messages.iter().find(|m| Some(&m.ts) == held_ts.as_ref()).unwrap();
    assert!(held.updates >= 1, "the restarted process updated the reply it found instead of posting again");
    eprintln!(
        "faults: sigkill: {kills} kills ({} processes), {} events sent, {stored} exchanges, {} replies, {} briefings, lost 0, duplicates 0",
        server.starts,
        ids.len(),
        stored,
        rows.len()
    );
    server.stop().await;
}
