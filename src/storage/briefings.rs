//! Briefings (`briefings`): the daily claim that makes "exactly once per
//! user per local date" hold across restarts and replicas, on-demand rows,
//! per-section status, delivery and skips; plus the read-only views the
//! scheduler, the briefing's Gmail section and `robeing status` need
//! (`slack_users` joined with `slack_teams`, `gmail_connections`).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::storage::gmail::SealedAccess;

/// A user as the scheduler sees them.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub user_id: String,
    pub tz: Option<String>,
    pub briefing_time: Option<NaiveTime>,
    pub first_seen_at: DateTime<Utc>,
    pub team_active: bool,
    pub team_inactive_reason: Option<String>,
}

/// Every user whose briefing is enabled, with their workspace's state.
pub async fn candidates(executor: impl PgExecutor<'_>) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query_as!(
        Candidate,
        // Every column's nullability is spelled out: sqlx infers it for
        // outer joins from the query plan, which may differ between databases.
        r#"SELECT u.user_id AS "user_id!", u.tz AS "tz?", u.briefing_time AS "briefing_time?",
                  u.first_seen_at AS "first_seen_at!",
                  COALESCE(t.active, true) AS "team_active!", t.inactive_reason AS "team_inactive_reason?"
           FROM slack_users u LEFT JOIN slack_teams t ON t.team_id = u.team_id
           WHERE u.briefing_enabled
           ORDER BY u.user_id"#
    )
    .fetch_all(executor)
    .await
}

/// Daily rows (any status) for local dates from `from` on: what is already
/// claimed, delivered or recorded as skipped.
pub async fn daily_since(
    executor: impl PgExecutor<'_>,
    from: NaiveDate,
) -> Result<Vec<(String, NaiveDate)>, sqlx::Error> {
    let rows =
        sqlx::query!(r#"SELECT user_id, local_date FROM briefings WHERE kind = 'daily' AND local_date >= $1"#, from)
            .fetch_all(executor)
            .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.local_date)).collect())
}

/// Claims many daily briefings and enqueues each claimed one's delivery job
/// (`job_kind`, dedupe key `briefing:<id>`, payload `{"briefing_id": id}`)
/// in ONE statement, so a claim never exists without its job. Returns the
/// (user, local date) pairs claimed now; the others were already claimed.
pub async fn claim_daily_batch(
    executor: impl PgExecutor<'_>,
    user_ids: &[String],
    local_dates: &[NaiveDate],
    triggers: &[String],
    job_kind: &str,
) -> Result<Vec<(String, NaiveDate, Uuid)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH due AS (
               SELECT * FROM unnest($1::text[], $2::date[], $3::text[]) AS d(user_id, local_date, trigger)
           ), claimed AS (
               INSERT INTO briefings (user_id, local_date, kind, trigger, status)
               SELECT user_id, local_date, 'daily', trigger, 'claimed' FROM due
               ON CONFLICT (user_id, local_date) WHERE kind = 'daily' DO NOTHING
               RETURNING id, user_id, local_date
           ), queued AS (
               INSERT INTO jobs (kind, dedupe_key, payload)
               SELECT $4, 'briefing:' || id::text, jsonb_build_object('briefing_id', id) FROM claimed
               ON CONFLICT (dedupe_key) DO NOTHING
               RETURNING id
           )
           SELECT user_id AS "user_id!", local_date AS "local_date!", id AS "id!" FROM claimed"#,
        user_ids,
        local_dates,
        triggers,
        job_kind
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.local_date, r.id)).collect())
}

/// Records that the daily briefing of `local_date` will not be sent, and
/// why. `None` when a row for that date already exists.
pub async fn skip_daily(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    local_date: NaiveDate,
    trigger: &str,
    reason: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO briefings (user_id, local_date, kind, trigger, status, skip_reason)
           VALUES ($1, $2, 'daily', $3, 'skipped', $4)
           ON CONFLICT (user_id, local_date) WHERE kind = 'daily' DO NOTHING
           RETURNING id"#,
        user_id,
        local_date,
        trigger,
        reason
    )
    .fetch_optional(executor)
    .await
}

/// Marks failed, with `reason`, every on-demand briefing `claimed` for more
/// than `older_than_secs` by the database's clock: the process sending it
/// stopped (an on-demand briefing has no job of its own to finish it).
/// Their ids and users.
pub async fn fail_abandoned_on_demand(
    executor: impl PgExecutor<'_>,
    older_than_secs: f64,
    reason: &str,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"UPDATE briefings SET status = 'failed', failure_reason = $2
           WHERE status = 'claimed' AND kind = 'on_demand' AND claimed_at < now() - make_interval(secs => $1)
           RETURNING id, user_id"#,
        older_than_secs,
        reason
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.user_id)).collect())
}

