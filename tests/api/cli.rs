//! Operator commands through the real binary.

use crate::helpers::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn connect_link_prints_a_signed_link_for_a_known_user_only() {
    let (db, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING')").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id) VALUES ('U0KIMJT01', 'T0ROBEING')")
        .execute(&pool)
        .await
        .unwrap();
    let google = [
        ("DATABASE_URL", db.as_str()),
        ("GOOGLE_CLIENT_ID", "client-id"),
        ("GOOGLE_CLIENT_SECRET", "client-secret"),
        ("TOKEN_ENCRYPTION_KEY", KEY),
        ("ROBEING_PUBLIC_URL", "https://robeing.example.com"),
    ];

    let out = run_binary(&["connect-link", "--user", "U0KIMJT01"], &google).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(link.starts_with("https://robeing.example.com/oauth/google/start?t="), "{link}");
    assert!(!link.contains("U0KIMJT01"), "no bare user id in the link: {link}");
    assert!(!link.contains("client-secret") && !text(&out).contains(KEY));

    let out = run_binary(&["connect-link", "--user", "U0NOBODY1"], &google).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("U0NOBODY1"));

    let out = run_binary(&["connect-link", "--user", "U0KIMJT01"], &[("DATABASE_URL", db.as_str())]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("GOOGLE_CLIENT_ID"), "{}", text(&out));

    let out = run_binary(&["connect-link"], &google).await;
    assert_eq!(out.status.code(), Some(2), "missing --user is bad usage");
}

#[tokio::test]
async fn doctor_checks_the_key_google_and_data_health() {
    use crate::fakes::google::FakeGoogle;
    let google = FakeGoogle::start().await;
    let mut vars = google.vars();
    vars.push(("TOKEN_ENCRYPTION_KEY".into(), KEY.into()));
    // Serving once stores the key's canary.
    let app = spawn_app_with(Options { vars: vars.clone(), ..Default::default() }).await;
    let db = app.db_url.clone().unwrap();
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING') ON CONFLICT DO NOTHING")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id) VALUES ('U0KIMJT01', 'T0ROBEING')")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, broken_at, broken_reason) VALUES ('U0KIMJT01', 'needs_reconnect', now(), 'invalid_grant: Token has been expired or revoked.')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let slack_api = app.slack.url("/api");
    let (key, payload) = robeing::conversation::apology_job(uuid::Uuid::new_v4());
    // Due tomorrow, so the running app's workers leave it alone.
    let tomorrow = Some(chrono::Utc::now() + chrono::Duration::days(1));
    let dead =
        robeing::storage::jobs::enqueue(&app.db, robeing::conversation::APOLOGY_JOB, Some(&key), &payload, tomorrow)
            .await
            .unwrap()
            .unwrap();
    robeing::storage::jobs::bury(&app.db, dead, "Slack refused chat.postMessage: channel_not_found").await.unwrap();
    app.stop().await.unwrap();

    let mut env: Vec<(String, String)> = vars.clone();
    env.extend([
        ("DATABASE_URL".to_owned(), db.clone()),
        ("SLACK_BOT_TOKEN".to_owned(), BOT_TOKEN.to_owned()),
        ("SLACK_SIGNING_SECRET".to_owned(), SIGNING_SECRET.to_owned()),
        ("SLACK_API_URL".to_owned(), slack_api),
    ]);
    let run = |e: Vec<(String, String)>| async move {
        let refs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_binary(&["doctor"], &refs).await
    };

    let out = run(env.clone()).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("✓ token encryption key"), "{t}");
    assert!(t.contains("✓ Google: token endpoint"), "{t}");
    assert!(t.contains("! Gmail: 1 need reconnecting: U0KIMJT01 (invalid_grant"), "{t}");
    assert!(t.contains("! outbox: dead jobs: 1 dm_apology"), "{t}");
    assert!(!t.contains(KEY), "no key in the output");

    // Another key than the one the tokens were stored with.
    let mut wrong = env.clone();
    for (k, v) in wrong.iter_mut() {
        if k == "TOKEN_ENCRYPTION_KEY" {
            *v = "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=".into();
        }
    }
    let out = run(wrong).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("✗ token encryption key") && t.contains("TOKEN_ENCRYPTION_KEY"), "{t}");
}

