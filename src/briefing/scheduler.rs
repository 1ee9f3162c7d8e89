//! The briefing scheduler: decides which daily briefings are due at a given
//! instant and claims them. [`run_due`] takes the instant as a parameter, so
//! the loop inside `serve` ([`run`], every [`TICK`]), the cron endpoint and
//! the tests (which never sleep until 09:00) all drive the same code.
//!
//! Each user's briefing is due at their `briefing_time` (else
//! `BRIEFING_TIME`) on each local date of their Slack time zone (else
//! `DEFAULT_TIMEZONE`), resolved with the tz database, so it follows
//! daylight-saving changes (see [`scheduled_at`] for times that do not exist
//! or happen twice). "Exactly once per user per local date" is the unique
//! index on `briefings`: a claim is an insert that only one process, once,
//! can make, across restarts and replicas.
//!
//! A briefing whose time passed while robeing was down is sent late when
//! robeing comes back within `BRIEFING_CATCH_UP_HOURS`; after that, a
//! `skipped` row says it was missed and why. Users of an inactive workspace
//! get a `skipped` row too. Nothing is skipped silently. A user's first
//! briefing is the first whose time comes after robeing first saw them, so
//! a new user is never told they "missed" one.

use std::{collections::HashSet, sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use crate::{startup::AppState, storage};

/// How often the loop looks for due briefings. A briefing goes out at most
/// this long after its minute; checking is one indexed query per tick.
pub const TICK: StdDuration = StdDuration::from_secs(30);
/// A scheduled briefing sent later than this is a catch-up (recorded as
/// trigger `catch_up`): several ticks late means robeing was not running.
pub const CATCH_UP_AFTER: Duration = Duration::minutes(5);
/// Claims per statement. Large enough that 10,000 users due at 09:00 are
/// claimed in a handful of round trips, small enough that one statement
/// stays well under a second and its arrays under a megabyte.
pub const CLAIM_BATCH: usize = 500;
/// How early an external cron may call: its clock and ours can disagree by
/// a little, and a cron that fires at 08:59:58 must still send the 09:00
/// briefings (it will not call again until tomorrow).
pub const CRON_EARLY: Duration = Duration::minutes(10);

/// Who asked for due briefings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The loop inside `serve` (or a test driving it).
    Scheduler,
    /// `POST /api/cron/daily-summary`.
    Cron,
}

/// What one [`run_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DueSummary {
    /// Briefings claimed now (their delivery is queued).
    pub claimed: u32,
    /// Due briefings that were already claimed, delivered or recorded.
    pub already_sent: u32,
    /// Briefings recorded as skipped now (missed, inactive workspace).
    pub skipped: u32,
    /// Users for whom the claim itself failed (a database error; logged).
    pub failed: u32,
}

/// The user's time zone: their Slack `tz` when it is a known IANA name, else
/// `DEFAULT_TIMEZONE`.
pub fn user_tz(state: &AppState, tz: Option<&str>) -> Tz {
    tz.and_then(|t| t.parse::<Tz>().ok()).unwrap_or(state.config.default_timezone)
}

/// The instant of `time` on local `date` in `tz`. A local time that happens
/// twice (clocks going back) is its first occurrence, so the briefing comes
/// once, at the earlier instant. A local time that does not exist (clocks
/// going forward) is the first minute after the gap: 02:30 on a day that
/// skips from 02:00 to 03:00 is 03:00.
pub fn scheduled_at(date: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours (usually one); walk forward a
            // minute at a time to the first local minute that exists.
            let start = naive.with_second(0).unwrap_or(naive);
            (1..=24 * 60)
                .find_map(|m| match tz.from_local_datetime(&(start + Duration::minutes(m))) {
                    LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                    LocalResult::None => None,
                })
                .unwrap_or_else(|| naive.and_utc())
        }
    }
}

/// How late a briefing may still be sent: `BRIEFING_CATCH_UP_HOURS`, but
/// never less than [`CATCH_UP_AFTER`], so that `0` ("no catch-up after a
/// restart") still lets a tick, or a slow database, be a little late.
pub fn catch_up_window(state: &AppState) -> Duration {
    Duration::from_std(state.config.briefing_catch_up).unwrap_or(Duration::hours(3)).max(CATCH_UP_AFTER)
}

/// How long an on-demand briefing may stay `claimed` before it counts as
/// abandoned: sending one takes at most its sections' and the LLM's
/// timeouts plus Slack's ([`super::deliver::SLACK_TIMEOUT`]), all inside one
/// job lease; twice that is a process that stopped.
pub const ON_DEMAND_ABANDONED_AFTER: Duration = Duration::seconds(2 * crate::jobs::LEASE.as_secs() as i64);

