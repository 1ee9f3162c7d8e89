//! Handling a stored inbound event (kind `slack_event` in the job metrics
//! and backlog): its payload, from either transport, is parsed into a
//! [`SlackEvent`] and routed to the module that owns it. The job runner
//! claims events from their own queue (`storage::events`).
//!
//! This module owns what the transport itself does with events: users on
//! first contact (`users.info`) and on `user_change`, workspace lifecycle
//! (`app_uninstalled`, `tokens_revoked` stop outbound work for the team),
//! and the App Home tab. Everything here is idempotent, because a job can
//! run again after a crash: profile upserts and `views.publish` repeat
//! harmlessly, and replies are the conversation module's (it records them).

use anyhow::Context as _;

use crate::{
    i18n::{Lang, home as words},
    jobs::{Done, JobError},
    slack::{
        client::{SlackApi, SlackError, escape_mrkdwn},
        events::{self, BlockAction, Me, SlackEvent, SlashCommand},
    },
    startup::AppState,
    storage::{self, events::Stored, jobs::Job},
};

/// The kind under which inbound events appear in job metrics, the backlog
/// (`/readyz`) and logs.
pub const JOB_KIND: &str = "slack_event";

/// Event kinds that must run even for an inactive workspace (they are what
/// makes it inactive).
const LIFECYCLE_KINDS: [&str; 2] = ["app_uninstalled", "tokens_revoked"];

fn slack(state: &AppState) -> Result<&SlackApi, JobError> {
    state.slack.as_ref().ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set")))
}

fn stopped(team_id: &str, reason: &str) -> JobError {
    JobError::Permanent(anyhow::anyhow!("workspace {team_id} is inactive ({reason}): outbound work for it is stopped"))
}

/// Stops any job of a workspace that is inactive (uninstalled, tokens
/// revoked): it is buried with a `last_error` that says so. A job queued
/// without a team belongs to the bot token's workspace. Inbound events
/// are checked in [`run`], which lets lifecycle events through; briefing
/// deliveries check their user's workspace themselves and record the skip
/// on the briefing.
pub async fn stop_if_team_inactive(state: &AppState, job: &Job) -> Result<(), JobError> {
    if job.kind == crate::briefing::deliver::JOB_KIND {
        return Ok(());
    }
    let team = match &job.team_id {
        Some(team) => Some(team.clone()),
        None => state.slack.as_ref().and_then(|s| s.identity()).map(|i| i.team_id.clone()),
    };
    if let Some(team) = team
        && let Some(reason) = storage::users::inactive_reason(&state.db, &team).await?
    {
        return Err(stopped(&team, &reason));
    }
    Ok(())
}

/// Handles one claimed inbound event (`storage::events::claim` read it,
/// with its workspace's state).
pub async fn run(state: &AppState, stored: &Stored) -> Result<Done, JobError> {
    let event_id = stored.event_id.as_str();
    let kind = stored.kind.as_str();
    let identity = state.slack.as_ref().and_then(|s| s.identity());
    let me = Me { user_id: identity.map(|i| i.user_id.as_str()), bot_id: identity.and_then(|i| i.bot_id.as_deref()) };
    let event = events::parse(event_id, kind, &stored.payload, &me)
        .with_context(|| format!("event {event_id} ({kind}) cannot be acted on"))
        .map_err(JobError::Permanent)?;
    if let Some(team) = team_of(&event)
        && !LIFECYCLE_KINDS.contains(&kind)
    {
        // Read with the event when the envelope names the same workspace.
        let inactive = if stored.team_id.as_deref() == Some(team) {
            stored.team_inactive_reason.clone()
        } else {
            storage::users::inactive_reason(&state.db, team).await?
        };
        if let Some(reason) = inactive {
            return Err(stopped(team, &reason));
        }
    }
    // The event's own span inside the job's: one grep for the event id
    // follows it from the ack (pipeline) through its handling.
    use tracing::Instrument as _;
    route(state, event_id, event).instrument(tracing::info_span!("slack_event", event_id, kind = %kind)).await
}

fn team_of(event: &SlackEvent) -> Option<&str> {
    match event {
        SlackEvent::DirectMessage(m) => Some(&m.team_id),
        SlackEvent::AppHomeOpened { team_id, .. }
        | SlackEvent::MessagesTabOpened { team_id, .. }
        | SlackEvent::UserChanged { team_id, .. }
        | SlackEvent::AppUninstalled { team_id }
        | SlackEvent::TokensRevoked { team_id } => Some(team_id),
        SlackEvent::SlashCommand(c) => Some(&c.team_id),
        SlackEvent::BlockAction(a) => Some(&a.team_id),
        SlackEvent::Ignored { .. } => None,
    }
}