#[tokio::test]
async fn doctor_says_when_postgres_does_not_vacuum_robeings_queues() {
    let (db, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    // The server's setting is the machine's (this project's CI machine runs
    // PostgreSQL with autovacuum off; Debian's default is on): doctor must
    // tell the truth either way.
    let server_on: String = sqlx::query_scalar("SHOW autovacuum").fetch_one(&pool).await.unwrap();
    let server_on = server_on == "on";
    let vars = [("DATABASE_URL", db.as_str())];
    let doctor = || run_binary(&["doctor"], &vars);

    let t = text(&doctor().await);
    assert_eq!(t.contains("! PostgreSQL's autovacuum is off"), !server_on, "{t}");
    assert_eq!(t.contains("✓ PostgreSQL: autovacuum on for robeing's queues"), server_on, "{t}");
    assert!(!t.contains("turned off for table"), "{t}");

    // A table of robeing's whose own storage parameter turns autovacuum off.
    sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = off)").execute(&pool).await.unwrap();
    let out = doctor().await;
    let t = text(&out);
    assert!(
        t.contains("autovacuum is turned off for table(s) jobs: robeing's queues (slack_events, jobs) slow down"),
        "{t}"
    );
    assert!(t.contains("dead rows now: exchanges "), "{t}");
    assert!(t.contains("fix: set autovacuum = on") && t.contains("RESET (autovacuum_enabled)"), "{t}");
    assert!(!t.contains("✓ PostgreSQL: autovacuum on"), "{t}");
}

#[tokio::test]
async fn doctor_names_a_missing_bot_scope_and_the_fix() {
    use crate::fakes::slack::{BOT_SCOPES, auth_test_with_scopes};
    let slack = crate::fakes::slack::start().await;
    let (db, _) = fresh_database().await;
    let api = slack.url("/api");
    let vars = [
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
        ("SLACK_API_URL", api.as_str()),
        ("DATABASE_URL", db.as_str()),
    ];

    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("✓ Slack: the bot token has all 8 scopes"), "{t}");
    assert!(t.contains("/robeing read-document` read a test PDF"), "the binary reads PDFs as its own child: {t}");
    assert!(!t.contains("does not read"), "nothing misspelt yet: {t}");

    let calls = slack.requests_to("/api/auth.test");
    assert_eq!(calls.len(), 1, "one auth.test call reads both the identity and the scopes");
    assert_eq!(calls[0].headers["authorization"], format!("Bearer {BOT_TOKEN}"));

    // A misspelt setting would silently leave the LLM off: a warning names it.
    let mut misspelt = vars.to_vec();
    misspelt.push(("LLM_MODLE", "gpt-4o-mini"));
    let out = run_binary(&["doctor"], &misspelt).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "a warning, not a failure: {t}");
    assert!(
        t.contains("! configuration: LLM_MODLE is set but robeing does not read it; did you mean LLM_MODEL?"),
        "{t}"
    );
    assert!(t.contains("fix: rename it to LLM_MODEL"), "{t}");

    // The token was installed before `users:read` was added to the manifest.
    let without: Vec<&str> = BOT_SCOPES.iter().copied().filter(|s| *s != "users:read").collect();
    slack.script("/api/auth.test", [auth_test_with_scopes(&without)]);
    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a missing scope fails doctor: {t}");
    assert!(t.contains("✓ Slack: auth.test ok"), "the token itself is valid: {t}");
    assert!(t.contains("✗ Slack: the bot token lacks the scope(s) users:read"), "{t}");
    assert!(t.contains("reinstall the app from manifest.yaml"), "{t}");
    assert!(!t.contains(BOT_TOKEN), "the token is never printed: {t}");

    // Two missing: both named, in the manifest's order.
    let fewer: Vec<&str> = without.iter().copied().filter(|s| *s != "im:history").collect();
    slack.script("/api/auth.test", [auth_test_with_scopes(&fewer)]);
    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("lacks the scope(s) im:history, users:read"), "{t}");

    // Installed before exports came as a file and files were read: two
    // warnings, not a failure.
    let no_files: Vec<&str> = BOT_SCOPES.iter().copied().filter(|s| !s.starts_with("files:")).collect();
    slack.script("/api/auth.test", [auth_test_with_scopes(&no_files)]);
    let out = run_binary(&["doctor"], &vars).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "exports still work, as messages: {t}");
    assert!(t.contains("✓ Slack: the bot token has the 6 scopes robeing needs to work"), "{t}");
    assert!(
        t.contains("! Slack: the bot token lacks the scope files:write: history exports are sent as messages"),
        "{t}"
    );
    assert!(
        t.contains("! Slack: the bot token lacks the scope files:read: files users send in a DM are not read"),
        "{t}"
    );
}