/// Records on-demand briefings whose process stopped while sending them as
/// failed, so none stays `claimed` for ever. The user is not left without
/// one: a `/brief` or App Home action is a queued Slack event whose retry
/// sends a new briefing. Real time, not the scheduler's (injectable) clock:
/// it is about how long a process has been gone.
pub async fn fail_abandoned(state: &AppState) -> anyhow::Result<usize> {
    let reason = format!(
        "abandoned: robeing stopped while sending it (still unsent after {} s); a /brief or App Home request retried after that sends a new one",
        ON_DEMAND_ABANDONED_AFTER.num_seconds()
    );
    let older_than = ON_DEMAND_ABANDONED_AFTER.num_seconds() as f64;
    let failed = storage::briefings::fail_abandoned_on_demand(&state.db, older_than, &reason).await?;
    for (id, user) in &failed {
        tracing::warn!(briefing = %id, user = %user, "an on-demand briefing was abandoned mid-send; recorded it as failed");
    }
    Ok(failed.len())
}

/// Claims (and queues) every daily briefing due at `now` that has no row
/// yet, and records the ones that can no longer be sent (and on-demand ones
/// that were abandoned: [`fail_abandoned`]).
pub async fn run_due(state: &AppState, now: DateTime<Utc>, trigger: Trigger) -> anyhow::Result<DueSummary> {
    if let Err(e) = fail_abandoned(state).await {
        tracing::warn!(error = format!("{e:#}"), "could not look for abandoned on-demand briefings; will retry");
    }
    let candidates = storage::briefings::candidates(&state.db).await?;
    let existing: HashSet<(String, NaiveDate)> =
        storage::briefings::daily_since(&state.db, now.date_naive() - Duration::days(3)).await?.into_iter().collect();
    let grace = catch_up_window(state);
    let horizon = match trigger {
        Trigger::Scheduler => now,
        Trigger::Cron => now + CRON_EARLY,
    };
    let mut summary = DueSummary::default();
    // Claims are made in batches after the loop: (user, date, trigger, counts as latest).
    let mut to_claim: Vec<(String, NaiveDate, &'static str, bool)> = Vec::new();

    for c in candidates {
        let tz = user_tz(state, c.tz.as_deref());
        let time = c.briefing_time.unwrap_or(state.config.briefing_time);
        let today = now.with_timezone(&tz).date_naive();
        // Yesterday too: a catch-up window can cross local midnight.
        let due: Vec<(NaiveDate, DateTime<Utc>)> = [today - Duration::days(1), today]
            .into_iter()
            .map(|d| (d, scheduled_at(d, time, tz)))
            .filter(|(_, at)| *at <= horizon && *at >= c.first_seen_at)
            .collect();
        let latest = due.last().map(|(d, _)| *d);
        for (date, at) in due {
            if existing.contains(&(c.user_id.clone(), date)) {
                if Some(date) == latest {
                    summary.already_sent += 1;
                }
                continue;
            }
            let late = now - at;
            let outcome = if !c.team_active {
                let reason = format!(
                    "workspace inactive: {}",
                    c.team_inactive_reason.as_deref().unwrap_or("the app was uninstalled")
                );
                skip(state, &c.user_id, date, trigger_name(trigger, late), &reason).await
            } else if late > grace {
                let reason = format!(
                    "missed: service was down at {} {tz} ({} UTC); it ran again at {} {tz}, past the {} catch-up window",
                    at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                    at.format("%H:%M"),
                    now.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                    if grace.num_minutes() % 60 == 0 {
                        format!("{} h", grace.num_hours())
                    } else {
                        format!("{} min", grace.num_minutes())
                    }
                );
                skip(state, &c.user_id, date, trigger_name(trigger, late), &reason).await
            } else {
                to_claim.push((c.user_id.clone(), date, trigger_name(trigger, late), Some(date) == latest));
                continue;
            };
            match outcome {
                Ok(Outcome::Skipped) => summary.skipped += 1,
                Ok(Outcome::AlreadyThere) => {
                    if Some(date) == latest {
                        summary.already_sent += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(user = %c.user_id, %date, error = format!("{e:#}"), "could not record a skip");
                    summary.failed += 1;
                }
            }
        }
    }
    for batch in to_claim.chunks(CLAIM_BATCH) {
        match claim_batch(state, batch).await {
            Ok(claimed) => {
                for (user_id, date, _, latest) in batch {
                    if claimed.contains(&(user_id.clone(), *date)) {
                        summary.claimed += 1;
                    } else if *latest {
                        summary.already_sent += 1;
                    }
                }
                if !claimed.is_empty() {
                    // Workers start on the first batch while later ones are claimed.
                    state.wake_workers.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(users = batch.len(), error = format!("{e:#}"), "could not claim briefings");
                summary.failed += batch.len() as u32;
            }
        }
    }
    if summary.claimed > 0 {
        state.wake_workers.notify_one();
    }
    Ok(summary)
}

enum Outcome {
    Skipped,
    AlreadyThere,
}

fn trigger_name(trigger: Trigger, late: Duration) -> &'static str {
    match trigger {
        Trigger::Cron => "cron",
        Trigger::Scheduler if late > CATCH_UP_AFTER => "catch_up",
        Trigger::Scheduler => "scheduler",
    }
}

/// Claims a batch and queues each claimed briefing's delivery, in one
/// statement: never a claim without its job. Returns what was claimed now.
async fn claim_batch(
    state: &AppState,
    batch: &[(String, NaiveDate, &'static str, bool)],
) -> anyhow::Result<HashSet<(String, NaiveDate)>> {
    let users: Vec<String> = batch.iter().map(|b| b.0.clone()).collect();
    let dates: Vec<NaiveDate> = batch.iter().map(|b| b.1).collect();
    let triggers: Vec<String> = batch.iter().map(|b| b.2.to_owned()).collect();
    let claimed =
        storage::briefings::claim_daily_batch(&state.db, &users, &dates, &triggers, super::deliver::JOB_KIND).await?;
    for (user_id, date, id) in &claimed {
        tracing::info!(user = %user_id, %date, briefing = %id, "briefing claimed");
    }
    Ok(claimed.into_iter().map(|(u, d, _)| (u, d)).collect())
}

async fn skip(
    state: &AppState,
    user_id: &str,
    date: NaiveDate,
    trigger: &str,
    reason: &str,
) -> anyhow::Result<Outcome> {
    match storage::briefings::skip_daily(&state.db, user_id, date, trigger, reason).await? {
        Some(_) => {
            tracing::warn!(user = %user_id, %date, reason, "briefing skipped");
            Ok(Outcome::Skipped)
        }
        None => Ok(Outcome::AlreadyThere),
    }
}

/// The loop inside `serve`: [`run_due`] every [`TICK`] until shutdown.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    if !state.config.briefing_scheduler {
        tracing::info!("briefing scheduler off (BRIEFING_SCHEDULER=off): briefings come from the cron endpoint");
        return;
    }
    loop {
        match run_due(&state, Utc::now(), Trigger::Scheduler).await {
            Ok(s) if s.claimed + s.skipped + s.failed > 0 => {
                tracing::info!(claimed = s.claimed, skipped = s.skipped, failed = s.failed, "briefings scheduled");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not check for due briefings; will retry"),
        }
        if let Err(e) = remind_broken_connections(&state, Utc::now()).await {
            tracing::warn!(error = format!("{e:#}"), "could not send reconnect reminders; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// How long before a user's next daily briefing a still-broken Gmail
/// connection gets its single reminder: the evening before a 09:00 briefing,
/// early enough to reconnect, late enough not to follow the first prompt at
/// once.
pub const REMINDER_LEAD: chrono::Duration = chrono::Duration::hours(12);

/// Sends the one reminder per breakage (`google::remind_before_briefing`
/// records it) to users whose Gmail still needs reconnecting and whose next
/// daily briefing is within [`REMINDER_LEAD`]. Returns how many were sent.
pub async fn remind_broken_connections(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    if state.config.google.is_none() {
        return Ok(0);
    }
    let mut sent = 0;
    for user_id in crate::storage::gmail::awaiting_reminder(&state.db, now - chrono::Duration::hours(1)).await? {
        let Some(user) = crate::storage::users::get(&state.db, &user_id).await? else { continue };
        let Some(next) = super::home::next_at(state, &user, now).await? else { continue };
        if next - now <= REMINDER_LEAD && crate::google::remind_before_briefing(state, &user_id).await? {
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }
    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nine_am_follows_each_zone_and_daylight_saving() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(scheduled_at(d(2026, 11, 28), t(9, 0), chrono_tz::Asia::Seoul), utc("2026-11-28T00:00:00Z"));
        // The day before, of, and after spring forward (2026-03-08).
        assert_eq!(scheduled_at(d(2026, 3, 7), t(9, 0), ny), utc("2026-03-07T14:00:00Z"));
        assert_eq!(scheduled_at(d(2026, 3, 8), t(9, 0), ny), utc("2026-03-08T13:00:00Z"));
        // Fall back (2026-11-01).
        assert_eq!(scheduled_at(d(2026, 10, 31), t(9, 0), ny), utc("2026-10-31T13:00:00Z"));
        assert_eq!(scheduled_at(d(2026, 11, 1), t(9, 0), ny), utc("2026-11-01T14:00:00Z"));
    }

    #[test]
    fn a_missing_local_time_moves_to_the_end_of_the_gap() {
        let ny = chrono_tz::America::New_York;
        // 02:30 does not exist on 2026-03-08: 03:00 EDT.
        assert_eq!(scheduled_at(d(2026, 3, 8), t(2, 30), ny), utc("2026-03-08T07:00:00Z"));
        assert_eq!(scheduled_at(d(2026, 3, 8), t(2, 0), ny), utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn a_repeated_local_time_is_its_first_occurrence() {
        let ny = chrono_tz::America::New_York;
        // 01:30 happens twice on 2026-11-01: the EDT one (05:30 UTC), not EST (06:30 UTC).
        assert_eq!(scheduled_at(d(2026, 11, 1), t(1, 30), ny), utc("2026-11-01T05:30:00Z"));
    }
}
