//! Access tokens: [`access_token`] is the only way robeing's Gmail code gets
//! one. A token valid for at least [`REFRESH_AHEAD`] is read without a lock
//! (one round trip). Otherwise it reads the user's row `FOR UPDATE`, so one refresh runs at a time
//! per user (across processes too); refreshes when the access token expires
//! within [`REFRESH_AHEAD`]; stores whatever new refresh token Google sends;
//! and on `invalid_grant` records the breakage, deletes the tokens and queues
//! exactly one reconnect prompt — all in one transaction. A 5xx or network
//! failure is retried with backoff and changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{
    GmailAccessError, RECONNECT_PROMPT_JOB,
    oauth::{self, RefreshError, Refreshed},
    vault::Purpose,
};
use crate::{
    startup::AppState,
    storage::{self, gmail::SealedAccess},
};

/// Refresh when the access token has less than this left: a briefing's Gmail
/// calls take seconds, so five minutes means a token never expires mid-use.
pub const REFRESH_AHEAD: chrono::Duration = chrono::Duration::minutes(5);

/// Attempts at Google's token endpoint per refresh when it fails transiently.
pub const REFRESH_ATTEMPTS: u32 = 3;

/// Wait before the second attempt; doubled each time (0.5 s, 1 s). Short,
/// because the row stays locked meanwhile; the caller retries later anyway.
pub const REFRESH_BACKOFF: Duration = Duration::from_millis(500);

/// A usable access token for `user_id`, refreshed if needed.
pub async fn access_token(state: &AppState, user_id: &str) -> Result<SecretString, GmailAccessError> {
    token(state, user_id, None, false).await
}

/// Like [`access_token`], starting from the sealed token the caller read
/// with the connection's state: when it is still valid, no query at all.
pub async fn access_token_given(
    state: &AppState,
    user_id: &str,
    known: Option<&SealedAccess>,
) -> Result<SecretString, GmailAccessError> {
    token(state, user_id, known, false).await
}

/// Like [`access_token`] but always refreshes (after Gmail answered 401).
pub async fn force_refresh(state: &AppState, user_id: &str) -> Result<SecretString, GmailAccessError> {
    token(state, user_id, None, true).await
}

fn temporary(e: impl Into<anyhow::Error>) -> GmailAccessError {
    GmailAccessError::Temporary(e.into())
}

async fn token(
    state: &AppState,
    user_id: &str,
    known: Option<&SealedAccess>,
    force: bool,
) -> Result<SecretString, GmailAccessError> {
    if state.config.google.is_none() {
        return Err(GmailAccessError::NotConfigured);
    }
    let vault = state.vault.as_deref().ok_or(GmailAccessError::NotConfigured)?;
    // The common case needs no lock: a valid token is read, not changed.
    if !force {
        let valid_after = Utc::now() + REFRESH_AHEAD;
        let valid = match known {
            Some(k) => Some(k).filter(|k| k.expires_at > valid_after).cloned(),
            None => storage::gmail::valid_access_token(&state.db, user_id, valid_after).await?,
        };
        if let Some(k) = valid {
            return vault.decrypt(&k.key_id, user_id, Purpose::Access, &k.sealed).map_err(temporary);
        }
    }
    let mut tx = state.db.begin().await?;
    let conn = storage::gmail::get_for_update(&mut *tx, user_id).await?.ok_or(GmailAccessError::NotConnected)?;
    match conn.state.as_str() {
        "connected" => {}
        "needs_reconnect" => {
            return Err(GmailAccessError::NeedsReconnect {
                since: conn.broken_at.unwrap_or_else(Utc::now),
                reason: conn.broken_reason.unwrap_or_default(),
            });
        }
        _ => return Err(GmailAccessError::NotConnected),
    }
    let key_id = conn.token_key_id.as_deref().unwrap_or_default();
    if !force
        && let (Some(sealed), Some(expires)) = (&conn.access_token_ciphertext, conn.access_token_expires_at)
        && expires > Utc::now() + REFRESH_AHEAD
    {
        return vault.decrypt(key_id, user_id, Purpose::Access, sealed).map_err(temporary);
    }
    let sealed_refresh = conn.refresh_token_ciphertext.as_deref().unwrap_or_default();
    let refresh_token = vault.decrypt(key_id, user_id, Purpose::Refresh, sealed_refresh).map_err(temporary)?;

    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        match oauth::refresh(&state.config, &state.http, &refresh_token).await {
            Ok(outcome) => break outcome,
            Err(RefreshError::Transient(e)) if attempt < REFRESH_ATTEMPTS => {
                tracing::warn!(user_id, attempt, error = format!("{e:#}"), "token refresh failed; retrying");
                tokio::time::sleep(REFRESH_BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            Err(RefreshError::Transient(e) | RefreshError::Permanent(e)) => {
                crate::metrics::metrics().token_refreshes.get_or_create(&crate::metrics::outcome("error")).inc();
                return Err(GmailAccessError::Temporary(e));
            }
        }
    };
    match outcome {
        Refreshed::Tokens { access, refresh, expires_at } => {
            let tokens = oauth::seal(vault, user_id, &refresh, &access, expires_at).map_err(temporary)?;
            storage::gmail::update_tokens(&mut *tx, user_id, &tokens).await?;
            tx.commit().await?;
            tracing::info!(user_id, "Gmail access token refreshed");
            crate::metrics::metrics().token_refreshes.get_or_create(&crate::metrics::outcome("ok")).inc();
            Ok(access)
        }
        Refreshed::Revoked { reason } => {
            let since = break_connection(&mut tx, user_id, &reason).await?;
            tx.commit().await?;
            state.wake_workers.notify_one();
            tracing::warn!(user_id, reason = %reason, "Gmail connection needs reconnect");
            crate::metrics::metrics().token_refreshes.get_or_create(&crate::metrics::outcome("invalid_grant")).inc();
            Err(GmailAccessError::NeedsReconnect { since: since.unwrap_or_else(Utc::now), reason })
        }
    }
}

/// Marks a connection broken and queues its one reconnect prompt, inside
/// the caller's transaction. Returns the breakage time if this call broke it.
pub async fn break_connection(
    tx: &mut sqlx::PgConnection,
    user_id: &str,
    reason: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let Some(broken_at) = storage::gmail::mark_needs_reconnect(&mut *tx, user_id, reason).await? else {
        return Ok(None);
    };
    let payload = serde_json::json!({ "user_id": user_id, "broken_at_us": broken_at.timestamp_micros() });
    let dedupe = format!("reconnect:{user_id}:{}", broken_at.timestamp_micros());
    storage::jobs::enqueue(&mut *tx, RECONNECT_PROMPT_JOB, Some(&dedupe), &payload, None).await?;
    Ok(Some(broken_at))
}

/// Records a breakage found outside a refresh (Gmail refused a fresh token).
pub async fn mark_broken(state: &AppState, user_id: &str, reason: &str) -> Result<GmailAccessError, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let since = break_connection(&mut tx, user_id, reason).await?;
    tx.commit().await?;
    state.wake_workers.notify_one();
    Ok(GmailAccessError::NeedsReconnect { since: since.unwrap_or_else(Utc::now), reason: reason.to_owned() })
}
