//! The briefing's Gmail section: decides, for one user, whether mail can be
//! read (Google configured? connection row? its state?) and reads the inbox
//! since a given instant through the Gmail API at `GMAIL_API_URL`.
//!
//! Every outcome is an [`EmailSection`] variant, and every variant other
//! than `Ok` becomes an explicit line in the briefing: the seed's briefings
//! lost their mail section silently, this one cannot.
//!
//! Merge boundary: tokens are decrypted by the Gmail connection's vault
//! (`crate::google`), which this module does not own. [`access_token_for`]
//! is the one place that asks for a token; [`reconnect_url`] is the one place
//! that builds the Reconnect link.

use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use tokio::sync::Semaphore;

use crate::{startup::AppState, storage::users::User};

/// Messages listed per briefing. A morning's inbox for one person; more than
/// this is summarised as "N+".
pub const MAX_MESSAGES: usize = 50;
/// `messages.get` calls in flight per user. Gmail allows 15,000 quota units
/// per user per minute (5 per call); eight at a time keeps a 50-message
/// inbox under a second without bursting.
pub const FETCH_CONCURRENCY: usize = 8;

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

/// The user's Gmail section: inbox mail received since `since`.
pub async fn fetch(state: &AppState, user: &User, since: DateTime<Utc>) -> EmailSection {
    if state.config.google.is_none() {
        return EmailSection::NotConfigured;
    }
    let connection = match crate::storage::briefings::gmail_state(&state.db, &user.user_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(user = %user.user_id, error = %e, "could not read the Gmail connection");
            return EmailSection::Error { message: "robeing could not read its own database".into() };
        }
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
    let token = match access_token_for(state, &user.user_id).await {
        Ok(t) => t,
        Err(section) => return section,
    };
    match list_inbox(&state.http, state.config.gmail_api_url.as_str(), &token, since).await {
        Ok(items) => EmailSection::Ok { items },
        Err(e) => {
            tracing::warn!(user = %user.user_id, error = %e, "Gmail could not be read");
            EmailSection::Error { message: e.to_string() }
        }
    }
}

/// MERGE POINT: the access token for a connected user. The Gmail
/// connection's vault (`crate::google::access_token(state, user)`) replaces
/// this body at merge; it refreshes tokens and turns `invalid_grant` into
/// `needs_reconnect` (map that to [`EmailSection::NeedsReconnect`]).
pub async fn access_token_for(state: &AppState, user_id: &str) -> Result<String, EmailSection> {
    let _ = (state, user_id);
    Err(EmailSection::Error { message: "Gmail token access not wired".into() })
}

/// MERGE POINT: where the Reconnect button leads. The Gmail connection's
/// signed, short-lived connect link replaces this placeholder at merge.
pub fn reconnect_url(state: &AppState, user_id: &str) -> String {
    let _ = user_id;
    format!("{}/oauth/google/start", state.config.public_url.as_str().trim_end_matches('/'))
}

/// Why reading the inbox failed, in words a user may see (no token, no body).
#[derive(Debug, thiserror::Error)]
pub enum GmailReadError {
    #[error("Gmail refused the token (HTTP {0}); it may need reconnecting")]
    Unauthorized(u16),
    #[error("Gmail answered HTTP {0}")]
    Status(u16),
    #[error("Gmail could not be reached ({0})")]
    Transport(String),
    #[error("Gmail's answer was not understood ({0})")]
    Format(String),
}

#[derive(serde::Deserialize)]
struct ListResponse {
    #[serde(default)]
    messages: Vec<MessageRef>,
}

#[derive(serde::Deserialize)]
struct MessageRef {
    id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    #[serde(default)]
    label_ids: Vec<String>,
    #[serde(default)]
    snippet: String,
    internal_date: Option<String>,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(serde::Deserialize)]
struct Payload {
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(serde::Deserialize)]
struct Header {
    name: String,
    value: String,
}

/// Lists inbox messages received after `since` and fetches each one's
/// metadata (From, Subject, Date, snippet, labels), newest first.
pub async fn list_inbox(
    http: &reqwest::Client,
    api_base: &str,
    access_token: &str,
    since: DateTime<Utc>,
) -> Result<Vec<MailItem>, GmailReadError> {
    let base = api_base.trim_end_matches('/');
    let query = format!("in:inbox after:{}", since.timestamp());
    let list: ListResponse = get_json(
        http.get(format!("{base}/gmail/v1/users/me/messages"))
            .query(&[("q", query.as_str()), ("maxResults", &MAX_MESSAGES.to_string())])
            .bearer_auth(access_token),
    )
    .await?;

    let permits = Arc::new(Semaphore::new(FETCH_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, m) in list.messages.into_iter().take(MAX_MESSAGES).enumerate() {
        let request = http
            .get(format!("{base}/gmail/v1/users/me/messages/{}", urlencode(&m.id)))
            .query(&[
                ("format", "metadata"),
                ("metadataHeaders", "From"),
                ("metadataHeaders", "Subject"),
                ("metadataHeaders", "Date"),
            ])
            .bearer_auth(access_token);
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            (index, get_json::<Message>(request).await)
        });
    }
    let mut fetched = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.map_err(|e| GmailReadError::Transport(e.to_string()))?;
        fetched.push((index, result?));
    }
    fetched.sort_by_key(|(i, _)| *i);
    let mut items: Vec<MailItem> = fetched.into_iter().map(|(_, m)| to_item(m)).collect();
    items.sort_by_key(|m| std::cmp::Reverse(m.received_at));
    Ok(items)
}

fn to_item(m: Message) -> MailItem {
    let header = |name: &str| {
        m.payload
            .as_ref()
            .and_then(|p| p.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)))
            .map(|h| h.value.clone())
    };
    let received_at = m
        .internal_date
        .as_deref()
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .or_else(|| header("Date").and_then(|d| DateTime::parse_from_rfc2822(&d).ok()).map(|d| d.with_timezone(&Utc)))
        .unwrap_or_else(Utc::now);
    MailItem {
        from: header("From").unwrap_or_default(),
        subject: header("Subject").unwrap_or_default(),
        snippet: m.snippet,
        received_at,
        labels: m.label_ids,
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, GmailReadError> {
    let resp = request.send().await.map_err(|e| {
        GmailReadError::Transport(if e.is_timeout() { "timed out".into() } else { "connection failed".into() })
    })?;
    let status = resp.status().as_u16();
    match status {
        200..=299 => resp.json::<T>().await.map_err(|e| GmailReadError::Format(e.to_string())),
        401 | 403 => Err(GmailReadError::Unauthorized(status)),
        _ => Err(GmailReadError::Status(status)),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
