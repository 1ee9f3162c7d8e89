//! OAuth `state` values (`oauth_states`): only their SHA-256 is stored, each
//! bound to one Slack user and carrying that flow's encrypted PKCE verifier.
//! A state is consumed atomically (one `UPDATE … RETURNING`), so two
//! callbacks racing with the same state cannot both succeed.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Stores a new state for `ttl_secs` seconds.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    state_hash: &[u8],
    user_id: &str,
    pkce_verifier_ciphertext: &[u8],
    ttl_secs: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO oauth_states (state_hash, user_id, pkce_verifier_ciphertext, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))"#,
        state_hash,
        user_id,
        pkce_verifier_ciphertext,
        ttl_secs
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Uses a state: succeeds once, and only before it expires. Returns the user
/// and the encrypted PKCE verifier.
pub async fn consume(
    executor: impl PgExecutor<'_>,
    state_hash: &[u8],
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"UPDATE oauth_states SET used_at = now()
           WHERE state_hash = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING user_id, pkce_verifier_ciphertext"#,
        state_hash
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| (r.user_id, r.pkce_verifier_ciphertext)))
}

/// A state that could not be consumed, for the error page: whose it was,
/// and whether it was used or expired.
#[derive(Debug, Clone)]
pub struct Spent {
    pub user_id: String,
    pub used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

pub async fn lookup(executor: impl PgExecutor<'_>, state_hash: &[u8]) -> Result<Option<Spent>, sqlx::Error> {
    sqlx::query_as!(Spent, r#"SELECT user_id, used_at, expires_at FROM oauth_states WHERE state_hash = $1"#, state_hash)
        .fetch_optional(executor)
        .await
}

/// Deletes states that expired more than a day ago.
pub async fn prune(executor: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    sqlx::query!(r#"DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'"#)
        .execute(executor)
        .await
        .map(|r| r.rows_affected())
}
