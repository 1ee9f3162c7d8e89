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
    /// Replied exchanges whose memory upsert has not happened yet (not
    /// counting those kept out of memory on purpose).
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
                  count(*) FILTER (WHERE status = 'replied' AND memorized_at IS NULL
                                   AND NOT kept_out_of_memory) AS "not_in_memory!"
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

/// Whether PostgreSQL vacuums robeing's busiest tables by itself.
///
/// `slack_events` and `jobs` are queues: every event or job is updated two
/// or three times, and each update leaves a dead row version that every
/// later claim has to step over until a vacuum removes it. Without
/// autovacuum they only grow (measured: PostgreSQL's CPU per DM 5.5 → 23 ms
/// in eight minutes at 50 DMs/s, see docs/benchmarks.md), and nothing else
/// would say why.
#[derive(Debug)]
pub struct Vacuuming {
    /// The server's `autovacuum` setting.
    pub autovacuum: bool,
    /// Those of robeing's busiest tables (the two queues and `exchanges`,
    /// updated when replied and when memorized) whose own
    /// `autovacuum_enabled` storage parameter turns it off.
    pub disabled_on: Vec<String>,
    /// Dead row versions waiting for a vacuum, per table
    /// (`pg_stat_user_tables.n_dead_tup`), by table name.
    pub dead_rows: Vec<(String, i64)>,
}

/// Reads [`Vacuuming`] for the connected database.
pub async fn vacuuming(pool: &PgPool) -> Result<Vacuuming, sqlx::Error> {
    let autovacuum =
        sqlx::query_scalar!(r#"SELECT current_setting('autovacuum') = 'on' AS "on!""#).fetch_one(pool).await?;
    let tables = sqlx::query!(
        r#"SELECT c.relname AS "table!",
                  EXISTS (SELECT 1 FROM pg_options_to_table(c.reloptions) o
                          WHERE o.option_name = 'autovacuum_enabled' AND NOT o.option_value::bool) AS "disabled!",
                  COALESCE(s.n_dead_tup, 0) AS "dead!"
           FROM pg_class c
           LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
             AND c.relname IN ('slack_events', 'jobs', 'exchanges')
           ORDER BY c.relname"#
    )
    .fetch_all(pool)
    .await?;
    Ok(Vacuuming {
        autovacuum,
        disabled_on: tables.iter().filter(|t| t.disabled).map(|t| t.table.clone()).collect(),
        dead_rows: tables.into_iter().map(|t| (t.table, t.dead)).collect(),
    })
}

impl Vacuuming {
    /// What is wrong, in a sentence an operator can act on; `None` when
    /// PostgreSQL vacuums every one of the tables by itself.
    pub fn problem(&self) -> Option<String> {
        let mut off = Vec::new();
        if !self.autovacuum {
            off.push("PostgreSQL's autovacuum is off".to_owned());
        }
        if !self.disabled_on.is_empty() {
            off.push(format!("autovacuum is turned off for table(s) {}", self.disabled_on.join(", ")));
        }
        if off.is_empty() {
            return None;
        }
        let dead = self.dead_rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ");
        Some(format!(
            "{}: robeing's queues (slack_events, jobs) slow down with every event handled (dead rows now: {dead})",
            off.join("; ")
        ))
    }
}

/// How to mend what [`Vacuuming::problem`] reports.
pub const VACUUM_FIX: &str = "set autovacuum = on (PostgreSQL's default) in postgresql.conf and reload, and \
    ALTER TABLE … RESET (autovacuum_enabled) for the tables named; meanwhile VACUUM slack_events, jobs, exchanges";
