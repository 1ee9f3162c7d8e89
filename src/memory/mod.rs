//! Vector memory: every replied exchange is embedded and upserted into
//! ChromaDB, and recalled by similarity when composing a reply.
//!
//! Feeding is durable: the exchange's `memory_upsert` job is queued in the
//! same transaction that marks it replied, and the memory writer ([`writer`])
//! retries with backoff while ChromaDB is down. The record id is the exchange
//! id, so a retried upsert never makes a second record. When `CHROMA_URL` is
//! unset memory is off (said at start-up and in `/readyz`) and no memory jobs
//! are queued at all. [`log_backlog`] logs the backlog while there is one.
//!
//! Each user's records live in a collection of their own,
//! `<CHROMA_COLLECTION>_<user id>` in `CHROMA_TENANT`/`CHROMA_DATABASE`, so a
//! recall searches only that user's memories and costs the same however much
//! the rest of the workspace has said; forgetting a user deletes their
//! collection. Each collection records the embedder's name and dimension in
//! its metadata when created; an existing collection of another dimension is
//! refused with an error that says what to do, never silently mixed. The one
//! shared collection of earlier versions (named `CHROMA_COLLECTION` itself)
//! is moved into per-user collections at start-up
//! ([`retire_shared_collection`]).
//!
//! - [`chroma`]: the ChromaDB v2 HTTP client.
//! - [`embedder`]: the embedder trait, the built-in local embedder and the
//!   OpenAI-compatible one.
//! - [`writer`]: the task that claims `memory_upsert` jobs in groups and
//!   writes them.
//! - [`catch_up`]: at start-up, queues the writes missing for replied
//!   exchanges ChromaDB does not hold (memory was off, or a write died).

pub mod catch_up;
pub mod chroma;
pub mod embedder;
pub mod writer;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::{
    chroma::{ChromaClient, ChromaError, Hit, Record},
    embedder::{Embedder, LocalEmbedder, OpenAiEmbedder},
};
use crate::{
    config::Config,
    jobs::JobError,
    startup::AppState,
    storage::{self, exchanges::Exchange, jobs::Job},
};

/// Job kind: put one exchange into ChromaDB (payload `{"exchange_id"}`).
pub const UPSERT_JOB: &str = "memory_upsert";
/// Job kind: delete one user's records from ChromaDB (payload `{"user_id"}`).
pub const FORGET_JOB: &str = "memory_forget";

/// How often the backlog is logged while it is not empty: often enough to
/// see an outage in the logs within a minute, rarely enough not to flood.
pub const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(60);

/// Users' writes of one group sent to ChromaDB at once. One at a time
/// costs ChromaDB about 0.8× the CPU, but a group's writes then hold it in
/// one long stretch and the replies' recall queries wait behind them (p99
/// event-to-reply 0.2–1.1 s against 0.11–0.15 s at 150 replies/s;
/// docs/benchmarks.md, session 11).
pub const WRITES_AT_ONCE: usize = 4;

/// The HNSW `sync_threshold` of every collection robeing makes: how many
/// records ChromaDB takes into a collection between two saves of its
/// index. ChromaDB 1.5's default is 1,000, and with it a write costs more
/// the more records wait for the next save: a one-record write cost 10 ms
/// of ChromaDB's CPU just after a save and 43–47 ms just before the next,
/// and the soak's memory backlog climbed to 4,800 jobs as the users'
/// collections neared 1,000 records. With 10: 6–11 ms at 500–5,000
/// records, recall unchanged, a seventh more disk written per record
/// (docs/benchmarks.md, session 14).
pub const HNSW_SYNC_THRESHOLD: u64 = 10;

/// The most users [`Memory::adds_to_prompts`] remembers (about 4 MB).
const REMEMBERED_PROMPT_USERS: usize = 100_000;

/// The longest document stored per exchange. The full text stays in
/// Postgres; memory needs enough to recognise and quote it.
pub const MAX_DOCUMENT_CHARS: usize = 8_000;

