//! Building and running the application: [`Application::build`] does every
//! fail-fast step (database connection, migrations, canary, Slack token check,
//! binding the port) and returns something with [`Application::port`], so
//! tests can bind port 0; [`Application::run_until_stopped`] supervises the
//! HTTP server, the ingest committer and the job workers (on their own
//! lower-priority runtime, [`crate::jobs::runtime`]), and on SIGTERM or
//! Ctrl-C stops accepting, drains in-flight work and stops the embedded
//! database if it started one.

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, DatabaseSetting},
    error::{EXIT_CONFIG, EXIT_FAILURE},
    health::{Live, LiveStatus},
    jobs::runtime::BackgroundRuntime,
    pipeline::Ingest,
    slack::client::SlackApi,
    storage::{self, embedded::EmbeddedPostgres},
};

/// Everything a request handler or job needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub db: PgPool,
    /// Where the database is, for messages (no password).
    pub db_target: String,
    pub slack: Option<SlackApi>,
    pub live: Live,
    /// Shared HTTP client for ChromaDB, Google, the LLM and news feeds.
    pub http: reqwest::Client,
    pub ingest: Ingest,
    /// The group commit of received messages.
    pub messages: crate::conversation::recorder::MessageStore,
    /// The group commit of posted replies.
    pub replies: crate::conversation::recorder::ReplyRecorder,
    pub wake_workers: Arc<Notify>,
    /// Told when a reply queued a memory write (`memory::writer`).
    pub wake_memory_writer: Notify,
    /// ChromaDB vector memory; `None` when `CHROMA_URL` is unset.
    pub memory: Option<Arc<crate::memory::Memory>>,
    /// Set only by `robeing console`: replies in the console's channel are
    /// printed there instead of posted to Slack.
    pub console: std::sync::OnceLock<crate::console::Sink>,
    /// The Gmail budget shared by every user's calls (`GMAIL_MAX_REQUESTS_PER_SECOND`).
    pub gmail_budget: Arc<crate::ratelimit::Budget>,
    /// The token vault (`TOKEN_ENCRYPTION_KEY`), built once: deriving its
    /// key ids hashes the keys. `None` when no key is configured.
    pub vault: Option<Arc<crate::google::vault::Vault>>,
}

/// A start-up failure and the exit code it maps to.
#[derive(Debug)]
pub struct StartupError {
    pub exit_code: i32,
    pub error: anyhow::Error,
}

impl StartupError {
    fn config(error: impl Into<anyhow::Error>) -> Self {
        Self { exit_code: EXIT_CONFIG, error: error.into() }
    }
    fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self { exit_code: EXIT_FAILURE, error: error.into() }
    }
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Installs ring as rustls's process-wide crypto provider (our tree has both
/// ring and aws-lc-rs, and rustls refuses to guess). Safe to call repeatedly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The database robeing uses, opened, migrated and proven writable.
pub struct Database {
    pub pool: PgPool,
    pub target: String,
    pub embedded: Option<EmbeddedPostgres>,
}

/// Opens the configured database (starting the embedded one if needed),
/// applies migrations and writes the canary row.
pub async fn open_database(config: &Config) -> Result<Database, StartupError> {
    let (options, embedded) = match &config.database {
        DatabaseSetting::Url(url) => {
            (storage::options_from_url(url.expose_secret()).map_err(StartupError::config)?, None)
        }
        DatabaseSetting::Embedded => {
            let pg = EmbeddedPostgres::start(&config.data_dir).await.map_err(StartupError::config)?;
            (pg.connect_options(), Some(pg))
        }
    };
    let target = storage::Target::of(&options).to_string();
    let t = Instant::now();
    let pool = storage::connect(options).await.map_err(StartupError::config)?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "connected to the database");
    storage::migrate(&pool).await.map_err(StartupError::runtime)?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "migrations applied");
    let instance = format!("{}@{}", std::process::id(), hostname());
    storage::write_canary(&pool, &instance).await.map_err(StartupError::runtime)?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "canary written");
    Ok(Database { pool, target, embedded })
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into())
}

