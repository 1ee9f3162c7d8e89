//! Configuration: every setting robeing reads, loaded once and validated once.
//!
//! The names are the operator contract (`shared/design/CONTRACT.md`): they are
//! what `.env` files, systemd units and cron jobs use, so they are never
//! renamed, only added to. Values come from the process environment, and from
//! a `.env` file in the working directory when one exists (the environment
//! wins). [`Config::from_lookup`] takes any lookup function so tests can load a
//! configuration without touching the process environment.
//!
//! Validation happens here and only here: a malformed value or an invalid
//! combination is a [`ConfigError`] naming the variable and the fix, and the
//! binary exits with code 2. Secrets are [`SecretString`] from the moment they
//! are read; nothing in this module prints one (see [`Config::summary`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use base64::Engine as _;
use chrono::NaiveTime;
use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

/// Every variable robeing reads, with its default and meaning. The README's
/// configuration table is checked against this list by a test.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("DATABASE_URL", "unset → private embedded PostgreSQL in `ROBEING_DATA_DIR`", "Postgres connection string"),
    (
        "ROBEING_DATA_DIR",
        "`/var/lib/robeing` as root, else `~/.local/share/robeing`",
        "where the embedded PostgreSQL keeps its data",
    ),
    ("ROBEING_LISTEN", "`127.0.0.1:3000`", "HTTP listen address"),
    (
        "ROBEING_PUBLIC_URL",
        "`http://localhost:3000`",
        "externally reachable base URL (OAuth redirect, links in buttons)",
    ),
    ("SLACK_BOT_TOKEN", "required for `serve`", "`xoxb-…` bot token"),
    ("SLACK_APP_TOKEN", "unset → no Socket Mode", "`xapp-…` app-level token; its presence turns Socket Mode on"),
    ("SLACK_SIGNING_SECRET", "unset → HTTP Slack routes answer 503 and say why", "verifies HTTP requests from Slack"),
    ("SLACK_API_URL", "`https://slack.com/api`", "Slack Web API base"),
    (
        "SLACK_FILES_URL",
        "`https://files.slack.com`",
        "where files sent to robeing are downloaded from; the bot token is sent to no other host",
    ),
    (
        "SLACK_MAX_POSTS_PER_SECOND",
        "`5`",
        "workspace-wide budget for bulk `chat.postMessage` (the daily briefings; replies never wait behind it); each channel is also held to Slack's 1/s",
    ),
    ("GOOGLE_CLIENT_ID", "unset → Gmail features off, briefings say so", "OAuth client id for Gmail"),
    ("GOOGLE_CLIENT_SECRET", "required with `GOOGLE_CLIENT_ID`", "OAuth client secret for Gmail"),
    ("GOOGLE_AUTH_URL", "`https://accounts.google.com/o/oauth2/v2/auth`", "authorization endpoint"),
    ("GOOGLE_TOKEN_URL", "`https://oauth2.googleapis.com/token`", "token endpoint"),
    ("GOOGLE_REVOKE_URL", "`https://oauth2.googleapis.com/revoke`", "revocation endpoint"),
    ("GMAIL_API_URL", "`https://gmail.googleapis.com`", "Gmail API base"),
    (
        "GMAIL_MAX_REQUESTS_PER_SECOND",
        "`1000`",
        "budget for Gmail API calls across all users (Google's per-project quota is 20,000 units/s; a call costs 5)",
    ),
    (
        "GMAIL_USER_MAX_REQUESTS_PER_SECOND",
        "`40`",
        "budget for one user's Gmail calls (Google's per-user quota is 250 units/s, 50 calls)",
    ),
    (
        "TOKEN_ENCRYPTION_KEY",
        "required when Google is configured",
        "base64 of 32 random bytes; encrypts OAuth tokens at rest",
    ),
    ("TOKEN_ENCRYPTION_KEY_PREVIOUS", "unset", "the key being rotated out: still decrypts, never encrypts"),
    ("CHROMA_URL", "unset → vector memory off (said at start-up and in `/readyz`)", "ChromaDB server base URL"),
    ("CHROMA_TENANT", "`default_tenant`", "ChromaDB tenant"),
    ("CHROMA_DATABASE", "`default_database`", "ChromaDB database"),
    (
        "CHROMA_COLLECTION",
        "`robeing_memory`",
        "prefix of each user's ChromaDB collection, `<prefix>_<user id>` (one collection per user, so recall cost does not grow with the workspace's history)",
    ),
    ("LLM_BASE_URL", "unset → built-in responder", "OpenAI-compatible chat-completions API base"),
    ("LLM_API_KEY", "unset → no Authorization header", "API key for the LLM"),
    ("LLM_MODEL", "required with `LLM_BASE_URL`", "model name for the LLM"),
    ("LLM_TIMEOUT_SECS", "`25`", "how long one LLM request may take before it is retried"),
    (
        "LLM_IMAGES",
        "`off`",
        "`on` → images sent in a DM (PNG, JPEG, GIF, WebP, up to 10 MB) are shown to the LLM; its model must accept images (OpenAI's `image_url` parts)",
    ),
    ("EMBEDDING_BASE_URL", "unset → built-in local embedder", "OpenAI-compatible embeddings API base"),
    ("EMBEDDING_API_KEY", "unset → no Authorization header", "API key for embeddings"),
    ("EMBEDDING_MODEL", "required with `EMBEDDING_BASE_URL`", "embedding model name"),
    ("NEWS_FEEDS", "a default list (see README)", "comma-separated RSS/Atom URLs"),
    ("BRIEFING_TIME", "`09:00`", "default local time of the briefing"),
    ("BRIEFING_CATCH_UP_HOURS", "`3`", "how late a missed briefing is still sent after a restart"),
    (
        "BRIEFING_SCHEDULER",
        "`on`",
        "`off` → briefings are sent only by `POST /api/cron/daily-summary`, `/brief` and `robeing brief`",
    ),
    ("DEFAULT_TIMEZONE", "`Asia/Seoul`", "time zone when Slack gives none"),
    ("CRON_SECRET", "unset → `POST /api/cron/daily-summary` answers 404", "bearer secret for the cron endpoint"),
    (
        "JOB_WORKER_NICE",
        "`10`",
        "how much lower the job workers' CPU priority is than the threads that acknowledge Slack (0–19; 0 → equal)",
    ),
    (
        "JOB_WORKER_THREADS",
        "half the CPUs, at least 1",
        "threads that run the job workers and the scheduler (1–256); the acknowledgement path keeps its own",
    ),
    (
        "RETENTION_DAYS",
        "`30`",
        "days that handled Slack events and finished jobs are kept (1–3650; `0` → kept for ever); dead jobs and conversations are never pruned",
    ),
    ("RUST_LOG", "`info`", "log filter"),
    ("LOG_FORMAT", "`pretty` on a TTY, else `json`", "`json` or `pretty`"),
];