/// ChromaDB plus the embedder. Each user's records live in a collection of
/// their own (see [`Memory::collection_name`]), resolved lazily (so a
/// ChromaDB outage never stops start-up) and cached by user.
pub struct Memory {
    pub chroma: ChromaClient,
    embedder: Box<dyn Embedder>,
    /// `CHROMA_COLLECTION`: the prefix of every user's collection name, and
    /// the name of the one shared collection robeing used before.
    prefix: String,
    /// Collection ids by user, each checked for its dimension when opened.
    collections: std::sync::Mutex<HashMap<String, String>>,
    /// Users whose memory added to their latest prompt (see
    /// [`Memory::adds_to_prompts`]).
    adds_to_prompts: std::sync::Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// What [`Memory::retire_shared_collection`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// There is no shared collection (a new install, or retired already).
    Nothing,
    /// Its records were moved to their users' collections and it is deleted.
    Moved { records: usize, dropped: usize },
    /// A collection of that name that robeing did not make: left alone.
    NotOurs,
}

/// The settings robeing makes its collections with (ChromaDB's
/// `configuration`); see [`HNSW_SYNC_THRESHOLD`].
fn collection_configuration() -> Value {
    json!({ "hnsw": { "sync_threshold": HNSW_SYNC_THRESHOLD } })
}

impl Memory {
    /// Memory as configured, or `None` when `CHROMA_URL` is unset.
    pub fn from_config(config: &Config, http: reqwest::Client) -> Option<Arc<Self>> {
        let chroma = config.chroma.as_ref()?;
        let embedder: Box<dyn Embedder> = match &config.embedding {
            Some(e) => Box::new(OpenAiEmbedder::new(http.clone(), e.clone())),
            None => Box::new(LocalEmbedder),
        };
        Some(Arc::new(Self {
            chroma: ChromaClient::new(http, chroma),
            embedder,
            prefix: chroma.collection.clone(),
            collections: std::sync::Mutex::new(HashMap::new()),
            adds_to_prompts: std::sync::Mutex::new(HashSet::new()),
        }))
    }

