//! `GET /metrics`: Prometheus text format. Stored-state gauges (job backlog)
//! are refreshed from Postgres at scrape time.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};

use crate::{
    health::SocketModeState,
    metrics::{Kind, metrics},
    startup::AppState,
};

pub async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = metrics();
    if let Ok(Ok(rows)) =
        tokio::time::timeout(crate::health::PROBE_TIMEOUT, crate::storage::jobs::backlog(&state.db)).await
    {
        m.job_backlog.clear();
        m.job_oldest_age_seconds.clear();
        m.jobs_dead.clear();
        for b in rows {
            let kind = Kind { kind: b.kind.clone() };
            m.job_backlog.get_or_create(&kind).set(b.pending);
            m.job_oldest_age_seconds.get_or_create(&kind).set(b.oldest_age_secs);
            m.jobs_dead.get_or_create(&kind).set(b.dead);
        }
    }
    m.socket_mode_connected.set(i64::from(state.live.socket_mode() == SocketModeState::Connected));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}