/// The default news feeds: general headlines in Korean and English.
pub const DEFAULT_NEWS_FEEDS: &[&str] = &[
    "https://www.yna.co.kr/rss/news.xml",
    "https://feeds.bbci.co.uk/news/world/rss.xml",
    "https://hnrss.org/frontpage",
];

/// Default `SLACK_MAX_POSTS_PER_SECOND`. Slack documents `chat.postMessage`
/// as one message per second per channel "while also maintaining a
/// workspace-wide limit" whose figure it does not publish ("several hundred
/// per minute" in practice). 5/s (300 a minute) is the cautious end of that:
/// 10,000 briefings then take about 33 minutes. Raise it where Slack allows
/// more; a 429 is waited out for its `Retry-After` either way.
pub const DEFAULT_SLACK_POSTS_PER_SECOND: f64 = 5.0;
/// Default `GMAIL_MAX_REQUESTS_PER_SECOND`: a quarter of Google's per-project
/// quota (1,200,000 units a minute = 20,000/s; `messages.list` and
/// `messages.get` cost 5 units each, so 4,000 calls/s), leaving room for
/// other replicas and clients of the same OAuth project.
pub const DEFAULT_GMAIL_REQUESTS_PER_SECOND: f64 = 1000.0;
/// Default `GMAIL_USER_MAX_REQUESTS_PER_SECOND`: 80 % of Google's per-user
/// quota (250 units/s = 50 calls/s).
pub const DEFAULT_GMAIL_USER_REQUESTS_PER_SECOND: f64 = 40.0;

/// A configuration problem: which variable, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}. Fix: {fix}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { variable, problem: problem.into(), fix: fix.into() }
    }
}

/// Where Postgres is.
#[derive(Debug, Clone)]
pub enum DatabaseSetting {
    /// `DATABASE_URL` was given.
    Url(SecretString),
    /// No `DATABASE_URL`: run a private PostgreSQL under `ROBEING_DATA_DIR`.
    Embedded,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub bot_token: Option<SecretString>,
    pub app_token: Option<SecretString>,
    pub signing_secret: Option<SecretString>,
    pub api_url: Url,
    /// Where users' files are downloaded from (`SLACK_FILES_URL`): only URLs
    /// under it get the bot token.
    pub files_url: Url,
    /// Workspace-wide `chat.postMessage` budget (`SLACK_MAX_POSTS_PER_SECOND`).
    pub max_posts_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
}

/// A 32-byte AES-256 key, decoded from base64.
pub type EncryptionKey = SecretBox<[u8; 32]>;

#[derive(Debug, Clone)]
pub struct ChromaConfig {
    pub url: Url,
    pub tenant: String,
    pub database: String,
    pub collection: String,
}

/// An OpenAI-compatible API (chat completions or embeddings).
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    pub base_url: Url,
    pub api_key: Option<SecretString>,
    pub model: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The whole configuration, validated.
