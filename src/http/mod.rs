//! The HTTP surface: one router with every route of the operator contract.
//! Handlers are thin: they authenticate, parse, hand work to the pipeline or
//! a module, and map errors through [`crate::error::ApiError`].
//!
//! Every request runs in one `request` span carrying its id (the caller's
//! `x-request-id` when it is a sane token, else a fresh one; echoed in the
//! response's `x-request-id`), its method and its path — never its query
//! string, which on the OAuth routes carries a signed link, a `code` and a
//! `state`. The response is logged once at `info` with its status and
//! latency; a failure's cause is logged where it is handled
//! ([`crate::error::ApiError`]), not again here.

pub mod cron;
pub mod health;
pub mod metrics;
pub mod oauth;
pub mod slack;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, HeaderValue},
    routing::{get, post},
};
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::startup::AppState;

/// Largest request body accepted on any route (Slack's payloads are far
/// smaller; slack-morphism itself reads bodies without a limit).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics_text))
        .merge(slack::router())
        .route("/oauth/google/start", get(oauth::start))
        .route("/oauth/google/callback", get(oauth::callback))
        .route("/api/cron/daily-summary", post(cron::daily_summary))
        .fallback(|| async { crate::error::ApiError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost last: drop a bad id, set one, open the span, echo the id.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, NewRequestId))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// The header carrying a request's id, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-supplied request id kept; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// A caller's request id is kept only when it is one short token of
/// letters, digits and `-_.:` (what proxies and tracing systems send), so
/// nothing odd reaches the logs through it.
pub fn is_usable_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    (1..=MAX_REQUEST_ID_LEN).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Removes an `x-request-id` that is not usable (or given twice), so
/// [`SetRequestIdLayer`] makes a fresh one.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let usable = match (values.next(), values.next()) {
        (Some(v), None) => is_usable_request_id(v),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !usable {
        headers.remove(&X_REQUEST_ID);
    }
    request
}

/// Fresh request ids: a UUID v4 without dashes. Its random bits come from
/// the thread's userspace generator, not a `getrandom` system call per
/// request: an id only has to be unique, it guards nothing.
#[derive(Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(&id.simple().to_string()).ok().map(RequestId::new)
    }
}

/// The span of one request: id, method and path only (no query string).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_distinct_v4_uuids() {
        let request = axum::http::Request::new(());
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = NewRequestId.make_request_id(&request).unwrap();
                id.header_value().to_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!((id.len(), uuid.get_version_num()), (32, 4), "{id}");
            assert!(is_usable_request_id(&HeaderValue::from_str(id).unwrap()));
        }
    }

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        for good in ["abc", "0f8c2a1e-7b1d-4c6a-9d0e-3f2b1a0c9d8e", "req_1.2:3"] {
            assert!(is_usable_request_id(&HeaderValue::from_static(good)), "{good}");
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "has space", "quote\"", "code=4/0Ab", long.as_str()] {
            assert!(!is_usable_request_id(&HeaderValue::from_str(bad).unwrap()), "{bad}");
        }
    }
}
