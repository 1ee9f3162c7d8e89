//! Read-only figures for `robeing doctor`'s data-health lines.

use chrono_tz::Tz;
use sqlx::PgPool;

/// What needs an operator's attention.
#[derive(Debug, Default)]
pub struct DataHealth {
    /// "U… (reason, since …)" per broken Gmail connection.
    pub needs_reconnect: Vec<String>,
    pub exchanges: i64,
    pub failed_exchanges: i64,
    /// Replied exchanges whose memory upsert has not happened yet.
    pub not_in_memory: i64,
    pub briefings_delivered: i64,
    /// Delivered, but a section was not `ok`.
    pub briefings_incomplete: i64,
    /// Claimed today and not delivered (failed, skipped or still pending).
    pub briefings_not_delivered: i64,
}

/// Counts as of now; "today" is the local date in `tz` (the default zone).
pub async fn data_health(pool: &PgPool, tz: Tz) -> Result<DataHealth, sqlx::Error> {
    let broken = sqlx::query!(
        r#"SELECT user_id, broken_reason AS "reason!", broken_at AS "since!"
           FROM gmail_connections WHERE state = 'needs_reconnect' ORDER BY broken_at"#
    )
    .fetch_all(pool)
    .await?;
    let counts = sqlx::query!(
        r#"SELECT count(*) AS "all!",
                  count(*) FILTER (WHERE status = 'failed') AS "failed!",
                  count(*) FILTER (WHERE status = 'replied' AND memorized_at IS NULL) AS "not_in_memory!"
           FROM exchanges"#
    )
    .fetch_one(pool)
    .await?;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let briefings = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'delivered') AS "delivered!",
                  count(*) FILTER (WHERE status = 'delivered' AND (email_status NOT IN ('ok', 'not_requested') OR news_status NOT IN ('ok', 'not_requested'))) AS "incomplete!",
                  count(*) FILTER (WHERE status <> 'delivered') AS "not_delivered!"
           FROM briefings WHERE kind = 'daily' AND local_date = $1"#,
        today
    )
    .fetch_one(pool)
    .await?;
    Ok(DataHealth {
        needs_reconnect: broken
            .into_iter()
            .map(|r| format!("{} ({}, since {})", r.user_id, r.reason, r.since.format("%Y-%m-%d %H:%M UTC")))
            .collect(),
        exchanges: counts.all,
        failed_exchanges: counts.failed,
        not_in_memory: counts.not_in_memory,
        briefings_delivered: briefings.delivered,
        briefings_incomplete: briefings.incomplete,
        briefings_not_delivered: briefings.not_delivered,
    })
}