#[derive(Debug)]
pub struct Config {
    pub database: DatabaseSetting,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub public_url: Url,
    pub slack: SlackConfig,
    pub google: Option<GoogleConfig>,
    pub gmail_api_url: Url,
    /// Gmail calls per second across all users (`GMAIL_MAX_REQUESTS_PER_SECOND`).
    pub gmail_max_requests_per_second: f64,
    /// Gmail calls per second for one user (`GMAIL_USER_MAX_REQUESTS_PER_SECOND`).
    pub gmail_user_max_requests_per_second: f64,
    pub token_encryption_key: Option<EncryptionKey>,
    pub token_encryption_key_previous: Option<EncryptionKey>,
    pub chroma: Option<ChromaConfig>,
    pub llm: Option<OpenAiCompatible>,
    /// One LLM request's timeout (`LLM_TIMEOUT_SECS`).
    pub llm_timeout: Duration,
    /// Images users send are shown to the LLM (`LLM_IMAGES`).
    pub llm_images: bool,
    pub embedding: Option<OpenAiCompatible>,
    pub news_feeds: Vec<Url>,
    pub briefing_time: NaiveTime,
    pub briefing_catch_up: Duration,
    /// Whether `serve` runs the built-in briefing scheduler (`BRIEFING_SCHEDULER`).
    pub briefing_scheduler: bool,
    pub default_timezone: Tz,
    pub cron_secret: Option<SecretString>,
    /// Nice offset of the job workers' threads (`JOB_WORKER_NICE`, 0–19).
    pub job_worker_nice: i32,
    /// Threads of the background runtime (`JOB_WORKER_THREADS`).
    pub job_worker_threads: usize,
    /// How long handled events and finished jobs are kept (`RETENTION_DAYS`;
    /// `None`: for ever).
    pub retention_days: Option<u32>,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// The binary that reads the documents users send (PDFs, Office files),
    /// as `<it> read-document` ([`crate::documents`]): not an environment
    /// variable; [`Config::load`] sets the running binary, and without one
    /// documents are named, not read.
    pub document_reader: Option<PathBuf>,
}

/// An on/off variable (`on`, `true`, `1` / `off`, `false`, `0`), or
/// `default` when unset.
fn on_or_off(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
    fix: &str,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("on" | "true" | "1") => Ok(true),
        Some("off" | "false" | "0") => Ok(false),
        Some(other) => Err(ConfigError::new(name, format!("`{other}` is neither on nor off"), fix)),
    }
}

/// A whole number variable within `range`, if set.
fn whole_number_in<T>(
    name: &'static str,
    value: Option<String>,
    range: std::ops::RangeInclusive<T>,
    fix: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(v) = value else { return Ok(None) };
    match v.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::new(
            name,
            format!("`{v}` is not a whole number from {} to {}", range.start(), range.end()),
            fix,
        )),
    }
}

/// A variable in the environment that robeing does not read but that looks
/// meant for it: a near miss of a name it reads (a typo, the wrong case), or
/// a name under one of its own prefixes. Setting it changes nothing — the
/// LLM stays off, the token stays unset — which no log line would show, so
/// `serve` logs a warning and `robeing doctor` prints one for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadVariable {
    pub name: String,
    /// The variable robeing reads that it is closest to, if any is close.
    pub did_you_mean: Option<&'static str>,
}

impl std::fmt::Display for UnreadVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.did_you_mean {
            Some(known) => write!(f, "{} is set but robeing does not read it; did you mean {known}?", self.name),
            None => {
                write!(f, "{} is set but robeing does not read it (no such setting; README.md lists them)", self.name)
            }
        }
    }
}

/// Prefixes that, in robeing's environment, only robeing's own settings
/// use. (`DATABASE_`, `LOG_`, `JOB_`… are shared with too much else.)
const OWN_PREFIXES: &[&str] =
    &["ROBEING_", "SLACK_", "LLM_", "EMBEDDING_", "CHROMA_", "GMAIL_", "GOOGLE_", "BRIEFING_", "TOKEN_ENCRYPTION_"];

/// Variables under [`OWN_PREFIXES`] that robeing's tests and scripts read,
/// not robeing itself; they are no mistake.
const READ_BY_TOOLS: &[&str] = &["ROBEING_CHROMA_BIN"];

/// The variables among `names` that robeing does not read but that look
/// meant for it (see [`UnreadVariable`]), sorted by name.
pub fn unread_variables(names: impl IntoIterator<Item = String>) -> Vec<UnreadVariable> {
    let known: Vec<&'static str> = VARIABLES.iter().map(|(name, _, _)| *name).collect();
    let mut unread: Vec<UnreadVariable> = names
        .into_iter()
        .filter(|name| !known.contains(&name.as_str()) && !READ_BY_TOOLS.contains(&name.as_str()))
        .filter_map(|name| {
            let upper = name.to_ascii_uppercase();
            let nearest = known
                .iter()
                .map(|k| (edit_distance(&upper, k), *k))
                .min()
                .filter(|(distance, k)| *distance == 0 || (*distance <= 2 && k.len() >= 8));
            let ours = OWN_PREFIXES.iter().any(|p| upper.starts_with(p));
            (nearest.is_some() || ours).then(|| UnreadVariable { name, did_you_mean: nearest.map(|(_, k)| k) })
        })
        .collect();
    unread.sort_by(|a, b| a.name.cmp(&b.name));
    unread
}

