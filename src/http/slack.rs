//! `POST /slack/events`, `/slack/commands`, `/slack/interactions`: Slack's
//! HTTP transport.
//!
//! Each request is checked in this order, and nothing is parsed before the
//! signature holds:
//!
//! 1. `SLACK_SIGNING_SECRET` unset → 503 naming the variable.
//! 2. Body over [`MAX_BODY_BYTES`] → 413 (read with a limit; slack-morphism
//!    would read it whole).
//! 3. Slack's v0 signature over the raw bytes (HMAC-SHA256, constant-time
//!    compare, timestamp within [`MAX_SKEW`]) → 401 with no detail.
//! 4. A `Content-Encoding` other than `identity`, malformed JSON or form →
//!    400 naming the problem.
//!
//! Then the payload is recorded through [`crate::pipeline::Ingest`] (the
//! event row, which is also its queued work) and only then answered 200; a failed
//! commit is a 503 so Slack redelivers. Redeliveries (`X-Slack-Retry-Num`)
//! dedupe on `event_id`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Request, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::post,
};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::Sha256;
use tower_http::limit::RequestBodyLimitLayer;

use super::MAX_BODY_BYTES;
use crate::{
    error::ApiError,
    pipeline::Recorded,
    slack::events::{self, EnvelopeKeys},
    startup::AppState,
    storage::events::NewEvent,
};

/// Slack's replay window: a request signed more than five minutes from our
/// clock is refused (Slack's documented rule).
pub const MAX_SKEW: i64 = 5 * 60;
/// How long a request waits for its event to be committed before answering
/// 503. Slack gives up after 3 s; answering before then lets it redeliver
/// promptly. (A commit that lands after the 503 is harmless: the redelivery
/// is a duplicate and is answered 200.)
pub const RECORD_TIMEOUT: Duration = Duration::from_millis(2500);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/slack/events", post(events_route))
        .route("/slack/commands", post(commands_route))
        .route("/slack/interactions", post(interactions_route))
        // Refuses an oversized declared Content-Length before reading it;
        // `verified_body` also reads at most MAX_BODY_BYTES.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(count_rejections))
}

/// Counts refused Slack requests by reason in `/metrics`.
async fn count_rejections(response: Response) -> Response {
    let reason = match response.status().as_u16() {
        400 => "malformed",
        401 => "bad_signature",
        413 => "too_large",
        503 => "unavailable",
        _ => return response,
    };
    crate::metrics::metrics()
        .events_rejected
        .get_or_create(&crate::metrics::Reason { reason: reason.to_owned() })
        .inc();
    response
}

/// Reads the body (bounded) and checks Slack's signature over its raw bytes.
async fn verified_body(state: &AppState, request: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let Some(secret) = state.config.slack.signing_secret.as_ref() else {
        return Err(ApiError::Unavailable(
            "SLACK_SIGNING_SECRET is not set, so robeing cannot verify HTTP requests from Slack. Set it to the app's Signing Secret (Basic Information page), or use Socket Mode (SLACK_APP_TOKEN)".into(),
        ));
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::PayloadTooLarge)?;
    if let Err(why) = verify_signature(secret.expose_secret().as_bytes(), &parts.headers, &bytes, now()) {
        // Logged for the operator, never told to the caller.
        tracing::info!(why, path = %parts.uri.path(), "refused a request with a bad Slack signature");
        return Err(ApiError::Unauthorized);
    }
    // Slack sends plain bodies. A compressed one would be read as if it were
    // plain (a gzip "stored" block carries the form's text verbatim between
    // binary bytes), so it is refused rather than half-understood.
    if let Some(encoding) = parts
        .headers
        .get_all(axum::http::header::CONTENT_ENCODING)
        .iter()
        .find(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ApiError::BadRequest(format!(
            "Content-Encoding `{}` is not supported; send the body uncompressed",
            String::from_utf8_lossy(encoding.as_bytes()).escape_debug()
        )));
    }
    Ok((parts.headers, bytes))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Slack's v0 scheme: `v0=` + hex(HMAC-SHA256(secret, "v0:{ts}:{body}")).
pub fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header("x-slack-signature").ok_or("no X-Slack-Signature")?;
    let ts = header("x-slack-request-timestamp").ok_or("no X-Slack-Request-Timestamp")?;
    let ts_num: i64 = ts.parse().map_err(|_| "timestamp is not a number")?;
    // `abs_diff`: a timestamp near i64::MIN must be refused, not overflow.
    if now.abs_diff(ts_num) > MAX_SKEW.unsigned_abs() {
        return Err("timestamp outside the 5-minute window");
    }
    let hex_sig = signature.strip_prefix("v0=").ok_or("signature without the v0= prefix")?;
    let sig = hex::decode(hex_sig).map_err(|_| "signature is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "unusable secret")?;
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| "signature mismatch")
}

fn retry_num(headers: &HeaderMap) -> Option<i32> {
    headers.get("x-slack-retry-num").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok()).filter(|n| *n >= 0)
}

/// Records one payload and maps the outcome to the answer's status.
async fn record(
    state: &AppState,
    keys: EnvelopeKeys,
    retry_num: Option<i32>,
    payload: serde_json::Value,
) -> Result<Recorded, ApiError> {
    let event = NewEvent {
        event_id: keys.event_id,
        team_id: keys.team_id,
        kind: keys.kind,
        source: "http",
        retry_num,
        payload,
    };
    match tokio::time::timeout(RECORD_TIMEOUT, state.ingest.record(event)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "refusing a Slack request: it could not be stored; Slack will redeliver");
            Err(ApiError::Unavailable("the event could not be stored; retry later".into()))
        }
        Err(_) => {
            tracing::error!(
                "refusing a Slack request: storing it took longer than {RECORD_TIMEOUT:?}; Slack will redeliver"
            );
            Err(ApiError::Unavailable("the event could not be stored in time; retry later".into()))
        }
    }
}

