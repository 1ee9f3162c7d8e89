//! The Gmail API client (base URL `GMAIL_API_URL`): the profile (to learn the
//! address), inbox listing since a time, and message metadata (From,
//! Subject, Date, snippet, labels) fetched with bounded concurrency.
//!
//! Every call first takes a slot from the user's budget
//! (`GMAIL_USER_MAX_REQUESTS_PER_SECOND`) and then the budget shared by all
//! users (`GMAIL_MAX_REQUESTS_PER_SECOND`, [`crate::ratelimit::Budget`]), so
//! a briefing run stays inside Google's quotas instead of discovering them.
//! Rate limits Google still answers (429, or 403
//! `rateLimitExceeded`/`userRateLimitExceeded`) are waited out with backoff,
//! honouring `Retry-After`. [`inbox_since`]
//! wraps it all for one user: a 401 gets one forced token refresh, and a
//! second 401 marks the connection `needs_reconnect`.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;

use super::{GmailAccessError, tokens};
use crate::{ratelimit::Budget, startup::AppState};

/// Metadata requests in flight at once per listing: fast enough for a
/// morning's inbox; the user's budget keeps the pace inside Gmail's per-user
/// quota (250 units/s) however fast Gmail answers.
pub const METADATA_CONCURRENCY: usize = 8;

/// Attempts per request when Gmail says to slow down.
pub const RATE_LIMIT_ATTEMPTS: u32 = 5;

/// First wait after a rate-limit answer without `Retry-After`; doubled each
/// time (Google asks for exponential backoff).
pub const RATE_LIMIT_BACKOFF: Duration = Duration::from_millis(500);

/// Longest `Retry-After` honoured; beyond it the call fails as temporary.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest page `messages.list` is asked for.
const PAGE_SIZE: u32 = 100;

/// A Gmail API failure.
#[derive(Debug, thiserror::Error)]
pub enum GmailError {
    #[error("Gmail refused the access token (HTTP 401)")]
    Unauthorized,
    #[error("Gmail refused the request (HTTP 403: {0})")]
    Forbidden(String),
    #[error("Gmail kept rate-limiting the request")]
    RateLimited,
    #[error("Gmail answered HTTP {0}")]
    Status(u16),
    #[error("could not reach Gmail: {0}")]
    Network(String),
    #[error("unexpected answer from Gmail: {0}")]
    Decode(String),
}

/// `users.getProfile`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    #[serde(default)]
    pub messages_total: Option<u64>,
}

/// One message's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: String,
    pub thread_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub snippet: String,
    pub label_ids: Vec<String>,
    pub internal_date: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(default)]
    messages: Vec<IdOnly>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    id: String,
    thread_id: Option<String>,
    #[serde(default)]
    label_ids: Vec<String>,
    #[serde(default)]
    snippet: String,
    internal_date: Option<String>,
    payload: Option<RawPayload>,
}

#[derive(Deserialize)]
struct RawPayload {
    #[serde(default)]
    headers: Vec<RawHeader>,
}

#[derive(Deserialize)]
struct RawHeader {
    name: String,
    value: String,
}

impl From<RawMessage> for MessageMeta {
    fn from(m: RawMessage) -> Self {
        let headers = m.payload.map(|p| p.headers).unwrap_or_default();
        let header = |name: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.clone());
        Self {
            from: header("From"),
            subject: header("Subject"),
            date: header("Date"),
            id: m.id,
            thread_id: m.thread_id,
            snippet: m.snippet,
            label_ids: m.label_ids,
            internal_date: m
                .internal_date
                .and_then(|d| d.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        }
    }
}

/// The budget every user's Gmail calls share: `per_second`, with a tenth of
/// a second's worth allowed at once.
pub fn shared_budget(per_second: f64) -> Budget {
    Budget::per_second("gmail", per_second, (per_second / 10.0).ceil().max(1.0) as u32)
}

/// One user's budget, for one reading of their mail: `per_second`, with
/// [`METADATA_CONCURRENCY`] calls allowed at once.
pub fn user_budget(per_second: f64) -> Budget {
    Budget::per_second("gmail_user", per_second, METADATA_CONCURRENCY as u32)
}

/// A Gmail API client; cheap to clone.
#[derive(Clone)]
pub struct GmailClient {
    http: reqwest::Client,
    base: Arc<Url>,
    /// Budgets each call takes a slot from, in order (the user's, then the shared one).
    budgets: Vec<Arc<Budget>>,
}

impl GmailClient {
    pub fn new(http: reqwest::Client, base: Url) -> Self {
        Self { http, base: Arc::new(base), budgets: Vec::new() }
    }

