//! `POST /api/cron/daily-summary`: the seed's external cron, kept working.
//! Authenticated by `Authorization: Bearer $CRON_SECRET`, compared in
//! constant time; absent when `CRON_SECRET` is unset (404, as if the route
//! did not exist). It runs the same [`run_due`] as the built-in scheduler,
//! so calling it any number of times sends each due briefing once.
//!
//! [`run_due`]: crate::briefing::scheduler::run_due

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{
    briefing::scheduler::{DueSummary, Trigger, run_due},
    error::ApiError,
    startup::AppState,
};

/// The answer: what this call did.
#[derive(Debug, serde::Serialize)]
pub struct CronResponse {
    pub ok: bool,
    #[serde(flatten)]
    pub summary: DueSummary,
}

pub async fn daily_summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<CronResponse>, ApiError> {
    let Some(secret) = &state.config.cron_secret else { return Err(ApiError::NotFound) };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Hashing first makes the comparison constant-time in the length too.
    let matches: bool =
        Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(secret.expose_secret().as_bytes())).into();
    if presented.is_empty() || !matches {
        return Err(ApiError::Unauthorized);
    }
    let summary = run_due(&state, chrono::Utc::now(), Trigger::Cron).await?;
    tracing::info!(
        claimed = summary.claimed,
        already_sent = summary.already_sent,
        skipped = summary.skipped,
        failed = summary.failed,
        "cron daily-summary"
    );
    Ok(Json(CronResponse { ok: true, summary }))
}