async fn events_route(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let (headers, body) = verified_body(&state, request).await?;
    let payload = parse_events_body(&body)?;
    match payload.get("type").and_then(|t| t.as_str()) {
        Some("url_verification") => {
            let challenge = payload
                .get("challenge")
                .and_then(|c| c.as_str())
                .ok_or_else(|| ApiError::BadRequest("url_verification without `challenge`".into()))?;
            Ok(Json(serde_json::json!({ "challenge": challenge })).into_response())
        }
        Some("event_callback") => {
            let keys = events::callback_keys(&payload).map_err(|e| ApiError::BadRequest(e.into()))?;
            let outcome = record(&state, keys.clone(), retry_num(&headers), payload).await?;
            tracing::debug!(event_id = %keys.event_id, kind = %keys.kind, ?outcome, "Slack event recorded");
            Ok(axum::http::StatusCode::OK.into_response())
        }
        Some("app_rate_limited") => {
            tracing::warn!("Slack reports robeing exceeded the Events API rate limit; some events were not delivered");
            Ok(axum::http::StatusCode::OK.into_response())
        }
        Some(other) => Err(ApiError::BadRequest(format!("unknown Events API payload type `{}`", other.escape_debug()))),
        None => Err(ApiError::BadRequest("the payload has no `type`".into())),
    }
}

/// How long the `/brief` acknowledgement may wait for the user's stored
/// locale: the ack is due within Slack's 3 s, and English beats a late ack.
pub const ACK_LOCALE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// What a slash command's acknowledgement depends on, taken from its payload
/// before the payload is handed to the pipeline.
#[derive(Debug, Clone, Default)]
pub struct CommandAck {
    command: String,
    text: String,
    user_id: String,
}

impl CommandAck {
    /// `None` when the payload is not a slash command.
    pub fn of(payload: &serde_json::Value) -> Option<Self> {
        let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        payload.get("command")?;
        Some(Self { command: field("command"), text: field("text"), user_id: field("user_id") })
    }

    /// The immediate, ephemeral answer to a slash command (Slack wants one
    /// within 3 s; the real work runs from the outbox), in the user's
    /// language: the command's own text decides when it has letters (`/brief
    /// 뉴스`), else the stored Slack locale (a slash command carries none).
    pub async fn answer(&self, state: &AppState) -> serde_json::Value {
        let locale = match self.user_id.as_str() {
            "" => None,
            user => tokio::time::timeout(ACK_LOCALE_WAIT, crate::storage::users::get(&state.db, user))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .and_then(|u| u.locale),
        };
        let lang = crate::i18n::Lang::detect(&self.text, locale.as_deref());
        let text = match self.command.as_str() {
            "/brief" => crate::i18n::briefing::ack(lang).to_owned(),
            other => crate::i18n::briefing::working_on(lang, &crate::slack::client::escape_mrkdwn(other)),
        };
        serde_json::json!({ "response_type": "ephemeral", "text": text })
    }
}

/// Parses an Events API body (already verified) into a storable payload.
pub fn parse_events_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    events::make_storable(&mut payload);
    Ok(payload)
}

/// A form body (slash commands, interactions) as a storable JSON object;
/// a field given twice keeps its last value.
pub fn form_to_json(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a valid form: {e}")))?;
    Ok(pairs.into_iter().map(|(k, v)| (events::storable(k), serde_json::Value::String(events::storable(v)))).collect())
}

/// Parses an interactions body (already verified): the JSON in its
/// `payload` form field, storable.
pub fn parse_interaction_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let form = form_to_json(body)?;
    let raw = form
        .get("payload")
        .and_then(|p| p.as_str())
        .ok_or_else(|| ApiError::BadRequest("the form has no `payload` field".into()))?;
    let mut payload: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| ApiError::BadRequest(format!("`payload` is not valid JSON: {e}")))?;
    events::make_storable(&mut payload);
    Ok(payload)
}

async fn commands_route(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let (headers, body) = verified_body(&state, request).await?;
    let payload = serde_json::Value::Object(form_to_json(&body)?);
    if payload.get("ssl_check").and_then(|v| v.as_str()) == Some("1") {
        // Slack checking our certificate: nothing to record.
        return Ok(axum::http::StatusCode::OK.into_response());
    }
    let keys = events::command_keys(&payload).map_err(|e| ApiError::BadRequest(e.into()))?;
    let ack = CommandAck::of(&payload).unwrap_or_default();
    record(&state, keys, retry_num(&headers), payload).await?;
    Ok(Json(ack.answer(&state).await).into_response())
}

async fn interactions_route(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let (headers, body) = verified_body(&state, request).await?;
    let payload = parse_interaction_body(&body)?;
    let keys = events::interaction_keys(&payload).map_err(|e| ApiError::BadRequest(e.into()))?;
    record(&state, keys, retry_num(&headers), payload).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(sig: &str, ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-signature", sig.parse().unwrap());
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h
    }

    #[test]
    fn slacks_documented_example_verifies() {
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(verify_signature(secret, &headers(sig, "1531420618"), body, 1531420618 + 10), Ok(()));
        assert!(verify_signature(secret, &headers(sig, "1531420618"), body, 1531420618 + 301).is_err());
        assert!(
            verify_signature(secret, &headers(&sig.replace("v0=", "v1="), "1531420618"), body, 1531420618).is_err()
        );
        assert!(verify_signature(secret, &headers(sig, "1531420618"), &body[1..], 1531420618).is_err());
    }
}
