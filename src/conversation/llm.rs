//! The LLM client: any OpenAI-compatible `POST {LLM_BASE_URL}/chat/completions`.
//!
//! One request has `LLM_TIMEOUT_SECS`; 429, 5xx, timeouts and connection
//! failures are retried a bounded number of times with backoff (honouring
//! `Retry-After`, capped), all within [`TOTAL_BUDGET`] so that a reply job
//! never outlives its outbox lease. Other 4xx answers are not retried here.
//! What is still failing after that is the caller's to retry (the outbox
//! retries the whole reply later).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use crate::config::OpenAiCompatible;

/// Attempts per reply, first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Everything one reply may spend on the LLM, retries included: below the
/// outbox lease (`jobs::LEASE`, 90 s) so a slow LLM never lets a second
/// worker take the same reply.
pub const TOTAL_BUDGET: Duration = Duration::from_secs(75);
/// First backoff; doubles per retry.
const BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` we wait for inside one job; longer waits are
/// left to the outbox's own backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One chat message: its text, and the images shown with it (a user's).
/// Without images its `content` is a string; with them, OpenAI's array of
/// parts: the text, then each image as an `image_url` data URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
    /// `data:<type>;base64,…` URLs.
    pub images: Vec<String>,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: "system", content: content.into(), images: Vec::new() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user", content: content.into(), images: Vec::new() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: "assistant", content: content.into(), images: Vec::new() }
    }
    /// Adds an image (its MIME type and bytes) to show with the message.
    pub fn with_image(mut self, mime: &str, bytes: &[u8]) -> Self {
        use base64::Engine as _;
        self.images.push(format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)));
        self
    }
}

impl Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("role", self.role)?;
        if self.images.is_empty() {
            map.serialize_entry("content", &self.content)?;
        } else {
            let mut parts = vec![serde_json::json!({ "type": "text", "text": self.content })];
            parts.extend(
                self.images.iter().map(|url| serde_json::json!({ "type": "image_url", "image_url": { "url": url } })),
            );
            map.serialize_entry("content", &parts)?;
        }
        map.end()
    }
}

/// The LLM refused the request itself (a 4xx other than 429): asking again
/// gives the same. A model that takes no images answers so to one with
/// images (400).
#[derive(Debug, thiserror::Error)]
#[error("the LLM at {url} answered {status}: {detail}")]
pub struct Refused {
    pub url: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
    /// `stop`, `length` (the model's token limit cut it), `content_filter`…
    #[serde(default)]
    finish_reason: Option<String>,
}

/// What the LLM said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Trimmed; empty only when the model was cut off or filtered before
    /// saying anything.
    pub text: String,
    pub ending: Ending,
}

/// How the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// Cut off by the model's token limit (`finish_reason: "length"`).
    CutShort,
    /// Withheld by the provider's content filter (`content_filter`): asking
    /// again gives the same, so it is not retried.
    Filtered,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

/// Asks the LLM for the next assistant message. An answer with no text is
/// an error (retried by the caller), unless the model said why: cut short
/// or filtered ([`Ending`]).
pub async fn complete(
    http: &reqwest::Client,
    config: &OpenAiCompatible,
    timeout: Duration,
    messages: &[ChatMessage],
) -> anyhow::Result<Answer> {
    let url = format!("{}/chat/completions", config.base_url.as_str().trim_end_matches('/'));
    let body = serde_json::json!({ "model": config.model, "messages": messages });
    let started = Instant::now();
    // Made only when a call fails: an `anyhow::Error` captures a backtrace
    // when RUST_BACKTRACE is set, too costly to build for every reply.
    let mut last_error: Option<anyhow::Error> = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let left = TOTAL_BUDGET.saturating_sub(started.elapsed());
        if left < Duration::from_millis(100) {
            break;
        }
        let mut req = http.post(&url).timeout(timeout.min(left)).json(&body);
        if let Some(key) = &config.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let wait = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let c: Completion =
                    resp.json().await.with_context(|| format!("reading the LLM's answer from {url}"))?;
                let choice = c.choices.into_iter().next();
                let ending = match choice.as_ref().and_then(|c| c.finish_reason.as_deref()) {
                    Some("length") => Ending::CutShort,
                    Some("content_filter") => Ending::Filtered,
                    _ => Ending::Complete,
                };
                let text = choice.and_then(|c| c.message.content).map(|s| s.trim().to_owned()).unwrap_or_default();
                if text.is_empty() && ending == Ending::Complete {
                    anyhow::bail!("the LLM at {url} answered with no message");
                }
                if ending != Ending::Complete {
                    tracing::warn!(?ending, "the LLM's answer did not end normally; the reply says so");
                }
                return Ok(Answer { text, ending });
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let detail: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                if !(status.as_u16() == 429 || status.is_server_error()) {
                    return Err(Refused { url, status: status.as_u16(), detail }.into());
                }
                last_error = Some(anyhow::anyhow!("the LLM at {url} answered {status}: {detail}"));
                retry_after.map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or(BACKOFF * 2u32.pow(attempt - 1))
            }
            Err(e) => {
                last_error = Some(anyhow::Error::new(e).context(if attempt == 1 {
                    format!("calling the LLM at {url}")
                } else {
                    format!("calling the LLM at {url} (attempt {attempt})")
                }));
                BACKOFF * 2u32.pow(attempt - 1)
            }
        };
        if let Some(e) = &last_error {
            tracing::warn!(attempt, error = format!("{e:#}"), "LLM call failed; retrying");
        }
        if attempt < MAX_ATTEMPTS {
            if started.elapsed() + wait >= TOTAL_BUDGET {
                break;
            }
            tokio::time::sleep(wait).await;
        }
    }
    let last_error = last_error.unwrap_or_else(|| anyhow::anyhow!("the LLM was not called"));
    Err(last_error.context(format!("the LLM failed {MAX_ATTEMPTS} times or ran out of its {TOTAL_BUDGET:?} budget")))
}
