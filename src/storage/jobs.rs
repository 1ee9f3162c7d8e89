//! The durable outbox (`jobs`): enqueue, claim with a lease, finish, retry,
//! bury, and the backlog figures `/readyz`, `/metrics` and `doctor` show.
//!
//! A claim sets `locked_until`; a worker that dies mid-job leaves the job
//! `running` with an expired lease, and the next claim takes it again. Jobs
//! are never deleted by a failure: one that exhausts its attempts is `dead`,
//! with its last error, and stays visible to the operator.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The workspace it was queued for, when it was queued with one.
    pub team_id: Option<String>,
}

/// Queues a job unless one with the same `dedupe_key` exists. Returns its id
/// when it was queued now.
pub async fn enqueue(
    executor: impl PgExecutor<'_>,
    kind: &str,
    dedupe_key: Option<&str>,
    payload: &serde_json::Value,
    run_at: Option<DateTime<Utc>>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO jobs (kind, dedupe_key, payload, run_at)
           VALUES ($1, $2, $3, COALESCE($4, now()))
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id"#,
        kind,
        dedupe_key,
        payload,
        run_at
    )
    .fetch_optional(executor)
    .await
}

/// [`enqueue`] with its own number of attempts, for work that must outlast
/// a longer outage than the default twelve (about 19 minutes) allow.
pub async fn enqueue_with_attempts(
    executor: impl PgExecutor<'_>,
    kind: &str,
    dedupe_key: &str,
    payload: &serde_json::Value,
    max_attempts: i32,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO jobs (kind, dedupe_key, payload, max_attempts)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id"#,
        kind,
        dedupe_key,
        payload,
        max_attempts
    )
    .fetch_optional(executor)
    .await
}

/// Claims up to `limit` due jobs (and jobs whose lease expired), leasing
/// each for `lease_secs`, except memory writes (`memory_upsert`): the
/// memory writer claims those itself, in groups ([`claim_kind`]). The
/// statement names the kind literally so that it matches the partial index
/// `jobs_due_for_workers`, and a backlog of memory writes is never scanned
/// by the workers' claims.
pub async fn claim(executor: impl PgExecutor<'_>, limit: i64, lease_secs: f64) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        r#"UPDATE jobs SET state = 'running', attempts = attempts + 1,
                  locked_until = now() + make_interval(secs => $2), updated_at = now()
           WHERE id IN (
               SELECT id FROM jobs
               WHERE kind <> 'memory_upsert'
                 AND ((state = 'queued' AND run_at <= now())
                  OR (state = 'running' AND locked_until < now()))
               ORDER BY run_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           RETURNING id, kind, payload, attempts, max_attempts, created_at, team_id"#,
        limit,
        lease_secs
    )
    .fetch_all(executor)
    .await
}