    /// The name of `user_id`'s collection: `<CHROMA_COLLECTION>_<user id>`
    /// for a Slack-shaped id (letters and digits), else
    /// `<CHROMA_COLLECTION>.<sha-256 of the id>`, which is always a valid
    /// name and cannot be mistaken for the first form.
    ///
    /// One collection per user, not one shared collection filtered by
    /// `user_id`: ChromaDB's filtered query visits the whole shared index,
    /// so every recall grew with the workspace's total memory (13 ms of
    /// ChromaDB CPU at 4,740 records, 32 ms at 20,740; a user's own
    /// collection: 3–5 ms at either size; docs/benchmarks.md).
    pub fn collection_name(&self, user_id: &str) -> String {
        if (1..=64).contains(&user_id.len()) && user_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            format!("{}_{user_id}", self.prefix)
        } else {
            use sha2::Digest as _;
            format!("{}.{}", self.prefix, hex::encode(sha2::Sha256::digest(user_id.as_bytes())))
        }
    }

    /// Whether `name` is one of the users' collections (for `doctor`).
    fn is_user_collection(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix).is_some_and(|rest| rest.starts_with('_') || rest.starts_with('.'))
    }

    /// For `doctor`: the embedder's name and dimension (embedding a probe when
    /// the dimension is not known in advance), and how many users'
    /// collections there are, all checked against that dimension.
    pub async fn verify_dimension(&self) -> anyhow::Result<(String, usize, usize)> {
        let dimension = self.known_dimension().await?;
        let all = chroma::context(self.chroma.list_collections().await, "listing ChromaDB collections")?;
        let mine: Vec<_> = all.iter().filter(|c| self.is_user_collection(&c.name)).collect();
        let wrong: Vec<String> = mine.iter().filter_map(|c| self.check_dimension(c, dimension).err()).collect();
        match wrong.first() {
            None => Ok((self.embedder.name(), dimension, mine.len())),
            Some(first) => anyhow::bail!("{} of {} memory collections do not fit: {first}", wrong.len(), mine.len()),
        }
    }

    /// Refuses a collection recorded with another dimension, with an error
    /// that says what to do.
    fn check_dimension(&self, c: &chroma::Collection, dimension: usize) -> Result<(), String> {
        let recorded = c.metadata.as_ref().and_then(|m| m.get("dimension")).and_then(Value::as_u64);
        let recorded_by = c
            .metadata
            .as_ref()
            .and_then(|m| m.get("embedder"))
            .and_then(Value::as_str)
            .unwrap_or("an unknown embedder");
        match recorded {
            Some(d) if d as usize != dimension => Err(format!(
                "ChromaDB collection `{}` holds {d}-dimensional vectors made by `{recorded_by}`, but this robeing embeds with `{}` ({dimension} dimensions); mixing them would break recall. Fix: set CHROMA_COLLECTION to a new collection name prefix, or restore the EMBEDDING_* settings that made this one",
                c.name,
                self.embedder.name()
            )),
            Some(_) => Ok(()),
            None => {
                tracing::warn!(
                    collection = %c.name,
                    "the ChromaDB collection records no embedding dimension (not made by robeing); using it as is"
                );
                Ok(())
            }
        }
    }

    /// The id of `user_id`'s collection, created on first use and checked
    /// (once per process) that it was made for vectors of `dimension`.
    pub async fn collection(&self, user_id: &str, dimension: usize) -> anyhow::Result<String> {
        if let Some(id) = self.cached().get(user_id) {
            return Ok(id.clone());
        }
        let name = self.collection_name(user_id);
        let mut metadata = serde_json::Map::new();
        metadata.insert("embedder".into(), self.embedder.name().into());
        metadata.insert("dimension".into(), dimension.into());
        metadata.insert("created_by".into(), "robeing".into());
        metadata.insert("user_id".into(), user_id.into());
        let c = chroma::context(
            self.chroma.get_or_create(&name, metadata, collection_configuration()).await,
            &format!("opening ChromaDB collection `{name}`"),
        )?;
        self.check_dimension(&c, dimension).map_err(anyhow::Error::msg)?;
        self.settle_configuration(&c).await;
        self.cached().insert(user_id.to_owned(), c.id.clone());
        Ok(c.id)
    }

    /// Gives a collection made before robeing set [`HNSW_SYNC_THRESHOLD`]
    /// (or by hand) robeing's settings. Failing to is logged and does not
    /// stop the write: the collection works as it is, only slower.
    async fn settle_configuration(&self, c: &chroma::Collection) {
        let found = c.sync_threshold();
        if found == Some(HNSW_SYNC_THRESHOLD) {
            return;
        }
        match self.chroma.update_configuration(&c.id, collection_configuration()).await {
            Ok(()) => tracing::info!(
                collection = %c.name,
                sync_threshold = ?found,
                wanted = HNSW_SYNC_THRESHOLD,
                "ChromaDB collection given robeing's HNSW sync_threshold; ChromaDB applies it from its next restart"
            ),
            Err(e) => tracing::warn!(
                collection = %c.name,
                sync_threshold = ?found,
                wanted = HNSW_SYNC_THRESHOLD,
                error = %e,
                "could not change the ChromaDB collection's HNSW sync_threshold; its writes stay slower as it grows"
            ),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.collections.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        self.embedder.embed(texts).await.context("embedding text for memory")
    }

    /// The dimension used for calls that carry no vector (delete, count).
    async fn known_dimension(&self) -> anyhow::Result<usize> {
        match self.embedder.dimension() {
            Some(d) => Ok(d),
            None => Ok(self.embed(&["dimension probe".to_owned()]).await?.first().map(Vec::len).unwrap_or(0)),
        }
    }

    /// Runs `op` on the user's collection; if ChromaDB no longer knows the
    /// cached collection (deleted, a new server), resolves it again once.
    async fn on_collection<T, F, Fut>(&self, user_id: &str, dimension: usize, op: F) -> anyhow::Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChromaError>>,
    {
        let id = self.collection(user_id, dimension).await?;
        match op(id).await {
            Err(ChromaError::CollectionGone(_)) => {
                self.cached().remove(user_id);
                let id = self.collection(user_id, dimension).await?;
                Ok(op(id).await?)
            }
            other => Ok(other?),
        }
    }

    /// Upserts one replied exchange (id = exchange id).
    pub async fn remember(&self, exchange: &Exchange) -> anyhow::Result<()> {
        self.remember_many(std::slice::from_ref(exchange)).await
    }

    /// Upserts replied exchanges with one embedder call and one ChromaDB
    /// call per user among them (record id = exchange id, so repeating it
    /// never duplicates).
    pub async fn remember_many(&self, exchanges: &[Exchange]) -> anyhow::Result<()> {
        if exchanges.is_empty() {
            return Ok(());
        }
        let documents: Vec<String> = exchanges.iter().map(document_of).collect();
        let vectors = self.embed(&documents).await?;
        anyhow::ensure!(
            vectors.len() == documents.len(),
            "the embedder returned {} vectors for {} texts",
            vectors.len(),
            documents.len()
        );
        let dimension = vectors[0].len();
        anyhow::ensure!(
            vectors.iter().all(|v| v.len() == dimension),
            "the embedder returned vectors of different lengths"
        );
        let mut by_user: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
        for ((exchange, document), embedding) in exchanges.iter().zip(documents).zip(vectors) {
            let mut metadata = serde_json::Map::new();
            metadata.insert("user_id".into(), exchange.user_id.clone().into());
            metadata.insert("channel_id".into(), exchange.channel_id.clone().into());
            metadata.insert("ts".into(), exchange.user_ts.clone().into());
            metadata.insert("received_at".into(), exchange.received_at.to_rfc3339().into());
            metadata.insert("received_at_unix".into(), exchange.received_at.timestamp().into());
            by_user.entry(&exchange.user_id).or_default().push(Record {
                id: exchange.id.to_string(),
                embedding,
                document,
                metadata,
            });
        }
        // A write waits on ChromaDB's disk as much as on its CPU, so a few
        // users' writes go at once.
        let writes: Vec<futures_util::future::BoxFuture<'_, anyhow::Result<()>>> = by_user
            .iter()
            .map(|(user_id, records)| Box::pin(self.upsert_records(user_id, dimension, records)) as _)
            .collect();
        futures_util::stream::iter(writes).buffer_unordered(WRITES_AT_ONCE).try_collect::<()>().await
    }

    async fn upsert_records(&self, user_id: &str, dimension: usize, records: &[Record]) -> anyhow::Result<()> {
        self.on_collection(user_id, dimension, |c| async move { self.chroma.upsert(&c, records).await })
            .await
            .context("upserting exchanges into ChromaDB")
    }

    /// The user's `k` records nearest to `text`.
    pub async fn recall(&self, user_id: &str, text: &str, k: usize) -> anyhow::Result<Vec<Hit>> {
        let vectors = self.embed(&[text.to_owned()]).await?;
        let embedding = vectors.into_iter().next().context("the embedder returned no vector")?;
        let dimension = embedding.len();
        self.on_collection(user_id, dimension, |c| {
            let embedding = &embedding;
            async move { self.chroma.query(&c, embedding, k).await }
        })
        .await
        .context("querying ChromaDB memory")
    }

    /// Whether ChromaDB held something beyond the history for the user's
    /// latest prompt, so that it likely will for their next one: then the
    /// conversation starts that recall while the message is being stored.
    /// A guess that only decides when to ask, never what is asked.
    pub fn adds_to_prompts(&self, user_id: &str) -> bool {
        self.prompt_users().contains(user_id)
    }

    /// Records whether memory could add to the user's prompt just built.
    pub fn note_adds_to_prompts(&self, user_id: &str, adds: bool) {
        let mut users = self.prompt_users();
        if !adds {
            users.remove(user_id);
            return;
        }
        if users.len() >= REMEMBERED_PROMPT_USERS && !users.contains(user_id) {
            // Forgetting the guesses only delays a few recalls.
            users.clear();
        }
        users.insert(user_id.to_owned());
    }

    fn prompt_users(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.adds_to_prompts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes every record of the user: their whole collection.
    pub async fn forget(&self, user_id: &str) -> anyhow::Result<()> {
        let name = self.collection_name(user_id);
        self.cached().remove(user_id);
        self.prompt_users().remove(user_id);
        chroma::context(
            self.chroma.delete_collection(&name).await,
            &format!("deleting the user's ChromaDB collection `{name}`"),
        )
    }

    /// Deletes one user's records by exchange id.
    pub async fn forget_ids(&self, user_id: &str, ids: &[Uuid]) -> anyhow::Result<()> {
        let dimension = self.known_dimension().await?;
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.on_collection(user_id, dimension, |c| {
            let ids = &ids;
            async move { self.chroma.delete_ids(&c, ids).await }
        })
        .await
        .context("deleting records from ChromaDB")
    }

    /// Ids of the user's records (diagnostics and tests).
    pub async fn ids_of(&self, user_id: &str) -> anyhow::Result<Vec<String>> {
        let dimension = self.known_dimension().await?;
        self.on_collection(user_id, dimension, |c| async move { self.chroma.get_ids(&c).await })
            .await
            .context("listing the user's records in ChromaDB")
    }

    /// Moves the records of the one shared collection robeing kept before
    /// per-user collections (named `CHROMA_COLLECTION` itself) into their
    /// users' collections, then deletes it. Only records whose exchange is
    /// still in Postgres move (a user who was forgotten stays forgotten);
    /// embeddings are copied, not recomputed. Safe to repeat after a crash:
    /// upserts are by id, and the shared collection goes last.
    pub async fn retire_shared_collection(&self, db: &sqlx::PgPool) -> anyhow::Result<Retired> {
        /// Records read from the shared collection per call.
        const PAGE: usize = 256;
        let shared = match self.chroma.get_collection(&self.prefix).await {
            Err(ChromaError::CollectionGone(_)) => return Ok(Retired::Nothing),
            other => chroma::context(other, &format!("looking for the shared ChromaDB collection `{}`", self.prefix))?,
        };
        let ours =
            shared.metadata.as_ref().and_then(|m| m.get("created_by")).and_then(Value::as_str) == Some("robeing");
        if !ours {
            return Ok(Retired::NotOurs);
        }
        // Moved records keep their vectors, so they must fit today's embedder.
        let dimension = self.known_dimension().await?;
        self.check_dimension(&shared, dimension).map_err(|e| anyhow::anyhow!("left in place: {e}"))?;
        let (mut records, mut dropped) = (0, 0);
        let mut offset = 0;
        loop {
            let page = chroma::context(
                self.chroma.get_records(&shared.id, PAGE, offset).await,
                "reading the shared ChromaDB collection",
            )?;
            offset += page.len();
            let ids: Vec<Uuid> = page.iter().filter_map(|r| r.id.parse().ok()).collect();
            let live = storage::exchanges::existing_ids(db, &ids).await?;
            let mut by_user: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for r in &page {
                let user = r.metadata.get("user_id").and_then(Value::as_str);
                match (user, r.id.parse::<Uuid>()) {
                    (Some(user), Ok(id)) if live.contains(&id) => {
                        by_user.entry(user.to_owned()).or_default().push(r.clone())
                    }
                    _ => dropped += 1,
                }
            }
            for (user_id, moved) in &by_user {
                self.upsert_records(user_id, dimension, moved).await?;
                records += moved.len();
                // Forgotten while we copied: take them back out.
                let ids: Vec<Uuid> = moved.iter().filter_map(|r| r.id.parse().ok()).collect();
                let kept = storage::exchanges::existing_ids(db, &ids).await?;
                let gone: Vec<Uuid> = ids.into_iter().filter(|id| !kept.contains(id)).collect();
                if !gone.is_empty() {
                    self.forget_ids(user_id, &gone).await?;
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        chroma::context(
            self.chroma.delete_collection(&self.prefix).await,
            &format!("deleting the shared ChromaDB collection `{}`", self.prefix),
        )?;
        Ok(Retired::Moved { records, dropped })
    }
}

/// Whether a memory operation failed because ChromaDB or the embeddings API
/// could not be reached, timed out or was overloaded (5xx, 429): the same
/// request may well succeed later. Otherwise what was asked was refused.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(cause.downcast_ref::<ChromaError>(), Some(ChromaError::Unavailable { .. }))
            || cause.is::<embedder::Unavailable>()
    })
}

/// What memory stores for an exchange: both sides, the user's first, with
/// the start of the text read from the files they sent (at most half the
/// document, so the reply keeps its place).
pub fn document_of(exchange: &Exchange) -> String {
    let files = match &exchange.file_text {
        Some(f) if f.chars().count() > MAX_DOCUMENT_CHARS / 2 => {
            format!("\n{}…", f.chars().take(MAX_DOCUMENT_CHARS / 2).collect::<String>())
        }
        Some(f) => format!("\n{f}"),
        None => String::new(),
    };
    let text =
        format!("user: {}{files}\nrobeing: {}", exchange.user_text, exchange.reply_text.as_deref().unwrap_or(""));
    if text.chars().count() > MAX_DOCUMENT_CHARS { text.chars().take(MAX_DOCUMENT_CHARS).collect() } else { text }
}

/// The `memory_upsert` job of one exchange: its dedupe key and payload. The
/// conversation queues it in the statement that marks the exchange replied
/// ([`storage::exchanges::mark_replied_many`]).
pub fn upsert_job(exchange_id: Uuid) -> (String, Value) {
    (format!("memory:{exchange_id}"), json!({ "exchange_id": exchange_id }))
}

/// Queues the deletion of one user's records (inside the caller's transaction).
pub async fn enqueue_forget(executor: impl sqlx::PgExecutor<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    storage::jobs::enqueue(
        executor,
        FORGET_JOB,
        Some(&format!("forget:{user_id}:{}", Uuid::new_v4())),
        &json!({ "user_id": user_id }),
        None,
    )
    .await
    .map(|_| ())
}

fn memory_of(state: &AppState) -> Result<&Memory, JobError> {
    state.memory.as_deref().ok_or_else(|| {
        JobError::Permanent(anyhow::anyhow!(
            "vector memory is off (CHROMA_URL unset); this job was queued while it was on"
        ))
    })
}

/// The `memory_forget` job: delete one user's records from ChromaDB.
pub async fn run_forget_job(state: &AppState, job: &Job) -> Result<(), JobError> {
    let memory = memory_of(state)?;
    let user_id = job
        .payload
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("memory_forget payload has no user_id")))?;
    memory.forget(user_id).await.map_err(JobError::retry)
}

