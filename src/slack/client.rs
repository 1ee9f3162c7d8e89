//! Our Slack Web API client: slack-morphism over our own hyper-rustls
//! connector, so the base URL (`SLACK_API_URL`) may be plain `http://` for the
//! loopback fakes in tests. The bot token stays a `SecretString` until a
//! session is opened for a call.
//!
//! This module owns how robeing talks to Slack's Web API:
//!
//! - **Rate limits.** A 429 is waited out for its `Retry-After` (inline when
//!   short, otherwise handed back as [`SlackError::RateLimited`] so the job
//!   is retried after that long).
//! - **Transient failures** (5xx, timeouts, dropped connections) are retried
//!   with bounded backoff for calls that are safe to repeat (`users.info`,
//!   `conversations.open`, `views.publish`, `chat.update`). `chat.postMessage`
//!   is *not* repeated here on an ambiguous failure: whether to post again is
//!   the outbox's decision (see [`SlackApi::post_message`]).
//! - **Pacing.** `chat.postMessage` is paced per channel with a small token
//!   bucket ([`POST_BURST`], [`POST_INTERVAL`]), Slack's ~1 message/s rule,
//!   and bulk posts (briefings) workspace-wide by the
//!   `SLACK_MAX_POSTS_PER_SECOND` budget ([`crate::ratelimit::Budget`], its
//!   waits in `/metrics`). Every post — replies, prompts, briefings with
//!   their metadata — goes through one private path.
//! - **Escaping.** [`escape_mrkdwn`] makes user- or LLM-derived text inert.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::{errors::SlackClientError, prelude::*};
use url::Url;

use crate::{jobs::JobError, ratelimit::Budget, storage::users::Profile};

