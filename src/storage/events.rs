//! Inbound Slack events: the `slack_events` table, keyed by Slack's `event_id`.
//!
//! [`record_batch`] is the group commit behind every acknowledgement:
//! the events that arrived together are inserted with one statement, and the
//! caller learns which were new and which were redeliveries.
//!
//! An event row is also its own work item, a queue beside `jobs` with the
//! same rules (see `storage::jobs`): `queued` when stored, claimed with a
//! lease ([`claim`]), then `done`, retried later, or `dead` with its last
//! error. One row per event, not an event plus a job, is half the Postgres
//! work of the commit every acknowledgement waits for.

use std::collections::HashSet;

use sqlx::types::Json;

/// One event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub team_id: Option<String>,
    pub kind: String,
    pub source: &'static str,
    pub retry_num: Option<i32>,
    pub payload: serde_json::Value,
}

/// The group commit: the events that arrived together are inserted by one
/// `INSERT … RETURNING`, atomic on its own (one round trip instead of
/// `BEGIN`, insert, `COMMIT`). Each new row is also its own queued work
/// item (`state = 'queued'`), so there is nothing else to write. Returns
/// the ids that were new.
pub async fn record_batch(
    executor: impl sqlx::PgExecutor<'_>,
    events: &[&NewEvent],
) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let teams: Vec<Option<&str>> = events.iter().map(|e| e.team_id.as_deref()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source).collect();
    let retries: Vec<Option<i32>> = events.iter().map(|e| e.retry_num).collect();
    let payloads: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.payload)).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        r#"INSERT INTO slack_events (event_id, team_id, kind, source, retry_num, payload)
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::jsonb[])
           ON CONFLICT (event_id) DO NOTHING
           RETURNING event_id"#,
    )
    .bind(&ids)
    .bind(&teams)
    .bind(&kinds)
    .bind(&sources)
    .bind(&retries)
    .bind(&payloads)
    .fetch_all(executor)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// A stored event as the worker that handles it reads it: its kind and
/// payload, and whether the workspace it came from is inactive.
#[derive(Debug, Clone)]
pub struct Stored {
    pub event_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// The envelope's workspace.
    pub team_id: Option<String>,
    /// Why that workspace is inactive (`None`: active, or not stored).
    pub team_inactive_reason: Option<String>,
}

/// An event claimed for handling: the stored event and how often it has
/// been tried (this attempt included).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub event: Stored,
    pub attempts: i32,
}

/// How many times an event is tried before it is `dead` (as jobs).
pub const MAX_ATTEMPTS: i32 = 12;

/// Claims up to `limit` due events (and events whose lease expired),
/// leasing each for `lease_secs`, and returns them with what their handler
/// reads: kind, payload and the workspace's state, in the same statement.
pub async fn claim(
    executor: impl sqlx::PgExecutor<'_>,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows = sqlx::query!(
        // The workspace's state is a scalar subquery, not a LEFT JOIN: sqlx
        // infers the nullability of outer-join columns from the plan, which
        // differs between databases.
        r#"UPDATE slack_events e SET state = 'running', attempts = attempts + 1,
                  locked_until = now() + make_interval(secs => $2)
           WHERE event_id IN (
               SELECT event_id FROM slack_events
               WHERE (state = 'queued' AND run_at <= now())
                  OR (state = 'running' AND locked_until < now())
               ORDER BY run_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           RETURNING e.event_id, e.kind, e.payload, e.team_id, e.attempts,
                     (SELECT t.inactive_reason FROM slack_teams t WHERE t.team_id = e.team_id AND NOT t.active)
                         AS "team_inactive_reason?""#,
        limit,
        lease_secs
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            event: Stored {
                event_id: r.event_id,
                kind: r.kind,
                payload: r.payload,
                team_id: r.team_id,
                team_inactive_reason: r.team_inactive_reason,
            },
            attempts: r.attempts,
        })
        .collect())
}

/// Marks handled events done, several in one statement (the runner's group
/// commit of finished work).
pub async fn complete_many(executor: impl sqlx::PgExecutor<'_>, event_ids: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE slack_events SET state = 'done', locked_until = NULL, finished_at = now(), last_error = NULL
           WHERE event_id = ANY($1)"#,
        event_ids
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Puts an event back in the queue, to be handled again at `run_at`.
pub async fn retry_at(
    executor: impl sqlx::PgExecutor<'_>,
    event_id: &str,
    run_at: chrono::DateTime<chrono::Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE slack_events SET state = 'queued', locked_until = NULL, run_at = $2, last_error = $3
           WHERE event_id = $1"#,
        event_id,
        run_at,
        error
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Buries an event: it will not be handled again and stays visible as `dead`.
pub async fn bury(executor: impl sqlx::PgExecutor<'_>, event_id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE slack_events SET state = 'dead', locked_until = NULL, finished_at = now(), last_error = $2
           WHERE event_id = $1"#,
        event_id,
        error
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// A stored event's kind and payload (what a dead reply job reads to
/// apologise for a DM it never stored).
pub async fn payload(
    executor: impl sqlx::PgExecutor<'_>,
    event_id: &str,
) -> Result<Option<(String, serde_json::Value)>, sqlx::Error> {
    let row = sqlx::query!(r#"SELECT kind, payload FROM slack_events WHERE event_id = $1"#, event_id)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|r| (r.kind, r.payload)))
}
