//! Socket Mode: Slack's events over a WebSocket robeing opens (no public
//! URL needed), when `SLACK_APP_TOKEN` is set.
//!
//! This module owns the connection life cycle and the acknowledgements:
//!
//! - Each `events_api`, `slash_commands` and `interactive` envelope is
//!   recorded through [`crate::pipeline::Ingest`] (the same group commit as
//!   HTTP) and acknowledged with its `envelope_id` only after the commit. If
//!   the commit fails the ack is withheld, and Slack redelivers.
//! - Envelopes on one connection are handled concurrently (each waits for its
//!   group commit), so one slow commit does not serialise the stream.
//! - `disconnect` with `warning`/`refresh_requested`/`too_many_websockets`:
//!   a second connection is opened at once and the old one keeps reading
//!   (and acking) until Slack closes it; duplicates across the two dedupe on
//!   `event_id`. A dropped socket is replaced with backoff.
//! - `link_disabled` (Socket Mode turned off for the app): reconnecting
//!   stops, `/readyz` turns not-ready and one clear error is logged.
//! - `apps.connections.open` answering `invalid_auth` (or another refusal of
//!   the token): same, with its own readiness state.
//!
//! Why not slack-morphism's `SlackClientSocketModeListener`: it hands
//! callbacks re-serialised typed events (not Slack's payload), gives no hook
//! on `disconnect` reasons (so `link_disabled` cannot be seen and it
//! reconnects forever), reports no connection state for readiness, and
//! retries a refused app token every 30 s without telling anyone. The
//! WebSocket protocol is small; owning it is simpler than working around it.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    health::SocketModeState,
    pipeline::Recorded,
    slack::{
        client::{SlackApi, SlackError},
        events::{self, EnvelopeKeys},
    },
    startup::AppState,
    storage::events::NewEvent,
};

/// How long an envelope waits for its commit before the ack is withheld
/// (Slack redelivers an unacknowledged envelope after a few seconds anyway).
pub const RECORD_TIMEOUT: Duration = Duration::from_millis(2500);
/// We ping Slack this often; a connection that shows no sign of life (no
/// frame of any kind, pongs included) for [`SILENCE_LIMIT`] is replaced.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Three missed pings: the connection is dead even if TCP has not noticed.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// After a `disconnect` warning, how long the old connection keeps reading
/// while the new one takes over (Slack closes it ~10 s after the warning).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Reconnect backoff after failures: 1 s doubling to this cap.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lived this long was healthy: its loss is replaced at
/// once. One that drops sooner counts as a failure, so a flapping link backs
/// off instead of hammering `apps.connections.open` (a Tier 1 method).
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What a connection tells the supervisor.
#[derive(Debug)]
enum Report {
    /// `hello` received: the connection is live.
    Hello,
    /// Slack asked us to move (`disconnect` warning/refresh): start another
    /// connection now; this one drains.
    Replace { reason: String },
    /// The connection ended or could not be made; `healthy` when it had
    /// said hello and stayed up for [`STABLE_AFTER`] (replace at once)
    /// rather than failed or flapped (back off).
    Lost { healthy: bool, why: String },
    /// Slack turned Socket Mode off for the app.
    LinkDisabled,
    /// The app token was refused.
    Refused { code: String },
}

