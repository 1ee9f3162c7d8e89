//! Retention: deleting what robeing no longer needs, in bounded batches so
//! that no statement holds locks for long (see [`crate::housekeeping`]).
//!
//! Only bookkeeping is pruned: inbound events whose work is finished, and
//! finished jobs. Dead jobs stay until an operator looks at them, events
//! whose job is dead or still pending stay with them, and conversations
//! (`exchanges`) are the user's, deleted only by "forget me".

use sqlx::PgExecutor;

/// Deletes up to `limit` inbound events received more than `days` ago
/// whose `slack_event` job is done (or that never had one: redeliveries of
/// an event are not stored twice). Returns how many were deleted.
pub async fn prune_events(executor: impl PgExecutor<'_>, days: i32, limit: i64) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        r#"DELETE FROM slack_events WHERE event_id IN (
               SELECT e.event_id FROM slack_events e
               WHERE e.received_at < now() - make_interval(days => $1)
                 AND NOT EXISTS (
                     SELECT 1 FROM jobs j WHERE j.dedupe_key = 'event:' || e.event_id AND j.state <> 'done')
               ORDER BY e.received_at
               LIMIT $2)"#,
        days,
        limit
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected())
}

/// Deletes up to `limit` jobs that finished (`done`) more than `days` ago.
/// Returns how many were deleted.
pub async fn prune_jobs(executor: impl PgExecutor<'_>, days: i32, limit: i64) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        r#"DELETE FROM jobs WHERE id IN (
               SELECT id FROM jobs
               WHERE state = 'done' AND finished_at < now() - make_interval(days => $1)
               LIMIT $2)"#,
        days,
        limit
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected())
}