/// [`unread_variables`] of the process environment (after `.env` is
/// loaded: [`Config::load`] puts its lines there).
pub fn unread_in_environment() -> Vec<UnreadVariable> {
    unread_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

impl Config {
    /// Loads `.env` (if present) and the environment, then validates.
    pub fn load() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(ConfigError::new(
                    "(.env)",
                    format!("the .env file could not be read: {e}"),
                    "fix the line it names or remove the file",
                ));
            }
        }
        let mut config = Self::from_lookup(|name| std::env::var(name).ok())?;
        config.document_reader = std::env::current_exe().ok();
        Ok(config)
    }

    /// Builds a configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let database = match get("DATABASE_URL") {
            Some(url) => {
                let parsed = Url::parse(&url).map_err(|e| {
                    ConfigError::new(
                        "DATABASE_URL",
                        format!("not a URL ({e})"),
                        "use postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    )
                })?;
                if !matches!(parsed.scheme(), "postgres" | "postgresql") {
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        format!("scheme `{}` is not Postgres", parsed.scheme()),
                        "use postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    ));
                }
                DatabaseSetting::Url(SecretString::from(url))
            }
            None => DatabaseSetting::Embedded,
        };
        let data_dir = get("ROBEING_DATA_DIR").map(PathBuf::from).unwrap_or_else(default_data_dir);

        let listen = match get("ROBEING_LISTEN") {
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "ROBEING_LISTEN",
                    format!("`{v}` is not an address"),
                    "use HOST:PORT, e.g. 127.0.0.1:3000",
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        };
        let public_url = url_var(&get, "ROBEING_PUBLIC_URL", "http://localhost:3000")?;

        let slack = SlackConfig {
            bot_token: prefixed_secret(&get, "SLACK_BOT_TOKEN", "xoxb-")?,
            app_token: prefixed_secret(&get, "SLACK_APP_TOKEN", "xapp-")?,
            signing_secret: get("SLACK_SIGNING_SECRET").map(SecretString::from),
            api_url: api_base_url(&get, "SLACK_API_URL", "https://slack.com/api")?,
            files_url: api_base_url(&get, "SLACK_FILES_URL", "https://files.slack.com")?,
            max_posts_per_second: rate_var(&get, "SLACK_MAX_POSTS_PER_SECOND", DEFAULT_SLACK_POSTS_PER_SECOND)?,
        };

        let google = match (get("GOOGLE_CLIENT_ID"), get("GOOGLE_CLIENT_SECRET")) {
            (Some(client_id), Some(secret)) => Some(GoogleConfig {
                client_id,
                client_secret: SecretString::from(secret),
                auth_url: url_var(&get, "GOOGLE_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth")?,
                token_url: url_var(&get, "GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token")?,
                revoke_url: url_var(&get, "GOOGLE_REVOKE_URL", "https://oauth2.googleapis.com/revoke")?,
            }),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "GOOGLE_CLIENT_SECRET",
                    "GOOGLE_CLIENT_ID is set but GOOGLE_CLIENT_SECRET is missing",
                    "set GOOGLE_CLIENT_SECRET from the same OAuth client, or unset GOOGLE_CLIENT_ID",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "GOOGLE_CLIENT_ID",
                    "GOOGLE_CLIENT_SECRET is set but GOOGLE_CLIENT_ID is missing",
                    "set GOOGLE_CLIENT_ID from the same OAuth client, or unset GOOGLE_CLIENT_SECRET",
                ));
            }
            (None, None) => None,
        };
        let gmail_api_url = api_base_url(&get, "GMAIL_API_URL", "https://gmail.googleapis.com")?;
        let gmail_max_requests_per_second =
            rate_var(&get, "GMAIL_MAX_REQUESTS_PER_SECOND", DEFAULT_GMAIL_REQUESTS_PER_SECOND)?;
        let gmail_user_max_requests_per_second =
            rate_var(&get, "GMAIL_USER_MAX_REQUESTS_PER_SECOND", DEFAULT_GMAIL_USER_REQUESTS_PER_SECOND)?;

        let token_encryption_key =
            get("TOKEN_ENCRYPTION_KEY").map(|v| decode_key("TOKEN_ENCRYPTION_KEY", &v)).transpose()?;
        let token_encryption_key_previous = get("TOKEN_ENCRYPTION_KEY_PREVIOUS")
            .map(|v| decode_key("TOKEN_ENCRYPTION_KEY_PREVIOUS", &v))
            .transpose()?;
        if google.is_some() && token_encryption_key.is_none() {
            return Err(ConfigError::new(
                "TOKEN_ENCRYPTION_KEY",
                "Google is configured but there is no key to encrypt its tokens at rest",
                "set TOKEN_ENCRYPTION_KEY to the output of `openssl rand -base64 32`",
            ));
        }

        let chroma = match get("CHROMA_URL") {
            Some(_) => Some(ChromaConfig {
                url: api_base_url(&get, "CHROMA_URL", "")?,
                tenant: get("CHROMA_TENANT").unwrap_or_else(|| "default_tenant".into()),
                database: get("CHROMA_DATABASE").unwrap_or_else(|| "default_database".into()),
                collection: collection_name(get("CHROMA_COLLECTION"))?,
            }),
            None => None,
        };

        let llm = openai_compatible(&get, "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL")?;
        let llm_timeout = match get("LLM_TIMEOUT_SECS") {
            Some(v) => match v.parse::<u64>() {
                Ok(secs @ 1..=300) => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::new(
                        "LLM_TIMEOUT_SECS",
                        format!("`{v}` is not a whole number of seconds between 1 and 300"),
                        "give the seconds one LLM request may take, e.g. 25",
                    ));
                }
            },
            None => Duration::from_secs(25),
        };
        let embedding = openai_compatible(&get, "EMBEDDING_BASE_URL", "EMBEDDING_API_KEY", "EMBEDDING_MODEL")?;

        let news_feeds = match get("NEWS_FEEDS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Url::parse(s).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(|| {
                        ConfigError::new(
                            "NEWS_FEEDS",
                            format!("`{s}` is not an http(s) URL"),
                            "give comma-separated RSS/Atom URLs",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_NEWS_FEEDS.iter().map(|s| Url::parse(s).expect("default feed URLs are valid")).collect(),
        };

        let briefing_time = match get("BRIEFING_TIME") {
            Some(v) => parse_clock_time(&v).ok_or_else(|| {
                ConfigError::new(
                    "BRIEFING_TIME",
                    format!("`{v}` is not a time of day"),
                    "use HH:MM in 24-hour time, e.g. 09:00",
                )
            })?,
            None => NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a time"),
        };
        let briefing_catch_up = match get("BRIEFING_CATCH_UP_HOURS") {
            Some(v) => match v.parse::<u64>() {
                Ok(h) if h <= 23 => Duration::from_secs(h * 3600),
                _ => {
                    return Err(ConfigError::new(
                        "BRIEFING_CATCH_UP_HOURS",
                        format!("`{v}` is not a whole number of hours from 0 to 23"),
                        "use e.g. 3",
                    ));
                }
            },
            None => Duration::from_secs(3 * 3600),
        };
        let job_worker_nice = whole_number_in(
            "JOB_WORKER_NICE",
            get("JOB_WORKER_NICE"),
            0..=19,
            "use e.g. 10 (0 runs the workers at the same priority as the request threads)",
        )?
        .unwrap_or(crate::jobs::runtime::BACKGROUND_NICE);
        let job_worker_threads = whole_number_in(
            "JOB_WORKER_THREADS",
            get("JOB_WORKER_THREADS"),
            1..=256,
            "use e.g. 1 on a 2-CPU machine, or leave it unset for half the CPUs",
        )?
        .unwrap_or_else(crate::jobs::runtime::default_threads);
        let retention_days = match whole_number_in(
            "RETENTION_DAYS",
            get("RETENTION_DAYS"),
            0..=3650,
            "use e.g. 30 (0 keeps everything for ever)",
        )? {
            None => Some(crate::housekeeping::DEFAULT_RETENTION_DAYS),
            Some(0) => None,
            Some(days) => Some(days),
        };
        let briefing_scheduler = on_or_off(
            &get,
            "BRIEFING_SCHEDULER",
            true,
            "use on (the default) or off (when an external cron calls POST /api/cron/daily-summary)",
        )?;
        let llm_images = on_or_off(
            &get,
            "LLM_IMAGES",
            false,
            "use on (the LLM's model accepts images) or off (the default: images are named, not shown)",
        )?;
        let default_timezone = match get("DEFAULT_TIMEZONE") {
            Some(v) => v.parse::<Tz>().map_err(|_| {
                ConfigError::new(
                    "DEFAULT_TIMEZONE",
                    format!("`{v}` is not an IANA time zone"),
                    "use a name like Asia/Seoul",
                )
            })?,
            None => chrono_tz::Asia::Seoul,
        };

        let log_format = match get("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("`{other}` is not a log format"),
                    "use json or pretty",
                ));
            }
            None => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    LogFormat::Pretty
                } else {
                    LogFormat::Json
                }
            }
        };

        Ok(Self {
            database,
            data_dir,
            listen,
            public_url,
            slack,
            google,
            gmail_api_url,
            gmail_max_requests_per_second,
            gmail_user_max_requests_per_second,
            token_encryption_key,
            token_encryption_key_previous,
            chroma,
            llm,
            llm_timeout,
            llm_images,
            embedding,
            news_feeds,
            briefing_time,
            briefing_catch_up,
            briefing_scheduler,
            retention_days,
            default_timezone,
            cron_secret: get("CRON_SECRET").map(SecretString::from),
            job_worker_nice,
            job_worker_threads,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".into()),
            log_format,
            document_reader: None,
        })
    }

    /// What `serve` cannot run without.
    pub fn require_for_serve(&self) -> Result<(), ConfigError> {
        if self.slack.bot_token.is_none() {
            return Err(ConfigError::new(
                "SLACK_BOT_TOKEN",
                "is required to run `serve`",
                "set it to the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & Permissions page",
            ));
        }
        if self.slack.app_token.is_none() && self.slack.signing_secret.is_none() {
            return Err(ConfigError::new(
                "SLACK_APP_TOKEN",
                "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (HTTP Events API) is set, so no Slack event could reach robeing",
                "set SLACK_APP_TOKEN (xapp-…, Socket Mode) or SLACK_SIGNING_SECRET (HTTP)",
            ));
        }
        Ok(())
    }

    /// One line per feature saying whether it is on; never a secret.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let on_off = |on: bool, detail: String| if on { format!("on ({detail})") } else { format!("off ({detail})") };
        vec![
            (
                "database",
                match &self.database {
                    DatabaseSetting::Url(url) => crate::storage::describe_url(url.expose_secret()),
                    DatabaseSetting::Embedded => format!("embedded PostgreSQL in {}", self.data_dir.display()),
                },
            ),
            ("http", format!("listening on {}, public URL {}", self.listen, self.public_url)),
            ("socket_mode", on_off(self.slack.app_token.is_some(), "SLACK_APP_TOKEN".into())),
            ("http_events", on_off(self.slack.signing_secret.is_some(), "SLACK_SIGNING_SECRET".into())),
            ("slack_api", self.slack.api_url.to_string()),
            ("gmail", on_off(self.google.is_some(), "GOOGLE_CLIENT_ID".into())),
            (
                "llm",
                match &self.llm {
                    Some(l) => format!(
                        "on ({} at {}; images {})",
                        l.model,
                        l.base_url,
                        if self.llm_images { "shown" } else { "named, not shown" }
                    ),
                    None => "off (built-in responder)".into(),
                },
            ),
            (
                "embedder",
                match &self.embedding {
                    Some(e) => format!("{} at {}", e.model, e.base_url),
                    None => "built-in local embedder".into(),
                },
            ),
            (
                "chroma",
                match &self.chroma {
                    Some(c) => format!("on ({} {}/{}/{})", c.url, c.tenant, c.database, c.collection),
                    None => "off (CHROMA_URL unset: no vector memory)".into(),
                },
            ),
            (
                "briefing",
                format!(
                    "{} {} by default, catch-up {} h",
                    self.briefing_time.format("%H:%M"),
                    self.default_timezone,
                    self.briefing_catch_up.as_secs() / 3600
                ),
            ),
            ("news_feeds", format!("{} feeds", self.news_feeds.len())),
            ("cron_endpoint", on_off(self.cron_secret.is_some(), "CRON_SECRET".into())),
            (
                "job_workers",
                format!(
                    "{} thread(s), nice +{} relative to the request threads",
                    self.job_worker_threads, self.job_worker_nice
                ),
            ),
            (
                "retention",
                match self.retention_days {
                    Some(days) => format!("handled events and finished jobs kept {days} days"),
                    None => "everything kept for ever (RETENTION_DAYS=0)".to_owned(),
                },
            ),
        ]
    }
}

