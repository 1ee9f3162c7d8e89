//! `GET /healthz` (the process answers) and `GET /readyz` (every dependency,
//! as JSON; 503 when a required one is down).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};

use crate::startup::AppState;

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(serde_json::json!({ "ok": true })))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let report = crate::health::readiness(&state).await;
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report))
}