/// Starts an on-demand briefing (`/brief`, the CLI): not limited per day.
pub async fn insert_on_demand(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    local_date: NaiveDate,
    trigger: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO briefings (user_id, local_date, kind, trigger, status)
           VALUES ($1, $2, 'on_demand', $3, 'claimed') RETURNING id"#,
        user_id,
        local_date,
        trigger
    )
    .fetch_one(executor)
    .await
}

/// One briefing row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Briefing {
    pub id: Uuid,
    pub user_id: String,
    pub local_date: NaiveDate,
    pub kind: String,
    pub trigger: String,
    pub status: String,
    pub email_status: Option<String>,
    pub news_status: Option<String>,
    pub email_detail: Option<String>,
    pub news_detail: Option<String>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub skip_reason: Option<String>,
    pub failure_reason: Option<String>,
    pub claimed_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Everything delivering a claimed briefing reads, in one round trip: the
/// row, its user, whether their workspace is active, where the mail window
/// starts (the last daily briefing delivered with its mail, other than this
/// one) and the Gmail connection (its state and sealed access token).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub status: String,
    pub local_date: NaiveDate,
    /// Sections an attempt recorded before posting (only robeing versions
    /// before the statuses travelled with the message did that).
    pub recorded_sections: Option<Sections>,
    pub claimed_at: DateTime<Utc>,
    pub user: crate::storage::users::User,
    pub team_inactive_reason: Option<String>,
    pub last_mail_delivered_at: Option<DateTime<Utc>>,
    pub gmail: Option<GmailState>,
}

/// Reads a briefing's [`Delivery`]; `None` when the briefing (or its user)
/// is gone.
pub async fn delivery(executor: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Delivery>, sqlx::Error> {
    Ok(deliveries(executor, &[id]).await?.pop())
}

/// Reads the [`Delivery`] of each briefing in `ids` that still exists, in
/// one round trip (the job runner reads a claimed batch's at once).
pub async fn deliveries(executor: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Delivery>, sqlx::Error> {
    /// One row of the query below. Runtime-checked (not `query!`): sqlx
    /// infers the nullability of outer-join columns from the query plan,
    /// which differs from one database to the next, so the offline data
    /// would not be stable; the types here say it once.
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        status: String,
        local_date: NaiveDate,
        email_status: Option<String>,
        email_detail: Option<String>,
        news_status: Option<String>,
        news_detail: Option<String>,
        claimed_at: DateTime<Utc>,
        user_id: String,
        team_id: String,
        real_name: Option<String>,
        display_name: Option<String>,
        tz: Option<String>,
        locale: Option<String>,
        dm_channel_id: Option<String>,
        briefing_time: Option<NaiveTime>,
        briefing_enabled: bool,
        profile_fetched_at: Option<DateTime<Utc>>,
        team_inactive_reason: Option<String>,
        last_mail_delivered_at: Option<DateTime<Utc>>,
        gmail_state: Option<String>,
        google_email: Option<String>,
        connected_at: Option<DateTime<Utc>>,
        broken_at: Option<DateTime<Utc>>,
        broken_reason: Option<String>,
        gmail_updated_at: Option<DateTime<Utc>>,
        token_key_id: Option<String>,
        access_token_ciphertext: Option<Vec<u8>>,
        access_token_expires_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        r#"SELECT b.id, b.status, b.local_date, b.email_status, b.email_detail, b.news_status, b.news_detail,
                  b.claimed_at,
                  u.user_id, u.team_id, u.real_name, u.display_name, u.tz, u.locale, u.dm_channel_id,
                  u.briefing_time, u.briefing_enabled, u.profile_fetched_at,
                  CASE WHEN t.active IS FALSE THEN COALESCE(t.inactive_reason, 'inactive') END
                      AS team_inactive_reason,
                  (SELECT max(p.delivered_at) FROM briefings p
                   WHERE p.user_id = b.user_id AND p.status = 'delivered' AND p.kind = 'daily'
                     AND p.email_status = 'ok' AND p.id <> b.id) AS last_mail_delivered_at,
                  g.state AS gmail_state, g.google_email, g.connected_at, g.broken_at, g.broken_reason,
                  g.updated_at AS gmail_updated_at, g.token_key_id, g.access_token_ciphertext,
                  g.access_token_expires_at
           FROM briefings b
           JOIN slack_users u ON u.user_id = b.user_id
           LEFT JOIN slack_teams t ON t.team_id = u.team_id
           LEFT JOIN gmail_connections g ON g.user_id = b.user_id
           WHERE b.id = ANY($1)"#,
    )
    .bind(ids)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Delivery {
            id: r.id,
            status: r.status,
            local_date: r.local_date,
            recorded_sections: match (r.email_status, r.news_status) {
                (Some(email_status), Some(news_status)) => Some(Sections {
                    email_status,
                    email_detail: r.email_detail,
                    news_status,
                    news_detail: r.news_detail,
                }),
                _ => None,
            },
            claimed_at: r.claimed_at,
            user: crate::storage::users::User {
                user_id: r.user_id,
                team_id: r.team_id,
                real_name: r.real_name,
                display_name: r.display_name,
                tz: r.tz,
                locale: r.locale,
                dm_channel_id: r.dm_channel_id,
                briefing_time: r.briefing_time,
                briefing_enabled: r.briefing_enabled,
                profile_fetched_at: r.profile_fetched_at,
            },
            team_inactive_reason: r.team_inactive_reason,
            last_mail_delivered_at: r.last_mail_delivered_at,
            gmail: match (r.gmail_state, r.gmail_updated_at) {
                (Some(state), Some(updated_at)) => Some(GmailState {
                    access: SealedAccess::of_row(
                        &state,
                        r.token_key_id,
                        r.access_token_ciphertext,
                        r.access_token_expires_at,
                    ),
                    state,
                    google_email: r.google_email,
                    connected_at: r.connected_at,
                    broken_at: r.broken_at,
                    broken_reason: r.broken_reason,
                    updated_at,
                }),
                _ => None,
            },
        })
        .collect())
}