/// user, text, status, reply, reply ts
type ExchangeRow = (String, String, String, Option<String>, Option<String>);

#[tokio::test]
async fn console_answers_like_a_dm_prints_the_briefing_and_stores_the_exchanges() {
    let fake_feeds = crate::fakes::feeds::start().await;
    let chroma = crate::fakes::chroma::Chroma::start().await;
    let chroma_url = chroma.url();
    let (db, _) = fresh_database().await;
    let news = crate::fakes::feeds::feeds(&fake_feeds, &[crate::fakes::feeds::RSS]);
    let vars = [
        ("DATABASE_URL", db.as_str()),
        ("CHROMA_URL", chroma_url.as_str()),
        ("NEWS_FEEDS", news.as_str()),
        ("USER", "jane"),
        ("LANG", "en_US.UTF-8"),
        ("DEFAULT_TIMEZONE", "Asia/Seoul"),
        ("RUST_LOG", "warn"),
    ];
    let out = run_binary_with_stdin(&["console"], &vars, "하이\nhi\n/brief\n/quit\nnot read after quit\n").await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let korean = stdout.find("robeing> 안녕하세요, jane님!").unwrap_or_else(|| panic!("Korean greeting: {stdout}"));
    let english = stdout.find("robeing> Hi, jane!").unwrap_or_else(|| panic!("English greeting: {stdout}"));
    assert!(korean < english, "replies come in order: {stdout}");
    assert!(stdout.contains("Gmail is not set up on this robeing"), "explicit Gmail line: {stdout}");
    assert!(stdout.contains("Central bank holds rates & signals <cuts> next year"), "news section: {stdout}");
    assert!(stdout.find("Central bank").unwrap() > english, "the briefing follows the replies: {stdout}");
    assert_eq!(stdout.matches("robeing> ").count(), 2, "one reply per message, nothing after /quit: {stdout}");

    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let rows: Vec<ExchangeRow> = sqlx::query_as(
        "SELECT e.user_id, e.user_text, e.status, e.reply_text, e.reply_ts FROM exchanges e ORDER BY e.received_at, e.user_ts",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()), ("U0CONSOLE", "하이", "replied"));
    assert!(rows[0].3.as_deref().unwrap().starts_with("안녕하세요, jane님!"), "{rows:?}");
    assert_eq!((rows[1].1.as_str(), rows[1].2.as_str()), ("hi", "replied"));
    assert!(rows.iter().all(|r| r.4.as_deref().is_some_and(|ts| ts.starts_with("console."))), "{rows:?}");
    // The memory jobs ran as for a DM: both exchanges are in ChromaDB, by exchange id.
    let ids: Vec<(String,)> =
        sqlx::query_as("SELECT id::text FROM exchanges WHERE memorized_at IS NOT NULL ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 2, "both exchanges memorized before the console exited");
    let mut recorded: Vec<String> = chroma.records_of("U0CONSOLE").await.into_iter().map(|(id, _)| id).collect();
    recorded.sort();
    assert_eq!(recorded, ids.into_iter().map(|(id,)| id).collect::<Vec<_>>());
    assert_eq!(chroma.count().await, 2, "nothing else in ChromaDB");
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT source FROM slack_events").fetch_all(&pool).await.unwrap();
    assert_eq!(sources, vec!["console".to_string()]);
    let (locale, tz, enabled): (Option<String>, Option<String>, bool) =
        sqlx::query_as("SELECT locale, tz, briefing_enabled FROM slack_users WHERE user_id = 'U0CONSOLE'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((locale.as_deref(), tz.as_deref(), enabled), (Some("en-US"), Some("Asia/Seoul"), false));
    let briefings: i64 = sqlx::query_scalar("SELECT count(*) FROM briefings").fetch_one(&pool).await.unwrap();
    assert_eq!(briefings, 0, "/brief in the console is a dry run");
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM jobs WHERE state <> 'done') + (SELECT count(*) FROM slack_events WHERE state <> 'done')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unfinished, 0, "every message and job the console queued was handled");
}

