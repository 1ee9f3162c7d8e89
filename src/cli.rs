//! The command line (operator contract): `serve` (default), `migrate`,
//! `doctor`, `brief`, `status`, `connect-link`, `console`. Each command returns its exit code: 0 success, 1 runtime
//! failure, 2 bad usage or configuration.

use clap::{Parser, Subcommand};

use crate::{
    config::Config,
    error::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK},
    startup::{Application, install_crypto_provider, open_database},
};

#[derive(Debug, Parser)]
#[command(name = "robeing", version, about = "A Slack-native personal assistant")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: HTTP, Socket Mode, scheduler, workers (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the configuration and every dependency; exit 0 only if all required ones work.
    Doctor,
    /// Print a signed, short-lived Gmail connect link for one Slack user.
    ConnectLink {
        /// The Slack user id (U…).
        #[arg(long)]
        user: String,
    },
    /// Build (and unless --dry-run, send) one user's briefing now.
    Brief {
        /// The Slack user id (U…).
        #[arg(long)]
        user: String,
        /// Print the briefing instead of sending it (records nothing).
        #[arg(long)]
        dry_run: bool,
    },
    /// Per user: Slack id, name, time zone, Gmail state, last briefing, stored exchanges.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Talk to robeing in this terminal (the same pipeline and replies as a Slack DM; /brief, /quit).
    Console,
    /// Delete handled Slack events and finished jobs older than RETENTION_DAYS now (serve does it hourly).
    Prune,
    /// Print the text of the document (PDF, Office, OpenDocument) on standard input (run by `serve`
    /// itself, one child per document; `read-pdf` is its name from before it read Office files).
    #[command(hide = true, alias = "read-pdf")]
    ReadDocument,
}

/// Parses arguments (exit 2 on bad usage) and runs the command.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    if let Some(Command::ReadDocument) = cli.command {
        // No runtime, no configuration: bytes in, text out (see `documents`).
        return crate::documents::read_stdin_to_stdout();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("robeing: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(run(cli.command.unwrap_or(Command::Serve)))
}

async fn run(command: Command) -> i32 {
    if let Command::Doctor = command {
        return crate::doctor::run().await;
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("robeing: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    // The console is a conversation on this terminal: only warnings interrupt it unless RUST_LOG says otherwise.
    let quiet = matches!(command, Command::Console) && std::env::var_os("RUST_LOG").is_none();
    crate::telemetry::init(if quiet { "warn" } else { &config.log_filter }, config.log_format);
    // A misspelt setting changes nothing; say so in every command's log.
    for unread in crate::config::unread_in_environment() {
        tracing::warn!(variable = %unread.name, did_you_mean = unread.did_you_mean, "{unread}");
    }
    match command {
        Command::Serve => match Application::build(config).await {
            Ok(app) => match app.run_until_stopped().await {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "robeing stopped with an error");
                    eprintln!("robeing: {e:#}");
                    EXIT_FAILURE
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                eprintln!("robeing: start-up failed: {e}");
                e.exit_code
            }
        },
        Command::Migrate => {
            install_crypto_provider();
            match open_database(&config).await {
                Ok(db) => {
                    println!("migrations applied to {}", db.target);
                    if let Some(pg) = db.embedded {
                        let _ = pg.stop().await;
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("robeing: migrate failed: {e}");
                    e.exit_code
                }
            }
        }
        Command::ConnectLink { user } => connect_link(&config, &user).await,
        Command::Brief { user, dry_run } => brief(config, &user, dry_run).await,
        Command::Status { json } => status(config, json).await,
        Command::Console => crate::console::run(config).await,
        Command::Prune => prune(config).await,
        Command::ReadDocument => crate::documents::read_stdin_to_stdout(),
        Command::Doctor => unreachable!("handled above"),
    }
}

/// The state `brief` and `status` need, without the HTTP server: the
/// database (migrated), the Slack client and the HTTP client.
async fn command_state(
    config: Config,
) -> Result<
    (
        std::sync::Arc<crate::startup::AppState>,
        Option<crate::storage::embedded::EmbeddedPostgres>,
        tokio_util::sync::CancellationToken,
    ),
    crate::startup::StartupError,
> {
    install_crypto_provider();
    let db = open_database(&config).await?;
    let embedded = db.embedded.clone();
    let crate::startup::Assembled { state, shutdown, .. } = crate::startup::assemble(config, db)?;
    Ok((state, embedded, shutdown))
}

/// `robeing brief --user <id> [--dry-run]`.
async fn brief(config: Config, user_id: &str, dry_run: bool) -> i32 {
    let (state, embedded, shutdown) = match command_state(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("robeing: {e}");
            return e.exit_code;
        }
    };
    let code = async {
        let user = match crate::storage::users::get(&state.db, user_id).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                eprintln!(
                    "robeing: unknown Slack user `{user_id}`: robeing knows a user once they have written to it (see `robeing status`)"
                );
                return EXIT_CONFIG;
            }
            Err(e) => {
                eprintln!("robeing: reading user `{user_id}`: {e}");
                return EXIT_FAILURE;
            }
        };
        if dry_run {
            let tz = crate::briefing::scheduler::user_tz(&state, user.tz.as_deref());
            let date = chrono::Utc::now().with_timezone(&tz).date_naive();
            let (_, rendered) = crate::briefing::deliver::build(&state, &user, None, date).await;
            println!("{}", crate::briefing::render::to_terminal(&rendered));
            return EXIT_OK;
        }
        match crate::briefing::deliver::on_demand_for(&state, &user, None, None, "cli").await {
            Ok(done) => {
                println!(
                    "briefing {} delivered to {user_id} ({:?}); email {}, news {}",
                    done.briefing_id,
                    done.via,
                    done.email_status.unwrap_or("-"),
                    done.news_status.unwrap_or("-")
                );
                EXIT_OK
            }
            Err(e) => {
                eprintln!("robeing: {e:#}");
                EXIT_FAILURE
            }
        }
    }
    .await;
    shutdown.cancel();
    state.db.close().await;
    if let Some(pg) = embedded {
        let _ = pg.stop().await;
    }
    code
}

