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
