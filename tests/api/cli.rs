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
