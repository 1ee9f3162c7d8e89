//! Workers for the durable outbox (`storage::jobs`) and the inbound events
//! (`storage::events`, a queue of their own with the same rules): claim due
//! work, run each by kind, and record the outcome — done, retry later with
//! backoff, or dead after its last attempt (never dropped). A worker that crashes mid-job
//! leaves an expired lease, and the job runs again: handlers are written to
//! be idempotent (they check what was already done before doing it).

pub mod runtime;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{startup::AppState, storage::jobs::Job};

/// Jobs run at once by one process. Handlers mostly wait on the network.
pub const CONCURRENCY: usize = 64;
/// A claimed job is someone else's to retry after this long. Longer than the
/// slowest handler (an LLM reply with retries), short enough that a crash
/// delays a reply by about a minute, not an hour.
pub const LEASE: Duration = Duration::from_secs(90);
/// How often idle workers look for jobs another process (or the clock) made
/// due; local work wakes them at once.
pub const POLL: Duration = Duration::from_millis(500);

/// Who records a job that succeeded as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The runner, grouped with other finished jobs ([`Finished`]).
    ByRunner,
    /// The handler already did, in the statement that recorded its own
    /// outcome (one commit for both, and one round trip fewer).
    Recorded,
}

/// One claimed piece of work: an outbox job, or an inbound Slack event
/// (events are a queue of their own, `storage::events`, with the same
/// rules).
// Variants differ in size (a delivery is ~570 bytes), but each value is
// moved once into its task: boxing would only add an allocation per job.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Work {
    /// With its briefing delivery when it is a `briefing_deliver` job whose
    /// delivery was read with its batch (`Some(None)`: the briefing is gone).
    Job(Job, Option<Option<crate::storage::briefings::Delivery>>),
    Event(crate::storage::events::Claimed),
}

impl Work {
    fn key(&self) -> Key {
        match self {
            Work::Job(job, _) => Key::Job(job.id),
            Work::Event(claimed) => Key::Event(claimed.event.event_id.clone()),
        }
    }

    fn kind(&self) -> &str {
        match self {
            Work::Job(job, _) => &job.kind,
            Work::Event(_) => crate::slack::dispatch::JOB_KIND,
        }
    }

    /// This attempt's number, and the last one allowed.
    fn attempts(&self) -> (i32, i32) {
        match self {
            Work::Job(job, _) => (job.attempts, job.max_attempts),
            Work::Event(claimed) => (claimed.attempts, crate::storage::events::MAX_ATTEMPTS),
        }
    }
}

/// Which queue's row a piece of work is: where its outcome is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Job(i64),
    Event(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Job(id) => write!(f, "{id}"),
            Key::Event(id) => f.write_str(id),
        }
    }
}

impl Key {
    async fn retry_at(&self, db: &sqlx::PgPool, at: chrono::DateTime<Utc>, error: &str) -> Result<(), sqlx::Error> {
        match self {
            Key::Job(id) => crate::storage::jobs::retry_at(db, *id, at, error).await,
            Key::Event(id) => crate::storage::events::retry_at(db, id, at, error).await,
        }
    }

    async fn bury(&self, db: &sqlx::PgPool, error: &str) -> Result<(), sqlx::Error> {
        match self {
            Key::Job(id) => crate::storage::jobs::bury(db, *id, error).await,
            Key::Event(id) => crate::storage::events::bury(db, id, error).await,
        }
    }
}

/// Claims up to `free` pieces of work: outbox jobs first, up to half, then
/// events for the rest, then more jobs if events left room. Under a flood
/// of events the outbox (briefing deliveries, reconnect prompts) still gets
/// its share, and either queue alone gets every free worker. At most three
/// statements; a queue that cannot be read is logged and skipped this
/// round.
async fn claim(state: &AppState, free: usize) -> Vec<Work> {
    fn logged<T>(what: &str, claimed: Result<Vec<T>, sqlx::Error>) -> Vec<T> {
        claimed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not claim {what}; will retry");
            Vec::new()
        })
    }
    let (db, lease) = (&state.db, LEASE.as_secs_f64());
    let share = free.div_ceil(2);
    let mut jobs = logged("jobs", crate::storage::jobs::claim(db, share as i64, lease).await);
    let room = free - jobs.len();
    let events = match room {
        0 => Vec::new(),
        _ => logged("inbound events", crate::storage::events::claim(db, room as i64, lease).await),
    };
    let left = room - events.len();
    if left > 0 && jobs.len() == share {
        jobs.extend(logged("jobs", crate::storage::jobs::claim(db, left as i64, lease).await));
    }
    // What the delivery jobs' handlers would each read first, one query for
    // the batch. A failed read only means each handler reads its own.
    let mut deliveries = crate::briefing::deliver::prefetch(state, &jobs).await;
    let jobs = jobs.into_iter().map(|job| {
        let delivery = deliveries.remove(&job.id);
        Work::Job(job, delivery)
    });
    jobs.chain(events.into_iter().map(Work::Event)).collect()
}