/// Runs Socket Mode until `shutdown`, `link_disabled` or a refused token.
pub async fn run(state: Arc<AppState>, app_token: SecretString, shutdown: CancellationToken) {
    let Some(slack) = state.slack.clone() else {
        tracing::error!("Socket Mode needs SLACK_BOT_TOKEN too; not starting it");
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Report>(16);
    let connections = CancellationToken::new();
    let spawn = |delay: Duration| {
        let (state, slack, token, tx, stop) =
            (state.clone(), slack.clone(), app_token.clone(), tx.clone(), connections.child_token());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            connection(state, slack, token, tx, stop).await
        });
    };
    state.live.set_socket_mode(SocketModeState::Connecting);
    spawn(Duration::ZERO);
    let mut failures: u32 = 0;
    loop {
        let report = tokio::select! {
            r = rx.recv() => r,
            _ = shutdown.cancelled() => None,
        };
        let Some(report) = report else { break };
        match report {
            Report::Hello => {
                state.live.set_socket_mode(SocketModeState::Connected);
            }
            Report::Replace { reason } => {
                tracing::info!(reason, "Slack asked robeing to reconnect; opening a new Socket Mode connection");
                spawn(Duration::ZERO);
            }
            Report::Lost { healthy, why } => {
                state.live.set_socket_mode(SocketModeState::Connecting);
                let delay = if healthy {
                    failures = 0;
                    Duration::ZERO
                } else {
                    failures += 1;
                    backoff(failures)
                };
                tracing::warn!(why, retry_in_secs = delay.as_secs_f64(), "Socket Mode connection lost; reconnecting");
                spawn(delay);
            }
            Report::LinkDisabled => {
                state.live.set_socket_mode(SocketModeState::LinkDisabled);
                tracing::error!(
                    "Slack sent `link_disabled`: Socket Mode was turned off for this app. robeing stops reconnecting; /readyz is not ready. Fix: enable Socket Mode in the app's settings (or remove SLACK_APP_TOKEN and use the HTTP Events API), then restart robeing"
                );
                break;
            }
            Report::Refused { code } => {
                state.live.set_socket_mode(SocketModeState::InvalidAuth);
                tracing::error!(
                    code,
                    "SLACK_APP_TOKEN was refused by Slack's apps.connections.open; Socket Mode is off and /readyz is not ready. Fix: create an app-level token (xapp-…) with the connections:write scope on the app's Basic Information page, set SLACK_APP_TOKEN, restart"
                );
                break;
            }
        }
    }
    connections.cancel();
}

/// Backoff before reconnect attempt after `failures` consecutive failures.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// Codes from `apps.connections.open` that mean the token itself is wrong:
/// retrying cannot help.
fn token_refused(code: &str) -> bool {
    matches!(
        code,
        "invalid_auth"
            | "not_authed"
            | "account_inactive"
            | "token_revoked"
            | "not_allowed_token_type"
            | "missing_scope"
    )
}

/// One WebSocket connection: open, read until it ends, report.
async fn connection(
    state: Arc<AppState>,
    slack: SlackApi,
    app_token: SecretString,
    tx: mpsc::Sender<Report>,
    stop: CancellationToken,
) {
    let url = match slack.open_socket_url(&app_token).await {
        Ok(url) => url,
        Err(SlackError::Refused { code, .. }) if token_refused(&code) => {
            let _ = tx.send(Report::Refused { code }).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(Report::Lost { healthy: false, why: e.to_string() }).await;
            return;
        }
    };
    let socket =
        match tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str())).await {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => {
                let _ = tx.send(Report::Lost { healthy: false, why: format!("WebSocket connect: {e}") }).await;
                return;
            }
            Err(_) => {
                let _ = tx.send(Report::Lost { healthy: false, why: "WebSocket connect timed out".into() }).await;
                return;
            }
        };
    let (mut sink, mut stream) = socket.split();
    // Acks come from the envelope tasks; one writer owns the sink.
    let (out, mut outbox) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = outbox.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut said_hello = false;
    let opened = tokio::time::Instant::now();
    let mut replaced = false;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_frame = tokio::time::Instant::now();
    let why = loop {
        let deadline = drain_deadline.unwrap_or_else(|| last_frame + SILENCE_LIMIT);
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = ping.tick() => {
                let _ = out.try_send(Message::Ping(Vec::new().into()));
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {
                break if drain_deadline.is_some() { "drained after disconnect".to_owned() } else { format!("no frame for {SILENCE_LIMIT:?}") };
            }
            _ = stop.cancelled() => break "shutting down".to_owned(),
        };
        last_frame = tokio::time::Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => break "closed by Slack".to_owned(),
            Some(Ok(_)) => continue, // ping/pong/binary: liveness only
            Some(Err(e)) => break format!("WebSocket error: {e}"),
        };
        let envelope: serde_json::Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "Socket Mode frame is not JSON; ignored");
                continue;
            }
        };
        match envelope.get("type").and_then(|t| t.as_str()).unwrap_or_default() {
            "hello" => {
                said_hello = true;
                let _ = tx.send(Report::Hello).await;
            }
            "disconnect" => {
                let reason = envelope.get("reason").and_then(|r| r.as_str()).unwrap_or("unknown").to_owned();
                if reason == "link_disabled" {
                    let _ = tx.send(Report::LinkDisabled).await;
                    replaced = true;
                    break "link_disabled".to_owned();
                }
                if !replaced {
                    replaced = true;
                    let _ = tx.send(Report::Replace { reason }).await;
                }
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
            }
            kind @ ("events_api" | "slash_commands" | "interactive") => {
                let kind = kind.to_owned();
                let (state, out) = (state.clone(), out.clone());
                // One span per envelope, carrying its id (the Socket Mode
                // counterpart of an HTTP request's request_id).
                let id = envelope.get("envelope_id").and_then(|e| e.as_str()).unwrap_or("-").to_owned();
                let span = tracing::info_span!("envelope", envelope_id = %id, kind = %kind);
                tokio::spawn(async move { handle_envelope(&state, &kind, envelope, &out).await }.instrument(span));
            }
            other => tracing::debug!(kind = other, "Socket Mode frame of an unknown type; ignored"),
        }
    };
    drop(out);
    // Let in-flight envelopes finish their acks (their tasks hold senders).
    let _ = tokio::time::timeout(RECORD_TIMEOUT + Duration::from_secs(1), writer).await;
    tracing::debug!(why, "Socket Mode connection closed");
    if !replaced && !stop.is_cancelled() {
        let healthy = said_hello && opened.elapsed() >= STABLE_AFTER;
        let _ = tx.send(Report::Lost { healthy, why }).await;
    }
}

