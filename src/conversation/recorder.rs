//! The conversation's group commits: many workers' writes in one statement,
//! as [`crate::pipeline`] does for inbound events.
//!
//! Two writes happen once per DM, each in its own worker:
//!
//! - [`StoreMessages`]: the message stored and claimed when a worker takes
//!   it up, with its sender's row and history read in the same statement
//!   ([`storage::exchanges::insert_many`]);
//! - [`RecordReplies`]: the posted reply recorded, its memory job queued and
//!   its event recorded handled ([`storage::exchanges::mark_replied_many`]).
//!
//! A worker hands its item to a [`GroupCommitter`] and waits; one committer
//! task per write takes whatever has arrived meanwhile, writes the whole
//! group with one statement and answers every waiter. One statement for a
//! group instead of one per DM saves each DM a Postgres round trip, a
//! backend wake-up and a commit of its own; at low load a group is one item
//! and nothing waits.
//!
//! Nothing is weaker than writing each item alone: a waiter learns its
//! outcome only after the group's commit, and a failed commit fails every
//! waiter in the group, whose job is then retried (handlers are idempotent:
//! the exchange row decides, and a retried reply finds its own post by its
//! metadata tag and does not post again).

use std::future::Future;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::storage::{
    self,
    exchanges::{Inserted, NewExchange, ReplyRecord},
};

/// How many items may wait for a commit before workers are pushed back.
const QUEUE_DEPTH: usize = 1024;
/// Each committer's own connections, so its statement never queues behind
/// the workers for the shared pool (one commit runs at a time; the second
/// connection replaces a broken one without waiting).
const COMMIT_CONNECTIONS: u32 = 2;

/// One kind of write a [`GroupCommitter`] groups.
pub trait GroupWrite: Send + Sync + 'static {
    /// What a worker hands in.
    type Item: Send + Sync + 'static;
    /// What the worker learns, one per item.
    type Outcome: Send + 'static;
    /// The most items one statement takes.
    const MAX_GROUP: usize;
    /// What a failure is about, for the log.
    const WHAT: &'static str;
    /// Writes the group with one statement; one outcome per item, in order.
    fn write(
        pool: &PgPool,
        items: &[&Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, sqlx::Error>> + Send;
    /// Records the group's size in `/metrics`.
    fn observe(group: usize);
}

/// Writing a group failed: the item is not written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} failed: {error}")]
pub struct NotWritten {
    what: &'static str,
    error: String,
}

struct Waiting<W: GroupWrite> {
    item: W::Item,
    done: oneshot::Sender<Result<W::Outcome, NotWritten>>,
}

/// The handle workers use to write one kind of item.
pub struct GroupCommitter<W: GroupWrite> {
    tx: mpsc::Sender<Waiting<W>>,
}

impl<W: GroupWrite> Clone for GroupCommitter<W> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

/// Stores received messages (see [`StoreMessages`]).
pub type MessageStore = GroupCommitter<StoreMessages>;
/// Records posted replies (see [`RecordReplies`]).
pub type ReplyRecorder = GroupCommitter<RecordReplies>;

impl<W: GroupWrite> GroupCommitter<W> {
    /// Starts the committer task on the current runtime. It runs until
    /// every handle is dropped, so the workers' last writes are committed
    /// however shutdown orders things.
    pub fn start(pool: &PgPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let commit_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(COMMIT_CONNECTIONS)
            .acquire_timeout(crate::storage::CONNECT_TIMEOUT)
            .connect_lazy_with((*pool.connect_options()).clone());
        tokio::spawn(commit_loop::<W>(commit_pool, rx));
        Self { tx }
    }

    /// Writes one item (grouped with whatever arrives meanwhile).
    pub async fn write(&self, item: W::Item) -> Result<W::Outcome, NotWritten> {
        let (done, wait) = oneshot::channel();
        let stopped = || NotWritten { what: W::WHAT, error: "robeing is shutting down".into() };
        self.tx.send(Waiting { item, done }).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn commit_loop<W: GroupWrite>(pool: PgPool, mut rx: mpsc::Receiver<Waiting<W>>) {
    let mut group: Vec<Waiting<W>> = Vec::with_capacity(W::MAX_GROUP);
    while let Some(first) = rx.recv().await {
        group.push(first);
        crate::pipeline::take_waiting(&mut rx, &mut group, W::MAX_GROUP);
        let items: Vec<&W::Item> = group.iter().map(|w| &w.item).collect();
        W::observe(items.len());
        let result = W::write(&pool, &items).await;
        drop(items);
        match result {
            Ok(outcomes) if outcomes.len() == group.len() => {
                for (w, outcome) in group.drain(..).zip(outcomes) {
                    let _ = w.done.send(Ok(outcome));
                }
            }
            result => {
                let error = match result {
                    Err(e) => e.to_string(),
                    Ok(outcomes) => format!("{} outcomes for {} items", outcomes.len(), group.len()),
                };
                tracing::warn!(error = %error, items = group.len(), "{} failed; their jobs retry", W::WHAT);
                for w in group.drain(..) {
                    let _ = w.done.send(Err(NotWritten { what: W::WHAT, error: error.clone() }));
                }
            }
        }
    }
}

/// Received messages, stored and claimed for `claim_secs`
/// (`storage::exchanges::insert_many`).
pub struct StoreMessages;

impl GroupWrite for StoreMessages {
    type Item = NewExchange;
    type Outcome = Inserted;
    const MAX_GROUP: usize = 256;
    const WHAT: &'static str = "storing received messages";

    async fn write(pool: &PgPool, items: &[&NewExchange]) -> Result<Vec<Inserted>, sqlx::Error> {
        storage::exchanges::insert_many(pool, items, super::CLAIM.as_secs_f64()).await
    }

    fn observe(group: usize) {
        crate::metrics::metrics().message_group_messages.observe(group as f64);
    }
}

/// Posted replies (`storage::exchanges::mark_replied_many`). The outcome:
/// `false` when the exchange was not waiting for a reply any more, so
/// nothing was queued (its event is recorded handled all the same).
pub struct RecordReplies;

impl GroupWrite for RecordReplies {
    type Item = ReplyRecord;
    type Outcome = bool;
    const MAX_GROUP: usize = 256;
    const WHAT: &'static str = "recording posted replies";

    async fn write(pool: &PgPool, items: &[&ReplyRecord]) -> Result<Vec<bool>, sqlx::Error> {
        let marked: std::collections::HashSet<Uuid> = storage::exchanges::mark_replied_many(pool, items).await?;
        Ok(items.iter().map(|r| marked.contains(&r.id)).collect())
    }

    fn observe(group: usize) {
        crate::metrics::metrics().reply_group_replies.observe(group as f64);
    }
}