/// Every briefing of one user, newest first.
pub async fn for_user(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Vec<Briefing>, sqlx::Error> {
    sqlx::query_as!(
        Briefing,
        r#"SELECT id, user_id, local_date, kind, trigger, status, email_status, news_status, email_detail,
                  news_detail, channel_id, message_ts, skip_reason, failure_reason, claimed_at, delivered_at
           FROM briefings WHERE user_id = $1 ORDER BY claimed_at DESC, id"#,
        user_id
    )
    .fetch_all(executor)
    .await
}

/// What a briefing said about each of its sections: the `email_status` /
/// `news_status` values (see the table's checks) and a line of detail each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    pub email_status: String,
    pub email_detail: Option<String>,
    pub news_status: String,
    pub news_detail: Option<String>,
}

/// Records a claimed briefing as delivered with its sections and, when
/// `job_id` is given, its delivery job as done: one statement, so the
/// outcome and the job's end commit together. Whether the row was still
/// `claimed` (so this call recorded it).
pub async fn mark_delivered(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    job_id: Option<i64>,
    sections: &Sections,
    channel_id: &str,
    message_ts: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH delivered AS (
               UPDATE briefings SET status = 'delivered', channel_id = $3, message_ts = $4, delivered_at = now(),
                      email_status = $5, email_detail = $6, news_status = $7, news_detail = $8
               WHERE id = $1 AND status = 'claimed'
               RETURNING id),
           job AS (
               UPDATE jobs SET state = 'done', locked_until = NULL, finished_at = now(), updated_at = now(),
                      last_error = NULL
               WHERE id = $2)
           SELECT count(*) AS "recorded!" FROM delivered"#,
        id,
        job_id,
        channel_id,
        message_ts,
        sections.email_status,
        sections.email_detail,
        sections.news_status,
        sections.news_detail,
    )
    .fetch_one(executor)
    .await
    .map(|n| n > 0)
}

/// Records a claimed briefing as failed, with its sections when it got as
/// far as composing them.
pub async fn mark_failed(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    sections: Option<&Sections>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE briefings SET status = 'failed', failure_reason = $2,
                  email_status = COALESCE($3, email_status), email_detail = COALESCE($4, email_detail),
                  news_status = COALESCE($5, news_status), news_detail = COALESCE($6, news_detail)
           WHERE id = $1 AND status = 'claimed'"#,
        id,
        reason,
        sections.map(|s| s.email_status.as_str()),
        sections.and_then(|s| s.email_detail.as_deref()),
        sections.map(|s| s.news_status.as_str()),
        sections.and_then(|s| s.news_detail.as_deref()),
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Marks a claimed briefing skipped, with why.
pub async fn mark_skipped(executor: impl PgExecutor<'_>, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE briefings SET status = 'skipped', skip_reason = $2 WHERE id = $1 AND status = 'claimed'"#,
        id,
        reason
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// When the user's last briefing that included mail was delivered (the
/// start of the next briefing's mail window; [`delivery`] reads the same
/// for a briefing that has a row).
pub async fn last_mail_delivered_at(
    executor: impl PgExecutor<'_>,
    user_id: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT max(delivered_at) FROM briefings
           WHERE user_id = $1 AND status = 'delivered' AND kind = 'daily' AND email_status = 'ok'"#,
        user_id
    )
    .fetch_one(executor)
    .await
}

/// A user's Gmail connection as the briefing needs it: its state and, when
/// connected, the access token still sealed (the vault opens it, in
/// [`crate::google::tokens`], only if it is still valid).
#[derive(Debug, Clone)]
pub struct GmailState {
    pub state: String,
    pub google_email: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub broken_at: Option<DateTime<Utc>>,
    pub broken_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub access: Option<SealedAccess>,
}

pub async fn gmail_state(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<GmailState>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT state, google_email, connected_at, broken_at, broken_reason, updated_at,
                  token_key_id, access_token_ciphertext, access_token_expires_at
           FROM gmail_connections WHERE user_id = $1"#,
        user_id
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|r| GmailState {
        access: SealedAccess::of_row(&r.state, r.token_key_id, r.access_token_ciphertext, r.access_token_expires_at),
        state: r.state,
        google_email: r.google_email,
        connected_at: r.connected_at,
        broken_at: r.broken_at,
        broken_reason: r.broken_reason,
        updated_at: r.updated_at,
    }))
}

