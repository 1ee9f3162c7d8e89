//! The one pipeline every Slack input goes through, whatever its transport.
//!
//! HTTP handlers and the Socket Mode listener hand an event to [`Ingest`] and
//! wait; a single committer task takes whatever has arrived meanwhile, writes
//! the whole group in one statement (each new event row, which is also its
//! queued work, see [`crate::storage::events::record_batch`]) and
//! answers every waiter.
//! Only then does the transport acknowledge to Slack. This group commit is
//! what lets one Postgres durably take thousands of events per second: while
//! one group commits, the next one gathers.
//!
//! If the commit fails (Postgres down), every waiter gets an error and the
//! transport refuses the event (HTTP 503, Socket Mode: no ack), so Slack
//! redelivers. Nothing is acknowledged that is not stored.
//!
//! Every commit's duration and size go to `/metrics`
//! (`robeing_ingest_commit_seconds`, `robeing_ingest_group_events`): the
//! acknowledgement latency is mostly these commits.

use std::{collections::HashSet, sync::Arc};

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::storage::events::{NewEvent, record_batch};

/// The most events one commit takes. Large enough to amortise the commit,
/// small enough that one statement stays well under a millisecond of work.
pub const MAX_GROUP: usize = 512;
/// How many events may wait for a commit before callers are pushed back.
const QUEUE_DEPTH: usize = 8192;
/// The committer's own connections, so an acknowledgement never queues
/// behind job workers for the shared pool. One commit runs at a time; the
/// second connection lets a broken one be replaced without waiting.
const COMMIT_CONNECTIONS: u32 = 2;

/// What recording an event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now; its work is queued.
    New,
    /// Already stored earlier (a retry or a second connection).
    Duplicate,
}

/// Recording failed: the event is not stored and must not be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the event could not be stored: {0}")]
pub struct NotStored(pub String);

struct Waiting {
    event: NewEvent,
    done: oneshot::Sender<Result<Recorded, NotStored>>,
}

/// The handle transports use to record events.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Waiting>,
}

impl Ingest {
    /// Starts the committer task; it stops when `shutdown` fires and the
    /// queue is drained.
    pub fn start(
        pool: PgPool,
        wake_workers: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let commit_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(COMMIT_CONNECTIONS)
            .acquire_timeout(crate::storage::CONNECT_TIMEOUT)
            .connect_lazy_with((*pool.connect_options()).clone());
        let task = tokio::spawn(commit_loop(commit_pool, rx, wake_workers, shutdown));
        (Self { tx }, task)
    }

    /// Stores one event (grouped with whatever arrives meanwhile) and says
    /// whether it was new.
    pub async fn record(&self, event: NewEvent) -> Result<Recorded, NotStored> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Waiting { event, done }).await.map_err(|_| NotStored("robeing is shutting down".into()))?;
        wait.await.map_err(|_| NotStored("robeing is shutting down".into()))?
    }
}

/// Adds to `group` whatever already waits in `rx`, up to `max` in all: the
/// rest of a group commit (the ingest's here, the replies' in
/// `conversation::recorder`).
pub(crate) fn take_waiting<T>(rx: &mut mpsc::Receiver<T>, group: &mut Vec<T>, max: usize) {
    while group.len() < max {
        match rx.try_recv() {
            Ok(item) => group.push(item),
            Err(_) => break,
        }
    }
}

async fn commit_loop(pool: PgPool, mut rx: mpsc::Receiver<Waiting>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut group: Vec<Waiting> = Vec::with_capacity(MAX_GROUP);
    loop {
        let first = tokio::select! {
            biased;
            w = rx.recv() => w,
            _ = shutdown.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { return };
        group.push(first);
        take_waiting(&mut rx, &mut group, MAX_GROUP);
        let events: Vec<&NewEvent> = group.iter().map(|w| &w.event).collect();
        let started = std::time::Instant::now();
        // One atomic statement: each new event is stored and queued at once.
        let result = record_batch(&pool, &events).await;
        let m = crate::metrics::metrics();
        m.ingest_commit_seconds.observe(started.elapsed().as_secs_f64());
        m.ingest_group_events.observe(events.len() as f64);
        drop(events);
        match result {
            Ok(new_ids) => {
                let mut seen = HashSet::new();
                let mut any_new = false;
                for w in group.drain(..) {
                    let is_new = new_ids.contains(&w.event.event_id) && seen.insert(w.event.event_id.clone());
                    any_new |= is_new;
                    let labels = crate::metrics::sk(w.event.source, &w.event.kind);
                    if is_new {
                        m.events_received.get_or_create(&labels).inc();
                    } else {
                        m.events_deduplicated.get_or_create(&labels).inc();
                    }
                    let _ = w.done.send(Ok(if is_new { Recorded::New } else { Recorded::Duplicate }));
                }
                if any_new {
                    // The job runner, waiting or (kept for it) when it next
                    // waits; one wake-up, so that it claims once.
                    wake.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = group.len(), "could not store inbound events; refusing them so Slack redelivers");
                let message = e.to_string();
                m.events_rejected
                    .get_or_create(&crate::metrics::Reason { reason: "not_stored".into() })
                    .inc_by(group.len() as u64);
                for w in group.drain(..) {
                    let _ = w.done.send(Err(NotStored(message.clone())));
                }
            }
        }
    }
}