#[tokio::test]
async fn status_shows_every_gmail_state_and_the_last_briefing_through_the_binary() {
    let (db, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING')").execute(&pool).await.unwrap();
    for (user, name, tz) in [
        ("U0CONN001", Some("conn"), Some("Asia/Seoul")),
        ("U0BROKEN1", Some("broken"), Some("Europe/Berlin")),
        ("U0GONE001", Some("gone"), None),
        ("U0NEVER01", None, None),
    ] {
        sqlx::query("INSERT INTO slack_users (user_id, team_id, display_name, tz) VALUES ($1, 'T0ROBEING', $2, $3)")
            .bind(user)
            .bind(name)
            .bind(tz)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, google_email, refresh_token_ciphertext, token_key_id, connected_at)
         VALUES ('U0CONN001', 'connected', 'conn@example.com', decode(repeat('ab', 40), 'hex'), '0011223344556677', '2026-11-20T08:00:00Z')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, broken_at, broken_reason)
         VALUES ('U0BROKEN1', 'needs_reconnect', '2026-11-26T09:00:00Z', 'Google refused the saved authorization (invalid_grant)')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO gmail_connections (user_id, state) VALUES ('U0GONE001', 'disconnected')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO briefings (user_id, local_date, kind, trigger, status, email_status, news_status, channel_id, message_ts, delivered_at)
         VALUES ('U0CONN001', '2026-11-27', 'daily', 'scheduler', 'delivered', 'ok', 'partial', 'D0CONN001', '1764000000.000001', '2026-11-27T00:00:03Z')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO briefings (user_id, local_date, kind, trigger, status, failure_reason)
         VALUES ('U0BROKEN1', '2026-11-27', 'daily', 'scheduler', 'failed', 'channel_not_found')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for ts in ["1.000001", "1.000002"] {
        sqlx::query(
            "INSERT INTO exchanges (user_id, channel_id, user_ts, user_text) VALUES ('U0CONN001', 'D0CONN001', $1, 'hello')",
        )
        .bind(ts)
        .execute(&pool)
        .await
        .unwrap();
    }
    let vars = [("DATABASE_URL", db.as_str()), ("DEFAULT_TIMEZONE", "Asia/Seoul")];

    let out = run_binary(&["status"], &vars).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = |user: &str| {
        table.lines().find(|l| l.starts_with(user)).unwrap_or_else(|| panic!("{user} missing: {table}")).to_owned()
    };
    let conn = line("U0CONN001");
    assert!(conn.contains("conn") && conn.contains("Asia/Seoul"), "{conn}");
    assert!(conn.contains("connected since 2026-11-20 08:00 UTC"), "{conn}");
    assert!(conn.contains("2026-11-27 00:00 UTC delivered (daily)"), "{conn}");
    assert!(conn.contains("email ok, news partial"), "{conn}");
    assert!(conn.trim_end().ends_with(" 2"), "two exchanges: {conn}");
    let broken = line("U0BROKEN1");
    assert!(
        broken.contains(
            "needs reconnect since 2026-11-26 09:00 UTC (Google refused the saved authorization (invalid_grant))"
        ),
        "{broken}"
    );
    assert!(broken.contains("failed (daily): channel_not_found"), "{broken}");
    assert!(broken.trim_end().ends_with(" 0"), "{broken}");
    let gone = line("U0GONE001");
    assert!(
        gone.contains("not connected") && gone.contains("Asia/Seoul (default)") && gone.contains("never"),
        "{gone}"
    );
    let never = line("U0NEVER01");
    assert!(never.contains("not connected") && never.contains("never"), "{never}");
    assert!(!table.contains("conn@example.com"), "no e-mail address in the table: {table}");
    assert_eq!(table.lines().count(), 5, "a header and one line per user: {table}");

    let out = run_binary(&["status", "--json"], &vars).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<(&str, Option<&str>)> =
        json.as_array().unwrap().iter().map(|u| (u["user_id"].as_str().unwrap(), u["gmail_state"].as_str())).collect();
    assert_eq!(
        states,
        vec![
            ("U0BROKEN1", Some("needs_reconnect")),
            ("U0CONN001", Some("connected")),
            ("U0GONE001", Some("disconnected")),
            ("U0NEVER01", None),
        ]
    );
    assert_eq!(json[1]["exchanges"], 2);
    assert_eq!(json[1]["last_email_status"], "ok");
}

