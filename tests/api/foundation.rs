//! Foundation: fail-fast configuration and database, schema invariants,
//! readiness, doctor, the embedded default, the signing helper.

use std::time::Duration;

use crate::helpers::*;

#[test]
fn signing_helper_matches_slacks_documented_example() {
    // The worked example from Slack's "Verifying requests from Slack" guide.
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let ts = "1531420618";
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        slack_signature(secret, ts, body.as_bytes()),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[tokio::test]
async fn healthz_answers_and_readyz_reports_each_dependency() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], true);
    let names: Vec<&str> = body["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for expected in ["database", "slack", "chroma", "google", "outbox"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let text = body.to_string();
    assert!(!text.contains(BOT_TOKEN) && !text.contains(SIGNING_SECRET), "readyz leaks a secret: {text}");
    // Start-up checked the bot token with auth.test, with the bot token.
    let auth = app.slack.requests_to("/api/auth.test");
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].headers["authorization"], format!("Bearer {BOT_TOKEN}"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_route_is_404_json() {
    let app = spawn_app().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ok"], false);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_database_name_stops_start_up_with_exit_2_naming_it() {
    let slack = crate::fakes::slack::start().await;
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path("auth_db_does_not_exist");
    for command in [&["serve"][..], &["migrate"][..]] {
        let out = run_binary(
            command,
            &[
                ("DATABASE_URL", url.as_str()),
                ("SLACK_BOT_TOKEN", BOT_TOKEN),
                ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
                ("SLACK_API_URL", &slack.url("/api")),
                ("ROBEING_LISTEN", "127.0.0.1:0"),
            ],
        )
        .await;
        let text = text(&out);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {text}");
        assert!(text.contains("auth_db_does_not_exist") && text.contains("does not exist"), "{command:?}: {text}");
        assert!(text.contains("127.0.0.1:5432"), "names host and port: {text}");
    }
}

#[tokio::test]
async fn unreachable_postgres_and_bad_configuration_exit_2() {
    let out = run_binary(&["migrate"], &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/main_db")]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("cannot reach PostgreSQL at 127.0.0.1:1") && t.contains("main_db"), "{t}");

    let out = run_binary(&["serve"], &[("ROBEING_LISTEN", "not-an-address")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("ROBEING_LISTEN"), "{}", text(&out));

    let (db, _) = fresh_database().await;
    let out = run_binary(&["serve"], &[("DATABASE_URL", &db)]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("SLACK_BOT_TOKEN"), "{}", text(&out));

    let out = run_binary(&["frobnicate"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "unknown command is bad usage");
}

#[tokio::test]
async fn schema_rejects_the_seeds_connected_without_token() {
    let pool = migrated_pool().await;
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING')").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id) VALUES ('U0KIMJT01', 'T0ROBEING')")
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query(
        "INSERT INTO gmail_connections (user_id, state, google_email, connected_at) VALUES ('U0KIMJT01', 'connected', 'kim@example.com', now())",
    )
    .execute(&pool)
    .await
    .expect_err("connected without a token must be rejected by Postgres");
    let db = err.as_database_error().unwrap();
    assert_eq!(db.code().as_deref(), Some("23514"), "check_violation: {db}");
    assert_eq!(db.constraint(), Some("connected_requires_token"));

    // needs_reconnect must say why; a broken connection keeps no token.
    let err = sqlx::query("INSERT INTO gmail_connections (user_id, state) VALUES ('U0KIMJT01', 'needs_reconnect')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(err.as_database_error().unwrap().constraint(), Some("needs_reconnect_says_why"));
    let err = sqlx::query("INSERT INTO gmail_connections (user_id, state, refresh_token_ciphertext) VALUES ('U0KIMJT01', 'disconnected', '\\x00')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(err.as_database_error().unwrap().constraint(), Some("tokens_only_while_connected"));
    // The valid shapes are accepted.
    sqlx::query("INSERT INTO gmail_connections (user_id, state) VALUES ('U0KIMJT01', 'disconnected')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE gmail_connections SET state = 'connected', google_email = 'kim@example.com', connected_at = now(), token_key_id = 'k1', refresh_token_ciphertext = decode(repeat('ab', 40), 'hex')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // And going back to NULL while connected is refused too.
    let err =
        sqlx::query("UPDATE gmail_connections SET refresh_token_ciphertext = NULL").execute(&pool).await.unwrap_err();
    assert_eq!(err.as_database_error().unwrap().constraint(), Some("connected_requires_token"));
}

#[tokio::test]
async fn an_event_id_is_stored_once() {
    let pool = migrated_pool().await;
    let insert =
        "INSERT INTO slack_events (event_id, kind, source, payload) VALUES ('Ev0DUPLICATE', 'message', 'http', '{}')";
    sqlx::query(insert).execute(&pool).await.unwrap();
    let err = sqlx::query(insert).execute(&pool).await.unwrap_err();
    assert_eq!(err.as_database_error().unwrap().code().as_deref(), Some("23505"));
    // The group-commit path reports the second one as a duplicate and queues it once.
    let ev = robeing::storage::events::NewEvent {
        event_id: "Ev0GROUPED".into(),
        team_id: Some("T0ROBEING".into()),
        kind: "message".into(),
        source: "http",
        retry_num: None,
        payload: serde_json::json!({}),
    };
    let new = robeing::storage::events::record_batch(&pool, &[&ev, &ev]).await.unwrap();
    assert_eq!(new.len(), 1);
    let again = robeing::storage::events::record_batch(&pool, &[&ev]).await.unwrap();
    assert!(again.is_empty());
    let queued: Vec<(String, i32)> =
        sqlx::query_as("SELECT state, attempts FROM slack_events WHERE event_id = 'Ev0GROUPED'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(queued, [("queued".to_owned(), 0)], "one row, queued for handling once");
}

#[tokio::test]
async fn one_daily_briefing_per_user_per_local_date() {
    let pool = migrated_pool().await;
    sqlx::query("INSERT INTO slack_teams (team_id) VALUES ('T0ROBEING')").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO slack_users (user_id, team_id) VALUES ('U0KIMJT01', 'T0ROBEING')")
        .execute(&pool)
        .await
        .unwrap();
    let claim = "INSERT INTO briefings (user_id, local_date, kind, trigger) VALUES ('U0KIMJT01', '2026-11-28', $1, 'scheduler')";
    sqlx::query(claim).bind("daily").execute(&pool).await.unwrap();
    let err = sqlx::query(claim).bind("daily").execute(&pool).await.unwrap_err();
    assert_eq!(err.as_database_error().unwrap().code().as_deref(), Some("23505"));
    sqlx::query(claim).bind("on_demand").execute(&pool).await.expect("on-demand briefings are not limited");
    let err =
        sqlx::query("UPDATE briefings SET status = 'delivered' WHERE kind = 'daily'").execute(&pool).await.unwrap_err();
    assert_eq!(err.as_database_error().unwrap().constraint(), Some("delivered_has_message"));
}

#[tokio::test]
async fn doctor_exit_codes() {
    let slack = crate::fakes::slack::start().await;
    let (db, _) = fresh_database().await;
    let api = slack.url("/api");
    let base =
        [("SLACK_BOT_TOKEN", BOT_TOKEN), ("SLACK_SIGNING_SECRET", SIGNING_SECRET), ("SLACK_API_URL", api.as_str())];

    let mut healthy = base.to_vec();
    healthy.push(("DATABASE_URL", &db));
    let out = run_binary(&["doctor"], &healthy).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let db_name = db.rsplit('/').next().unwrap();
    assert!(t.contains(&format!("connected to database `{db_name}`")), "{t}");
    assert!(t.contains("✓ Slack: auth.test ok"), "{t}");
    assert!(t.contains("✓ Slack: the bot token has all 8 scopes manifest.yaml requests"), "{t}");

    let mut wrong_db = base.to_vec();
    let bad_url = db.replace(db_name, "auth_db");
    wrong_db.push(("DATABASE_URL", &bad_url));
    let out = run_binary(&["doctor"], &wrong_db).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("✗ PostgreSQL") && t.contains("`auth_db` does not exist"), "{t}");

    slack.script(
        "/api/auth.test",
        [crate::fakes::recorder::Scripted::json(200, serde_json::json!({"ok": false, "error": "invalid_auth"}))],
    );
    let out = run_binary(&["doctor"], &healthy).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("✗ Slack") && t.contains("invalid_auth"), "{t}");

    let mut chroma_down = healthy.clone();
    chroma_down.push(("CHROMA_URL", "http://127.0.0.1:9"));
    let out = run_binary(&["doctor"], &chroma_down).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("✗ ChromaDB"), "{t}");

    let mut bad_config = healthy.clone();
    bad_config.push(("BRIEFING_TIME", "9 o'clock"));
    let out = run_binary(&["doctor"], &bad_config).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("BRIEFING_TIME"));
}

#[tokio::test]
async fn embedded_default_comes_up_and_readyz_follows_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options { embedded_data_dir: Some(dir.path().to_path_buf()), ..Default::default() }).await;
    assert!(dir.path().join("postgres/data/PG_VERSION").exists(), "the embedded cluster was created");
    let r = app.get("/readyz").await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert!(body["checks"][0]["detail"].as_str().unwrap().contains("`robeing`"), "{body}");

    // Stop PostgreSQL under the running app: readiness must say so.
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"][0]["name"], "database");
    assert_eq!(body["checks"][0]["ok"], false);

    // Bring it back: ready again without restarting robeing.
    let _pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readyz recovers when PostgreSQL returns");
    app.stop().await.unwrap();
    // Graceful shutdown stopped the embedded server.
    let pg = robeing::storage::embedded::EmbeddedPostgres::start(dir.path()).await.unwrap();
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_events() {
    let app = spawn_app().await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    let before = r.text().await.unwrap();
    assert!(before.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    for family in ["robeing_reply_latency_seconds", "robeing_exchanges_stored", "robeing_socket_mode_connected"] {
        assert!(before.contains(&format!("# TYPE {family}")), "{family} missing:\n{before}");
    }
    // A job queued directly shows up in the backlog gauge at the next scrape.
    robeing::storage::jobs::enqueue(
        &app.db,
        "metrics_probe",
        None,
        &serde_json::json!({}),
        Some(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await
    .unwrap();
    // So do inbound events, their own queue: one due in an hour, one dead.
    sqlx::query(
        "INSERT INTO slack_events (event_id, kind, source, payload, state, attempts, run_at, last_error, finished_at) VALUES
         ('Ev0LATER', 'message', 'http', '{}', 'queued', 1, now() + interval '1 hour', 'Slack answered 500', NULL),
         ('Ev0DIED', 'message', 'http', '{}', 'dead', 12, now(), 'channel_not_found', now())",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let after = app.get("/metrics").await.text().await.unwrap();
    assert!(after.contains("robeing_job_backlog{kind=\"metrics_probe\"} 1"), "{after}");
    assert!(after.contains("robeing_job_backlog{kind=\"slack_event\"} 1"), "{after}");
    assert!(after.contains("robeing_jobs_dead{kind=\"slack_event\"} 1"), "{after}");
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    let outbox = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == "outbox").unwrap().to_string();
    assert!(outbox.contains("2 pending") && outbox.contains("1 dead"), "events count in the outbox check: {outbox}");
    app.stop().await.unwrap();
}

/// `robeing serve` runs the job workers on niced threads, so a busy machine
/// serves Slack's acknowledgements first; the threads that accept requests
/// keep the process's own priority, and `JOB_WORKER_THREADS` sets how many
/// worker threads there are. Read from `/proc` of the real binary.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn serve_runs_the_workers_at_a_lower_priority_than_the_acknowledgements() {
    let (db_url, _) = fresh_database().await;
    let (slack, _workspace) = crate::fakes::slack::start_with_workspace().await;
    let server = crate::process::Server::start(vec![
        ("DATABASE_URL".into(), db_url),
        ("SLACK_BOT_TOKEN".into(), "xoxb-test-priority".into()),
        ("SLACK_SIGNING_SECRET".into(), "priority-test-secret".into()),
        ("SLACK_API_URL".into(), slack.url("/api")),
        ("BRIEFING_SCHEDULER".into(), "off".into()),
        ("NEWS_FEEDS".into(), "http://127.0.0.1:9/feed.xml".into()),
        ("JOB_WORKER_THREADS".into(), "3".into()),
    ])
    .await;
    let pid = server.pid();
    // Field 19 of /proc/<pid>/task/<tid>/stat is the nice value; the name
    // (field 2) is in parentheses and may hold spaces, so split after it.
    let threads: Vec<(String, i64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .map(|stat| {
            let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_owned();
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            (name, fields[16].parse().unwrap())
        })
        .collect();
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, n)| *n).collect()
    };
    let process_nice = threads.iter().find(|(name, _)| name == "robeing").map(|(_, n)| *n).expect("the main thread");
    let background = nice_of("robeing-backgro");
    let acknowledging = nice_of("tokio-rt-worker");
    assert!(!background.is_empty() && !acknowledging.is_empty(), "{threads:?}");
    // JOB_WORKER_THREADS=3 gives three worker threads (the runtime's blocking
    // pool shares their name and may add some; the default here would be 1).
    assert!(background.len() >= 3, "three background threads: {threads:?}");
    let expected = (process_nice + robeing::jobs::runtime::BACKGROUND_NICE as i64).min(19);
    assert!(background.iter().all(|n| *n == expected), "background threads at nice {expected}: {threads:?}");
    assert!(acknowledging.iter().all(|n| *n == process_nice), "request threads keep nice {process_nice}: {threads:?}");
    server.stop().await;
}

#[tokio::test]
async fn upgrading_moves_each_events_job_onto_the_event_and_reruns_nothing() {
    // A database as the release before 20261129000000 left it: every event
    // with a `slack_event` job beside it (or none, once retention pruned it).
    let (url, _) = fresh_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    robeing::storage::MIGRATOR.run_to(20261128230000, &pool).await.unwrap();
    sqlx::query(
        "INSERT INTO slack_events (event_id, team_id, kind, source, payload, received_at)
         SELECT id, 'T0ROBEING', 'message', 'http', '{}', now() - interval '1 hour'
         FROM unnest(ARRAY['Ev0WASDONE', 'Ev0WASQUEUED', 'Ev0WASRUNNING', 'Ev0WASDEAD', 'Ev0JOBPRUNED']) id",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, run_at, locked_until, last_error, finished_at) VALUES
         ('slack_event', 'event:Ev0WASDONE', '{\"event_id\": \"Ev0WASDONE\"}', 'done', 1, now(), NULL, NULL, now() - interval '50 minutes'),
         ('slack_event', 'event:Ev0WASQUEUED', '{\"event_id\": \"Ev0WASQUEUED\"}', 'queued', 2, now() + interval '8 seconds', NULL, 'Slack answered 500', NULL),
         ('slack_event', 'event:Ev0WASRUNNING', '{\"event_id\": \"Ev0WASRUNNING\"}', 'running', 1, now(), now() + interval '90 seconds', NULL, NULL),
         ('slack_event', 'event:Ev0WASDEAD', '{\"event_id\": \"Ev0WASDEAD\"}', 'dead', 12, now(), NULL, 'channel_not_found', now()),
         ('memory_upsert', 'memory:x', '{}', 'queued', 0, now(), NULL, NULL, NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();

    robeing::storage::migrate(&pool).await.unwrap();

    let events: Vec<(String, String, i32, Option<String>, bool, bool)> = sqlx::query_as(
        "SELECT event_id, state, attempts, last_error, locked_until IS NOT NULL, finished_at IS NOT NULL
         FROM slack_events ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let row = |id: &str, state: &str, attempts: i32, error: Option<&str>, locked: bool, finished: bool| {
        (id.to_owned(), state.to_owned(), attempts, error.map(str::to_owned), locked, finished)
    };
    assert_eq!(
        events,
        [
            row("Ev0JOBPRUNED", "done", 0, None, false, true),
            row("Ev0WASDEAD", "dead", 12, Some("channel_not_found"), false, true),
            row("Ev0WASDONE", "done", 1, None, false, true),
            row("Ev0WASQUEUED", "queued", 2, Some("Slack answered 500"), false, false),
            row("Ev0WASRUNNING", "running", 1, None, true, false),
        ],
        "finished events stay finished (nothing is answered twice), pending ones keep their place"
    );
    let jobs: Vec<String> = sqlx::query_scalar("SELECT kind FROM jobs").fetch_all(&pool).await.unwrap();
    assert_eq!(jobs, ["memory_upsert"], "the event jobs are gone, the others untouched");
    // New events are queued by default.
    sqlx::query(
        "INSERT INTO slack_events (event_id, kind, source, payload) VALUES ('Ev0NEW', 'message', 'http', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let state: String =
        sqlx::query_scalar("SELECT state FROM slack_events WHERE event_id = 'Ev0NEW'").fetch_one(&pool).await.unwrap();
    assert_eq!(state, "queued");
}