/// Slack mrkdwn to plain text: `<url|title>` → `title (url)`, escapes undone.
pub fn mrkdwn_to_plain(mrkdwn: &str) -> String {
    let mut out = String::with_capacity(mrkdwn.len());
    let mut rest = mrkdwn;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        match tail.find('>') {
            Some(end) => {
                let inner = &tail[..end];
                match inner.split_once('|') {
                    Some((url, title)) => out.push_str(&format!("{title} ({url})")),
                    None => out.push_str(inner),
                }
                rest = &tail[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// What a posted message says, as plain text for a prompt: its Block Kit
/// text (headers, sections and their fields, context, rich text) when it
/// has blocks, else its `text`; as [`mrkdwn_to_plain`] makes it.
pub fn readable_text(message: &serde_json::Value) -> String {
    fn rich(element: &serde_json::Value, out: &mut String) {
        if let Some(t) = element.get("text").and_then(|t| t.as_str()) {
            out.push_str(t);
        }
        for child in element.get("elements").and_then(|e| e.as_array()).into_iter().flatten() {
            rich(child, out);
        }
    }
    let text_of = |v: &serde_json::Value| v.get("text").and_then(|t| t.as_str()).map(str::to_owned);
    let mut lines: Vec<String> = Vec::new();
    for block in message.get("blocks").and_then(|b| b.as_array()).into_iter().flatten() {
        match block.get("type").and_then(|t| t.as_str()) {
            Some("header") | Some("section") => {
                lines.extend(block.get("text").and_then(text_of));
                for field in block.get("fields").and_then(|f| f.as_array()).into_iter().flatten() {
                    lines.extend(text_of(field));
                }
            }
            Some("context") => {
                let parts: Vec<String> = block
                    .get("elements")
                    .and_then(|e| e.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(text_of)
                    .collect();
                if !parts.is_empty() {
                    lines.push(parts.join(" "));
                }
            }
            Some("rich_text") => {
                let mut out = String::new();
                rich(block, &mut out);
                if !out.is_empty() {
                    lines.push(out);
                }
            }
            _ => {}
        }
    }
    let joined = if lines.is_empty() { text_of(message).unwrap_or_default() } else { lines.join("\n") };
    mrkdwn_to_plain(&joined)
}

/// The connector type we use for every Slack call.
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// How long one Web API call may take before it counts as timed out. Slack
/// answers in well under a second; ten leaves room for a slow network
/// without holding a job's lease for long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts for a call that is safe to repeat (first try included).
pub const MAX_ATTEMPTS: u32 = 4;
/// First backoff after a transient failure; doubles each attempt (0.25, 0.5, 1 s).
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// The longest `Retry-After` waited out inside a call. Longer waits are
/// handed back to the job, which is retried after that long, so a worker
/// is not held for minutes.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);
/// Messages a channel may take at once before pacing starts (a short burst:
/// a reply plus a follow-up do not wait).
pub const POST_BURST: f64 = 3.0;
/// One message per this long per channel, Slack's documented pace for
/// `chat.postMessage`.
pub const POST_INTERVAL: Duration = Duration::from_secs(1);

/// A Slack Web API call that failed, classified so a job knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack asked us to slow down; try again after `after`.
    #[error("Slack rate-limited {method}; retry after {after:?}")]
    RateLimited { method: &'static str, after: Duration },
    /// Slack was unreachable, slow or failing (5xx): try again later. For
    /// `chat.postMessage` the message may or may not have been posted.
    #[error("Slack {method} failed transiently: {detail}")]
    Transient { method: &'static str, detail: String },
    /// Slack refused the call (`{"ok": false, "error": code}`); repeating it
    /// will not help (`channel_not_found`, `not_authed`, `invalid_blocks`…).
    #[error("Slack refused {method}: {code}")]
    Refused { method: &'static str, code: String },
}

impl SlackError {
    /// The Slack error code, when Slack gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<SlackError> for JobError {
    fn from(e: SlackError) -> Self {
        match e {
            SlackError::RateLimited { after, .. } => JobError::Retry { after: Some(after), error: e.into() },
            SlackError::Transient { .. } => JobError::retry(e),
            SlackError::Refused { .. } => JobError::Permanent(e.into()),
        }
    }
}

/// Counts one Web API attempt in `/metrics` (429s have their own status).
fn count_call(method: &str, status: &str) {
    crate::metrics::metrics()
        .slack_api_calls
        .get_or_create(&crate::metrics::MethodStatus { method: method.to_owned(), status: status.to_owned() })
        .inc();
}

/// What one attempt's failure means.
enum Failure {
    RateLimited(Duration),
    Transient(String),
    Refused(String),
}

fn classify(e: SlackClientError) -> Failure {
    match e {
        SlackClientError::RateLimitError(r) => Failure::RateLimited(r.retry_after.unwrap_or(Duration::from_secs(1))),
        // Slack sometimes reports overload in the body of a 200.
        SlackClientError::ApiError(a)
            if matches!(a.code.as_str(), "ratelimited" | "internal_error" | "fatal_error") =>
        {
            if a.code == "ratelimited" {
                Failure::RateLimited(Duration::from_secs(1))
            } else {
                Failure::Transient(a.code)
            }
        }
        SlackClientError::ApiError(a) => Failure::Refused(a.code),
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            Failure::Transient(format!("HTTP {}", h.status_code))
        }
        SlackClientError::HttpError(h) => Failure::Refused(format!("HTTP {}", h.status_code)),
        other => Failure::Transient(other.to_string()),
    }
}

/// Whether a call may be repeated after an ambiguous failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Repeating is harmless (reads, `views.publish`, `chat.update`).
    Safe,
    /// Repeating could duplicate a side effect (`chat.postMessage`): only a
    /// 429 (Slack did nothing) is retried here.
    OnlyIfRefusedUnprocessed,
}

/// Per-channel token buckets for `chat.postMessage`.
#[derive(Default)]
struct Pacer {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Pacer {
    /// Takes one token for `channel`; returns how long to wait before posting.
    fn take(&self, channel: &str) -> Duration {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("pacer lock");
        if buckets.len() > 10_000 {
            // Forget idle channels (full buckets) so the map stays small.
            buckets.retain(|_, (tokens, at)| {
                *tokens + at.elapsed().as_secs_f64() / POST_INTERVAL.as_secs_f64() < POST_BURST
            });
        }
        let (tokens, at) = buckets.entry(channel.to_owned()).or_insert((POST_BURST, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() / POST_INTERVAL.as_secs_f64();
        *tokens = (*tokens + refill).min(POST_BURST) - 1.0;
        *at = now;
        if *tokens >= 0.0 { Duration::ZERO } else { POST_INTERVAL.mul_f64(-*tokens) }
    }

    /// Gives back a token taken for a post that was not made.
    fn refund(&self, channel: &str) {
        if let Some((tokens, _)) = self.buckets.lock().expect("pacer lock").get_mut(channel) {
            *tokens = (*tokens + 1.0).min(POST_BURST);
        }
    }
}

/// Messages read back by [`SlackApi::find_tagged`]: robeing's own posts
/// for one message follow it closely, so one page is enough.
pub const HISTORY_LIMIT: u32 = 100;

/// Slack message metadata robeing attaches to a post so that a retry can
/// recognise it: `event_type` names what the post is, `key`/`value` which
/// record it belongs to (`robeing_reply`, `exchange_id`, the exchange's id).
/// `also` adds fields to the payload that are carried, not matched: what a
/// retry that finds the post needs to record it (a briefing's section
/// statuses).
#[derive(Debug, Clone, Copy)]
pub struct Tag<'a> {
    pub event_type: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub also: &'a [(&'a str, &'a str)],
}

/// A message found by [`SlackApi::find_tagged_message`]: its ts and its
/// metadata's `event_payload`.
#[derive(Debug, Clone)]
pub struct TaggedMessage {
    pub ts: String,
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// A Slack Web API client bound to the bot token.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: Arc<SlackApiToken>,
    pacer: Arc<Pacer>,
    /// The workspace-wide `chat.postMessage` budget.
    posts: Arc<Budget>,
    identity: Arc<OnceLock<BotIdentity>>,
}

/// Who the bot is, as `auth.test` said.
#[derive(Debug, Clone)]
pub struct BotIdentity {
    pub team_id: String,
    pub user_id: String,
    pub bot_id: Option<String>,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackApi { .. }")
    }
}

/// Builds the hyper-rustls connector: native roots, HTTPS or (for tests on
/// loopback) plain HTTP, HTTP/1 and HTTP/2.
pub fn connector(api_url: &Url) -> anyhow::Result<Connector> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's TLS root certificates")?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url.as_str().trim_end_matches('/')))
}

/// Escapes the three characters Slack's mrkdwn treats as control characters
/// (`&`, `<`, `>`), so text from a user or an LLM cannot become a mention
/// (`<!channel>`), a link with a misleading label (`<https://evil|bank>`) or
/// a user tag when robeing echoes it.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

impl SlackApi {
    pub fn new(api_url: &Url, bot_token: &SecretString) -> anyhow::Result<Self> {
        let client = SlackClient::new(connector(api_url)?);
        let token = SlackApiToken::new(SlackApiTokenValue(bot_token.expose_secret().to_owned()));
        Ok(Self {
            client: Arc::new(client),
            token: Arc::new(token),
            pacer: Arc::default(),
            posts: Arc::new(posts_budget(crate::config::DEFAULT_SLACK_POSTS_PER_SECOND)),
            identity: Arc::default(),
        })
    }

    /// Sets the workspace-wide `chat.postMessage` budget (`SLACK_MAX_POSTS_PER_SECOND`).
    pub fn with_post_rate(mut self, per_second: f64) -> Self {
        self.posts = Arc::new(posts_budget(per_second));
        self
    }

    /// The underlying slack-morphism client.
    pub fn raw_client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// A session for one or more calls with the bot token.
    pub fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }

    /// `auth.test`: is the bot token valid, and for which workspace. The
    /// first success is remembered as [`SlackApi::identity`].
    pub async fn auth_test(&self) -> Result<SlackApiAuthTestResponse, SlackClientError> {
        let who = self.session().auth_test().await?;
        let _ = self.identity.set(BotIdentity {
            team_id: who.team_id.to_string(),
            user_id: who.user_id.to_string(),
            bot_id: who.bot_id.as_ref().map(|b| b.to_string()),
        });
        Ok(who)
    }

    /// The bot's own identity, once `auth.test` has answered.
    pub fn identity(&self) -> Option<&BotIdentity> {
        self.identity.get()
    }

    /// Runs one Web API call with the timeout, 429 and retry policy above.
    async fn call<F, Fut>(
        &self,
        method: &'static str,
        repeat: Repeat,
        mut attempt: F,
    ) -> Result<serde_json::Value, SlackError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<serde_json::Value, SlackClientError>>,
    {
        let mut backoff = BACKOFF_START;
        for n in 1..=MAX_ATTEMPTS {
            let failure = match tokio::time::timeout(CALL_TIMEOUT, attempt()).await {
                Ok(Ok(v)) => {
                    count_call(method, "ok");
                    return Ok(v);
                }
                Ok(Err(e)) => classify(e),
                Err(_) => Failure::Transient(format!("no answer within {CALL_TIMEOUT:?}")),
            };
            count_call(
                method,
                match &failure {
                    Failure::RateLimited(_) => "429",
                    Failure::Transient(_) => "transient",
                    Failure::Refused(_) => "refused",
                },
            );
            let last = n == MAX_ATTEMPTS;
            match failure {
                Failure::Refused(code) => return Err(SlackError::Refused { method, code }),
                Failure::RateLimited(after) if last || after > MAX_INLINE_WAIT => {
                    return Err(SlackError::RateLimited { method, after });
                }
                Failure::RateLimited(after) => {
                    // Slack did not process the call: repeating it never duplicates.
                    tracing::info!(method, retry_after_secs = after.as_secs_f64(), "Slack rate limit; waiting");
                    tokio::time::sleep(after).await;
                }
                Failure::Transient(detail) if last || repeat == Repeat::OnlyIfRefusedUnprocessed => {
                    return Err(SlackError::Transient { method, detail });
                }
                Failure::Transient(detail) => {
                    tracing::warn!(
                        method,
                        detail,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Slack call failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        unreachable!("the last attempt always returns")
    }

    async fn post_json(
        &self,
        method: &'static str,
        repeat: Repeat,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, SlackError> {
        self.call(method, repeat, || async move { self.session().http_session_api.http_post(method, body, None).await })
            .await
    }

    /// `chat.postMessage`; returns the new message's `ts`.
    ///
    /// Paced per channel (an interactive post never waits behind a bulk run;
    /// see [`SlackApi::post_bulk_tagged_message`]). A 429 is waited out
    /// and repeated (Slack did not post). A timeout or 5xx is *not* repeated
    /// here: the message may have been posted, and posting again could show
    /// it twice. The error goes back to the job, and the outbox decides: the
    /// caller records the returned `ts` (the exchange row) and checks it
    /// before posting again, so delivery is at-least-once only across that
    /// one ambiguous window.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<serde_json::Value>>,
        thread_ts: Option<&str>,
    ) -> Result<String, SlackError> {
        self.post_tagged_message(channel, text, blocks, thread_ts, None).await
    }

    /// [`SlackApi::post_message`] carrying a [`Tag`] as Slack message
    /// metadata, so a later attempt can find this post with
    /// [`SlackApi::find_tagged`] instead of posting it again.
    pub async fn post_tagged_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<serde_json::Value>>,
        thread_ts: Option<&str>,
        tag: Option<&Tag<'_>>,
    ) -> Result<String, SlackError> {
        self.post(channel, text, blocks, thread_ts, tag, false).await
    }

    /// [`SlackApi::post_tagged_message`] for bulk work (the daily briefings):
    /// it also takes a slot of the workspace-wide `SLACK_MAX_POSTS_PER_SECOND`
    /// budget, so a run of thousands stays under Slack's workspace limit.
    /// Replies and prompts do not take it: a user's answer must not queue
    /// behind 10,000 briefings at 09:00.
    pub async fn post_bulk_tagged_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<serde_json::Value>>,
        tag: Option<&Tag<'_>>,
    ) -> Result<String, SlackError> {
        self.post(channel, text, blocks, None, tag, true).await
    }

    /// The one `chat.postMessage` path: per-channel pacing, the workspace
    /// budget for bulk posts, then the call (429s waited out, nothing else
    /// repeated).
    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<serde_json::Value>>,
        thread_ts: Option<&str>,
        tag: Option<&Tag<'_>>,
        bulk: bool,
    ) -> Result<String, SlackError> {
        let mut body = serde_json::json!({ "channel": channel, "text": text });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = ts.into();
        }
        if let Some(tag) = tag {
            let mut payload = serde_json::Map::with_capacity(1 + tag.also.len());
            payload.insert(tag.key.to_owned(), tag.value.into());
            for (k, v) in tag.also {
                payload.insert((*k).to_owned(), (*v).into());
            }
            body["metadata"] = serde_json::json!({ "event_type": tag.event_type, "event_payload": payload });
        }
        const METHOD: &str = "chat.postMessage";
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.into();
        }
        let wait = self.pacer.take(channel);
        if wait > MAX_INLINE_WAIT {
            self.pacer.refund(channel);
            return Err(SlackError::RateLimited { method: METHOD, after: wait });
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if bulk && let Err(after) = self.posts.acquire(crate::ratelimit::MAX_WAIT).await {
            self.pacer.refund(channel);
            return Err(SlackError::RateLimited { method: METHOD, after });
        }
        let v = self.post_json(METHOD, Repeat::OnlyIfRefusedUnprocessed, &body).await?;
        string_field(&v, "ts", METHOD)
    }

    /// Looks for a message carrying `tag` in a channel (or, with
    /// `thread_ts`, in that thread) posted after `oldest`: the ts of an
    /// earlier attempt's post whose outcome was never recorded (a timeout, a
    /// crash). Reads the newest [`HISTORY_LIMIT`] messages only; robeing's
    /// posts for one message come right after it.
    pub async fn find_tagged(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: &str,
        tag: &Tag<'_>,
    ) -> Result<Option<String>, SlackError> {
        Ok(self.find_tagged_message(channel, thread_ts, oldest, tag).await?.map(|m| m.ts))
    }

    /// [`SlackApi::find_tagged`], with the found message's metadata payload
    /// (the tag's `also` fields as they were posted).
    pub async fn find_tagged_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: &str,
        tag: &Tag<'_>,
    ) -> Result<Option<TaggedMessage>, SlackError> {
        Ok(self.find_tagged_messages(channel, thread_ts, oldest, tag).await?.into_iter().next())
    }

    /// Every message [`SlackApi::find_tagged_message`] would consider
    /// (newest first): the parts of a reply an earlier attempt posted.
    pub async fn find_tagged_messages(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: &str,
        tag: &Tag<'_>,
    ) -> Result<Vec<TaggedMessage>, SlackError> {
        let messages = self.messages_after(channel, thread_ts, oldest).await?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                let payload = m.pointer("/metadata/event_payload").and_then(|p| p.as_object())?;
                let tagged = m.pointer("/metadata/event_type").and_then(|t| t.as_str()) == Some(tag.event_type)
                    && payload.get(tag.key).and_then(|v| v.as_str()) == Some(tag.value);
                let ts = m.get("ts").and_then(|t| t.as_str()).filter(|_| tagged)?;
                Some(TaggedMessage { ts: ts.to_owned(), payload: payload.clone() })
            })
            .collect())
    }

    /// The id of a file named `filename` shared in a channel (or, with
    /// `thread_ts`, in that thread) after `oldest`: a file an earlier attempt
    /// shared without learning so ([`SlackApi::share_file`] timed out, or the
    /// process died). Reads the newest [`HISTORY_LIMIT`] messages, like
    /// [`SlackApi::find_tagged`].
    pub async fn find_shared_file(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: &str,
        filename: &str,
    ) -> Result<Option<String>, SlackError> {
        let messages = self.messages_after(channel, thread_ts, oldest).await?;
        Ok(messages
            .iter()
            .filter_map(|m| m.get("files").and_then(|f| f.as_array()))
            .flatten()
            .find(|f| f.get("name").and_then(|n| n.as_str()) == Some(filename))
            .and_then(|f| f.get("id").and_then(|i| i.as_str()))
            .map(str::to_owned))
    }

    /// The newest [`HISTORY_LIMIT`] messages of a channel (or of a thread)
    /// after `oldest`, with their metadata, newest first.
    async fn messages_after(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: &str,
    ) -> Result<Vec<serde_json::Value>, SlackError> {
        let limit = HISTORY_LIMIT.to_string();
        // A thread's messages come from conversations.replies, the channel's
        // from conversations.history; the parameters are the same but `ts`.
        let method = if thread_ts.is_some() { "conversations.replies" } else { "conversations.history" };
        let v = self
            .call(method, Repeat::Safe, || {
                let limit = limit.clone();
                async move {
                    let mut params = vec![
                        ("channel", Some(channel)),
                        ("oldest", Some(oldest)),
                        ("limit", Some(limit.as_str())),
                        ("include_all_metadata", Some("true")),
                    ];
                    if thread_ts.is_some() {
                        params.push(("ts", thread_ts));
                    }
                    self.session().http_session_api.http_get(method, &params, None).await
                }
            })
            .await?;
        match v.get("messages") {
            Some(serde_json::Value::Array(messages)) => Ok(messages.clone()),
            _ => Err(SlackError::Refused { method, code: "answer without messages".into() }),
        }
    }

    /// The message at `ts` in a channel (top level), as
    /// `conversations.history` gives it (`latest` = `inclusive` = `ts`,
    /// limit 1); `None` when it is gone.
    pub async fn message_at(&self, channel: &str, ts: &str) -> Result<Option<serde_json::Value>, SlackError> {
        const METHOD: &str = "conversations.history";
        let v = self
            .call(METHOD, Repeat::Safe, || async move {
                let params = vec![
                    ("channel", Some(channel)),
                    ("latest", Some(ts)),
                    ("inclusive", Some("true")),
                    ("limit", Some("1")),
                ];
                self.session().http_session_api.http_get(METHOD, &params, None).await
            })
            .await?;
        let Some(serde_json::Value::Array(messages)) = v.get("messages") else {
            return Err(SlackError::Refused { method: METHOD, code: "answer without messages".into() });
        };
        Ok(messages.iter().find(|m| m.get("ts").and_then(|t| t.as_str()) == Some(ts)).cloned())
    }

    /// Uploads `content` as a file named `filename` and shares it in
    /// `channel` (in `thread_ts`'s thread when given), by Slack's upload
    /// flow: `files.getUploadURLExternal`, the bytes to the URL it gives,
    /// then `files.completeUploadExternal`. Returns the file's id.
    ///
    /// The first two steps are repeated on a transient failure (an upload
    /// never completed is discarded by Slack and shown to no one). The last
    /// one shares the file, and like `chat.postMessage` it is not repeated
    /// on an ambiguous failure: a retrying job first looks for the file with
    /// [`SlackApi::find_shared_file`]. Needs the `files:write` scope; without
    /// it Slack answers `missing_scope` ([`SlackError::Refused`]).
    pub async fn share_file(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        filename: &str,
        title: &str,
        content: &[u8],
    ) -> Result<String, SlackError> {
        const GET_URL: &str = "files.getUploadURLExternal";
        const UPLOAD: &str = "files.upload (to the upload URL)";
        const COMPLETE: &str = "files.completeUploadExternal";
        let length = content.len().to_string();
        let v = self
            .call(GET_URL, Repeat::Safe, || {
                let params = vec![("filename", Some(filename)), ("length", Some(length.as_str()))];
                async move { self.session().http_session_api.http_get(GET_URL, &params, None).await }
            })
            .await?;
        let file_id = string_field(&v, "file_id", GET_URL)?;
        let upload_url: Url = string_field(&v, "upload_url", GET_URL)?
            .parse()
            .map_err(|_| SlackError::Refused { method: GET_URL, code: "answer with an unusable upload_url".into() })?;
        self.call(UPLOAD, Repeat::Safe, || {
            let url = upload_url.clone();
            async move {
                self.session()
                    .http_session_api
                    .http_post_uri_binary(url, "text/plain; charset=utf-8".into(), content, None)
                    .await
            }
        })
        .await?;
        let mut body = serde_json::json!({ "files": [{ "id": file_id, "title": title }], "channel_id": channel });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = ts.into();
        }
        self.post_json(COMPLETE, Repeat::OnlyIfRefusedUnprocessed, &body).await?;
        Ok(file_id)
    }

    /// `chat.update` of a message robeing posted (idempotent).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<Vec<serde_json::Value>>,
    ) -> Result<(), SlackError> {
        let mut body = serde_json::json!({ "channel": channel, "ts": ts, "text": text });
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.into();
        }
        self.post_json("chat.update", Repeat::Safe, &body).await.map(|_| ())
    }

    /// `chat.delete` of one of the bot's messages; one already gone counts
    /// as deleted.
    pub async fn delete_message(&self, channel: &str, ts: &str) -> Result<(), SlackError> {
        let body = serde_json::json!({ "channel": channel, "ts": ts });
        match self.post_json("chat.delete", Repeat::Safe, &body).await {
            Err(SlackError::Refused { code, .. }) if code == "message_not_found" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `conversations.open` with one user: the DM channel id (idempotent).
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let v = self.post_json("conversations.open", Repeat::Safe, &serde_json::json!({ "users": user })).await?;
        v.pointer("/channel/id")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
            .ok_or(SlackError::Refused { method: "conversations.open", code: "answer without channel.id".into() })
    }

    /// `users.info` with the locale: names, time zone, locale, and the
    /// user's workspace.
    pub async fn users_info(&self, user: &str) -> Result<(Option<String>, Profile), SlackError> {
        let v = self
            .call("users.info", Repeat::Safe, || async move {
                let params = vec![("user", Some(user)), ("include_locale", Some("true"))];
                self.session().http_session_api.http_get("users.info", &params, None).await
            })
            .await?;
        let u =
            v.get("user").ok_or(SlackError::Refused { method: "users.info", code: "answer without user".into() })?;
        let text = |p: &str| u.pointer(p).and_then(|s| s.as_str()).filter(|s| !s.is_empty()).map(str::to_owned);
        let profile = Profile {
            real_name: text("/profile/real_name").or_else(|| text("/real_name")),
            display_name: text("/profile/display_name"),
            tz: text("/tz"),
            locale: text("/locale"),
        };
        Ok((text("/team_id"), profile))
    }

    /// `apps.connections.open` with the app-level token (`xapp-…`): a fresh
    /// Socket Mode WebSocket URL. `invalid_auth` comes back as
    /// [`SlackError::Refused`].
    pub async fn open_socket_url(&self, app_token: &SecretString) -> Result<String, SlackError> {
        let token = SlackApiToken::new(SlackApiTokenValue(app_token.expose_secret().to_owned()));
        let token = &token;
        let v = self
            .call("apps.connections.open", Repeat::Safe, || async move {
                let body = serde_json::json!({});
                self.client.open_session(token).http_session_api.http_post("apps.connections.open", &body, None).await
            })
            .await?;
        string_field(&v, "url", "apps.connections.open")
    }

    /// `views.publish` of a user's Home tab (idempotent: it replaces the view).
    pub async fn publish_home(&self, user: &str, blocks: Vec<serde_json::Value>) -> Result<(), SlackError> {
        let body = serde_json::json!({ "user_id": user, "view": { "type": "home", "blocks": blocks } });
        self.post_json("views.publish", Repeat::Safe, &body).await.map(|_| ())
    }
}

