//! The Gmail API client (base URL `GMAIL_API_URL`): the profile (to learn the
//! address), inbox listing since a time, and message metadata (From,
//! Subject, Date, snippet, labels).
//!
//! Reading an inbox costs two HTTP requests: one `messages.list`, then one
//! `POST /batch/gmail/v1` ([`super::batch`]) carrying a `messages.get
//! ?format=metadata` per listed message (up to [`BATCH_PARTS`] per batch).
//!
//! Every call — each call inside a batch too, since Google counts those
//! against quota one by one — first takes a slot from the user's budget
//! (`GMAIL_USER_MAX_REQUESTS_PER_SECOND`) and then the budget shared by all
//! users (`GMAIL_MAX_REQUESTS_PER_SECOND`, [`crate::ratelimit::Budget`]), so
//! a briefing run stays inside Google's quotas instead of discovering them.
//! Rate limits Google still answers (429, or 403
//! `rateLimitExceeded`/`userRateLimitExceeded`, for a whole batch or for some
//! calls in it) are waited out with backoff, honouring `Retry-After`; only
//! the refused calls are sent again. [`inbox_since`]
//! wraps it all for one user: a 401 gets one forced token refresh, and a
//! second 401 marks the connection `needs_reconnect`.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;

use super::{
    GmailAccessError,
    batch::{self, InnerResponse},
    tokens,
};
use crate::{ratelimit::Budget, startup::AppState};

/// Calls one user may make at once before their budget paces them: enough
/// for a morning's inbox; the user's budget keeps the pace inside Gmail's
/// per-user quota (250 units/s) however fast Gmail answers.
pub const USER_BURST: u32 = 8;

/// Calls per batch request. Google takes up to [`batch::MAX_PARTS`] (100)
/// but warns that batches above 50 are likely to be rate-limited.
pub const BATCH_PARTS: usize = 50;

/// The batch endpoint's path.
pub const BATCH_PATH: &str = "/batch/gmail/v1";

/// The `format=metadata` query of `messages.get`, as `(name, value)` pairs.
const METADATA_QUERY: [(&str, &str); 4] =
    [("format", "metadata"), ("metadataHeaders", "From"), ("metadataHeaders", "Subject"), ("metadataHeaders", "Date")];

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
/// [`USER_BURST`] calls allowed at once.
pub fn user_budget(per_second: f64) -> Budget {
    Budget::per_second("gmail_user", per_second, USER_BURST)
}

/// How Google refused a call (a request, or one call of a batch).
enum Refusal {
    /// Slow down: retry after this long (Google's `Retry-After`, if any).
    RateLimited(Option<Duration>),
    Failed(GmailError),
}

