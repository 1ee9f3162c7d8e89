//! The memory writer: the one task per process that moves replied exchanges
//! into ChromaDB. It claims due `memory_upsert` jobs itself, in groups (the
//! job workers never take them: `storage::jobs::claim`), writes each group
//! with one embedder call and one ChromaDB write per user in it, and records
//! every job's outcome: done, or retried with backoff. While ChromaDB (or
//! the embeddings API) is unavailable, no attempt is the last: the writes
//! wait however long the outage lasts, visible in `/readyz`, and are due
//! again as soon as a write goes through. Any other error (a refused
//! request) makes a write dead after its last attempt, with the error; the
//! next start queues it again ([`super::catch_up`]).
//!
//! Why a task of its own rather than a job handler: a ChromaDB write costs
//! about the same for one record as for dozens, so the writer waits for
//! company before writing, and with per-user collections a burst from many
//! users needs a long wait for each user's write to carry several records.
//! A job handler waiting that long would hold one of the workers that
//! replies need; this task holds none, so a slow or absent ChromaDB can
//! never delay a reply.
//!
//! How long it gathers: it writes once a [`GAP`] passes with no new memory
//! job, the group holds [`BATCH`] exchanges, or it has gathered for
//! [`GATHER_AT_MOST`]. A lone reply is memorized about 50 ms after it was
//! posted; under a burst the writer takes every reply of the last second
//! in one group. The prompt's history already carries the newest
//! exchanges from Postgres, so a second of memory lag is invisible to
//! users; the backlog is in `/readyz` either way.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Memory, UPSERT_JOB};
use crate::{
    jobs::{LEASE, POLL, backoff, persist, record_dead, record_failure},
    startup::AppState,
    storage::{self, exchanges::Exchange, jobs::Job},
};

/// The most exchanges memorized by one group. A group makes one write per
/// user in it, so it must be large for each write under a burst from many
/// users to carry several records; bounded so that one group's writes stay
/// well inside a job's lease and one user's write under a few megabytes.
pub const BATCH: usize = 512;

/// The writer writes once this passes with no new memory job.
pub const GAP: Duration = Duration::from_millis(50);

/// The longest the writer gathers a group before writing it.
pub const GATHER_AT_MOST: Duration = Duration::from_secs(1);

/// Claims, gathers and writes groups until `shutdown`; the group in hand
/// is written before it returns. With memory off it still runs: jobs queued
/// while memory was on are recorded dead, with the reason, not left waiting.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut unreachable_for = Duration::ZERO;
    // Writes may wait for a retry from before this start: the first write
    // that goes through makes them due.
    let mut writes_wait_for_chroma = true;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let group = match gather(&state, &shutdown).await {
            Ok(group) => group,
            Err(e) => {
                // Postgres is down: the jobs wait in it, nothing is lost.
                unreachable_for = (unreachable_for * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in_ms = unreachable_for.as_millis() as u64, "the memory writer could not claim its jobs; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(unreachable_for) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
        };
        unreachable_for = Duration::ZERO;
        if group.is_empty() {
            tokio::select! {
                _ = state.wake_memory_writer.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        match write(&state, group).await {
            Written::ChromaUnavailable => writes_wait_for_chroma = true,
            Written::Ok if writes_wait_for_chroma => {
                writes_wait_for_chroma = false;
                hasten_waiting_writes(&state).await;
            }
            Written::Ok | Written::Failed => {}
        }
    }
}

/// How a group's write went.
enum Written {
    Ok,
    /// ChromaDB or the embeddings API was unavailable; the group waits.
    ChromaUnavailable,
    /// Refused, or memory is off: each job's attempts decide.
    Failed,
}

/// ChromaDB took a write: the writes that waited for it to come back are
/// due now, not after the rest of their backoff (up to five minutes).
async fn hasten_waiting_writes(state: &AppState) {
    match storage::jobs::hasten_retries(&state.db, UPSERT_JOB).await {
        Ok(0) => {}
        Ok(due) => tracing::info!(due, "ChromaDB takes writes again: the memory writes that waited for it are due now"),
        Err(e) => {
            tracing::warn!(error = %e, "could not make the waiting memory writes due; they run after their backoff")
        }
    }
}

/// Claims due memory jobs, and more as they keep arriving (see the module
/// documentation for when it stops). An error after the first claim ends
/// the gathering with what is in hand.
async fn gather(state: &AppState, shutdown: &CancellationToken) -> Result<Vec<Job>, sqlx::Error> {
    let claim = |n: usize| storage::jobs::claim_kind(&state.db, UPSERT_JOB, n as i64, LEASE.as_secs_f64());
    let mut group = claim(BATCH).await?;
    let started = tokio::time::Instant::now();
    while !group.is_empty() && group.len() < BATCH && started.elapsed() < GATHER_AT_MOST {
        tokio::select! {
            _ = tokio::time::sleep(GAP) => {}
            _ = shutdown.cancelled() => break,
        }
        match claim(BATCH - group.len()).await {
            Ok(more) if more.is_empty() => break,
            Ok(more) => group.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "could not claim more memory jobs; writing the ones in hand");
                break;
            }
        }
    }
    Ok(group)
}

