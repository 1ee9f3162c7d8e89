//! The test harness: a fresh database per test, fakes on loopback, and
//! [`spawn_app`], which starts the real application on port 0.

use std::{collections::HashMap, process::Output, sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use robeing::{
    config::Config,
    startup::{AppState, Application},
};
use sha2::Sha256;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::fakes::{recorder::Recorder, slack};

pub const SIGNING_SECRET: &str = "test-signing-secret-8f742231b10e";
pub const BOT_TOKEN: &str = "xoxb-test-bot-token-5c1a9e";

/// The server holding test databases (the CI script starts it).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database with a unique name and returns its URL.
pub async fn fresh_database() -> (String, String) {
    let name = format!("robeing_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        sqlx::PgConnection::connect(&admin_url()).await.expect("connect to the test PostgreSQL (TEST_DATABASE_URL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(&name);
    (url.to_string(), name)
}

/// A migrated fresh database.
pub async fn migrated_pool() -> PgPool {
    let (url, _) = fresh_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    robeing::storage::migrate(&pool).await.unwrap();
    pool
}

/// Computes Slack's v0 signature: `v0=` + hex(HMAC-SHA256(secret, "v0:{ts}:{body}")).
pub fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A running application with its fakes.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: PgPool,
    pub db_url: Option<String>,
    /// The running application's state, for calling library entry points.
    pub state: Arc<AppState>,
    pub slack: Recorder,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{}", self.address, path)).send().await.unwrap()
    }

    /// Stops the app gracefully and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }
}

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub struct Options {
    /// Extra or overriding variables.
    pub vars: Vec<(String, String)>,
    /// Run on the embedded default instead of a fresh test database.
    pub embedded_data_dir: Option<std::path::PathBuf>,
}

/// Starts the app against a fresh database and a fake Slack (HTTP transport).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_app_with_slack(options, slack::start().await).await
}

/// [`spawn_app_with`] against a fake Slack the test started itself.
pub async fn spawn_app_with_slack(options: Options, slack: Recorder) -> TestApp {
    robeing::startup::install_crypto_provider();
    let mut vars: HashMap<String, String> = HashMap::new();
    let db_url = match &options.embedded_data_dir {
        Some(dir) => {
            vars.insert("ROBEING_DATA_DIR".into(), dir.display().to_string());
            None
        }
        None => {
            let (url, _) = fresh_database().await;
            vars.insert("DATABASE_URL".into(), url.clone());
            Some(url)
        }
    };
    vars.insert("ROBEING_LISTEN".into(), "127.0.0.1:0".into());
    vars.insert("SLACK_BOT_TOKEN".into(), BOT_TOKEN.into());
    vars.insert("SLACK_SIGNING_SECRET".into(), SIGNING_SECRET.into());
    vars.insert("SLACK_API_URL".into(), slack.url("/api"));
    vars.insert("SLACK_FILES_URL".into(), slack.url(""));
    vars.insert("LOG_FORMAT".into(), "json".into());
    vars.insert("NEWS_FEEDS".into(), "http://127.0.0.1:9/feed.xml".into());
    // Tests drive briefings with injected clocks; a test that wants the loop sets it on.
    vars.insert("BRIEFING_SCHEDULER".into(), "off".into());
    for (k, v) in options.vars {
        vars.insert(k, v);
    }
    let mut config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid");
    // As `Config::load` sets it for the binary: PDFs are read by robeing's own.
    config.document_reader = Some(env!("CARGO_BIN_EXE_robeing").into());
    let app = Application::build(config).await.unwrap_or_else(|e| panic!("app failed to start: {e}"));
    let port = app.port();
    let state = app.state();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db: state.db.clone(),
        db_url,
        state,
        slack,
        http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
        shutdown,
        task,
    }
}

/// Runs the real binary with exactly these environment variables (plus PATH).
pub async fn run_binary(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_robeing"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("LOG_FORMAT", "json").args(args);
    // A temporary working directory so a developer's .env is never read.
    let dir = tempfile::tempdir().unwrap();
    cmd.current_dir(dir.path());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("binary finished within 60 s")
        .unwrap();
    drop(dir);
    out
}

/// Runs the binary like [`run_binary`], writing `input` to its stdin and
/// then closing it (end of input), and collects its output.
pub async fn run_binary_with_stdin(args: &[&str], vars: &[(&str, &str)], input: impl AsRef<[u8]>) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_robeing"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("LOG_FORMAT", "json").args(args);
    let dir = tempfile::tempdir().unwrap();
    cmd.current_dir(dir.path());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_ref()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("binary finished within 60 s")
        .unwrap();
    drop(dir);
    out
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Captured log output (a `MakeWriter` over a shared buffer).
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures this thread's logs as JSON at the operator's default filter
/// (`info`), like production. The test runtime is single-threaded, so the
/// app spawned by the test logs here too.
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    capture_logs_at("info")
}

/// [`capture_logs`] with another filter (`RUST_LOG` syntax).
pub fn capture_logs_at(filter: &str) -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    // While at most one dispatcher is registered, tracing-core computes a
    // new callsite's interest from the *registering thread's* dispatcher
    // alone (`has_just_one`), so another test's thread (no subscriber) could
    // cache "never" for a callsite this test needs. A second, idle
    // dispatcher, alive for the whole run, makes every registration consult
    // all registered dispatchers.
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(logs.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Readings of this machine's `/proc`, for the benchmarks' figures.
pub mod procfs {
    /// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
    pub fn cpu_secs(pid: &str) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
        // Fields after the parenthesised command name; utime and stime are the
        // 12th and 13th (clock ticks, 100 Hz).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Peak resident memory of a process in KiB (`VmHWM`).
    pub fn peak_rss_kib(pid: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
    pub fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }
}