/// Runs the event's handler. A DM's reply records the event handled with
/// the exchange ([`Done::Recorded`]); everything else leaves that to the
/// runner.
async fn route(state: &AppState, event_id: &str, event: SlackEvent) -> Result<Done, JobError> {
    let handled = match event {
        SlackEvent::DirectMessage(msg) => {
            return crate::conversation::handle_message(state, &msg, Some(event_id)).await;
        }
        SlackEvent::AppHomeOpened { team_id, user_id } => {
            ensure_user(state, &team_id, &user_id).await?;
            publish_home(state, &user_id).await
        }
        SlackEvent::MessagesTabOpened { team_id, user_id, channel_id } => {
            ensure_user(state, &team_id, &user_id).await?;
            crate::conversation::welcome::welcome_if_new(state, &user_id, &channel_id).await
        }
        SlackEvent::UserChanged { team_id, user_id } => {
            if storage::users::get(&state.db, &user_id).await?.is_some() {
                refresh_profile(state, &team_id, &user_id).await?;
            }
            Ok(())
        }
        SlackEvent::AppUninstalled { team_id } => deactivate(state, &team_id, "app_uninstalled").await,
        SlackEvent::TokensRevoked { team_id } => deactivate(state, &team_id, "tokens_revoked").await,
        SlackEvent::SlashCommand(cmd) => handle_command(state, &cmd).await,
        SlackEvent::BlockAction(action) => handle_action(state, &action).await,
        SlackEvent::Ignored { reason } => {
            tracing::debug!(reason, "event ignored");
            Ok(())
        }
    };
    handled.map(|()| Done::ByRunner)
}

async fn deactivate(state: &AppState, team_id: &str, reason: &str) -> Result<(), JobError> {
    storage::users::deactivate_team(&state.db, team_id, reason).await?;
    tracing::warn!(team = team_id, reason, "workspace is now inactive; outbound work for it stops");
    Ok(())
}

/// Makes sure the user has a row with a profile, fetching `users.info` the
/// first time robeing meets them.
pub async fn ensure_user(state: &AppState, team_id: &str, user_id: &str) -> Result<(), JobError> {
    match storage::users::get(&state.db, user_id).await? {
        Some(u) if u.profile_fetched_at.is_some() => Ok(()),
        _ => refresh_profile(state, team_id, user_id).await,
    }
}

/// Fetches `users.info` and stores the profile. A profile Slack refuses to
/// give (`user_not_found`, a missing scope) still creates the user, with no
/// names: the conversation must not be lost over a greeting.
pub async fn refresh_profile(state: &AppState, team_id: &str, user_id: &str) -> Result<(), JobError> {
    let profile = match state.slack.as_ref() {
        Some(slack) => match slack.users_info(user_id).await {
            Ok((_, profile)) => profile,
            Err(e @ SlackError::Refused { .. }) => {
                tracing::warn!(user = user_id, error = %e, "users.info refused; storing the user without a profile");
                storage::users::Profile::default()
            }
            Err(e) => return Err(e.into()),
        },
        None => storage::users::Profile::default(),
    };
    let mut tx = state.db.begin().await?;
    storage::users::ensure_team(&mut *tx, team_id).await?;
    storage::users::upsert_profile(&mut *tx, team_id, user_id, &profile).await?;
    tx.commit().await?;
    Ok(())
}

/// The Home tab: who the user is to robeing, their Gmail state, how to use
/// `/brief`, in the user's language. A minimal status view; other modules
/// add to it.
pub fn home_blocks(lang: Lang, name: &str, gmail_state: Option<&str>) -> Vec<serde_json::Value> {
    let section = |text: &str| serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } });
    vec![
        serde_json::json!({ "type": "header", "text": { "type": "plain_text", "text": "robeing" } }),
        section(&words::intro(lang, &escape_mrkdwn(name))),
        section(words::gmail_state(lang, gmail_state)),
        section(words::brief_usage(lang)),
        section(words::your_data(lang)),
        serde_json::json!({
            "type": "actions",
            "block_id": "forget",
            "elements": [{
                "type": "button",
                "action_id": crate::conversation::FORGET_CONFIRM_ACTION,
                "text": { "type": "plain_text", "text": words::forget_button(lang) },
                "style": "danger",
                "value": "forget",
                // Slack's own confirmation step: nothing is deleted unless confirmed.
                "confirm": {
                    "title": { "type": "plain_text", "text": words::forget_confirm_title(lang) },
                    "text": { "type": "mrkdwn", "text": words::forget_confirm_text(lang) },
                    "confirm": { "type": "plain_text", "text": words::forget_button(lang) },
                    "deny": { "type": "plain_text", "text": words::keep(lang) }
                }
            }]
        }),
    ]
}