/// `/var/lib/robeing` for root (a system service), else the user's data dir.
fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/robeing")
    } else {
        dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("robeing")
    }
}

/// Parses `HH:MM` (or `HH:MM:SS`).
pub fn parse_clock_time(v: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(v, "%H:%M").or_else(|_| NaiveTime::parse_from_str(v, "%H:%M:%S")).ok()
}

fn url_var(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: &str) -> Result<Url, ConfigError> {
    let raw = get(name).unwrap_or_else(|| default.to_owned());
    let url = Url::parse(&raw)
        .map_err(|e| ConfigError::new(name, format!("`{raw}` is not a URL ({e})"), "give an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            name,
            format!("scheme `{}` is not http(s)", url.scheme()),
            "give an absolute http(s) URL",
        ));
    }
    Ok(url)
}

/// A base URL we append paths to: stored without a trailing slash (a trailing
/// slash made slack-morphism request `//users.info`).
fn api_base_url(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: &str) -> Result<Url, ConfigError> {
    let url = url_var(get, name, default)?;
    let trimmed = url.as_str().trim_end_matches('/').to_owned();
    Url::parse(&trimmed).map_err(|e| ConfigError::new(name, format!("not a URL ({e})"), "give an absolute http(s) URL"))
}

/// A positive rate in calls per second (fractions allowed, at most 100,000).
fn rate_var(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: f64) -> Result<f64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => Ok(r),
            _ => Err(ConfigError::new(
                name,
                format!("`{v}` is not a rate above 0 and at most 100000 calls per second"),
                format!("give calls per second, e.g. {default}"),
            )),
        },
    }
}