/// Marks jobs done, several in one statement (the job runner's group
/// commit of finished jobs).
pub async fn complete_many(executor: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs SET state = 'done', locked_until = NULL, finished_at = now(), updated_at = now(), last_error = NULL
           WHERE id = ANY($1)"#,
        ids
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Puts a job back in the queue to run again at `run_at`.
pub async fn retry_at(
    executor: impl PgExecutor<'_>,
    id: i64,
    run_at: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs SET state = 'queued', locked_until = NULL, run_at = $2, last_error = $3, updated_at = now()
           WHERE id = $1"#,
        id,
        run_at,
        error
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Puts claimed jobs back in the queue, each to run again at its own time
/// (`ids` and `run_ats` pair up), with the error that stopped them. No
/// attempt is their last: for work that must wait out an outage however
/// long it lasts (the memory writer's, while ChromaDB is unavailable).
pub async fn retry_many_at(
    executor: impl PgExecutor<'_>,
    ids: &[i64],
    run_ats: &[DateTime<Utc>],
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs j SET state = 'queued', locked_until = NULL, run_at = i.run_at, last_error = $3,
                  updated_at = now()
           FROM UNNEST($1::int8[], $2::timestamptz[]) AS i(id, run_at)
           WHERE j.id = i.id"#,
        ids,
        run_ats,
        error
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Makes every queued job of `kind` that waits for a retry due now (the
/// outage it waited out is over). Returns how many.
pub async fn hasten_retries(executor: impl PgExecutor<'_>, kind: &str) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs SET run_at = now(), updated_at = now()
           WHERE kind = $1 AND state = 'queued' AND run_at > now() AND last_error IS NOT NULL"#,
        kind
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected())
}

/// Queues jobs of one kind by dedupe key (`keys` and `payloads` pair up):
/// a key with no job gets one, and a key whose job is finished (`done` or
/// `dead`) gets it back in the queue with its attempts reset; a job still
/// queued or running is left as it is. Returns how many were queued.
pub async fn enqueue_or_revive_many(
    executor: impl PgExecutor<'_>,
    kind: &str,
    keys: &[String],
    payloads: &[serde_json::Value],
) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO jobs (kind, dedupe_key, payload)
           SELECT $1, k, p FROM UNNEST($2::text[], $3::jsonb[]) AS i(k, p)
           ON CONFLICT (dedupe_key) DO UPDATE
               SET state = 'queued', attempts = 0, run_at = now(), locked_until = NULL, finished_at = NULL,
                   last_error = NULL, payload = EXCLUDED.payload, updated_at = now()
               WHERE jobs.state IN ('done', 'dead') AND jobs.kind = EXCLUDED.kind"#,
        kind,
        keys,
        payloads
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected())
}

/// Buries a job: it will not run again and stays visible as `dead`.
pub async fn bury(executor: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs SET state = 'dead', locked_until = NULL, finished_at = now(), last_error = $2, updated_at = now()
           WHERE id = $1"#,
        id,
        error
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Pending work of one kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backlog {
    pub kind: String,
    pub pending: i64,
    pub oldest_age_secs: f64,
    pub dead: i64,
}

/// Pending (queued or running) and dead jobs per kind. Inbound events, a
/// queue of their own (`storage::events`), are the kind `slack_event`.
pub async fn backlog(executor: impl PgExecutor<'_>) -> Result<Vec<Backlog>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT kind AS "kind!",
                  count(*) FILTER (WHERE state IN ('queued', 'running')) AS "pending!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state IN ('queued', 'running')))::float8, 0) AS "oldest!",
                  count(*) FILTER (WHERE state = 'dead') AS "dead!"
           FROM jobs WHERE state IN ('queued', 'running', 'dead')
           GROUP BY kind
           UNION ALL
           SELECT 'slack_event',
                  count(*) FILTER (WHERE state IN ('queued', 'running')),
                  COALESCE(EXTRACT(EPOCH FROM now() - min(received_at) FILTER (WHERE state IN ('queued', 'running')))::float8, 0),
                  count(*) FILTER (WHERE state = 'dead')
           FROM slack_events WHERE state <> 'done'
           HAVING count(*) > 0
           ORDER BY 1"#
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Backlog { kind: r.kind, pending: r.pending, oldest_age_secs: r.oldest, dead: r.dead })
        .collect())
}

/// Queued or running jobs of one kind, counted up to `at_most` (enough to
/// compare with a threshold without counting a large backlog).
pub async fn pending_of_kind(executor: impl PgExecutor<'_>, kind: &str, at_most: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "pending!" FROM (
               SELECT 1 FROM jobs WHERE kind = $1 AND state IN ('queued', 'running') LIMIT $2) p"#,
        kind,
        at_most
    )
    .fetch_one(executor)
    .await
}

/// Claims up to `limit` more due jobs of one kind (for handlers that do
/// their work in batches), leasing each for `lease_secs`.
pub async fn claim_kind(
    executor: impl PgExecutor<'_>,
    kind: &str,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        r#"UPDATE jobs SET state = 'running', attempts = attempts + 1,
                  locked_until = now() + make_interval(secs => $3), updated_at = now()
           WHERE id IN (
               SELECT id FROM jobs
               WHERE kind = $1 AND ((state = 'queued' AND run_at <= now())
                  OR (state = 'running' AND locked_until < now()))
               ORDER BY run_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
           RETURNING id, kind, payload, attempts, max_attempts, created_at, team_id"#,
        kind,
        limit,
        lease_secs
    )
    .fetch_all(executor)
    .await
}
