//! Gmail connections (`gmail_connections`) and the token vault's key
//! canaries (`vault_keys`). Tokens arrive here already encrypted; this module
//! never sees a plaintext token. The schema's CHECK constraints make
//! "connected without a token" and "a token kept after a breakage" impossible.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// One user's stored Gmail connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub user_id: String,
    pub state: String,
    pub google_email: Option<String>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub access_token_ciphertext: Option<Vec<u8>>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub token_key_id: Option<String>,
    pub scopes: Vec<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub broken_at: Option<DateTime<Utc>>,
    pub broken_reason: Option<String>,
    pub reconnect_prompted_at: Option<DateTime<Utc>>,
    pub reconnect_reminded_at: Option<DateTime<Utc>>,
    pub reconnect_prompt_channel: Option<String>,
    pub reconnect_prompt_ts: Option<String>,
}

/// Tokens sealed by the vault, ready to store.
#[derive(Debug, Clone)]
pub struct SealedTokens {
    pub key_id: String,
    pub refresh: Vec<u8>,
    pub access: Vec<u8>,
    pub access_expires_at: DateTime<Utc>,
}

/// One user's connection, if any.
pub async fn get(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<Connection>, sqlx::Error> {
    sqlx::query_as!(
        Connection,
        r#"SELECT user_id, state, google_email, refresh_token_ciphertext, access_token_ciphertext,
                  access_token_expires_at, token_key_id, scopes, connected_at, broken_at, broken_reason,
                  reconnect_prompted_at, reconnect_reminded_at, reconnect_prompt_channel, reconnect_prompt_ts
           FROM gmail_connections WHERE user_id = $1"#,
        user_id
    )
    .fetch_optional(executor)
    .await
}

/// An access token as stored: sealed by the vault, with its key id and
/// expiry. (Its `Debug` leaves the ciphertext out.)
#[derive(Clone)]
pub struct SealedAccess {
    pub key_id: String,
    pub sealed: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SealedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAccess").field("key_id", &self.key_id).field("expires_at", &self.expires_at).finish()
    }
}

impl SealedAccess {
    /// From a connection row's columns: only a `connected` row with all three.
    pub fn of_row(
        state: &str,
        key_id: Option<String>,
        sealed: Option<Vec<u8>>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Option<Self> {
        match (state, key_id, sealed, expires_at) {
            ("connected", Some(key_id), Some(sealed), Some(expires_at)) => Some(Self { key_id, sealed, expires_at }),
            _ => None,
        }
    }
}

/// A connected user's sealed access token when it is still valid after
/// `valid_after`, without locking anything: the common case of
/// [`crate::google::tokens::access_token`], one round trip. `None` means
/// "take the locking path" (expiring, broken, absent).
pub async fn valid_access_token(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    valid_after: DateTime<Utc>,
) -> Result<Option<SealedAccess>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT token_key_id AS "key_id!", access_token_ciphertext AS "sealed!",
                  access_token_expires_at AS "expires_at!"
           FROM gmail_connections
           WHERE user_id = $1 AND state = 'connected' AND access_token_expires_at > $2
             AND token_key_id IS NOT NULL AND access_token_ciphertext IS NOT NULL"#,
        user_id,
        valid_after
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| SealedAccess { key_id: r.key_id, sealed: r.sealed, expires_at: r.expires_at }))
}

