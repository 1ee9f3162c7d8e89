//! Housekeeping: keeping Postgres from growing without bound. Every inbound
//! Slack event and every job leaves a row; once its work is finished, the
//! row is only history. [`prune`] deletes handled events and finished jobs
//! older than `RETENTION_DAYS` (see [`crate::storage::retention`] for what is
//! never pruned). `serve` runs it at start-up and then hourly ([`run`]);
//! `robeing prune` runs it once.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{startup::AppState, storage::retention};

/// Days handled events and finished jobs are kept when `RETENTION_DAYS` is unset.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// How often `serve` prunes.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Rows one statement deletes: each batch is a short transaction, so
/// pruning a large backlog never holds locks for long.
pub const BATCH: i64 = 5_000;

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub events: u64,
    pub jobs: u64,
}

/// Deletes handled events, then finished jobs, older than `days`, batch by
/// batch until none is left.
pub async fn prune(db: &PgPool, days: u32) -> Result<Pruned, sqlx::Error> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut pruned = Pruned::default();
    loop {
        let n = retention::prune_events(db, days, BATCH).await?;
        pruned.events += n;
        if n < BATCH as u64 {
            break;
        }
    }
    loop {
        let n = retention::prune_jobs(db, days, BATCH).await?;
        pruned.jobs += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(pruned)
}

/// Prunes at start-up and every [`EVERY`] until `shutdown`; nothing when
/// retention is off (`RETENTION_DAYS=0`). A failed pass is logged and
/// tried again at the next one.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let Some(days) = state.config.retention_days else {
        tracing::info!("retention off (RETENTION_DAYS=0): handled events and finished jobs are kept for ever");
        return;
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match prune(&state.db, days).await {
            Ok(p) => {
                let m = crate::metrics::metrics();
                m.rows_pruned.get_or_create(&crate::metrics::Table { table: "slack_events".into() }).inc_by(p.events);
                m.rows_pruned.get_or_create(&crate::metrics::Table { table: "jobs".into() }).inc_by(p.jobs);
                if p != Pruned::default() {
                    tracing::info!(events = p.events, jobs = p.jobs, days, "pruned handled events and finished jobs");
                }
            }
            Err(e) => tracing::warn!(error = %e, days, "could not prune old events and jobs; will retry in an hour"),
        }
    }
}
