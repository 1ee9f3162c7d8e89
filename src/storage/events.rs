//! Inbound Slack events: the `slack_events` table, keyed by Slack's `event_id`.
//!
//! [`record_batch`] is the group commit behind every acknowledgement: the
//! events that arrived together are inserted with one statement, each new one
//! queues its `slack_event` job in the same transaction, and the caller learns
//! which were new and which were redeliveries.

use std::collections::HashSet;

use sqlx::{PgConnection, types::Json};

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

/// Inserts the events (first occurrence wins) and a `slack_event` job for each
/// new one. Returns the ids that were new. Runs inside the caller's
/// transaction so that the event and its job commit together.
pub async fn record_batch(conn: &mut PgConnection, events: &[NewEvent]) -> Result<HashSet<String>, sqlx::Error> {
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
    .fetch_all(&mut *conn)
    .await?;
    if !inserted.is_empty() {
        let team_of = |id: &str| events.iter().find(|e| e.event_id == id).and_then(|e| e.team_id.clone());
        let keys: Vec<String> = inserted.iter().map(|id| format!("event:{id}")).collect();
        let payloads: Vec<Json<serde_json::Value>> =
            inserted.iter().map(|id| Json(serde_json::json!({ "event_id": id }))).collect();
        let teams: Vec<Option<String>> = inserted.iter().map(|id| team_of(id)).collect();
        sqlx::query(
            r#"INSERT INTO jobs (kind, dedupe_key, payload, team_id)
               SELECT 'slack_event', * FROM UNNEST($1::text[], $2::jsonb[], $3::text[])
               ON CONFLICT (dedupe_key) DO NOTHING"#,
        )
        .bind(&keys)
        .bind(&payloads)
        .bind(&teams)
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted.into_iter().collect())
}

/// [`record_batch`] as one statement: the events and their jobs are inserted
/// by a single `INSERT … RETURNING` with a data-modifying CTE, which Postgres
/// runs atomically on its own. One round trip instead of four (`BEGIN`, two
/// inserts, `COMMIT`) is what keeps the acknowledgement latency low when the
/// machine is busy. Returns the ids that were new.
pub async fn record_batch_atomic(
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
        r#"WITH inserted AS (
               INSERT INTO slack_events (event_id, team_id, kind, source, retry_num, payload)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::jsonb[])
               ON CONFLICT (event_id) DO NOTHING
               RETURNING event_id, team_id
           ), queued AS (
               INSERT INTO jobs (kind, dedupe_key, payload, team_id)
               SELECT 'slack_event', 'event:' || event_id, jsonb_build_object('event_id', event_id), team_id
               FROM inserted
               ON CONFLICT (dedupe_key) DO NOTHING
           )
           SELECT event_id FROM inserted"#,
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

/// The stored events among `event_ids`, each with its workspace's state:
/// one query for a whole claimed batch of `slack_event` jobs.
pub async fn stored_many(
    executor: impl sqlx::PgExecutor<'_>,
    event_ids: &[String],
) -> Result<Vec<Stored>, sqlx::Error> {
    sqlx::query_as!(
        Stored,
        // A scalar subquery, not a LEFT JOIN: sqlx infers the nullability of
        // outer-join columns from the plan, which differs between databases.
        r#"SELECT e.event_id, e.kind, e.payload, e.team_id,
                  (SELECT t.inactive_reason FROM slack_teams t WHERE t.team_id = e.team_id AND NOT t.active)
                      AS "team_inactive_reason?"
           FROM slack_events e
           WHERE e.event_id = ANY($1)"#,
        event_ids
    )
    .fetch_all(executor)
    .await
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