fn prefixed_secret(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    prefix: &str,
) -> Result<Option<SecretString>, ConfigError> {
    match get(name) {
        Some(v) if v.starts_with(prefix) => Ok(Some(SecretString::from(v))),
        Some(_) => Err(ConfigError::new(
            name,
            format!("does not start with `{prefix}`"),
            format!("copy the `{prefix}…` token from your Slack app's settings"),
        )),
        None => Ok(None),
    }
}

fn decode_key(name: &'static str, value: &str) -> Result<EncryptionKey, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| ConfigError::new(name, "is not valid base64", "use the output of `openssl rand -base64 32`"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        ConfigError::new(
            name,
            format!("decodes to {} bytes, not 32", b.len()),
            "use the output of `openssl rand -base64 32`",
        )
    })?;
    Ok(SecretBox::new(Box::new(key)))
}

fn collection_name(v: Option<String>) -> Result<String, ConfigError> {
    let name = v.unwrap_or_else(|| "robeing_memory".into());
    // Room is left for `_<user id>` or `.<sha-256>` behind it (ChromaDB allows 512).
    let ok = (3..=400).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(name)
    } else {
        Err(ConfigError::new(
            "CHROMA_COLLECTION",
            format!("`{name}` is not a valid ChromaDB collection name"),
            "use 3–400 characters of letters, digits, `.`, `_` and `-`, starting and ending with a letter or digit",
        ))
    }
}