/// Publishes the Home tab: the summary above, then the Gmail section with
/// its Connect / Reconnect / Disconnect button.
pub async fn publish_home(state: &AppState, user_id: &str) -> Result<(), JobError> {
    let user = storage::users::get(&state.db, user_id).await?;
    let name = user.as_ref().map(|u| u.name().to_owned()).unwrap_or_else(|| user_id.to_owned());
    let gmail = storage::users::gmail_state(&state.db, user_id).await?;
    let lang = Lang::of_locale(user.as_ref().and_then(|u| u.locale.as_deref()));
    let mut blocks = home_blocks(lang, &name, gmail.as_deref());
    if user.is_some() {
        match crate::briefing::home::view(state, user_id, chrono::Utc::now()).await {
            Ok(view) => {
                blocks.push(serde_json::json!({ "type": "divider" }));
                blocks.extend(view["blocks"].as_array().cloned().unwrap_or_default());
            }
            // The Home tab still shows the rest; the failure is logged once here.
            Err(e) => {
                tracing::warn!(user = user_id, error = format!("{e:#}"), "briefing settings left out of App Home")
            }
        }
    }
    blocks.push(serde_json::json!({ "type": "divider" }));
    blocks.extend(crate::google::prompt::home_blocks(state, user_id).await);
    slack(state)?.publish_home(user_id, blocks).await?;
    Ok(())
}

/// Slash commands, after the transport's "preparing…" ack. `/brief`,
/// `/brief email`, `/brief news`: the briefing, delivered to the command's
/// `response_url` (ephemeral), else by DM.
pub async fn handle_command(state: &AppState, command: &SlashCommand) -> Result<(), JobError> {
    match command.command.as_str() {
        "/brief" => {
            ensure_user(state, &command.team_id, &command.user_id).await?;
            let arg = command.text.trim();
            let section = crate::briefing::Section::parse(arg);
            if section.is_none() && !arg.is_empty() {
                tracing::info!(user = %command.user_id, "unknown /brief argument; sending the whole briefing");
            }
            let response_url = Some(command.response_url.clone()).filter(|u| !u.is_empty());
            crate::briefing::on_demand(state, &command.user_id, section, response_url)
                .await
                .map(|_| ())
                .map_err(|e| JobError::retry(anyhow::Error::new(e).context("/brief")))
        }
        other => {
            tracing::warn!(command = other, user = %command.user_id, "slash command with no handler; acknowledged and ignored");
            Ok(())
        }
    }
}

/// Block Kit actions. URL buttons (Reconnect/Connect Gmail) need nothing
/// beyond the transport's ack; Disconnect revokes and republishes Home.
pub async fn handle_action(state: &AppState, action: &BlockAction) -> Result<(), JobError> {
    match action.action_id.as_str() {
        crate::google::prompt::RECONNECT_ACTION => Ok(()),
        crate::google::prompt::DISCONNECT_ACTION => {
            crate::google::prompt::disconnect(state, &action.user_id).await?;
            publish_home(state, &action.user_id).await
        }
        crate::conversation::FORGET_CONFIRM_ACTION | crate::conversation::FORGET_CANCEL_ACTION => {
            let confirmed = action.action_id == crate::conversation::FORGET_CONFIRM_ACTION;
            crate::conversation::handle_forget_action(state, &action.user_id, confirmed).await
        }
        id if id.starts_with("briefing_") => {
            ensure_user(state, &action.team_id, &action.user_id).await?;
            crate::briefing::home::handle_action(
                state,
                &action.user_id,
                id,
                action.value.as_deref(),
                chrono::Utc::now(),
            )
            .await?;
            publish_home(state, &action.user_id).await
        }
        other => {
            tracing::warn!(action = other, user = %action.user_id, "block action with no handler; acknowledged and ignored");
            Ok(())
        }
    }
}