/// Opens the database (connecting, or starting the embedded one), runs
/// `work` on it and closes it again. `Err`: the exit code, after saying why
/// the database could not be opened.
async fn on_database<T, F, Fut>(config: &Config, work: F) -> Result<T, i32>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    install_crypto_provider();
    let db = match open_database(config).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("robeing: {e}");
            return Err(e.exit_code);
        }
    };
    let out = work(db.pool.clone()).await;
    db.pool.close().await;
    if let Some(pg) = db.embedded {
        let _ = pg.stop().await;
    }
    Ok(out)
}

/// `robeing prune`.
async fn prune(config: Config) -> i32 {
    let Some(days) = config.retention_days else {
        println!("retention is off (RETENTION_DAYS=0): nothing pruned");
        return EXIT_OK;
    };
    let pruned = match on_database(&config, |pool| async move { crate::housekeeping::prune(&pool, days).await }).await {
        Ok(pruned) => pruned,
        Err(code) => return code,
    };
    match pruned {
        Ok(p) => {
            println!(
                "pruned {} handled Slack event(s) and {} finished job(s) older than {days} day(s)",
                p.events, p.jobs
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("robeing: pruning: {e}");
            EXIT_FAILURE
        }
    }
}

/// `robeing status [--json]`.
async fn status(config: Config, json: bool) -> i32 {
    let default_tz = config.default_timezone;
    let rows = match on_database(&config, |pool| async move { crate::storage::briefings::status(&pool).await }).await {
        Ok(rows) => rows,
        Err(code) => return code,
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("robeing: reading status: {e}");
            return EXIT_FAILURE;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into()));
        return EXIT_OK;
    }
    let day = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "?".into())
    };
    let mut table = vec![[
        "USER".to_string(),
        "NAME".into(),
        "TZ".into(),
        "GMAIL".into(),
        "LAST BRIEFING".into(),
        "SECTIONS".into(),
        "EXCHANGES".into(),
    ]];
    for r in &rows {
        let gmail = match r.gmail_state.as_deref() {
            Some("connected") => format!("connected since {}", day(r.gmail_since)),
            Some("needs_reconnect") => format!(
                "needs reconnect since {} ({})",
                day(r.gmail_since),
                r.gmail_broken_reason.as_deref().unwrap_or("no reason")
            ),
            _ => "not connected".into(),
        };
        let last = match (&r.last_briefing_status, r.last_briefing_at) {
            (Some(status), at) => {
                let mut s = format!("{} {status} ({})", day(at), r.last_briefing_kind.as_deref().unwrap_or("?"));
                if let Some(reason) = &r.last_briefing_reason {
                    s.push_str(&format!(": {reason}"));
                }
                s
            }
            (None, _) => "never".into(),
        };
        let sections = match (&r.last_email_status, &r.last_news_status) {
            (None, None) => "-".into(),
            (e, n) => format!("email {}, news {}", e.as_deref().unwrap_or("-"), n.as_deref().unwrap_or("-")),
        };
        let tz = r.tz.clone().unwrap_or_else(|| format!("{default_tz} (default)"));
        let name = r.name.clone().unwrap_or_else(|| "-".into());
        let enabled = if r.briefing_enabled { "" } else { " [briefing off]" };
        table.push([r.user_id.clone(), name, tz, gmail, format!("{last}{enabled}"), sections, r.exchanges.to_string()]);
    }
    let widths: Vec<usize> =
        (0..7).map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell}{}", " ".repeat(widths[i] - cell.chars().count())))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.is_empty() {
        println!("(no users yet: a user appears once they write to robeing)");
    }
    EXIT_OK
}

/// `robeing connect-link --user U…`: the seed's "generate the OAuth URL for
/// this user" step, as a signed link that expires (no bare user id in it).
async fn connect_link(config: &Config, user: &str) -> i32 {
    install_crypto_provider();
    let db = match open_database(config).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("robeing: {e}");
            return e.exit_code;
        }
    };
    let known = crate::storage::users::get(&db.pool, user).await;
    if let Some(pg) = db.embedded {
        let _ = pg.stop().await;
    }
    match known {
        Ok(Some(_)) => {}
        Ok(None) => {
            eprintln!(
                "robeing: no Slack user `{user}` is known to robeing (they must have written to it once). Fix: check the id with `robeing status`"
            );
            return EXIT_CONFIG;
        }
        Err(e) => {
            eprintln!("robeing: reading users: {e}");
            return EXIT_FAILURE;
        }
    }
    match crate::google::links::connect_link(config, user) {
        Ok(url) => {
            println!("{url}");
            eprintln!(
                "valid for {} minutes; send it to {user} (it connects the Gmail account they sign in with to their Slack user)",
                crate::google::links::LINK_TTL.num_minutes()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("robeing: {e}. Fix: set GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and TOKEN_ENCRYPTION_KEY");
            EXIT_CONFIG
        }
    }
}
