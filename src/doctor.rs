//! `robeing doctor`: checks the configuration and every dependency, prints
//! one ✓/✗ line per check with the fix, and exits 0 only when every required
//! check passes (1 when a dependency fails, 2 when the configuration does).

use std::time::Duration;

use crate::{
    config::Config,
    error::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK},
    startup::{install_crypto_provider, open_database},
};

struct Line {
    ok: bool,
    required: bool,
    what: String,
    fix: Option<String>,
}

fn print(line: &Line) {
    let mark = if line.ok {
        "✓"
    } else if line.required {
        "✗"
    } else {
        "!"
    };
    println!("{mark} {}", line.what);
    if let (false, Some(fix)) = (line.ok, &line.fix) {
        println!("    fix: {fix}");
    }
}

pub async fn run() -> i32 {
    install_crypto_provider();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            print(&Line {
                ok: false,
                required: true,
                what: format!("configuration: {}: {}", e.variable, e.problem),
                fix: Some(e.fix),
            });
            return EXIT_CONFIG;
        }
    };
    let mut lines = vec![Line { ok: true, required: true, what: "configuration loaded".into(), fix: None }];
    for unread in crate::config::unread_in_environment() {
        lines.push(Line {
            ok: false,
            required: false,
            what: format!("configuration: {unread}"),
            fix: Some(match unread.did_you_mean {
                Some(known) => format!("rename it to {known} (in the environment or .env)"),
                None => "remove it, or see README.md's configuration table for the setting you meant".into(),
            }),
        });
    }
    if let Err(e) = config.require_for_serve() {
        lines.push(Line {
            ok: false,
            required: true,
            what: format!("configuration: {}: {}", e.variable, e.problem),
            fix: Some(e.fix),
        });
    }
    for l in &lines {
        print(l);
    }
    let mut failed = lines.iter().any(|l| !l.ok && l.required);
    let mut report = |line: Line| {
        failed |= !line.ok && line.required;
        print(&line);
    };

    let db = open_database(&config).await;
    let mut pool = None;
    let embedded = match db {
        Ok(db) => {
            pool = Some(db.pool.clone());
            let name = crate::storage::current_database(&db.pool).await.unwrap_or_else(|_| "?".into());
            report(Line {
                ok: true,
                required: true,
                what: format!("PostgreSQL: connected to database `{name}` ({})", db.target),
                fix: None,
            });
            match crate::storage::pending_migrations(&db.pool).await {
                Ok(p) if p.is_empty() => report(Line {
                    ok: true,
                    required: true,
                    what: format!("migrations: all {} applied", crate::storage::MIGRATOR.iter().count()),
                    fix: None,
                }),
                Ok(p) => report(Line {
                    ok: false,
                    required: true,
                    what: format!("migrations: {} pending ({})", p.len(), p.join(", ")),
                    fix: Some("run `robeing migrate`".into()),
                }),
                Err(e) => report(Line {
                    ok: false,
                    required: true,
                    what: format!("migrations: cannot read: {e:#}"),
                    fix: None,
                }),
            }
            report(Line {
                ok: true,
                required: true,
                what: "PostgreSQL: canary row written and read back".into(),
                fix: None,
            });
            db.embedded
        }
        Err(e) => {
            report(Line {
                ok: false,
                required: true,
                what: format!("PostgreSQL: {e}"),
                fix: Some("see the message above; DATABASE_URL decides where robeing connects".into()),
            });
            None
        }
    };

    if let Some(token) = &config.slack.bot_token {
        use crate::slack::scopes;
        match scopes::auth_test(&config.slack.api_url, token, Duration::from_secs(5)).await {
            Ok(who) => {
                report(Line {
                    ok: true,
                    required: true,
                    what: format!("Slack: auth.test ok (team {}, bot user {})", who.team_id, who.user_id),
                    fix: None,
                });
                let required = scopes::required_bot_scopes();
                match &who.scopes {
                    Some(granted) => {
                        let fix = "reinstall the app from manifest.yaml (api.slack.com/apps → your app → App Manifest, then Install App → Reinstall) and put the new token in SLACK_BOT_TOKEN";
                        let missing = scopes::missing(&required, granted);
                        let breaking: Vec<&str> =
                            missing.iter().copied().filter(|s| scopes::degrades_only(s).is_none()).collect();
                        let degrading: Vec<(&str, &str)> = missing
                            .iter()
                            .filter_map(|s| scopes::degrades_only(s).map(|without| (*s, without)))
                            .collect();
                        report(Line {
                            ok: breaking.is_empty(),
                            required: true,
                            what: if missing.is_empty() {
                                format!("Slack: the bot token has all {} scopes manifest.yaml requests", required.len())
                            } else if breaking.is_empty() {
                                format!(
                                    "Slack: the bot token has the {} scopes robeing needs to work",
                                    required.len() - degrading.len()
                                )
                            } else {
                                format!("Slack: the bot token lacks the scope(s) {}", breaking.join(", "))
                            },
                            fix: Some(fix.into()),
                        });
                        for (scope, without) in degrading {
                            report(Line {
                                ok: false,
                                required: false,
                                what: format!("Slack: the bot token lacks the scope {scope}: {without}"),
                                fix: Some(fix.into()),
                            });
                        }
                    }
                    None => report(Line {
                        ok: false,
                        required: false,
                        what: "Slack: auth.test sent no x-oauth-scopes header, so the token's scopes are unknown"
                            .into(),
                        fix: Some(format!("check that SLACK_API_URL ({}) is Slack's Web API", config.slack.api_url)),
                    }),
                }
            }
            Err(e) => report(Line {
                ok: false,
                required: true,
                what: format!("Slack: auth.test failed: {e}"),
                fix: Some(format!("check SLACK_BOT_TOKEN and that {} is reachable", config.slack.api_url)),
            }),
        }
    } // a missing token was already reported by require_for_serve

    // Socket Mode's app token: its listener would only retry a refusal.
    if let (Some(token), Some(app_token)) = (&config.slack.bot_token, &config.slack.app_token)
        && let Ok(slack) = crate::slack::client::SlackApi::new(&config.slack.api_url, token)
    {
        let fix = "create an app-level token (xapp-…) with the connections:write scope on the app's Basic Information page and set SLACK_APP_TOKEN; check that Socket Mode is enabled";
        let (ok, what) = match tokio::time::timeout(Duration::from_secs(5), slack.open_socket_url(app_token)).await {
            Ok(Ok(_)) => (true, "Slack Socket Mode: apps.connections.open ok (SLACK_APP_TOKEN accepted)".to_owned()),
            Ok(Err(e)) => (false, format!("Slack Socket Mode: {e}")),
            Err(_) => (false, format!("Slack Socket Mode: {} did not answer within 5 s", config.slack.api_url)),
        };
        report(Line { ok, required: true, what, fix: (!ok).then(|| fix.to_owned()) });
    }

    match &config.chroma {
        Some(chroma) => {
            let url = format!("{}/api/v2/heartbeat", chroma.url);
            let ok = match reqwest::Client::new().get(&url).timeout(Duration::from_secs(3)).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            match ok {
                Ok(()) => report(Line {
                    ok: true,
                    required: true,
                    what: format!("ChromaDB: heartbeat ok at {}", chroma.url),
                    fix: None,
                }),
                Err(e) => report(Line {
                    ok: false,
                    required: true,
                    what: format!("ChromaDB: {} unreachable: {e}", chroma.url),
                    fix: Some(
                        "start ChromaDB (`chroma run`), fix CHROMA_URL, or unset it to run without vector memory"
                            .into(),
                    ),
                }),
            }
        }
        None => report(Line {
            ok: false,
            required: false,
            what: "ChromaDB: off (CHROMA_URL unset): no vector memory".into(),
            fix: Some("set CHROMA_URL to enable memory".into()),
        }),
    }

    // Documents users send are read by this binary run as a child process.
    let reader_fix = "PDFs and Office files users send are named, not read: the binary must be able to run itself (`robeing read-document`); check that it is executable and not replaced while running";
    match &config.document_reader {
        Some(reader) => match crate::documents::text_of(reader, &crate::documents::pdf::simple(&["robeing doctor"]))
            .await
        {
            Ok(text) if text.contains("robeing doctor") => report(Line {
                ok: true,
                required: false,
                what: format!("PDF reader: `{} read-document` read a test PDF", reader.display()),
                fix: None,
            }),
            other => report(Line {
                ok: false,
                required: false,
                what: format!("PDF reader: `{} read-document` could not read a test PDF ({other:?})", reader.display()),
                fix: Some(reader_fix.into()),
            }),
        },
        None => report(Line {
            ok: false,
            required: false,
            what: "PDF reader: the path of this binary is unknown".into(),
            fix: Some(reader_fix.into()),
        }),
    }
    if config.google.is_none() {
        report(Line {
            ok: false,
            required: false,
            what: "Google: off (GOOGLE_CLIENT_ID unset): briefings will say Gmail is not configured".into(),
            fix: Some(
                "register an OAuth client and set GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, TOKEN_ENCRYPTION_KEY".into(),
            ),
        });
    }

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    if let (Some(vault), Some(pool)) = (crate::google::vault::Vault::from_config(&config), &pool) {
        match vault.verify_canaries(pool).await {
            Ok(ids) => report(Line {
                ok: true,
                required: true,
                what: format!("token encryption key: stored canaries decrypt (key ids: {})", ids.join(", ")),
                fix: None,
            }),
            Err(e) => report(Line {
                ok: false,
                required: true,
                what: format!("token encryption key: {e}"),
                fix: Some("set TOKEN_ENCRYPTION_KEY to the key the tokens were stored with (put a new key in TOKEN_ENCRYPTION_KEY and the old one in TOKEN_ENCRYPTION_KEY_PREVIOUS to rotate)".into()),
            }),
        }
    }
    if let Some(google) = &config.google {
        // Any HTTP answer (Google says 400 to an empty request) means the
        // endpoint is reachable; only a network failure is a problem.
        match http.post(google.token_url.as_str()).form(&[("grant_type", "refresh_token")]).send().await {
            Ok(r) => report(Line {
                ok: true,
                required: true,
                what: format!("Google: token endpoint {} reachable (HTTP {})", google.token_url, r.status().as_u16()),
                fix: None,
            }),
            Err(e) => report(Line {
                ok: false,
                required: true,
                what: format!("Google: token endpoint {} unreachable: {e}", google.token_url),
                fix: Some("check the network path to Google (GOOGLE_TOKEN_URL)".into()),
            }),
        }
    }
    if let Some(llm) = &config.llm {
        let mut request = http.get(format!("{}/models", llm.base_url));
        if let Some(key) = &llm.api_key {
            request = request.bearer_auth(secrecy::ExposeSecret::expose_secret(key));
        }
        match request.send().await {
            Ok(r)
                if r.status() == reqwest::StatusCode::UNAUTHORIZED || r.status() == reqwest::StatusCode::FORBIDDEN =>
            {
                report(Line {
                    ok: false,
                    required: true,
                    what: format!("LLM: {} refused the key (HTTP {})", llm.base_url, r.status().as_u16()),
                    fix: Some("check LLM_API_KEY".into()),
                })
            }
            Ok(r) => report(Line {
                ok: true,
                required: true,
                what: format!("LLM: {} reachable (HTTP {}), model {}", llm.base_url, r.status().as_u16(), llm.model),
                fix: None,
            }),
            Err(e) => report(Line {
                ok: false,
                required: true,
                what: format!("LLM: {} unreachable: {e}", llm.base_url),
                fix: Some("check LLM_BASE_URL, or unset it to use the built-in responder".into()),
            }),
        }
    }
    if let Some(memory) = crate::memory::Memory::from_config(&config, http.clone()) {
        match memory.verify_dimension().await {
            Ok((name, dimension, collections)) => report(Line {
                ok: true,
                required: true,
                what: format!(
                    "ChromaDB: {collections} users' memory collections, all matching the embedder ({name}, {dimension} dimensions)"
                ),
                fix: None,
            }),
            Err(e) => report(Line {
                ok: false,
                required: true,
                what: format!("ChromaDB: {e:#}"),
                fix: Some("use the embedder the collections were made with, or a new CHROMA_COLLECTION prefix".into()),
            }),
        }
    }
    if let Some(pool) = &pool {
        report(vacuum_line(pool).await);
        for line in data_health(pool, &config).await {
            report(line);
        }
    }

    if let Some(pg) = embedded {
        let _ = pg.stop().await;
    }
    if failed {
        println!("\ndoctor: some required checks failed");
        EXIT_FAILURE
    } else {
        println!("\ndoctor: all required checks passed");
        EXIT_OK
    }
}