/// How a handler failed.
#[derive(Debug)]
pub enum JobError {
    /// Try again later (after `after`, or the usual backoff).
    Retry { after: Option<Duration>, error: anyhow::Error },
    /// No point retrying.
    Permanent(anyhow::Error),
}

impl JobError {
    pub fn retry(error: impl Into<anyhow::Error>) -> Self {
        Self::Retry { after: None, error: error.into() }
    }
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> Self {
        Self::retry(error)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        Self::retry(error)
    }
}

/// Backoff before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs((1u64 << exp.min(9)).min(300))
}

/// How long a worker keeps trying to record a job's outcome (or release a
/// claim) while Postgres is unreachable. A restart of Postgres takes
/// seconds; without this, a job in flight during it would wait for its
/// [`LEASE`] to expire (a reply delayed by a minute and a half). Shorter
/// than the lease, so a long outage still ends in the lease's retry.
pub const RECORD_PATIENCE: Duration = Duration::from_secs(30);

/// Whether a database error is the connection's (Postgres down, restarting,
/// or the pool out of connections) rather than the statement's.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        // Class 08: connection exception; class 57: operator intervention
        // (admin shutdown, crash shutdown, cannot connect now).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// Runs a small bookkeeping write until it succeeds, retrying connection
/// errors with backoff for up to [`RECORD_PATIENCE`].
pub async fn persist<T, F, Fut>(what: &str, mut write: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = tokio::time::Instant::now() + RECORD_PATIENCE;
    let mut wait = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if is_connection_error(&e) && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what}: the database is unreachable; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// How a worker waiting in [`Finished`] learns whether its job was recorded.
type Told = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The most finished jobs recorded by one statement.
pub const FINISHED_GROUP: usize = 1_000;

/// Group commit of finished jobs: a worker whose job succeeded queues its
/// id here and waits; one `UPDATE … WHERE id = ANY(…)` at a time records
/// everything queued meanwhile (up to [`FINISHED_GROUP`]). Under load that
/// is one statement and one commit for many jobs instead of one each.
/// Safe because handlers are idempotent: a completion that is never
/// recorded (the process died first) only makes the job run again after
/// its lease, and the job's own state (an exchange row, a memorized flag)
/// decides that nothing is done twice. Retries and deaths are rare and
/// carry an error each; they stay single statements.
#[derive(Default)]
struct Finished {
    waiting: std::sync::Mutex<Vec<(Key, Told)>>,
    /// Held by the worker writing a group; FIFO, so every waiter gets a turn.
    writer: tokio::sync::Mutex<()>,
}

impl Finished {
    /// Records the work done, together with whatever else finished meanwhile.
    async fn record(&self, db: &sqlx::PgPool, key: Key) -> Result<(), String> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).push((key, tx));
        let _writer = self.writer.lock().await;
        loop {
            match rx.try_recv() {
                // A group written while we waited carried ours.
                Ok(outcome) => return outcome,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err("the statement recording this job was abandoned".to_owned());
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    let group: Vec<_> = {
                        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                        let n = waiting.len().min(FINISHED_GROUP);
                        waiting.drain(..n).collect()
                    };
                    let (mut jobs, mut events) = (Vec::new(), Vec::new());
                    for (key, _) in &group {
                        match key {
                            Key::Job(id) => jobs.push(*id),
                            Key::Event(id) => events.push(id.clone()),
                        }
                    }
                    let outcome = persist("recording finished work", || async {
                        if !jobs.is_empty() {
                            crate::storage::jobs::complete_many(db, &jobs).await?;
                        }
                        if !events.is_empty() {
                            crate::storage::events::complete_many(db, &events).await?;
                        }
                        Ok(())
                    })
                    .await
                    .map_err(|e| e.to_string());
                    for (_, done) in group {
                        let _ = done.send(outcome.clone());
                    }
                }
            }
        }
    }
}

/// Runs workers until `shutdown`, then waits for in-flight jobs.
pub async fn run(state: Arc<AppState>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let finished = Arc::new(Finished::default());
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = shutdown.cancelled() => break,
            }
            continue;
        }
        let claimed = claim(&state, free).await;
        // Fewer than asked for: nothing else was due when the claim ran, so
        // claiming again at once would only find nothing (a statement per
        // wake-up for nothing). New work wakes the runner: `notify_one`
        // keeps its wake-up for a runner not waiting yet.
        let drained = claimed.len() < free;
        for work in claimed {
            let permit = permits.clone().acquire_owned().await.expect("semaphore is never closed");
            let (state, finished) = (state.clone(), finished.clone());
            tokio::spawn(async move {
                run_one(&state, &finished, work).await;
                drop(permit);
            });
        }
        if drained {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    // Drain: wait until every in-flight job has released its permit.
    let _all = permits.acquire_many(CONCURRENCY as u32).await;
}

