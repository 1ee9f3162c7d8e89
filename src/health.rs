//! Readiness: one report, one entry per dependency, shared by `GET /readyz`
//! and the start-up summary. An entry is `required` when robeing cannot do its
//! job without it (Postgres, a Slack transport); optional ones (ChromaDB,
//! Google) are reported as degraded without making the process not-ready, but
//! never hidden. The report carries no secrets.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

use crate::startup::AppState;

/// How long one readiness probe may take; a slow dependency counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Socket Mode connection, as the listener last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum SocketModeState {
    Off = 0,
    Connecting = 1,
    Connected = 2,
    /// Slack said `link_disabled`: Socket Mode was turned off for the app.
    LinkDisabled = 3,
    /// The app token was refused.
    InvalidAuth = 4,
}

/// Live flags the transports update and readiness reads.
#[derive(Debug, Default)]
pub struct LiveStatus {
    socket_mode: AtomicU8,
}

impl LiveStatus {
    pub fn set_socket_mode(&self, s: SocketModeState) {
        self.socket_mode.store(s as u8, Ordering::Relaxed);
    }
    pub fn socket_mode(&self) -> SocketModeState {
        match self.socket_mode.load(Ordering::Relaxed) {
            1 => SocketModeState::Connecting,
            2 => SocketModeState::Connected,
            3 => SocketModeState::LinkDisabled,
            4 => SocketModeState::InvalidAuth,
            _ => SocketModeState::Off,
        }
    }
}

/// One dependency's state.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub required: bool,
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
    pub backlog: Vec<crate::storage::jobs::Backlog>,
}

/// Probes every dependency (concurrently, each bounded by [`PROBE_TIMEOUT`]).
pub async fn readiness(state: &AppState) -> Readiness {
    let db = async {
        match tokio::time::timeout(PROBE_TIMEOUT, crate::storage::ping(&state.db)).await {
            Ok(Ok(())) => Check { name: "database", ok: true, required: true, detail: state.db_target.clone() },
            Ok(Err(e)) => {
                Check { name: "database", ok: false, required: true, detail: format!("{}: {e}", state.db_target) }
            }
            Err(_) => Check {
                name: "database",
                ok: false,
                required: true,
                detail: format!("{}: no answer within {:?}", state.db_target, PROBE_TIMEOUT),
            },
        }
    };
    let backlog = async {
        tokio::time::timeout(PROBE_TIMEOUT, crate::storage::jobs::backlog(&state.db)).await.ok().and_then(Result::ok)
    };
    let chroma = chroma_check(state);
    let (db, backlog, chroma) = tokio::join!(db, backlog, chroma);

    let mut checks = vec![db];
    checks.push(slack_check(state));
    checks.push(chroma);
    checks.push(Check {
        name: "google",
        ok: state.config.google.is_some(),
        required: false,
        detail: if state.config.google.is_some() {
            "configured".into()
        } else {
            "off: GOOGLE_CLIENT_ID unset, briefings say Gmail is not configured".into()
        },
    });
    match &backlog {
        Some(rows) => {
            let pending: i64 = rows.iter().map(|b| b.pending).sum();
            let dead: i64 = rows.iter().map(|b| b.dead).sum();
            let oldest = rows.iter().filter(|b| b.pending > 0).map(|b| b.oldest_age_secs).fold(0.0, f64::max);
            checks.push(Check {
                name: "outbox",
                ok: dead == 0 && oldest < 600.0,
                required: false,
                detail: format!("{pending} pending (oldest {oldest:.0} s), {dead} dead"),
            });
        }
        None => checks.push(Check {
            name: "outbox",
            ok: false,
            required: false,
            detail: "unknown: database unreachable".into(),
        }),
    }
    if let Ok(Ok(inactive)) =
        tokio::time::timeout(PROBE_TIMEOUT, crate::storage::users::inactive_teams(&state.db)).await
        && !inactive.is_empty()
    {
        let list: Vec<String> = inactive.iter().map(|(t, why)| format!("{t} ({why})")).collect();
        checks.push(Check {
            name: "workspaces",
            ok: false,
            required: false,
            detail: format!("inactive, outbound work stopped: {}", list.join(", ")),
        });
    }
    let ready = checks.iter().all(|c| c.ok || !c.required);
    Readiness { ready, checks, backlog: backlog.unwrap_or_default() }
}

fn slack_check(state: &AppState) -> Check {
    let socket = state.live.socket_mode();
    let http = state.config.slack.signing_secret.is_some();
    let (ok, detail) = match socket {
        SocketModeState::Off if http => (true, "HTTP Events API (signed requests)".to_owned()),
        SocketModeState::Off => (false, "no transport: set SLACK_APP_TOKEN or SLACK_SIGNING_SECRET".to_owned()),
        SocketModeState::Connecting => (http, "Socket Mode connecting".to_owned()),
        SocketModeState::Connected => (true, "Socket Mode connected".to_owned()),
        SocketModeState::LinkDisabled => (false, "Socket Mode link_disabled: Slack turned Socket Mode off for this app; enable it in the app settings and restart".to_owned()),
        SocketModeState::InvalidAuth => (false, "Socket Mode: SLACK_APP_TOKEN was refused (invalid_auth)".to_owned()),
    };
    Check { name: "slack", ok, required: true, detail }
}

async fn chroma_check(state: &AppState) -> Check {
    let Some(chroma) = &state.config.chroma else {
        return Check {
            name: "chroma",
            ok: false,
            required: false,
            detail: "off: CHROMA_URL unset, no vector memory".into(),
        };
    };
    let url = format!("{}/api/v2/heartbeat", chroma.url);
    match tokio::time::timeout(PROBE_TIMEOUT, state.http.get(&url).send()).await {
        Ok(Ok(r)) if r.status().is_success() => {
            Check { name: "chroma", ok: true, required: false, detail: chroma.url.to_string() }
        }
        Ok(Ok(r)) => Check {
            name: "chroma",
            ok: false,
            required: false,
            detail: format!("{} answered {}", chroma.url, r.status()),
        },
        Ok(Err(e)) => {
            Check { name: "chroma", ok: false, required: false, detail: format!("{} unreachable: {e}", chroma.url) }
        }
        Err(_) => Check {
            name: "chroma",
            ok: false,
            required: false,
            detail: format!("{} no answer within {:?}", chroma.url, PROBE_TIMEOUT),
        },
    }
}

/// Shared handle to the live flags.
pub type Live = Arc<LiveStatus>;