/// What a look for an earlier post ([`SlackApi::find_tagged`],
/// [`SlackApi::find_shared_file`]) means to a caller about to post: the one
/// found, or none. Slack refusing the lookup (a missing `im:history` scope)
/// counts as none, logged: posting twice is better than never. A transient
/// failure stays an error, so the job retries. `what` names the post in
/// the log ("reply", "export"…).
pub fn found_or_post<T>(lookup: Result<Option<T>, SlackError>, what: &str) -> Result<Option<T>, SlackError> {
    match lookup {
        Err(e @ SlackError::Refused { .. }) => {
            tracing::warn!(error = %e, "could not look for an earlier {what}; posting it");
            Ok(None)
        }
        other => other,
    }
}

/// The workspace-wide `chat.postMessage` budget: one second's worth may go
/// at once (at least one).
fn posts_budget(per_second: f64) -> Budget {
    Budget::per_second("slack_posts", per_second, per_second.ceil().max(1.0) as u32)
}

fn string_field(v: &serde_json::Value, field: &str, method: &'static str) -> Result<String, SlackError> {
    v.get(field)
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .ok_or_else(|| SlackError::Refused { method, code: format!("answer without `{field}`") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_defuses_mentions_and_links() {
        assert_eq!(escape_mrkdwn("<!channel> hi"), "&lt;!channel&gt; hi");
        assert_eq!(escape_mrkdwn("<https://evil|bank>"), "&lt;https://evil|bank&gt;");
        assert_eq!(escape_mrkdwn("a & b"), "a &amp; b");
        assert_eq!(escape_mrkdwn("안녕하세요 *bold*"), "안녕하세요 *bold*");
    }

    #[test]
    fn readable_text_reads_blocks_and_undoes_escaping() {
        let briefing = serde_json::json!({
            "text": "Your briefing", "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": "Good morning" } },
                { "type": "section", "text": { "type": "mrkdwn", "text": "*Gmail* 2 new" },
                  "fields": [{ "type": "mrkdwn", "text": "Ann &amp; Bob" }] },
                { "type": "divider" },
                { "type": "actions", "elements": [{ "type": "button", "text": { "type": "plain_text", "text": "Reconnect" } }] },
                { "type": "context", "elements": [{ "type": "mrkdwn", "text": "&lt;news&gt;" }, { "type": "image", "alt_text": "x" }] },
                { "type": "rich_text", "elements": [{ "type": "rich_text_section", "elements": [
                    { "type": "text", "text": "one " }, { "type": "text", "text": "two" }] }] }
            ]
        });
        assert_eq!(readable_text(&briefing), "Good morning\n*Gmail* 2 new\nAnn & Bob\n<news>\none two");
        assert_eq!(readable_text(&serde_json::json!({ "text": "plain &lt;3" })), "plain <3");
        assert_eq!(readable_text(&serde_json::json!({})), "");
    }

    #[test]
    fn pacer_allows_a_burst_then_one_per_interval() {
        let p = Pacer::default();
        for _ in 0..POST_BURST as usize {
            assert_eq!(p.take("D1"), Duration::ZERO);
        }
        let wait = p.take("D1");
        assert!(wait > Duration::from_millis(900) && wait <= POST_INTERVAL, "{wait:?}");
        assert_eq!(p.take("D2"), Duration::ZERO, "channels are paced separately");
    }
}