/// One line of `robeing status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    pub user_id: String,
    pub name: Option<String>,
    pub tz: Option<String>,
    pub briefing_enabled: bool,
    pub briefing_time: Option<NaiveTime>,
    pub gmail_state: Option<String>,
    pub gmail_since: Option<DateTime<Utc>>,
    pub gmail_broken_reason: Option<String>,
    pub last_briefing_at: Option<DateTime<Utc>>,
    pub last_briefing_kind: Option<String>,
    pub last_briefing_status: Option<String>,
    pub last_email_status: Option<String>,
    pub last_news_status: Option<String>,
    pub last_briefing_reason: Option<String>,
    pub exchanges: i64,
}

/// Every user with their Gmail state, last briefing and stored exchanges.
pub async fn status(executor: impl PgExecutor<'_>) -> Result<Vec<StatusRow>, sqlx::Error> {
    sqlx::query_as!(
        StatusRow,
        // Every column's nullability is spelled out (see `candidates`).
        r#"SELECT u.user_id AS "user_id!",
                  COALESCE(NULLIF(u.display_name, ''), NULLIF(u.real_name, '')) AS "name?",
                  u.tz AS "tz?", u.briefing_enabled AS "briefing_enabled!", u.briefing_time AS "briefing_time?",
                  g.state AS "gmail_state?",
                  (CASE g.state WHEN 'connected' THEN g.connected_at
                                WHEN 'needs_reconnect' THEN g.broken_at
                                ELSE g.updated_at END) AS "gmail_since?",
                  g.broken_reason AS "gmail_broken_reason?",
                  b.at AS "last_briefing_at?", b.kind AS "last_briefing_kind?", b.status AS "last_briefing_status?",
                  b.email_status AS "last_email_status?", b.news_status AS "last_news_status?",
                  COALESCE(b.failure_reason, b.skip_reason) AS "last_briefing_reason?",
                  (SELECT count(*) FROM exchanges e WHERE e.user_id = u.user_id) AS "exchanges!"
           FROM slack_users u
           LEFT JOIN gmail_connections g ON g.user_id = u.user_id
           LEFT JOIN LATERAL (
               SELECT COALESCE(delivered_at, claimed_at) AS at, kind, status, email_status, news_status,
                      failure_reason, skip_reason
               FROM briefings WHERE user_id = u.user_id ORDER BY claimed_at DESC LIMIT 1
           ) b ON true
           ORDER BY u.user_id"#
    )
    .fetch_all(executor)
    .await
}

/// Sets a user's own briefing time (`None`: the operator's `BRIEFING_TIME`).
pub async fn set_briefing_time(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    time: Option<NaiveTime>,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(r#"UPDATE slack_users SET briefing_time = $2 WHERE user_id = $1"#, user_id, time)
        .execute(executor)
        .await
        .map(|r| r.rows_affected() == 1)
}

/// Turns a user's daily briefing on or off.
pub async fn set_briefing_enabled(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    enabled: bool,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(r#"UPDATE slack_users SET briefing_enabled = $2 WHERE user_id = $1"#, user_id, enabled)
        .execute(executor)
        .await
        .map(|r| r.rows_affected() == 1)
}

/// The user's most recent briefing, any kind.
pub async fn latest(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<Briefing>, sqlx::Error> {
    sqlx::query_as!(
        Briefing,
        r#"SELECT id, user_id, local_date, kind, trigger, status, email_status, news_status, email_detail,
                  news_detail, channel_id, message_ts, skip_reason, failure_reason, claimed_at, delivered_at
           FROM briefings WHERE user_id = $1 ORDER BY claimed_at DESC, id LIMIT 1"#,
        user_id
    )
    .fetch_optional(executor)
    .await
}

/// Whether the user's daily briefing of `local_date` has a row (any status).
pub async fn daily_exists(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    local_date: NaiveDate,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM briefings WHERE user_id = $1 AND local_date = $2 AND kind = 'daily') AS "e!""#,
        user_id,
        local_date
    )
    .fetch_one(executor)
    .await
}
