//! Retention: deleting what robeing no longer needs, in bounded batches so
//! that no statement holds locks for long (see [`crate::housekeeping`]).
//!
//! Only bookkeeping is pruned: inbound events that were handled, and
//! finished jobs. Dead jobs and dead events stay until an operator looks at
//! them, pending ones stay until they are handled, and conversations
//! (`exchanges`) are the user's, deleted only by "forget me".

use sqlx::PgExecutor;

/// Deletes up to `limit` inbound events received more than `days` ago that
/// were handled (`done`). Returns how many were deleted.
pub async fn prune_events(executor: impl PgExecutor<'_>, days: i32, limit: i64) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        r#"DELETE FROM slack_events WHERE event_id IN (
               SELECT event_id FROM slack_events
               WHERE received_at < now() - make_interval(days => $1) AND state = 'done'
               ORDER BY received_at
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