fn openai_compatible(
    get: &impl Fn(&str) -> Option<String>,
    base: &'static str,
    key: &'static str,
    model: &'static str,
) -> Result<Option<OpenAiCompatible>, ConfigError> {
    match (get(base), get(model)) {
        (Some(_), Some(model)) => Ok(Some(OpenAiCompatible {
            base_url: api_base_url(get, base, "")?,
            api_key: get(key).map(SecretString::from),
            model,
        })),
        (Some(_), None) => Err(ConfigError::new(
            model,
            format!("{base} is set but {model} is missing"),
            format!("set {model} to the model name, or unset {base}"),
        )),
        (None, Some(_)) => Err(ConfigError::new(
            base,
            format!("{model} is set but {base} is missing"),
            format!("set {base} to the API's base URL (…/v1), or unset {model}"),
        )),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.public_url.as_str(), "http://localhost:3000/");
        assert_eq!(c.slack.api_url.as_str(), "https://slack.com/api");
        assert_eq!(c.default_timezone, chrono_tz::Asia::Seoul);
        assert_eq!(c.briefing_time.format("%H:%M").to_string(), "09:00");
        assert!(matches!(c.database, DatabaseSetting::Embedded));
        assert!(c.google.is_none() && c.chroma.is_none() && c.llm.is_none());
        assert_eq!(c.news_feeds.len(), DEFAULT_NEWS_FEEDS.len());
        assert_eq!(c.slack.max_posts_per_second, DEFAULT_SLACK_POSTS_PER_SECOND);
        assert_eq!(c.gmail_max_requests_per_second, DEFAULT_GMAIL_REQUESTS_PER_SECOND);
        assert_eq!(c.gmail_user_max_requests_per_second, DEFAULT_GMAIL_USER_REQUESTS_PER_SECOND);
        assert_eq!(c.retention_days, Some(30));
        assert_eq!(load(&[("RETENTION_DAYS", "0")]).unwrap().retention_days, None);
        assert_eq!(load(&[("RETENTION_DAYS", "7")]).unwrap().retention_days, Some(7));
        let tuned = load(&[("SLACK_MAX_POSTS_PER_SECOND", "0.5"), ("GMAIL_MAX_REQUESTS_PER_SECOND", "250")]).unwrap();
        assert_eq!((tuned.slack.max_posts_per_second, tuned.gmail_max_requests_per_second), (0.5, 250.0));
    }

    #[test]
    fn each_error_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ROBEING_LISTEN", "nope")], "ROBEING_LISTEN"),
            (&[("DATABASE_URL", "mysql://x/y")], "DATABASE_URL"),
            (&[("SLACK_BOT_TOKEN", "xapp-1")], "SLACK_BOT_TOKEN"),
            (&[("GOOGLE_CLIENT_ID", "id")], "GOOGLE_CLIENT_SECRET"),
            (&[("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")], "TOKEN_ENCRYPTION_KEY"),
            (&[("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=")], "TOKEN_ENCRYPTION_KEY"),
            (&[("LLM_BASE_URL", "http://127.0.0.1:1/v1")], "LLM_MODEL"),
            (&[("BRIEFING_TIME", "25:00")], "BRIEFING_TIME"),
            (&[("DEFAULT_TIMEZONE", "Mars/Olympus")], "DEFAULT_TIMEZONE"),
            (&[("CHROMA_URL", "http://127.0.0.1:8000"), ("CHROMA_COLLECTION", "a b")], "CHROMA_COLLECTION"),
            (&[("NEWS_FEEDS", "ftp://x")], "NEWS_FEEDS"),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (&[("SLACK_MAX_POSTS_PER_SECOND", "0")], "SLACK_MAX_POSTS_PER_SECOND"),
            (&[("GMAIL_MAX_REQUESTS_PER_SECOND", "fast")], "GMAIL_MAX_REQUESTS_PER_SECOND"),
            (&[("GMAIL_USER_MAX_REQUESTS_PER_SECOND", "-1")], "GMAIL_USER_MAX_REQUESTS_PER_SECOND"),
            (&[("JOB_WORKER_NICE", "20")], "JOB_WORKER_NICE"),
            (&[("JOB_WORKER_NICE", "-5")], "JOB_WORKER_NICE"),
            (&[("JOB_WORKER_THREADS", "0")], "JOB_WORKER_THREADS"),
            (&[("JOB_WORKER_THREADS", "many")], "JOB_WORKER_THREADS"),
            (&[("RETENTION_DAYS", "-1")], "RETENTION_DAYS"),
            (&[("RETENTION_DAYS", "a month")], "RETENTION_DAYS"),
            (&[("RETENTION_DAYS", "3651")], "RETENTION_DAYS"),
            (&[("LLM_IMAGES", "maybe")], "LLM_IMAGES"),
            (&[("BRIEFING_SCHEDULER", "sometimes")], "BRIEFING_SCHEDULER"),
        ];
        for (vars, expected) in cases {
            let err = load(vars).expect_err(expected);
            assert_eq!(err.variable, *expected, "{err}");
            assert!(err.to_string().contains("Fix:"), "{err}");
        }
    }

    #[test]
    fn serve_needs_a_bot_token_and_a_transport() {
        assert_eq!(load(&[]).unwrap().require_for_serve().unwrap_err().variable, "SLACK_BOT_TOKEN");
        let no_transport = load(&[("SLACK_BOT_TOKEN", "xoxb-1")]).unwrap();
        assert_eq!(no_transport.require_for_serve().unwrap_err().variable, "SLACK_APP_TOKEN");
        let ok = load(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_SIGNING_SECRET", "s")]).unwrap();
        assert!(ok.require_for_serve().is_ok());
    }

    #[test]
    fn base_urls_lose_their_trailing_slash() {
        let c = load(&[("SLACK_API_URL", "http://127.0.0.1:9/api/")]).unwrap();
        assert_eq!(c.slack.api_url.as_str(), "http://127.0.0.1:9/api");
    }

    #[test]
    fn summary_never_contains_a_secret() {
        let c = load(&[
            ("DATABASE_URL", "postgres://robeing:hunter2-db@db.internal:5433/main_db"),
            ("SLACK_BOT_TOKEN", "xoxb-secret-bot"),
            ("SLACK_APP_TOKEN", "xapp-secret-app"),
            ("SLACK_SIGNING_SECRET", "signing-secret-value"),
            ("GOOGLE_CLIENT_ID", "client-id"),
            ("GOOGLE_CLIENT_SECRET", "google-secret-value"),
            ("TOKEN_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("CRON_SECRET", "cron-secret-2024"),
            ("LLM_BASE_URL", "http://127.0.0.1:1/v1"),
            ("LLM_MODEL", "m"),
            ("LLM_API_KEY", "llm-key-value"),
        ])
        .unwrap();
        let text = format!("{:?}", c.summary());
        for secret in [
            "hunter2-db",
            "xoxb-secret-bot",
            "xapp-secret-app",
            "signing-secret-value",
            "google-secret-value",
            "cron-secret-2024",
            "llm-key-value",
        ] {
            assert!(!text.contains(secret), "summary leaks {secret}: {text}");
        }
        assert!(text.contains("main_db") && text.contains("db.internal"), "{text}");
        let debug = format!("{c:?}");
        for secret in ["hunter2-db", "xoxb-secret-bot", "cron-secret-2024", "google-secret-value"] {
            assert!(!debug.contains(secret), "Debug leaks {secret}");
        }
    }

    #[test]
    fn variables_robeing_does_not_read_are_named_with_the_nearest_it_does() {
        let env = [
            "SLACK_BOT_TOKNE",
            "llm_model",
            "LLM_BASE_URL",
            "SLACK_CLIENT_ID",
            "DATABASE_HOST",
            "PATH",
            "HOME",
            "LOG_LEVEL",
            "ROBEING_CHROMA_BIN",
            "CHROMA_URI",
            "EMBEDDINGS_MODEL",
        ]
        .map(String::from);
        let found: Vec<(String, Option<&str>)> =
            unread_variables(env).into_iter().map(|u| (u.name, u.did_you_mean)).collect();
        assert_eq!(
            found,
            [
                ("CHROMA_URI".to_owned(), Some("CHROMA_URL")),
                ("EMBEDDINGS_MODEL".to_owned(), Some("EMBEDDING_MODEL")),
                ("SLACK_BOT_TOKNE".to_owned(), Some("SLACK_BOT_TOKEN")),
                ("SLACK_CLIENT_ID".to_owned(), None),
                ("llm_model".to_owned(), Some("LLM_MODEL")),
            ],
            "typos and wrong case get a suggestion; other names under robeing's prefixes are named; \
             what robeing reads, its tools' variables and everyone else's (PATH, DATABASE_HOST, LOG_LEVEL) are not"
        );
        let sentence = UnreadVariable { name: "SLACK_BOT_TOKNE".into(), did_you_mean: Some("SLACK_BOT_TOKEN") };
        assert_eq!(
            sentence.to_string(),
            "SLACK_BOT_TOKNE is set but robeing does not read it; did you mean SLACK_BOT_TOKEN?"
        );
    }
}

#[cfg(test)]
mod documentation_tests {
    use super::VARIABLES;

    /// The README's configuration table and `.env.example` list every variable.
    #[test]
    fn readme_and_env_example_list_every_variable() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
        for (name, default, meaning) in VARIABLES {
            let row = format!("| `{name}` | {meaning} | {default} |");
            assert!(readme.contains(&row), "README.md lacks the row: {row}");
            assert!(example.contains(&format!("{name}=")), ".env.example lacks {name}");
        }
    }
}