/// Retires the shared collection of earlier versions
/// ([`Memory::retire_shared_collection`]) once, at start-up, retrying with
/// backoff while ChromaDB or Postgres is down; says what it did in the log.
pub async fn retire_shared_collection(state: Arc<AppState>, shutdown: CancellationToken) {
    let Some(memory) = state.memory.clone() else { return };
    let mut wait = Duration::from_secs(1);
    loop {
        match memory.retire_shared_collection(&state.db).await {
            Ok(Retired::Nothing) => return,
            Ok(Retired::Moved { records, dropped }) => {
                tracing::info!(
                    collection = %memory.prefix,
                    records,
                    dropped,
                    "moved the shared ChromaDB collection of an earlier version into per-user collections and deleted it (records of forgotten exchanges were dropped)"
                );
                return;
            }
            Ok(Retired::NotOurs) => {
                tracing::warn!(
                    collection = %memory.prefix,
                    "a ChromaDB collection named like CHROMA_COLLECTION exists but was not made by robeing; left alone (memories now live in per-user collections named `<CHROMA_COLLECTION>_<user id>`)"
                );
                return;
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                retry_in_secs = wait.as_secs(),
                "could not yet move the shared ChromaDB collection of an earlier version into per-user collections; recall misses those memories until it is done"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(300));
    }
}

/// Logs the memory backlog every [`BACKLOG_LOG_EVERY`] while it is not
/// empty (it is also in `/readyz` under `outbox`).
pub async fn log_backlog(state: Arc<AppState>, shutdown: CancellationToken) {
    if state.memory.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(BACKLOG_LOG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match storage::jobs::backlog(&state.db).await {
            Ok(rows) => {
                for b in rows.iter().filter(|b| b.kind == UPSERT_JOB || b.kind == FORGET_JOB) {
                    if b.pending > 0 || b.dead > 0 {
                        tracing::warn!(
                            kind = %b.kind,
                            pending = b.pending,
                            oldest_age_secs = b.oldest_age_secs.round() as i64,
                            dead = b.dead,
                            "memory backlog: work waiting for ChromaDB"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the memory backlog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_or_overloaded_chromadb_or_embedder_is_unavailable() {
        let unavailable = |e: anyhow::Error| is_unavailable(&e.context("upserting exchanges into ChromaDB"));
        let down = ChromaError::Unavailable { url: "http://127.0.0.1:1".into(), detail: "connection refused".into() };
        assert!(unavailable(anyhow::Error::new(down)));
        let embedder_down = embedder::Unavailable { url: "http://127.0.0.1:1".into(), detail: "answered 503".into() };
        assert!(unavailable(anyhow::Error::new(embedder_down)));
        let refused = ChromaError::Refused { url: "http://127.0.0.1:1".into(), status: 400, detail: "bad id".into() };
        assert!(!unavailable(anyhow::Error::new(refused)));
        assert!(!unavailable(anyhow::Error::new(ChromaError::CollectionGone("c".into()))));
        assert!(!unavailable(anyhow::anyhow!("the embedder returned 2 vectors for 3 texts")));
    }
}