/// One user's connection, locked until the transaction ends: one token
/// refresh at a time per user, across processes.
pub async fn get_for_update(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<Connection>, sqlx::Error> {
    sqlx::query_as!(
        Connection,
        r#"SELECT user_id, state, google_email, refresh_token_ciphertext, access_token_ciphertext,
                  access_token_expires_at, token_key_id, scopes, connected_at, broken_at, broken_reason,
                  reconnect_prompted_at, reconnect_reminded_at, reconnect_prompt_channel, reconnect_prompt_ts
           FROM gmail_connections WHERE user_id = $1 FOR UPDATE"#,
        user_id
    )
    .fetch_optional(executor)
    .await
}

/// Stores a fresh connection (after a successful OAuth flow): `connected`,
/// with its tokens; any earlier breakage and prompt bookkeeping is cleared.
pub async fn save_connected(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    email: &str,
    scopes: &[String],
    tokens: &SealedTokens,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO gmail_connections
               (user_id, state, google_email, refresh_token_ciphertext, access_token_ciphertext,
                access_token_expires_at, token_key_id, scopes, connected_at)
           VALUES ($1, 'connected', $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (user_id) DO UPDATE SET
               state = 'connected', google_email = $2, refresh_token_ciphertext = $3,
               access_token_ciphertext = $4, access_token_expires_at = $5, token_key_id = $6,
               scopes = $7, connected_at = now(), broken_at = NULL, broken_reason = NULL,
               reconnect_prompted_at = NULL, reconnect_reminded_at = NULL,
               reconnect_prompt_channel = NULL, reconnect_prompt_ts = NULL, updated_at = now()"#,
        user_id,
        email,
        tokens.refresh,
        tokens.access,
        tokens.access_expires_at,
        tokens.key_id,
        scopes
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Stores refreshed tokens for a connected user (both re-sealed with the
/// current key, so a rotation completes row by row).
pub async fn update_tokens(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    tokens: &SealedTokens,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET refresh_token_ciphertext = $2, access_token_ciphertext = $3,
                  access_token_expires_at = $4, token_key_id = $5, updated_at = now()
           WHERE user_id = $1 AND state = 'connected'"#,
        user_id,
        tokens.refresh,
        tokens.access,
        tokens.access_expires_at,
        tokens.key_id
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Forgets the cached access token (after Gmail answered 401), so the next
/// call refreshes.
pub async fn expire_access_token(executor: impl PgExecutor<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET access_token_ciphertext = NULL, access_token_expires_at = NULL, updated_at = now()
           WHERE user_id = $1"#,
        user_id
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// A connected user's connection broke: tokens are deleted and the reason
/// and time recorded. Returns `broken_at` when this call made the change
/// (`None` if it was not connected, so one breakage is recorded once).
pub async fn mark_needs_reconnect(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    reason: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE gmail_connections SET state = 'needs_reconnect', refresh_token_ciphertext = NULL,
                  access_token_ciphertext = NULL, access_token_expires_at = NULL, token_key_id = NULL,
                  broken_at = now(), broken_reason = $2, reconnect_prompted_at = NULL,
                  reconnect_reminded_at = NULL, reconnect_prompt_channel = NULL, reconnect_prompt_ts = NULL,
                  updated_at = now()
           WHERE user_id = $1 AND state = 'connected'
           RETURNING broken_at AS "broken_at!""#,
        user_id,
        reason
    )
    .fetch_optional(executor)
    .await
}

/// Records the reconnect prompt posted for one breakage (identified by its
/// `broken_at`). Returns false if the breakage is over or was already prompted.
pub async fn record_reconnect_prompt(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    broken_at: DateTime<Utc>,
    channel: &str,
    ts: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET reconnect_prompted_at = now(), reconnect_prompt_channel = $3,
                  reconnect_prompt_ts = $4, updated_at = now()
           WHERE user_id = $1 AND state = 'needs_reconnect' AND broken_at = $2 AND reconnect_prompted_at IS NULL"#,
        user_id,
        broken_at,
        channel,
        ts
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Records a "connect Gmail" prompt for a user who never connected (or
/// disconnected): the row exists as `disconnected`, without tokens.
pub async fn record_connect_prompt(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    channel: &str,
    ts: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO gmail_connections (user_id, state, reconnect_prompted_at, reconnect_prompt_channel, reconnect_prompt_ts)
           VALUES ($1, 'disconnected', now(), $2, $3)
           ON CONFLICT (user_id) DO UPDATE SET reconnect_prompted_at = now(), reconnect_prompt_channel = $2,
               reconnect_prompt_ts = $3, updated_at = now()
           WHERE gmail_connections.state = 'disconnected'"#,
        user_id,
        channel,
        ts
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Claims the single pre-briefing reminder of a breakage. True if this call
/// claimed it.
pub async fn claim_reminder(executor: impl PgExecutor<'_>, user_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET reconnect_reminded_at = now(), updated_at = now()
           WHERE user_id = $1 AND state = 'needs_reconnect' AND reconnect_reminded_at IS NULL"#,
        user_id
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Disconnects: tokens deleted, state `disconnected`. Returns whether a row changed.
pub async fn disconnect(executor: impl PgExecutor<'_>, user_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET state = 'disconnected', refresh_token_ciphertext = NULL,
                  access_token_ciphertext = NULL, access_token_expires_at = NULL, token_key_id = NULL,
                  broken_at = NULL, broken_reason = NULL, reconnect_prompted_at = NULL,
                  reconnect_reminded_at = NULL, reconnect_prompt_channel = NULL, reconnect_prompt_ts = NULL,
                  updated_at = now()
           WHERE user_id = $1 AND state <> 'disconnected'"#,
        user_id
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Every stored key canary.
pub async fn canaries(executor: impl PgExecutor<'_>) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
    let rows = sqlx::query!(r#"SELECT key_id, canary FROM vault_keys ORDER BY created_at"#).fetch_all(executor).await?;
    Ok(rows.into_iter().map(|r| (r.key_id, r.canary)).collect())
}

/// Stores the canary of a new key.
pub async fn insert_canary(executor: impl PgExecutor<'_>, key_id: &str, canary: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO vault_keys (key_id, canary) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"#,
        key_id,
        canary
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Deletes a rotated-out key's canary once no stored token uses that key.
pub async fn retire_canary_if_unused(executor: impl PgExecutor<'_>, key_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"DELETE FROM vault_keys WHERE key_id = $1
             AND NOT EXISTS (SELECT 1 FROM gmail_connections WHERE token_key_id = $1)"#,
        key_id
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Connections whose tokens are sealed under `key_id` (for re-sealing after
/// a key rotation): user id, refresh and access ciphertexts.
pub async fn sealed_under(
    executor: impl PgExecutor<'_>,
    key_id: &str,
) -> Result<Vec<(String, Vec<u8>, Option<Vec<u8>>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT user_id, refresh_token_ciphertext AS "refresh!", access_token_ciphertext
           FROM gmail_connections WHERE token_key_id = $1 AND refresh_token_ciphertext IS NOT NULL"#,
        key_id
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.refresh, r.access_token_ciphertext)).collect())
}

/// Replaces one connection's ciphertexts with ones sealed under `new_key_id`,
/// only if they are still the ones sealed under `old_key_id` (a concurrent
/// refresh wins). The access token's expiry is unchanged.
pub async fn reseal(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    old_key_id: &str,
    new_key_id: &str,
    refresh: &[u8],
    access: Option<&[u8]>,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE gmail_connections SET refresh_token_ciphertext = $4, access_token_ciphertext = $5,
                  token_key_id = $3, updated_at = now()
           WHERE user_id = $1 AND token_key_id = $2 AND state = 'connected'"#,
        user_id,
        old_key_id,
        new_key_id,
        refresh,
        access
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Users whose connection needs reconnecting, who were prompted before
/// `prompted_before` and not yet reminded.
pub async fn awaiting_reminder(
    executor: impl PgExecutor<'_>,
    prompted_before: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT user_id FROM gmail_connections
           WHERE state = 'needs_reconnect' AND reconnect_reminded_at IS NULL AND reconnect_prompted_at < $1
           ORDER BY user_id"#,
        prompted_before
    )
    .fetch_all(executor)
    .await
}
