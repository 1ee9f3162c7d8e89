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
    let embedded = match db {
        Ok(db) => {
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
        match crate::slack::client::SlackApi::new(&config.slack.api_url, token) {
            Ok(slack) => match tokio::time::timeout(Duration::from_secs(5), slack.auth_test()).await {
                Ok(Ok(who)) => report(Line {
                    ok: true,
                    required: true,
                    what: format!("Slack: auth.test ok (team {}, bot user {})", who.team_id, who.user_id),
                    fix: None,
                }),
                Ok(Err(e)) => report(Line {
                    ok: false,
                    required: true,
                    what: format!("Slack: auth.test failed: {e}"),
                    fix: Some(format!("check SLACK_BOT_TOKEN and that {} is reachable", config.slack.api_url)),
                }),
                Err(_) => report(Line {
                    ok: false,
                    required: true,
                    what: format!("Slack: {} did not answer within 5 s", config.slack.api_url),
                    fix: Some("check the network path to Slack (SLACK_API_URL)".into()),
                }),
            },
            Err(e) => report(Line { ok: false, required: true, what: format!("Slack: client: {e:#}"), fix: None }),
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