#[tokio::test]
async fn console_runs_on_the_embedded_database_by_default_and_remembers_across_runs() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().display().to_string();
    let vars = [
        ("ROBEING_DATA_DIR", dir.as_str()),
        ("USER", "jane"),
        ("LANG", "ko_KR.UTF-8"),
        ("NEWS_FEEDS", "http://127.0.0.1:9/feed.xml"),
    ];
    let out = run_binary_with_stdin(&["console"], &vars, "hello\n").await;
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(first.contains("robeing> Hi, jane!"), "English text gets English: {first}");
    assert!(text(&out).contains("database `robeing`"), "says where it stores: {}", text(&out));

    // A second run finds the first run's exchange (the embedded database was stopped cleanly and kept).
    let out = run_binary_with_stdin(&["console"], &vars, "상태\n").await;
    let second = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(second.starts_with("robeing> *상태*"), "Korean text gets Korean: {second}");
    assert!(second.contains("저장된 대화: 2건"), "the first run's exchange and this one: {second}");
    assert_eq!(second.matches("robeing> ").count(), 1, "{second}");
}

#[tokio::test]
async fn prune_deletes_only_handled_events_and_finished_jobs_past_retention() {
    let (db, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    let exec = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    exec("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING')").await;
    exec("INSERT INTO slack_users (user_id, team_id) VALUES ('U0KIMJT01', 'T0ROBEING')").await;
    // Events 40 days old: two handled, one dead, one still queued; and one
    // handled yesterday.
    exec(
        "INSERT INTO slack_events (event_id, team_id, kind, source, payload, received_at, state, attempts, last_error, finished_at)
         SELECT id, 'T0ROBEING', 'message', 'http', '{}', now() - make_interval(days => age), state, attempts, error,
                CASE WHEN state IN ('done', 'dead') THEN now() - make_interval(days => age) END
         FROM (VALUES ('Ev0OLDDONE', 40, 'done', 1, NULL), ('Ev0OLDDONE2', 40, 'done', 1, NULL),
                      ('Ev0OLDDEAD', 40, 'dead', 12, 'Slack refused'), ('Ev0OLDQUEUED', 40, 'queued', 0, NULL),
                      ('Ev0RECENT', 1, 'done', 1, NULL)) v(id, age, state, attempts, error)",
    )
    .await;
    // Jobs 40 days old: one dead, one still queued; and one done yesterday.
    exec(
        "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, last_error, created_at, finished_at) VALUES
         ('memory_upsert', 'memory:dead', '{}', 'dead', 12, 'ChromaDB refused', now() - interval '40 days', now() - interval '40 days'),
         ('memory_upsert', 'memory:recent', '{}', 'done', 1, NULL, now() - interval '1 day', now() - interval '1 day')",
    )
    .await;
    exec(
        "INSERT INTO jobs (kind, dedupe_key, payload, created_at) VALUES
         ('memory_upsert', 'memory:queued', '{}', now() - interval '40 days')",
    )
    .await;
    // More finished jobs than one batch deletes, and a conversation that
    // points at a handled event.
    exec(
        "INSERT INTO jobs (kind, payload, state, attempts, created_at, finished_at)
         SELECT 'memory_upsert', '{}', 'done', 1, now() - interval '40 days', now() - interval '31 days'
         FROM generate_series(1, 12000)",
    )
    .await;
    exec(
        "INSERT INTO exchanges (user_id, channel_id, user_ts, user_text, event_id)
         VALUES ('U0KIMJT01', 'D0KIMJT01', '1.0001', '하이', 'Ev0OLDDONE')",
    )
    .await;
    let vars = [("DATABASE_URL", db.as_str()), ("RETENTION_DAYS", "30")];

    let out = run_binary(&["prune"], &vars).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("pruned 2 handled Slack event(s) and 12000 finished job(s) older than 30 day(s)"),
        "{}",
        text(&out)
    );
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM slack_events ORDER BY event_id").fetch_all(&pool).await.unwrap();
    assert_eq!(events, ["Ev0OLDDEAD", "Ev0OLDQUEUED", "Ev0RECENT"]);
    let jobs: Vec<(String, String)> =
        sqlx::query_as("SELECT COALESCE(dedupe_key, kind), state FROM jobs ORDER BY 1").fetch_all(&pool).await.unwrap();
    let jobs: Vec<(&str, &str)> = jobs.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect();
    assert_eq!(jobs, [("memory:dead", "dead"), ("memory:queued", "queued"), ("memory:recent", "done")]);
    // The conversation is the user's: kept, only its link to the event is gone.
    let link: Option<Option<String>> = sqlx::query_scalar("SELECT event_id FROM exchanges WHERE user_ts = '1.0001'")
        .fetch_optional(&pool)
        .await
        .unwrap();
    assert_eq!(link, Some(None));

    let again = run_binary(&["prune"], &vars).await;
    assert!(text(&again).contains("pruned 0 handled Slack event(s) and 0 finished job(s)"), "{}", text(&again));
    let off = run_binary(&["prune"], &[("DATABASE_URL", db.as_str()), ("RETENTION_DAYS", "0")]).await;
    assert_eq!(off.status.code(), Some(0));
    assert!(text(&off).contains("retention is off"), "{}", text(&off));
    let bad = run_binary(&["prune"], &[("DATABASE_URL", db.as_str()), ("RETENTION_DAYS", "a month")]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("RETENTION_DAYS"), "{}", text(&bad));
}

