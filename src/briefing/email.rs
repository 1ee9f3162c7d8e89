//! The briefing's Gmail section: decides, for one user, whether mail can be
//! read (Google configured? connection row? its state?) and reads the inbox
//! since a given instant through the Gmail connection's client
//! ([`crate::google::gmail::inbox_since`]: token refresh, one retry on 401,
//! a broken connection recorded with its reconnect prompt).
//!
//! Every outcome is an [`EmailSection`] variant, and every variant other
//! than `Ok` becomes an explicit line in the briefing: the seed's briefings
//! lost their mail section silently, this one cannot.
//! [`reconnect_url`] is the one place that builds the Reconnect link.

use chrono::{DateTime, Utc};

use crate::{
    google::GmailAccessError,
    startup::AppState,
    storage::{briefings::GmailState, users::User},
};

/// Messages listed per briefing. A morning's inbox for one person; more than
/// this is summarised as "N+".
pub const MAX_MESSAGES: usize = 50;

/// One inbox message, as much as a briefing shows (never the body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailItem {
    pub from: String,
    pub subject: String,
    pub snippet: String,
    pub received_at: DateTime<Utc>,
    pub labels: Vec<String>,
}

/// What the Gmail section can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSection {
    Ok {
        items: Vec<MailItem>,
    },
    /// Google is not configured on this robeing (`GOOGLE_CLIENT_ID` unset).
    NotConfigured,
    /// The user never connected Gmail, or disconnected it.
    NotConnected,
    /// The connection broke (token revoked or expired) at `since`.
    NeedsReconnect {
        since: DateTime<Utc>,
        reason: String,
    },
    /// Gmail could not be read this time.
    Error {
        message: String,
    },
}

impl EmailSection {
    /// The value stored in `briefings.email_status`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::NotConfigured => "not_configured",
            Self::NotConnected => "not_connected",
            Self::NeedsReconnect { .. } => "needs_reconnect",
            Self::Error { .. } => "error",
        }
    }

    /// A one-line description for the operator (`briefings.email_detail`).
    pub fn detail(&self) -> String {
        match self {
            Self::Ok { items } => format!("{} messages", items.len()),
            Self::NotConfigured => "Google is not configured (GOOGLE_CLIENT_ID unset)".into(),
            Self::NotConnected => "Gmail is not connected".into(),
            Self::NeedsReconnect { since, reason } => format!("needs reconnect since {since}: {reason}"),
            Self::Error { message } => message.clone(),
        }
    }

    /// Whether a Reconnect button helps.
    pub fn wants_reconnect(&self) -> bool {
        matches!(self, Self::NotConnected | Self::NeedsReconnect { .. })
    }
}

/// The user's Gmail section: inbox mail received since `since`, given the
/// user's connection row as the caller read it (`Err`: the read failed, and
/// the caller logged why).
pub async fn fetch(
    state: &AppState,
    user: &User,
    since: DateTime<Utc>,
    connection: Result<Option<GmailState>, ()>,
) -> EmailSection {
    if state.config.google.is_none() {
        return EmailSection::NotConfigured;
    }
    let Ok(connection) = connection else {
        return EmailSection::Error { message: "robeing could not read its own database".into() };
    };
    let Some(connection) = connection else { return EmailSection::NotConnected };
    match connection.state.as_str() {
        "connected" => {}
        "needs_reconnect" => {
            return EmailSection::NeedsReconnect {
                since: connection.broken_at.unwrap_or(connection.updated_at),
                reason: connection.broken_reason.unwrap_or_else(|| "unknown".into()),
            };
        }
        _ => return EmailSection::NotConnected,
    }
    // The Gmail connection's client: it refreshes the access token, retries a
    // 401 once with a fresh one, and records a broken connection (with its
    // one reconnect prompt) — the briefing only reports what it found.
    let known = connection.access.as_ref();
    match crate::google::gmail::inbox_since_given(state, &user.user_id, since, MAX_MESSAGES as u32, known).await {
        Ok(messages) => {
            let mut items: Vec<MailItem> = messages.into_iter().map(from_meta).collect();
            items.sort_by_key(|m| std::cmp::Reverse(m.received_at));
            EmailSection::Ok { items }
        }
        Err(GmailAccessError::NotConfigured) => EmailSection::NotConfigured,
        Err(GmailAccessError::NotConnected) => EmailSection::NotConnected,
        Err(GmailAccessError::NeedsReconnect { since, reason }) => EmailSection::NeedsReconnect { since, reason },
        Err(GmailAccessError::Temporary(e)) => {
            tracing::warn!(user = %user.user_id, error = format!("{e:#}"), "Gmail could not be read");
            EmailSection::Error {
                message: "Gmail could not be read this time; the operator's log has the cause".into(),
            }
        }
    }
}

/// A Gmail message's metadata as the briefing shows it.
pub fn from_meta(m: crate::google::gmail::MessageMeta) -> MailItem {
    let received_at = m
        .internal_date
        .or_else(|| m.date.as_deref().and_then(|d| DateTime::parse_from_rfc2822(d).ok()).map(|d| d.with_timezone(&Utc)))
        .unwrap_or_else(Utc::now);
    MailItem {
        from: m.from.unwrap_or_default(),
        subject: m.subject.unwrap_or_default(),
        snippet: m.snippet,
        received_at,
        labels: m.label_ids,
    }
}

/// Where the Reconnect button leads: the user's signed, short-lived connect
/// link (the start page when Gmail is not configured, where it explains).
pub fn reconnect_url(state: &AppState, user_id: &str) -> String {
    crate::google::links::connect_link(&state.config, user_id)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| format!("{}/oauth/google/start", state.config.public_url.as_str().trim_end_matches('/')))
}