/// Records one envelope's payload and, once it is stored, acknowledges it.
async fn handle_envelope(state: &AppState, kind: &str, envelope: serde_json::Value, out: &mpsc::Sender<Message>) {
    let Some(envelope_id) = envelope.get("envelope_id").and_then(|e| e.as_str()).map(str::to_owned) else {
        tracing::warn!(kind, "Socket Mode envelope without envelope_id; ignored");
        return;
    };
    let retry_num = envelope.get("retry_attempt").and_then(|r| r.as_i64()).and_then(|r| i32::try_from(r).ok());
    let mut payload = envelope.get("payload").cloned().unwrap_or(serde_json::Value::Null);
    events::make_storable(&mut payload);
    let keys: Result<EnvelopeKeys, &str> = match kind {
        "events_api" => events::callback_keys(&payload),
        "slash_commands" => events::command_keys(&payload),
        _ => events::interaction_keys(&payload),
    };
    let mut ack = serde_json::json!({ "envelope_id": envelope_id });
    match keys {
        Err(why) => {
            // A payload that cannot be keyed never will be: ack it so Slack
            // stops resending it, and say so.
            tracing::warn!(kind, why, "Socket Mode payload cannot be recorded; acknowledged and dropped");
        }
        Ok(keys) => {
            let command_ack = crate::http::slack::CommandAck::of(&payload);
            let event = NewEvent {
                event_id: keys.event_id,
                team_id: keys.team_id,
                kind: keys.kind,
                source: "socket_mode",
                retry_num,
                payload,
            };
            match tokio::time::timeout(RECORD_TIMEOUT, state.ingest.record(event)).await {
                Ok(Ok(Recorded::New | Recorded::Duplicate)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, envelope_id, "not acknowledging a Socket Mode envelope: it could not be stored; Slack will redeliver");
                    return;
                }
                Err(_) => {
                    tracing::error!(
                        envelope_id,
                        "not acknowledging a Socket Mode envelope: storing it took too long; Slack will redeliver"
                    );
                    return;
                }
            }
            if let Some(command_ack) = command_ack {
                ack["payload"] = command_ack.answer(state).await;
            }
        }
    }
    let _ = out.send(Message::Text(ack.to_string().into())).await;
}
