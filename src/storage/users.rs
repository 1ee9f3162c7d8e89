//! Slack workspaces (`slack_teams`) and the people robeing talks to
//! (`slack_users`).

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::PgExecutor;

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub team_id: String,
    pub real_name: Option<String>,
    pub display_name: Option<String>,
    pub tz: Option<String>,
    pub locale: Option<String>,
    pub dm_channel_id: Option<String>,
    pub briefing_time: Option<NaiveTime>,
    pub briefing_enabled: bool,
    pub profile_fetched_at: Option<DateTime<Utc>>,
}

impl User {
    /// The name to greet the user by: display name, else real name, else the id.
    pub fn name(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.real_name.as_deref().filter(|s| !s.is_empty()))
            .unwrap_or(&self.user_id)
    }
}

/// Profile fields as Slack's `users.info` gives them.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub real_name: Option<String>,
    pub display_name: Option<String>,
    pub tz: Option<String>,
    pub locale: Option<String>,
}

/// Records a workspace (idempotent); a workspace seen again is active again.
pub async fn ensure_team(executor: impl PgExecutor<'_>, team_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"INSERT INTO slack_teams (team_id) VALUES ($1) ON CONFLICT (team_id) DO NOTHING"#, team_id)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Marks a workspace inactive (uninstalled, tokens revoked).
pub async fn deactivate_team(executor: impl PgExecutor<'_>, team_id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO slack_teams (team_id, active, inactive_reason, inactive_since) VALUES ($1, false, $2, now())
           ON CONFLICT (team_id) DO UPDATE SET active = false, inactive_reason = $2, inactive_since = now(), updated_at = now()"#,
        team_id,
        reason
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Marks a workspace active again (its bot token was accepted by
/// `auth.test` after a reinstall) and returns why it had been inactive, or
/// `None` when it was already active or unknown.
pub async fn reactivate_team(executor: impl PgExecutor<'_>, team_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE slack_teams t SET active = true, inactive_reason = NULL, inactive_since = NULL, updated_at = now()
           FROM (SELECT team_id, inactive_reason FROM slack_teams WHERE team_id = $1 AND NOT active FOR UPDATE) old
           WHERE t.team_id = old.team_id
           RETURNING old.inactive_reason AS "reason!""#,
        team_id
    )
    .fetch_optional(executor)
    .await
}

/// Workspaces that are inactive, with why.
pub async fn inactive_teams(executor: impl PgExecutor<'_>) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT team_id, inactive_reason AS "reason!" FROM slack_teams WHERE NOT active ORDER BY team_id"#
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|r| (r.team_id, r.reason)).collect())
}

/// Creates or refreshes a user with the profile Slack gave.
pub async fn upsert_profile(
    executor: impl PgExecutor<'_>,
    team_id: &str,
    user_id: &str,
    profile: &Profile,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO slack_users (user_id, team_id, real_name, display_name, tz, locale, profile_fetched_at)
           VALUES ($1, $2, $3, $4, $5, $6, now())
           ON CONFLICT (user_id) DO UPDATE SET
               real_name = EXCLUDED.real_name, display_name = EXCLUDED.display_name,
               tz = EXCLUDED.tz, locale = EXCLUDED.locale,
               profile_fetched_at = now(), last_seen_at = greatest(slack_users.last_seen_at, now())"#,
        user_id,
        team_id,
        profile.real_name,
        profile.display_name,
        profile.tz,
        profile.locale
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Claims the user's welcome: true (and `welcomed_at` set) only for a user
/// never welcomed who has never written to robeing, once.
pub async fn claim_welcome(executor: impl PgExecutor<'_>, user_id: &str) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query_scalar!(
        r#"UPDATE slack_users SET welcomed_at = now()
           WHERE user_id = $1 AND welcomed_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM exchanges WHERE exchanges.user_id = $1)
           RETURNING user_id"#,
        user_id
    )
    .fetch_optional(executor)
    .await?;
    Ok(claimed.is_some())
}

/// Gives back a claimed welcome that could not be posted, for the retry.
pub async fn unclaim_welcome(executor: impl PgExecutor<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"UPDATE slack_users SET welcomed_at = NULL WHERE user_id = $1"#, user_id)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Remembers the user's DM channel.
pub async fn set_dm_channel(executor: impl PgExecutor<'_>, user_id: &str, channel_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE slack_users SET dm_channel_id = $2, last_seen_at = greatest(last_seen_at, now()) WHERE user_id = $1"#,
        user_id,
        channel_id
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// One user, if known.
pub async fn get(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"SELECT user_id, team_id, real_name, display_name, tz, locale, dm_channel_id,
                  briefing_time, briefing_enabled, profile_fetched_at
           FROM slack_users WHERE user_id = $1"#,
        user_id
    )
    .fetch_optional(executor)
    .await
}

/// Every user, ordered by id.
pub async fn all(executor: impl PgExecutor<'_>) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"SELECT user_id, team_id, real_name, display_name, tz, locale, dm_channel_id,
                  briefing_time, briefing_enabled, profile_fetched_at
           FROM slack_users ORDER BY user_id"#
    )
    .fetch_all(executor)
    .await
}

/// Why a workspace is inactive, or `None` while it is active (or unknown).
pub async fn inactive_reason(executor: impl PgExecutor<'_>, team_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"SELECT inactive_reason AS "reason!" FROM slack_teams WHERE team_id = $1 AND NOT active"#,
        team_id
    )
    .fetch_optional(executor)
    .await?;
    Ok(row)
}

/// The user's Gmail connection state (`connected`, `needs_reconnect`,
/// `disconnected`), if a row exists; for status views such as the Home tab.
pub async fn gmail_state(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT state FROM gmail_connections WHERE user_id = $1"#, user_id)
        .fetch_optional(executor)
        .await
}