/// `Retry-After` in seconds, as Gmail sends it.
fn retry_after(value: Option<&str>) -> Option<Duration> {
    value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

/// Reads a non-2xx answer: rate limiting (429, or 403 with a rate-limit
/// reason), 401, another 403, or any other status.
fn refusal(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Refusal {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let reasons: Vec<&str> = body["error"]["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let rate_limited = status == 429
        || (status == 403 && reasons.iter().any(|r| matches!(*r, "rateLimitExceeded" | "userRateLimitExceeded")));
    if rate_limited {
        return Refusal::RateLimited(retry_after);
    }
    Refusal::Failed(match status {
        401 => GmailError::Unauthorized,
        403 => GmailError::Forbidden(reasons.first().copied().unwrap_or("forbidden").to_owned()),
        other => GmailError::Status(other),
    })
}

/// How long to wait before attempt `attempt + 1` after a rate limit, or
/// `None` when it is time to give up.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let wait = retry_after.unwrap_or(RATE_LIMIT_BACKOFF * 2u32.pow(attempt - 1));
    (attempt < RATE_LIMIT_ATTEMPTS && wait <= MAX_RETRY_AFTER).then_some(wait)
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

    /// `path` under the base URL, built from the parsed base (a string
    /// would be parsed again, host and all, on every call).
    fn url(&self, path: &str) -> Url {
        let mut url = (*self.base).clone();
        // `GMAIL_API_URL` is an http(s) URL (config checks), which always has path segments.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path.split('/').filter(|s| !s.is_empty()));
        }
        url
    }

    /// Takes the slots of `calls` calls at once from every budget (the
    /// user's, then the shared one), as that many callers would
    /// ([`Budget::acquire_many`]): the batch goes when its last call's slot
    /// comes up, and every call's wait is counted in `/metrics`.
    async fn take_slots(&self, calls: usize) -> Result<(), GmailError> {
        let calls = u32::try_from(calls).unwrap_or(u32::MAX);
        for budget in &self.budgets {
            if let Err(wait) = budget.acquire_many(calls, crate::ratelimit::MAX_WAIT).await {
                tracing::warn!(budget = budget.name(), wait_secs = wait.as_secs_f64(), calls, "Gmail budget exhausted");
                return Err(GmailError::RateLimited);
            }
        }
        Ok(())
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
            self.take_slots(1).await?;
            let response = self
                .http
                .get(self.url(path))
                .query(query)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(|e| GmailError::Network(e.without_url().to_string()))?;
            let status = response.status().as_u16();
            let retry_after =
                retry_after(response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()));
            if (200..300).contains(&status) {
                return response.json::<T>().await.map_err(|e| GmailError::Decode(e.without_url().to_string()));
            }
            let body = response.bytes().await.unwrap_or_default();
            match refusal(status, retry_after, &body) {
                Refusal::RateLimited(retry_after) => {
                    let Some(wait) = backoff(attempt, retry_after) else { return Err(GmailError::RateLimited) };
                    tracing::info!(path, attempt, wait_ms = wait.as_millis() as u64, "Gmail rate limit; backing off");
                    tokio::time::sleep(wait).await;
                }
                Refusal::Failed(e) => return Err(e),
            }
        }
    }

    /// Sends one batch of `GET`s (`targets`: path and query) and returns the
    /// inner answers in the order of `targets`. A refusal of the batch as a
    /// whole is returned as such; the inner answers are the caller's to read.
    async fn batch_get(
        &self,
        token: &SecretString,
        targets: &[String],
    ) -> Result<Result<Vec<InnerResponse>, Refusal>, GmailError> {
        let boundary = batch::new_boundary();
        let body = batch::encode_gets(&boundary, targets.iter().map(String::as_str));
        let response = self
            .http
            .post(self.url(BATCH_PATH))
            .header(reqwest::header::CONTENT_TYPE, batch::request_content_type(&boundary))
            .bearer_auth(token.expose_secret())
            .body(body)
            .send()
            .await
            .map_err(|e| GmailError::Network(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (retry_after, content_type) =
            (retry_after(header(reqwest::header::RETRY_AFTER).as_deref()), header(reqwest::header::CONTENT_TYPE));
        let body = response.bytes().await.map_err(|e| GmailError::Network(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            return Ok(Err(refusal(status, retry_after, &body)));
        }
        let answers = batch::parse_response(content_type.as_deref().unwrap_or(""), &body)
            .and_then(|answers| batch::in_request_order(targets.len(), answers))
            .map_err(|e| GmailError::Decode(e.to_string()))?;
        Ok(Ok(answers))
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

    /// One message's metadata (`messages.get`, a request of its own).
    pub async fn message_metadata(&self, token: &SecretString, id: &str) -> Result<MessageMeta, GmailError> {
        let query = METADATA_QUERY.map(|(k, v)| (k, v.to_owned()));
        let path = format!("/gmail/v1/users/me/messages/{}", batch::path_segment(id));
        let raw: RawMessage = self.get_json(&path, &query, token).await?;
        Ok(raw.into())
    }

    /// Metadata of many messages, in the order of `ids`, through the batch
    /// endpoint ([`BATCH_PARTS`] calls per request). Messages deleted
    /// meanwhile (404) are skipped; calls Gmail rate-limits are sent again,
    /// alone, after the backoff.
    pub async fn metadata_many(&self, token: &SecretString, ids: &[String]) -> Result<Vec<MessageMeta>, GmailError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_PARTS) {
            found.extend(self.metadata_batch(token, chunk).await?);
        }
        Ok(found)
    }

    /// [`Self::metadata_many`] for at most [`BATCH_PARTS`] ids.
    async fn metadata_batch(&self, token: &SecretString, ids: &[String]) -> Result<Vec<MessageMeta>, GmailError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(METADATA_QUERY).finish();
        let targets: Vec<String> =
            ids.iter().map(|id| format!("/gmail/v1/users/me/messages/{}?{query}", batch::path_segment(id))).collect();
        let mut found: Vec<Option<MessageMeta>> = vec![None; ids.len()];
        // Indexes (into `ids`) still to be fetched.
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            self.take_slots(pending.len()).await?;
            let sent: Vec<String> = pending.iter().map(|&i| targets[i].clone()).collect();
            let (retry, wait_hint) = match self.batch_get(token, &sent).await? {
                Err(Refusal::Failed(e)) => return Err(e),
                Err(Refusal::RateLimited(hint)) => (pending.clone(), hint),
                Ok(answers) => {
                    let mut retry = Vec::new();
                    let mut hint: Option<Duration> = None;
                    for (&index, answer) in pending.iter().zip(answers) {
                        if (200..300).contains(&answer.status) {
                            let raw: RawMessage = serde_json::from_slice(&answer.body)
                                .map_err(|e| GmailError::Decode(format!("message {}: {e}", ids[index])))?;
                            found[index] = Some(raw.into());
                            continue;
                        }
                        let after = retry_after(answer.header("retry-after"));
                        match refusal(answer.status, after, &answer.body) {
                            Refusal::RateLimited(after) => {
                                retry.push(index);
                                hint = hint.max(after);
                            }
                            Refusal::Failed(GmailError::Status(404)) => {}
                            Refusal::Failed(e) => return Err(e),
                        }
                    }
                    (retry, hint)
                }
            };
            if retry.is_empty() {
                break;
            }
            let Some(wait) = backoff(attempt, wait_hint) else { return Err(GmailError::RateLimited) };
            tracing::info!(
                calls = retry.len(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                "Gmail rate limit in a batch; backing off"
            );
            tokio::time::sleep(wait).await;
            pending = retry;
        }
        Ok(found.into_iter().flatten().collect())
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
    inbox_since_given(state, user_id, since, max, None).await
}

/// [`inbox_since`], starting from the sealed access token the caller read
/// with the connection ([`tokens::access_token_given`]).
pub async fn inbox_since_given(
    state: &AppState,
    user_id: &str,
    since: DateTime<Utc>,
    max: u32,
    known: Option<&crate::storage::gmail::SealedAccess>,
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
    let token = tokens::access_token_given(state, user_id, known).await?;
    match Box::pin(fetch(token)).await {
        Ok(messages) => return Ok(messages),
        Err(GmailError::Unauthorized) => {
            tracing::info!(user_id, "Gmail answered 401; refreshing the token once");
        }
        Err(e) => return Err(GmailAccessError::Temporary(e.into())),
    }
    let token = tokens::force_refresh(state, user_id).await?;
    match Box::pin(fetch(token)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_urls_keep_the_base_urls_path_and_add_the_calls() {
        crate::startup::install_crypto_provider();
        let at = |base: &str, path: &str| {
            GmailClient::new(reqwest::Client::new(), Url::parse(base).unwrap()).url(path).to_string()
        };
        assert_eq!(at("https://gmail.googleapis.com", BATCH_PATH), "https://gmail.googleapis.com/batch/gmail/v1");
        assert_eq!(
            at("http://127.0.0.1:8080/google", "/gmail/v1/users/me/messages"),
            "http://127.0.0.1:8080/google/gmail/v1/users/me/messages"
        );
        assert_eq!(at("http://127.0.0.1:8080/google/", "/gmail/v1/x"), "http://127.0.0.1:8080/google/gmail/v1/x");
    }
}
