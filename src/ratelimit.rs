//! Outbound budgets: the token buckets that pace robeing's calls to outside
//! APIs, shared by every task that makes those calls, so a run of thousands
//! of briefings is paced by the configured limits (`SLACK_MAX_POSTS_PER_SECOND`,
//! `GMAIL_MAX_REQUESTS_PER_SECOND`, `GMAIL_USER_MAX_REQUESTS_PER_SECOND`)
//! instead of running into the provider's 429s. The providers' own 429s are
//! still honoured by each client; a budget only keeps us from causing them.
//!
//! A [`Budget`] is a GCRA token bucket: `burst` calls may go at once, then one
//! per `1 / rate` seconds. A caller *reserves* its slot and sleeps until it,
//! so waiters are served in arrival order and the bucket costs one mutex and
//! no task of its own. Time spent waiting is counted per budget in
//! `/metrics` (`robeing_budget_wait_seconds`), so an operator (and the
//! benchmark) can see which limit bounded a run.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The longest a caller waits inline for its slot. A longer wait means far
/// more callers than the budget serves; the call then fails as rate-limited
/// (a job is retried after that long) rather than holding a worker. Short
/// enough that a briefing job stays inside its lease (see
/// `briefing::deliver::SLACK_TIMEOUT`).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// A shared rate budget (token bucket) for one kind of outbound call.
#[derive(Debug)]
pub struct Budget {
    name: &'static str,
    interval: Duration,
    /// `(burst - 1) × interval`: how far ahead of "now" slots may be given out free.
    tolerance: Duration,
    /// The theoretical arrival time of the next call (GCRA's TAT).
    next: Mutex<Option<Instant>>,
}

impl Budget {
    /// `rate` calls per second (must be positive), `burst` of them at once.
    pub fn per_second(name: &'static str, rate: f64, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        Self { name, interval, tolerance: interval * burst.max(1).saturating_sub(1), next: Mutex::new(None) }
    }

    /// The budget's name (the `budget` label in `/metrics`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls per second this budget allows.
    pub fn rate(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Reserves the next slot and returns how long to wait for it; when the
    /// wait would exceed `max_wait` nothing is reserved and `Err(wait)` says
    /// how long it would have been.
    pub fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        self.reserve_many(1, max_wait).map(|waits| waits.last)
    }

    /// Reserves the next `calls` slots at once, as that many callers arriving
    /// together would, all or none: `Err(wait)` when the last one's wait
    /// would exceed `max_wait` (nothing is reserved).
    pub fn reserve_many(&self, calls: u32, max_wait: Duration) -> Result<Waits, Duration> {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = next.map_or(now, |t| t.max(now));
        let wait_for = |slot: Instant| {
            slot.checked_sub(self.tolerance).map_or(Duration::ZERO, |free_at| free_at.saturating_duration_since(now))
        };
        let calls = calls.max(1);
        let last = wait_for(first + self.interval * (calls - 1));
        if last > max_wait {
            return Err(last);
        }
        let total = (0..calls).map(|i| wait_for(first + self.interval * i)).sum();
        *next = Some(first + self.interval * calls);
        Ok(Waits { last, total })
    }

    /// Waits for a slot (at most `max_wait`), counting the call and the wait
    /// in `/metrics`. `Err(wait)`: the budget is too far behind; nothing was
    /// reserved.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        self.acquire_many(1, max_wait).await
    }

    /// Waits for `calls` slots taken together (a batch request): until the
    /// last one's, at most `max_wait`. Every call and each one's wait are
    /// counted in `/metrics`, as if each had waited for its own slot.
    /// `Err(wait)`: the budget is too far behind; nothing was reserved.
    pub async fn acquire_many(&self, calls: u32, max_wait: Duration) -> Result<(), Duration> {
        let m = crate::metrics::metrics();
        let outcome =
            |outcome: &str| crate::metrics::BudgetOutcome { budget: self.name.into(), outcome: outcome.into() };
        let waits = self.reserve_many(calls, max_wait).inspect_err(|_| {
            m.budget_calls.get_or_create(&outcome("refused")).inc_by(u64::from(calls.max(1)));
        })?;
        m.budget_calls.get_or_create(&outcome("ok")).inc_by(u64::from(calls.max(1)));
        if !waits.last.is_zero() {
            let label = crate::metrics::BudgetLabel { budget: self.name.to_owned() };
            m.budget_wait_seconds.get_or_create(&label).inc_by(waits.total.as_secs_f64());
            tokio::time::sleep(waits.last).await;
        }
        Ok(())
    }
}

/// How long reserved slots wait: the last of them (when the group may go),
/// and all of them together (what `/metrics` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    pub last: Duration,
    pub total: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let b = Budget::per_second("test", 10.0, 3);
        for _ in 0..3 {
            assert_eq!(b.reserve(MAX_WAIT), Ok(Duration::ZERO));
        }
        let w = b.reserve(MAX_WAIT).unwrap();
        assert!(w > Duration::from_millis(90) && w <= Duration::from_millis(100), "{w:?}");
        let w = b.reserve(MAX_WAIT).unwrap();
        assert!(w > Duration::from_millis(190) && w <= Duration::from_millis(200), "{w:?}");
    }

    #[test]
    fn a_wait_beyond_the_limit_reserves_nothing() {
        let b = Budget::per_second("test", 1.0, 1);
        assert_eq!(b.reserve(Duration::ZERO), Ok(Duration::ZERO));
        let refused = b.reserve(Duration::from_millis(500)).unwrap_err();
        assert!(refused > Duration::from_millis(900), "{refused:?}");
        // The refused call took no slot: the next one waits one interval, not two.
        let w = b.reserve(MAX_WAIT).unwrap();
        assert!(w <= Duration::from_secs(1), "{w:?}");
    }

    #[test]
    fn many_slots_at_once_wait_like_that_many_callers_and_are_all_or_none() {
        let b = Budget::per_second("test", 10.0, 3);
        // Three free, then 100 ms and 200 ms: the group goes with the last.
        let w = b.reserve_many(5, MAX_WAIT).unwrap();
        assert!(w.last > Duration::from_millis(190) && w.last <= Duration::from_millis(200), "{w:?}");
        assert!(w.total > Duration::from_millis(290) && w.total <= Duration::from_millis(300), "{w:?}");
        // The next single caller queues behind all five.
        let next = b.reserve(MAX_WAIT).unwrap();
        assert!(next > Duration::from_millis(290) && next <= Duration::from_millis(300), "{next:?}");
        // Too far behind for ten more within a second: none is taken.
        let refused = b.reserve_many(10, Duration::from_secs(1)).unwrap_err();
        assert!(refused > Duration::from_millis(1_200), "{refused:?}");
        let after = b.reserve(MAX_WAIT).unwrap();
        assert!(after > Duration::from_millis(390) && after <= Duration::from_millis(400), "{after:?}");
    }

    #[test]
    fn rates_come_back_as_configured() {
        assert!((Budget::per_second("x", 250.0, 1).rate() - 250.0).abs() < 0.01);
    }
}