/// Whether PostgreSQL vacuums robeing's queues by itself. A warning (`!`):
/// robeing works meanwhile, slower with every event.
async fn vacuum_line(pool: &sqlx::PgPool) -> Line {
    match crate::storage::health::vacuuming(pool).await {
        Ok(v) => match v.problem() {
            Some(problem) => {
                Line { ok: false, required: false, what: problem, fix: Some(crate::storage::health::VACUUM_FIX.into()) }
            }
            None => Line {
                ok: true,
                required: false,
                what: "PostgreSQL: autovacuum on for robeing's queues".into(),
                fix: None,
            },
        },
        Err(e) => {
            Line { ok: false, required: false, what: format!("PostgreSQL: cannot read autovacuum: {e}"), fix: None }
        }
    }
}

/// Work that exhausted its attempts, per kind (inbound events as
/// `slack_event`): each one is something that did not happen.
async fn dead_jobs(pool: &sqlx::PgPool) -> Line {
    let rows = match crate::storage::jobs::backlog(pool).await {
        Ok(rows) => rows,
        Err(e) => return Line { ok: false, required: false, what: format!("outbox: cannot read: {e}"), fix: None },
    };
    let dead: Vec<String> = rows.iter().filter(|b| b.dead > 0).map(|b| format!("{} {}", b.dead, b.kind)).collect();
    if dead.is_empty() {
        return Line { ok: true, required: false, what: "outbox: no dead jobs".into(), fix: None };
    }
    Line {
        ok: false,
        required: false,
        what: format!("outbox: dead jobs: {}", dead.join(", ")),
        fix: Some(
            "each says why in `last_error` (docs/operations.md \"Dead jobs\"); dead memory writes are queued again at the next start; delete the ones you have dealt with to clear this line"
                .into(),
        ),
    }
}

