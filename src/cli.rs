//! The command line (operator contract): `serve` (default), `migrate`,
//! `doctor`. Each command returns its exit code: 0 success, 1 runtime
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
    crate::telemetry::init(&config.log_filter, config.log_format);
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
        Command::Doctor => unreachable!("handled above"),
    }
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