/// Writes one group and records each job's outcome.
async fn write(state: &AppState, group: Vec<Job>) -> Written {
    let mut exchange_ids = Vec::with_capacity(group.len());
    let mut jobs = Vec::with_capacity(group.len());
    for job in group {
        match job.payload.get("exchange_id").and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok()) {
            Some(id) => {
                exchange_ids.push(id);
                jobs.push(job);
            }
            None => record_dead(&state.db, &job, "memory_upsert payload has no exchange_id").await,
        }
    }
    let Some(memory) = state.memory.as_deref() else {
        let error = "vector memory is off (CHROMA_URL unset); this job was queued while it was on";
        for job in &jobs {
            record_dead(&state.db, job, error).await;
        }
        return Written::Failed;
    };
    let outcome = upsert_batch(state, memory, &exchange_ids).await;
    settle(state, &jobs, outcome).await
}

/// Records the outcome of jobs that share it: done in one statement;
/// ChromaDB unavailable: all back in the queue in one statement, each after
/// its own backoff and with no last attempt; any other error: each retried
/// with its own backoff, dead after its last attempt.
async fn settle(state: &AppState, jobs: &[Job], outcome: anyhow::Result<()>) -> Written {
    let error = match outcome {
        Ok(()) => {
            let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
            let done = crate::metrics::sk("done", UPSERT_JOB);
            crate::metrics::metrics().jobs_finished.get_or_create(&done).inc_by(ids.len() as u64);
            if let Err(e) =
                persist("recording memory writes as done", || storage::jobs::complete_many(&state.db, &ids)).await
            {
                tracing::error!(error = %e, jobs = ids.len(), "could not record memory writes as done; their leases will expire and they run again (harmless: records are upserted by id)");
            }
            return Written::Ok;
        }
        Err(error) => error,
    };
    let text = format!("{error:#}");
    if !super::is_unavailable(&error) {
        for job in jobs {
            record_failure(&state.db, job, &text).await;
        }
        return Written::Failed;
    }
    let now = chrono::Utc::now();
    let waits: Vec<Duration> = jobs.iter().map(|j| backoff(j.attempts)).collect();
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let run_ats: Vec<_> = waits.iter().map(|w| now + chrono::Duration::from_std(*w).unwrap_or_default()).collect();
    let retry = crate::metrics::sk("retry", UPSERT_JOB);
    crate::metrics::metrics().jobs_finished.get_or_create(&retry).inc_by(ids.len() as u64);
    tracing::warn!(
        jobs = ids.len(),
        error = %text,
        retry_in_secs = waits.iter().min().unwrap_or(&Duration::ZERO).as_secs(),
        "ChromaDB is unavailable: these memory writes wait for it, however long it takes (the backlog is in /readyz)"
    );
    if let Err(e) =
        persist("recording memory writes to retry", || storage::jobs::retry_many_at(&state.db, &ids, &run_ats, &text))
            .await
    {
        tracing::error!(error = %e, jobs = ids.len(), "could not record memory writes to retry; their leases will expire and they run again");
    }
    Written::ChromaUnavailable
}

/// Upserts the exchanges still waiting to be memorized among `ids` and
/// marks them memorized; one forgotten meanwhile is taken back out.
async fn upsert_batch(state: &AppState, memory: &Memory, ids: &[Uuid]) -> anyhow::Result<()> {
    let exchanges: Vec<Exchange> = storage::exchanges::get_by_ids(&state.db, ids)
        .await?
        .into_iter()
        .filter(|e| e.memorized_at.is_none() && e.status == "replied")
        .collect();
    if exchanges.is_empty() {
        // Forgotten (or already memorized) before we got here: nothing to do.
        return Ok(());
    }
    let upserted = memory.remember_many(&exchanges).await;
    let outcome = if upserted.is_ok() { "ok" } else { "error" };
    crate::metrics::metrics()
        .chroma_upserts
        .get_or_create(&crate::metrics::outcome(outcome))
        .inc_by(exchanges.len() as u64);
    upserted?;
    let wanted: Vec<Uuid> = exchanges.iter().map(|e| e.id).collect();
    let kept = storage::exchanges::set_memorized_many(&state.db, &wanted).await?;
    // Forgotten while we were upserting: take them back out.
    let mut gone: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for e in exchanges.iter().filter(|e| !kept.contains(&e.id)) {
        gone.entry(&e.user_id).or_default().push(e.id);
    }
    for (user_id, ids) in gone {
        memory.forget_ids(user_id, &ids).await?;
    }
    Ok(())
}
