//! The HTTP surface: one router with every route of the operator contract.
//! Handlers are thin: they authenticate, parse, hand work to the pipeline or
//! a module, and map errors through [`crate::error::ApiError`].

pub mod cron;
pub mod health;
pub mod metrics;
pub mod oauth;
pub mod slack;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use tower_http::trace::TraceLayer;

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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