/// A PDF of `refs` references to one stream of `zeros` zero bytes,
/// deflated: a few MB that a reader unpacks to `refs × zeros` bytes of page
/// content (a decompression bomb).
fn pdf_bomb(zeros: usize, refs: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..zeros / chunk.len() {
        deflate.write_all(&chunk).unwrap();
    }
    let stream = deflate.finish().unwrap();
    let contents = vec!["4 0 R"; refs].join(" ");
    robeing::documents::pdf::from_objects(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [{contents}] >>").into_bytes(),
        [
            format!("<< /Length {} /Filter /FlateDecode >>\nstream\n", stream.len()).into_bytes(),
            stream,
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ])
}

#[tokio::test]
async fn read_document_leaves_itself_its_memory_allowance_over_what_it_has_mapped() {
    // mimalloc maps a 1 GiB arena writable before `main` on a machine that
    // overcommits, and RLIMIT_DATA counts it: a limit of 512 MiB set over
    // it failed an allocation the arena could not serve, about 1 read in
    // 50 of an ordinary document ("out of memory"). The child blocks on its
    // input after setting the limit; it must leave it room to grow.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_robeing"))
        .arg("read-document")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let proc = format!("/proc/{}", child.id().unwrap());
    let field = |file: &str, prefix: &str| -> Option<String> {
        let text = std::fs::read_to_string(format!("{proc}/{file}")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_owned())
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let limit: u64 = loop {
        let max_data = field("limits", "Max data size").unwrap_or_default();
        match max_data.split_whitespace().next() {
            Some(n) if n != "unlimited" => break n.parse().unwrap(),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "the reader set no data limit: {max_data:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mapped_kib: u64 = field("status", "VmData:").unwrap().trim_end_matches("kB").trim().parse().unwrap();
    drop(child.stdin.take());
    let _ = child.wait().await;
    assert!(
        limit >= mapped_kib * 1024 + robeing::documents::READER_MEMORY,
        "limit {limit} bytes, {mapped_kib} KiB mapped already: less than {} MiB to grow",
        robeing::documents::READER_MEMORY >> 20
    );
    assert!(
        limit <= mapped_kib * 1024 + robeing::documents::READER_MEMORY + (64 << 20),
        "limit {limit} bytes with {mapped_kib} KiB mapped: the allowance is {} MiB, not more",
        robeing::documents::READER_MEMORY >> 20
    );
}

#[tokio::test]
async fn read_pdf_stops_at_its_memory_limit_on_a_pdf_that_unpacks_to_gigabytes() {
    // 2 GiB of page content from a file well under the 10 MB a user may send.
    let bomb = pdf_bomb(64 << 20, 32);
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let out = run_binary_with_stdin(&["read-document"], &[], &bomb).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("memory allocation of"), "the allocation past the limit failed: {said}");
    assert!(out.stdout.is_empty(), "no text: {:?}", String::from_utf8_lossy(&out.stdout));

    // The same content in an amount a real PDF has is read (as no text).
    let small = pdf_bomb(8 << 20, 4);
    // (`read-pdf`: the command's name before it read Office files.)
    let out = run_binary_with_stdin(&["read-pdf"], &[], &small).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"robeing-pdf-text/1\n"));

    // The server's side: the file is unreadable, and the server goes on.
    let reader = std::path::Path::new(env!("CARGO_BIN_EXE_robeing"));
    assert_eq!(robeing::documents::text_of(reader, &bomb).await, Err(robeing::documents::ReadError::Unreadable));
}
