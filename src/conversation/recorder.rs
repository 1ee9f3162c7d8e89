//! The group commit of posted replies: many workers' reply records in one
//! statement, as [`crate::pipeline`] does for inbound events.
//!
//! A worker that has posted a reply hands its [`ReplyRecord`] to the
//! [`ReplyRecorder`] and waits; a single committer task takes whatever has
//! arrived meanwhile and records the whole group with
//! [`storage::exchanges::mark_replied_many`] (each exchange marked replied,
//! its memory job queued, its event recorded handled), then answers every
//! waiter. One statement for a group instead of one per reply saves each
//! reply a Postgres round trip, a backend wake-up and a commit of its own;
//! the workers' replies are what a DM's throughput is made of.
//!
//! Nothing is weaker than recording each reply alone: a waiter learns its
//! outcome only after the group's commit, and a failed commit fails every
//! waiter in the group, whose job is then retried (a retry finds its own
//! post by its metadata tag and does not post again).

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::storage::{self, exchanges::ReplyRecord};

/// The most replies one statement records.
const MAX_GROUP: usize = 256;
/// How many replies may wait for a commit before workers are pushed back.
const QUEUE_DEPTH: usize = 1024;
/// The committer's own connections, so a reply's record never queues behind
/// the workers for the shared pool (one commit runs at a time; the second
/// connection replaces a broken one without waiting).
const COMMIT_CONNECTIONS: u32 = 2;

/// Recording a group failed; the reply is posted but not recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the reply could not be recorded: {0}")]
pub struct NotRecorded(pub String);

struct Waiting {
    record: ReplyRecord,
    done: oneshot::Sender<Result<bool, NotRecorded>>,
}

/// The handle workers use to record posted replies.
#[derive(Clone)]
pub struct ReplyRecorder {
    tx: mpsc::Sender<Waiting>,
}

impl ReplyRecorder {
    /// Starts the committer task on the current runtime. It runs until
    /// every handle is dropped, so the workers' last replies are recorded
    /// however shutdown orders things.
    pub fn start(pool: &PgPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let commit_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(COMMIT_CONNECTIONS)
            .acquire_timeout(crate::storage::CONNECT_TIMEOUT)
            .connect_lazy_with((*pool.connect_options()).clone());
        tokio::spawn(commit_loop(commit_pool, rx));
        Self { tx }
    }

    /// Records one posted reply (grouped with whatever arrives meanwhile).
    /// `Ok(false)`: the exchange was not waiting for a reply any more, so
    /// nothing was queued (its event is recorded handled all the same).
    pub async fn record(&self, record: ReplyRecord) -> Result<bool, NotRecorded> {
        let (done, wait) = oneshot::channel();
        let stopped = || NotRecorded("robeing is shutting down".into());
        self.tx.send(Waiting { record, done }).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn commit_loop(pool: PgPool, mut rx: mpsc::Receiver<Waiting>) {
    let mut group: Vec<Waiting> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.recv().await {
        group.push(first);
        crate::pipeline::take_waiting(&mut rx, &mut group, MAX_GROUP);
        let records: Vec<&ReplyRecord> = group.iter().map(|w| &w.record).collect();
        crate::metrics::metrics().reply_group_replies.observe(records.len() as f64);
        let result = storage::exchanges::mark_replied_many(&pool, &records).await;
        drop(records);
        match result {
            Ok(marked) => {
                for w in group.drain(..) {
                    let _ = w.done.send(Ok(marked.contains(&w.record.id)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, replies = group.len(), "could not record posted replies; their jobs retry");
                let message = e.to_string();
                for w in group.drain(..) {
                    let _ = w.done.send(Err(NotRecorded(message.clone())));
                }
            }
        }
    }
}