/// Data health: what the seed's operator had to find with hand-written SQL.
/// Warnings (`!`), not failures: the service works, people need attention.
async fn data_health(pool: &sqlx::PgPool, config: &Config) -> Vec<Line> {
    let mut lines = Vec::new();
    let health = crate::storage::health::data_health(pool, config.default_timezone).await;
    let h = match health {
        Ok(h) => h,
        Err(e) => {
            lines.push(Line { ok: false, required: false, what: format!("data health: cannot read: {e}"), fix: None });
            return lines;
        }
    };
    if h.needs_reconnect.is_empty() {
        lines.push(Line {
            ok: true,
            required: false,
            what: "Gmail: no connection needs reconnecting".into(),
            fix: None,
        });
    } else {
        lines.push(Line {
            ok: false,
            required: false,
            what: format!("Gmail: {} need reconnecting: {}", h.needs_reconnect.len(), h.needs_reconnect.join("; ")),
            fix: Some(
                "they were DMed a Reconnect button; `robeing connect-link --user <id>` prints a fresh link".into(),
            ),
        });
    }
    if config.chroma.is_some() {
        lines.push(Line {
            ok: h.not_in_memory == 0,
            required: false,
            what: format!("ChromaDB: {} replied exchanges not yet in memory", h.not_in_memory),
            fix: Some(
                "each has a write queued, retried for as long as ChromaDB is unavailable (the backlog is in /readyz); those without one (replied while memory was off, or refused by ChromaDB until their last attempt) are queued again when robeing starts"
                    .into(),
            ),
        });
    }
    lines.push(dead_jobs(pool).await);
    lines.push(Line {
        ok: h.failed_exchanges == 0,
        required: false,
        what: format!("exchanges: {} stored, {} failed (the user got an apology)", h.exchanges, h.failed_exchanges),
        fix: Some("see `robeing status` and the logs for the reason".into()),
    });
    lines.push(Line {
        ok: h.briefings_not_delivered == 0 && h.briefings_incomplete == 0,
        required: false,
        what: format!(
            "briefings today: {} delivered ({} incomplete), {} not delivered",
            h.briefings_delivered, h.briefings_incomplete, h.briefings_not_delivered
        ),
        fix: Some(
            "`robeing status` shows which users and sections; `robeing brief --user <id>` sends one again".into(),
        ),
    });
    lines
}