    /// Paces every call by the user's budget, then the shared one.
    pub fn with_budgets(mut self, user: Arc<Budget>, shared: Arc<Budget>) -> Self {
        self.budgets = vec![user, shared];
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        token: &SecretString,
    ) -> Result<T, GmailError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            for budget in &self.budgets {
                if let Err(wait) = budget.acquire(crate::ratelimit::MAX_WAIT).await {
                    tracing::warn!(budget = budget.name(), wait_secs = wait.as_secs_f64(), "Gmail budget exhausted");
                    return Err(GmailError::RateLimited);
                }
            }
            let response = self
                .http
                .get(self.url(path))
                .query(query)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(|e| GmailError::Network(e.without_url().to_string()))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            if (200..300).contains(&status) {
                return response.json::<T>().await.map_err(|e| GmailError::Decode(e.without_url().to_string()));
            }
            let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
            let reasons: Vec<&str> = body["error"]["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
                .unwrap_or_default();
            let rate_limited = status == 429
                || (status == 403
                    && reasons.iter().any(|r| matches!(*r, "rateLimitExceeded" | "userRateLimitExceeded")));
            if rate_limited {
                let wait = retry_after.unwrap_or(RATE_LIMIT_BACKOFF * 2u32.pow(attempt - 1));
                if attempt >= RATE_LIMIT_ATTEMPTS || wait > MAX_RETRY_AFTER {
                    return Err(GmailError::RateLimited);
                }
                tracing::info!(path, attempt, wait_ms = wait.as_millis() as u64, "Gmail rate limit; backing off");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(match status {
                401 => GmailError::Unauthorized,
                403 => GmailError::Forbidden(reasons.first().copied().unwrap_or("forbidden").to_owned()),
                other => GmailError::Status(other),
            });
        }
    }

    /// `GET /gmail/v1/users/me/profile`.
    pub async fn profile(&self, token: &SecretString) -> Result<Profile, GmailError> {
        self.get_json("/gmail/v1/users/me/profile", &[], token).await
    }

    /// Ids of inbox messages received after `since` (newest first), at most `max`.
    pub async fn list_inbox_since(
        &self,
        token: &SecretString,
        since: DateTime<Utc>,
        max: u32,
    ) -> Result<Vec<String>, GmailError> {
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        while ids.len() < max as usize {
            let mut query = vec![
                ("q", format!("in:inbox after:{}", since.timestamp())),
                ("maxResults", (max as usize - ids.len()).min(PAGE_SIZE as usize).to_string()),
            ];
            if let Some(t) = &page_token {
                query.push(("pageToken", t.clone()));
            }
            let page: ListResponse = self.get_json("/gmail/v1/users/me/messages", &query, token).await?;
            ids.extend(page.messages.into_iter().map(|m| m.id));
            match page.next_page_token {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        ids.truncate(max as usize);
        Ok(ids)
    }

    /// One message's metadata.
    pub async fn message_metadata(&self, token: &SecretString, id: &str) -> Result<MessageMeta, GmailError> {
        let query = [
            ("format", "metadata".to_owned()),
            ("metadataHeaders", "From".to_owned()),
            ("metadataHeaders", "Subject".to_owned()),
            ("metadataHeaders", "Date".to_owned()),
        ];
        let raw: RawMessage = self.get_json(&format!("/gmail/v1/users/me/messages/{id}"), &query, token).await?;
        Ok(raw.into())
    }

    /// Metadata of many messages, [`METADATA_CONCURRENCY`] at a time, in the
    /// order of `ids`. Messages deleted meanwhile (404) are skipped.
    pub async fn metadata_many(&self, token: &SecretString, ids: &[String]) -> Result<Vec<MessageMeta>, GmailError> {
        let permits = Arc::new(tokio::sync::Semaphore::new(METADATA_CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for (index, id) in ids.iter().enumerate() {
            let (client, token, id, permits) = (self.clone(), token.clone(), id.clone(), permits.clone());
            set.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
                (index, client.message_metadata(&token, &id).await)
            });
        }
        let mut found: Vec<(usize, MessageMeta)> = Vec::with_capacity(ids.len());
        while let Some(joined) = set.join_next().await {
            let (index, result) = joined.map_err(|e| GmailError::Network(format!("metadata task failed: {e}")))?;
            match result {
                Ok(meta) => found.push((index, meta)),
                Err(GmailError::Status(404)) => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, m)| m).collect())
    }
}

/// The user's inbox messages since `since` (at most `max`), with metadata.
/// A 401 gets one forced refresh; a second 401 means the connection is
/// broken and is recorded as `needs_reconnect` (with its one prompt).
pub async fn inbox_since(
    state: &AppState,
    user_id: &str,
    since: DateTime<Utc>,
    max: u32,
) -> Result<Vec<MessageMeta>, GmailAccessError> {
    let client = GmailClient::new(state.http.clone(), state.config.gmail_api_url.clone()).with_budgets(
        Arc::new(user_budget(state.config.gmail_user_max_requests_per_second)),
        state.gmail_budget.clone(),
    );
    let fetch = |token: SecretString| {
        let client = client.clone();
        async move {
            let ids = client.list_inbox_since(&token, since, max).await?;
            client.metadata_many(&token, &ids).await
        }
    };
    let token = tokens::access_token(state, user_id).await?;
    match fetch(token).await {
        Ok(messages) => return Ok(messages),
        Err(GmailError::Unauthorized) => {
            tracing::info!(user_id, "Gmail answered 401; refreshing the token once");
        }
        Err(e) => return Err(GmailAccessError::Temporary(e.into())),
    }
    let token = tokens::force_refresh(state, user_id).await?;
    match fetch(token).await {
        Ok(messages) => Ok(messages),
        Err(GmailError::Unauthorized) => Err(tokens::mark_broken(
            state,
            user_id,
            "Gmail refused robeing's access even with a freshly refreshed token (HTTP 401)",
        )
        .await?),
        Err(e) => Err(GmailAccessError::Temporary(e.into())),
    }
}
