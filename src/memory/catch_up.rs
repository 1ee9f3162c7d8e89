//! Memory's catch-up at start-up: every replied exchange that ChromaDB does
//! not hold and that no memory write is on its way for gets one.
//!
//! In normal running every replied exchange's `memory_upsert` job is queued
//! in the statement that marks it replied, and the writer retries it for as
//! long as ChromaDB is unavailable. Three things still leave an exchange
//! outside memory with nothing to put it there, and each needs a restart to
//! mend, so a start is when to look:
//! - it was replied while memory was off (`CHROMA_URL` unset): turning
//!   memory on should bring the whole history in, not only what is said
//!   from then on;
//! - its write was found by a robeing started without memory, or was
//!   refused by ChromaDB until its last attempt, and is `dead`: the operator
//!   has since changed what was wrong;
//! - an earlier version buried writes after twelve attempts of an outage.
//!
//! Writes are queued a [`CHUNK`] at a time, the next only once the memory
//! backlog is under [`BACKLOG_BELOW`], so a large history goes in behind
//! the live conversation rather than ahead of it. The exchanges are found
//! with a cursor in id order: the whole catch-up reads the table once.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{UPSERT_JOB, upsert_job};
use crate::{startup::AppState, storage};

/// Memory writes queued at once (four of the writer's groups).
pub const CHUNK: i64 = 4 * super::writer::BATCH as i64;

/// The next chunk is queued only while fewer memory writes than this wait.
pub const BACKLOG_BELOW: i64 = super::writer::BATCH as i64;

/// How often the catch-up looks at the backlog while waiting for it to
/// shrink.
const BACKLOG_POLL: Duration = Duration::from_secs(1);

/// Runs the catch-up once, at start-up, with memory on; retries with backoff
/// while Postgres is unreachable, and says in the log what it queued.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    if state.memory.is_none() {
        return;
    }
    let mut after: Option<Uuid> = None;
    let mut queued: u64 = 0;
    let mut wait = Duration::from_secs(1);
    loop {
        match step(&state, after).await {
            Ok(Step::Done) => break,
            Ok(Step::Queued { last, count, more }) => {
                after = Some(last);
                queued += count;
                wait = Duration::from_secs(1);
                if count > 0 {
                    state.wake_memory_writer.notify_one();
                    tracing::info!(
                        queued_so_far = queued,
                        "memory catch-up: queued writes for replied exchanges ChromaDB does not hold"
                    );
                }
                if !more {
                    break;
                }
                if !backlog_shrinks(&state, &shutdown).await {
                    return;
                }
                continue;
            }
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_secs = wait.as_secs(),
                "memory catch-up: could not look for replied exchanges ChromaDB does not hold; will retry"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(300));
    }
    if queued > 0 {
        tracing::info!(
            queued,
            "memory catch-up finished: every replied exchange is in ChromaDB or has a write on its way"
        );
    }
}

enum Step {
    /// No exchange is left after the cursor.
    Done,
    /// `count` writes were queued (or revived) for exchanges up to `last`;
    /// `more` when there may be more after it.
    Queued { last: Uuid, count: u64, more: bool },
}

/// Queues the writes of the next [`CHUNK`] exchanges that need one.
async fn step(state: &AppState, after: Option<Uuid>) -> Result<Step, sqlx::Error> {
    let ids = storage::exchanges::not_memorized_after(&state.db, after, CHUNK).await?;
    let Some(&last) = ids.last() else { return Ok(Step::Done) };
    let (keys, payloads): (Vec<String>, Vec<serde_json::Value>) = ids.iter().map(|id| upsert_job(*id)).unzip();
    let count = storage::jobs::enqueue_or_revive_many(&state.db, UPSERT_JOB, &keys, &payloads).await?;
    Ok(Step::Queued { last, count, more: ids.len() as i64 == CHUNK })
}

/// Waits until fewer than [`BACKLOG_BELOW`] memory writes wait; false when
/// shut down meanwhile.
async fn backlog_shrinks(state: &AppState, shutdown: &CancellationToken) -> bool {
    loop {
        match storage::jobs::pending_of_kind(&state.db, UPSERT_JOB, BACKLOG_BELOW).await {
            Ok(pending) if pending < BACKLOG_BELOW => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "memory catch-up: could not read the memory backlog; will look again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKLOG_POLL) => {}
            _ = shutdown.cancelled() => return false,
        }
    }
}
