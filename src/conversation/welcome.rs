//! The first hello: when a person opens robeing's Messages tab before they
//! ever wrote to it, robeing introduces itself there once — who it is, what
//! it can do (the help text), and, when Gmail is configured but not yet
//! connected, the Connect Gmail button — so a new user is not left facing
//! an empty conversation. People robeing already knew are not greeted
//! (migration `20261203000000`).

use serde_json::Value;

use super::{escape, greeting_name};
use crate::{
    google::{self, GmailStatus},
    i18n::{self, chat as strings},
    jobs::JobError,
    slack::client::{Tag, found_or_post},
    startup::AppState,
    storage,
};

/// The Slack message metadata `event_type` of a welcome.
pub const WELCOME_METADATA_EVENT: &str = "robeing_welcome";

/// Posts the welcome in `channel_id` (the user's DM) if the user has never
/// been welcomed and never wrote to robeing. The claim is taken first, so
/// two opens at once greet once; a post that fails gives the claim back and
/// the event is retried.
pub async fn welcome_if_new(state: &AppState, user_id: &str, channel_id: &str) -> Result<(), JobError> {
    if !storage::users::claim_welcome(&state.db, user_id).await? {
        return Ok(());
    }
    match post_welcome(state, user_id, channel_id).await {
        Ok(()) => {
            tracing::info!(user = %user_id, "welcomed a new user in their DM");
            Ok(())
        }
        Err(e) => {
            if let Err(undo) = storage::users::unclaim_welcome(&state.db, user_id).await {
                tracing::warn!(user = %user_id, error = %undo, "could not give back the welcome claim; this user is not greeted");
            }
            Err(e)
        }
    }
}

async fn post_welcome(state: &AppState, user_id: &str, channel_id: &str) -> Result<(), JobError> {
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set; cannot welcome")))?;
    let Some(user) = storage::users::get(&state.db, user_id).await? else { return Ok(()) };
    let lang = i18n::Lang::of_locale(user.locale.as_deref());
    let text = format!(
        "{}\n\n{}",
        strings::welcome(lang, greeting_name(&user)),
        strings::help(lang, state.config.llm.is_some())
    );
    let mut blocks: Vec<Value> = vec![google::prompt::section(&escape(&text))];
    // Gmail configured and never connected: the button now, not at the first briefing.
    if matches!(google::status(state, user_id).await?, GmailStatus::NotConnected) {
        blocks.extend(google::prompt::connect_offer(state, user_id, lang));
    }
    // A retry after a post whose answer was lost finds it instead of greeting twice.
    let tag = Tag { event_type: WELCOME_METADATA_EVENT, key: "user_id", value: user_id, also: &[] };
    if found_or_post(slack.find_tagged(channel_id, None, "0", &tag).await, "welcome")?.is_some() {
        return Ok(());
    }
    slack.post_tagged_message(channel_id, &escape(&text), Some(blocks), None, Some(&tag)).await?;
    Ok(())
}