async fn run_one(state: &AppState, finished: &Finished, mut work: Work) {
    let key = work.key();
    let kind = work.kind().to_owned();
    let (attempts, max_attempts) = work.attempts();
    let span = tracing::info_span!("job", id = %key, kind = %kind, attempt = attempts);
    let result = match &mut work {
        Work::Job(job, delivery) => dispatch(state, job, delivery.take()).instrument(span.clone()).await,
        Work::Event(claimed) => {
            Box::pin(crate::slack::dispatch::run(state, &claimed.event)).instrument(span.clone()).await
        }
    };
    let db = &state.db;
    let outcome = match result {
        Ok(done) => {
            crate::metrics::metrics().jobs_finished.get_or_create(&crate::metrics::sk("done", &kind)).inc();
            match done {
                Done::ByRunner => finished.record(db, key).await,
                Done::Recorded => Ok(()),
            }
        }
        Err(JobError::Retry { after, error }) if attempts < max_attempts => {
            let wait = after.unwrap_or_else(|| backoff(attempts));
            retry_later(db, &key, &kind, wait, &format!("{error:#}")).instrument(span.clone()).await
        }
        Err(JobError::Retry { error, .. }) | Err(JobError::Permanent(error)) => {
            if let Work::Event(claimed) = &work {
                on_event_dead(state, &claimed.event, &error).await;
            }
            bury(db, &key, &kind, &format!("{error:#}")).instrument(span.clone()).await
        }
    };
    if let Err(e) = outcome {
        // The lease will expire and the work will run again: handlers are idempotent.
        tracing::error!(parent: &span, error = %e, "could not record a job's outcome; it will run again");
    }
}

/// Records a failed attempt of a job claimed outside the workers (the
/// memory writer's groups) as the workers record theirs: retried after
/// [`backoff`], or dead after its last attempt; counted and logged.
pub async fn record_failure(db: &sqlx::PgPool, job: &Job, error: &str) {
    let key = Key::Job(job.id);
    let outcome = if job.attempts < job.max_attempts {
        retry_later(db, &key, &job.kind, backoff(job.attempts), error).await
    } else {
        bury(db, &key, &job.kind, error).await
    };
    if let Err(e) = outcome {
        tracing::error!(job = job.id, kind = %job.kind, error = %e, "could not record a job's outcome; it will run again");
    }
}

/// [`record_failure`] for a job that no retry can mend.
pub async fn record_dead(db: &sqlx::PgPool, job: &Job, error: &str) {
    if let Err(e) = bury(db, &Key::Job(job.id), &job.kind, error).await {
        tracing::error!(job = job.id, kind = %job.kind, error = %e, "could not record a job's outcome; it will run again");
    }
}

async fn retry_later(db: &sqlx::PgPool, key: &Key, kind: &str, wait: Duration, error: &str) -> Result<(), String> {
    crate::metrics::metrics().jobs_finished.get_or_create(&crate::metrics::sk("retry", kind)).inc();
    tracing::warn!(id = %key, kind, error, retry_in_secs = wait.as_secs_f64(), "job failed; will retry");
    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    persist("recording a job's retry", || key.retry_at(db, at, error)).await.map_err(|e| e.to_string())
}

async fn bury(db: &sqlx::PgPool, key: &Key, kind: &str, error: &str) -> Result<(), String> {
    tracing::error!(id = %key, kind, error, "job failed for the last time; it is now dead");
    crate::metrics::metrics().jobs_finished.get_or_create(&crate::metrics::sk("dead", kind)).inc();
    persist("recording a dead job", || key.bury(db, error)).await.map_err(|e| e.to_string())
}

/// Runs one job by kind. Each handler's future is boxed: they are large
/// state machines, and a boxed one is moved as a pointer, not copied
/// through every poll wrapper above it (the briefing profile showed those
/// copies as 4 % of its CPU).
async fn dispatch(
    state: &AppState,
    job: &Job,
    delivery: Option<Option<crate::storage::briefings::Delivery>>,
) -> Result<Done, JobError> {
    crate::slack::dispatch::stop_if_team_inactive(state, job).await?;
    if job.kind == crate::briefing::deliver::JOB_KIND {
        return Box::pin(crate::briefing::deliver::run_job(state, job, delivery)).await;
    }
    match job.kind.as_str() {
        crate::google::RECONNECT_PROMPT_JOB => {
            Box::pin(crate::google::prompt::run_reconnect_prompt_job(state, &job.payload)).await
        }
        crate::memory::FORGET_JOB => Box::pin(crate::memory::run_forget_job(state, job)).await,
        crate::conversation::APOLOGY_JOB => Box::pin(crate::conversation::run_apology_job(state, job)).await,
        _ => Err(JobError::Permanent(anyhow::anyhow!("no handler for job kind `{}`", job.kind))),
    }
    .map(|()| Done::ByRunner)
}

/// When an event's handling dies, the user is told (a DM gets an apology),
/// unless its workspace is inactive: Slack would refuse the message, and
/// its owners removed robeing on purpose.
async fn on_event_dead(state: &AppState, event: &crate::storage::events::Stored, error: &anyhow::Error) {
    if let Some(team) = &event.team_id
        && let Ok(Some(_)) = crate::storage::users::inactive_reason(&state.db, team).await
    {
        return;
    }
    crate::conversation::on_event_dead(state, &event.event_id, error).await;
}