/// The shared state with its ingest committer, built from an opened
/// database. `serve` adds the HTTP listener and the workers; the one-shot
/// commands (`brief`, `status`, `console`) use it as it is.
pub struct Assembled {
    pub state: Arc<AppState>,
    /// Cancelling it stops the ingest committer (after draining).
    pub shutdown: CancellationToken,
    pub ingest_task: tokio::task::JoinHandle<()>,
}

/// Builds the clients (Slack, HTTP, ChromaDB memory) and the ingest
/// committer around an opened database.
pub fn assemble(config: Config, db: Database) -> Result<Assembled, StartupError> {
    let slack = match &config.slack.bot_token {
        Some(token) => Some(
            SlackApi::new(&config.slack.api_url, token)
                .map_err(StartupError::runtime)?
                .with_post_rate(config.slack.max_posts_per_second),
        ),
        None => None,
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("robeing/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
        .map_err(StartupError::runtime)?;
    let shutdown = CancellationToken::new();
    let wake_workers = Arc::new(Notify::new());
    let (ingest, ingest_task) = Ingest::start(db.pool.clone(), wake_workers.clone(), shutdown.child_token());
    let messages = crate::conversation::recorder::MessageStore::start(&db.pool);
    let replies = crate::conversation::recorder::ReplyRecorder::start(&db.pool);
    let live: Live = Arc::new(LiveStatus::default());
    let memory = crate::memory::Memory::from_config(&config, http.clone());
    let config_gmail_rate = config.gmail_max_requests_per_second;
    let vault = crate::google::vault::Vault::from_config(&config).map(Arc::new);
    let state = Arc::new(AppState {
        config: Arc::new(config),
        db: db.pool,
        db_target: db.target,
        slack,
        live,
        http,
        ingest,
        messages,
        replies,
        wake_workers,
        wake_memory_writer: Notify::new(),
        memory,
        console: std::sync::OnceLock::new(),
        gmail_budget: Arc::new(crate::google::gmail::shared_budget(config_gmail_rate)),
        vault,
    });
    Ok(Assembled { state, shutdown, ingest_task })
}

/// A built, not yet running, application.
pub struct Application {
    port: u16,
    listener: TcpListener,
    state: Arc<AppState>,
    embedded: Option<EmbeddedPostgres>,
    shutdown: CancellationToken,
    ingest_task: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Application {
    /// Does every start-up check; fails with the exit code to use.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let started = Instant::now();
        install_crypto_provider();
        config.require_for_serve().map_err(StartupError::config)?;
        let db = open_database(&config).await?;
        warn_if_not_vacuumed(&db.pool).await;
        if let Some(vault) = crate::google::vault::Vault::from_config(&config) {
            vault
                .check_canaries(&db.pool)
                .await
                .map_err(|e| StartupError { exit_code: e.exit_code(), error: e.into() })?;
        }

        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "database ready");
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding ROBEING_LISTEN {}", config.listen))
            .map_err(StartupError::config)?;
        let port = listener.local_addr().map_err(StartupError::runtime)?.port();
        let embedded = db.embedded.clone();
        let Assembled { state, shutdown, ingest_task } = assemble(config, db)?;
        if let Some(slack) = &state.slack {
            check_bot_token(slack, &state.db).await?;
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "Slack token checked");
        Ok(Self { port, listener, state, embedded, shutdown, ingest_task, started })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A token that, when cancelled, shuts the application down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM/Ctrl-C (or the shutdown token), then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { listener, state, embedded, shutdown, ingest_task, started, port } = self;
        for (feature, detail) in state.config.summary() {
            tracing::info!(feature, detail = %detail, "configuration");
        }
        tracing::info!(port, ready_in_ms = started.elapsed().as_millis() as u64, "robeing is ready");

        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing in-flight work");
            signal_token.cancel();
        });

        // Acknowledgements (HTTP, Socket Mode, the ingest committer) stay on
        // this runtime; the work behind them runs on a lower-priority one.
        let background = BackgroundRuntime::start(state.config.job_worker_threads, state.config.job_worker_nice)
            .context("starting the background runtime")?;
        let workers = background.handle().spawn(crate::jobs::run(
            state.clone(),
            state.wake_workers.clone(),
            shutdown.child_token(),
        ));
        let socket_mode =
            state.config.slack.app_token.clone().map(|token| {
                tokio::spawn(crate::slack::socket_mode::run(state.clone(), token, shutdown.child_token()))
            });
        let memory_writer =
            background.handle().spawn(crate::memory::writer::run(state.clone(), shutdown.child_token()));
        background.handle().spawn(crate::memory::log_backlog(state.clone(), shutdown.child_token()));
        background.handle().spawn(crate::memory::retire_shared_collection(state.clone(), shutdown.child_token()));
        background.handle().spawn(crate::memory::catch_up::run(state.clone(), shutdown.child_token()));
        background.handle().spawn(crate::housekeeping::run(state.clone(), shutdown.child_token()));
        let scheduler =
            background.handle().spawn(crate::briefing::scheduler::run(state.clone(), shutdown.child_token()));
        let app = crate::http::router(state.clone());
        let server_token = shutdown.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move { server_token.cancelled().await });
        let served = server.await.context("HTTP server");
        shutdown.cancel();
        let _ = ingest_task.await;
        let _ = workers.await;
        let _ = memory_writer.await;
        if let Some(socket_mode) = socket_mode {
            let _ = socket_mode.await;
        }
        let _ = scheduler.await;
        state.db.close().await;
        drop(background);
        if let Some(pg) = embedded
            && let Err(e) = pg.stop().await
        {
            tracing::error!(error = format!("{e:#}"), "could not stop the embedded PostgreSQL");
        }
        tracing::info!("robeing stopped");
        served
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Says so at start-up when PostgreSQL does not vacuum robeing's queues (the
/// service runs, slower with every event; `robeing doctor` says it too).
async fn warn_if_not_vacuumed(pool: &PgPool) {
    match storage::health::vacuuming(pool).await {
        Ok(v) => {
            if let Some(problem) = v.problem() {
                tracing::warn!(fix = storage::health::VACUUM_FIX, "{problem}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read PostgreSQL's autovacuum settings"),
    }
}

/// `auth.test` at start-up: a refused token is a configuration error; an
/// unreachable Slack is logged and shown in `/readyz`, and start-up goes on
/// (Slack outages must not keep robeing down once Slack returns). An
/// accepted token for a workspace recorded as uninstalled or revoked means it
/// was reinstalled: it is active again, and the log says so.
async fn check_bot_token(slack: &SlackApi, db: &sqlx::PgPool) -> Result<(), StartupError> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), slack.auth_test()).await {
        Ok(Ok(who)) => {
            tracing::info!(team = %who.team_id, bot_user = %who.user_id, "Slack bot token accepted");
            let team = who.team_id.to_string();
            match crate::storage::users::reactivate_team(db, &team).await {
                Ok(Some(reason)) => tracing::warn!(
                    team = %team, was = %reason,
                    "workspace was inactive and its bot token works again (reinstalled): outbound work resumes"
                ),
                Ok(None) => {}
                Err(e) => return Err(StartupError::runtime(e)),
            }
            Ok(())
        }
        Ok(Err(slack_morphism::errors::SlackClientError::ApiError(e))) => Err(StartupError::config(anyhow::anyhow!(
            "SLACK_BOT_TOKEN was refused by Slack's auth.test ({}). Fix: copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page",
            e.code
        ))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Slack auth.test failed; continuing, /readyz will show Slack's state");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Slack auth.test did not answer within 5 s; continuing");
            Ok(())
        }
    }
}
