//! Google: everything robeing does with a user's Gmail.
//!
//! - [`vault`]: AES-256-GCM encryption of tokens at rest, key rotation, the
//!   start-up key canary.
//! - [`links`]: short-lived signed connect links (`/oauth/google/start?t=…`).
//! - [`oauth`]: the authorization-code + PKCE flow (the `oauth2` crate over
//!   our reqwest client), and refreshing tokens.
//! - [`tokens`]: [`tokens::access_token`], the one way to get a usable access
//!   token: refreshes ahead of expiry, one refresh per user at a time, and on
//!   `invalid_grant` records the breakage and queues one reconnect prompt.
//! - [`prompt`]: the user-facing side: Reconnect prompts (Block Kit DMs),
//!   the App Home section, disconnect.
//! - [`gmail`]: the Gmail API client (inbox listing, and message metadata
//!   through Gmail's batch endpoint).
//! - [`batch`]: the batch endpoint's wire format (`multipart/mixed` of
//!   `application/http` parts), built and parsed without I/O.
//!
//! Callers branch on [`GmailAccessError`]: not configured, not connected,
//! needs reconnect (since when, why), or a temporary failure.

pub mod batch;
pub mod gmail;
pub mod links;
pub mod oauth;
pub mod prompt;
pub mod tokens;
pub mod vault;

use chrono::{DateTime, Utc};

pub use links::connect_link;
pub use prompt::{disconnect, home_blocks, prompt_if_needed, remind_before_briefing};
pub use tokens::access_token;

/// The scope robeing needs: read the inbox. (`gmail.metadata` would be
/// narrower but forbids the `q` search parameter we list the inbox with.)
pub const GMAIL_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// Every scope requested: Gmail, plus `openid email` to learn the address.
pub const SCOPES: &[&str] = &[GMAIL_SCOPE, "openid", "email"];

/// The job kind that DMs one reconnect prompt for one breakage.
pub const RECONNECT_PROMPT_JOB: &str = "gmail_reconnect_prompt";

/// Why robeing cannot use a user's Gmail right now.
#[derive(Debug, thiserror::Error)]
pub enum GmailAccessError {
    /// `GOOGLE_CLIENT_ID` (or the encryption key) is not configured.
    #[error("Gmail is not configured on this robeing")]
    NotConfigured,
    /// The user never connected Gmail, or disconnected it.
    #[error("Gmail is not connected")]
    NotConnected,
    /// The connection broke (token revoked or expired): the user must reconnect.
    #[error("Gmail needs to be reconnected (since {since}): {reason}")]
    NeedsReconnect { since: DateTime<Utc>, reason: String },
    /// Google or the database failed for now; nothing about the connection changed.
    #[error("Gmail is temporarily unavailable: {0:#}")]
    Temporary(anyhow::Error),
}

impl GmailAccessError {
    /// The `briefings.email_status` value for this failure.
    pub fn email_status(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::NotConnected => "not_connected",
            Self::NeedsReconnect { .. } => "needs_reconnect",
            Self::Temporary(_) => "error",
        }
    }
}

/// A user's Gmail connection as people and operators see it (App Home,
/// `robeing status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GmailStatus {
    NotConfigured,
    NotConnected,
    Connected { email: String, since: Option<DateTime<Utc>> },
    NeedsReconnect { since: DateTime<Utc>, reason: String, prompted_at: Option<DateTime<Utc>> },
}

impl std::fmt::Display for GmailStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConfigured => f.write_str("not configured"),
            Self::NotConnected => f.write_str("not connected"),
            Self::Connected { email, .. } => write!(f, "connected as {email}"),
            Self::NeedsReconnect { since, reason, .. } => {
                write!(f, "needs reconnect since {} ({reason})", since.format("%Y-%m-%d %H:%M UTC"))
            }
        }
    }
}

/// Reads one user's [`GmailStatus`].
pub async fn status(state: &crate::startup::AppState, user_id: &str) -> Result<GmailStatus, sqlx::Error> {
    if state.config.google.is_none() {
        return Ok(GmailStatus::NotConfigured);
    }
    Ok(match crate::storage::gmail::get(&state.db, user_id).await? {
        Some(c) if c.state == "connected" => {
            GmailStatus::Connected { email: c.google_email.unwrap_or_default(), since: c.connected_at }
        }
        Some(c) if c.state == "needs_reconnect" => GmailStatus::NeedsReconnect {
            since: c.broken_at.unwrap_or_else(Utc::now),
            reason: c.broken_reason.unwrap_or_default(),
            prompted_at: c.reconnect_prompted_at,
        },
        _ => GmailStatus::NotConnected,
    })
}

impl From<sqlx::Error> for GmailAccessError {
    fn from(e: sqlx::Error) -> Self {
        Self::Temporary(anyhow::Error::new(e).context("database"))
    }
}
