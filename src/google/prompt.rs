//! What the user sees of their Gmail connection: the Reconnect prompt (a
//! Block Kit DM with a **Reconnect Gmail** URL button to a fresh signed
//! link), the connect prompt for someone who never connected, the single
//! reminder before the next briefing, the App Home section, the answer to a
//! "reconnect gmail" DM ([`connection_reply`]), and disconnect.
//!
//! One prompt per breakage: a breakage queues one `gmail_reconnect_prompt`
//! job (dedupe key `reconnect:<user>:<broken_at>`), and the job records where
//! it posted (`reconnect_prompt_channel`/`_ts`) so a later success updates
//! that message in place instead of leaving a stale button behind.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use super::{GmailStatus, RECONNECT_PROMPT_JOB, links, vault::Purpose};
use crate::{
    i18n::{self, Lang, gmail as words},
    jobs::JobError,
    slack::client::{Tag, escape_mrkdwn, found_or_post},
    startup::AppState,
    storage,
};

/// How often a user who never connected Gmail is offered the connect button
/// when they ask for something that needs it: once a day is a reminder,
/// more would be nagging.
pub const CONNECT_PROMPT_INTERVAL: chrono::Duration = chrono::Duration::hours(24);

/// The `action_id` of the App Home Disconnect button (routed by the lead).
pub const DISCONNECT_ACTION: &str = "gmail_disconnect";
/// The `action_id` of the Reconnect/Connect URL buttons (Slack still sends a
/// `block_actions` payload for URL buttons; it only needs an ack).
pub const RECONNECT_ACTION: &str = "gmail_reconnect";

/// Opens the user's DM and posts a message. Returns (channel, ts).
/// The one place this module posts to Slack, through the transport's client
/// (pacing, 429 handling).
pub async fn post_dm(
    state: &AppState,
    user_id: &str,
    text: &str,
    blocks: Vec<Value>,
) -> anyhow::Result<(String, String)> {
    let slack = state.slack.as_ref().context("Slack is not configured")?;
    let channel = slack.open_dm(user_id).await.context("opening the DM (conversations.open)")?;
    let ts =
        slack.post_message(&channel, text, Some(blocks), None).await.context("posting the DM (chat.postMessage)")?;
    Ok((channel, ts))
}

/// Replaces an earlier message (chat.update).
pub async fn update_message(
    state: &AppState,
    channel: &str,
    ts: &str,
    text: &str,
    blocks: Vec<Value>,
) -> anyhow::Result<()> {
    let slack = state.slack.as_ref().context("Slack is not configured")?;
    slack.update_message(channel, ts, text, Some(blocks)).await.context("updating the message (chat.update)")?;
    Ok(())
}

/// Posts a plain notice (a callback outcome) to the user; failures are logged.
pub async fn notify(state: &AppState, user_id: &str, text: &str) {
    let blocks = vec![section(text)];
    if let Err(e) = post_dm(state, user_id, text, blocks).await {
        tracing::warn!(user_id, error = format!("{e:#}"), "could not DM the user about their Gmail connection");
    }
}

/// Posts a notice with a fresh Connect Gmail button, in the user's language.
pub async fn notify_with_button(state: &AppState, user_id: &str, text: impl Fn(Lang) -> String) {
    let lang = i18n::user_lang(&state.db, user_id).await;
    let text = &text(lang);
    let mut blocks = vec![section(text)];
    if let Ok(url) = links::connect_link(&state.config, user_id) {
        blocks.push(button_row(words::connect_button(lang), url.as_str()));
    }
    if let Err(e) = post_dm(state, user_id, text, blocks).await {
        tracing::warn!(user_id, error = format!("{e:#}"), "could not DM the user about their Gmail connection");
    }
}

/// A Block Kit section of mrkdwn `text` (already escaped where it must be).
pub fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

fn button_row(label: &str, url: &str) -> Value {
    json!({
        "type": "actions",
        "block_id": "gmail_connection",
        "elements": [{
            "type": "button",
            "action_id": RECONNECT_ACTION,
            "text": { "type": "plain_text", "text": label },
            "style": "primary",
            "url": url
        }]
    })
}

/// A time Slack shows in the reader's own time zone.
fn slack_date(t: DateTime<Utc>) -> String {
    format!("<!date^{}^{{date_short_pretty}} {{time}}|{}>", t.timestamp(), t.format("%Y-%m-%d %H:%M UTC"))
}

/// The reconnect prompt for a breakage: why, since when, and the button.
pub fn reconnect_prompt_blocks(lang: Lang, link: &str, since: DateTime<Utc>, reason: &str) -> (String, Vec<Value>) {
    let text = words::reconnect_prompt(lang, &slack_date(since), &escape_mrkdwn(reason));
    let fallback = words::reconnect_prompt_fallback(lang).to_owned();
    (fallback, vec![section(&text), button_row(words::reconnect_button(lang), link)])
}

#[derive(serde::Deserialize)]
struct PromptJob {
    user_id: String,
    broken_at_us: i64,
}

/// The `gmail_reconnect_prompt` job: DMs the prompt for one breakage and
/// records where. Idempotent: a breakage that is over, or already prompted,
/// is done.
pub async fn run_reconnect_prompt_job(state: &AppState, payload: &Value) -> Result<(), JobError> {
    let job: PromptJob = serde_json::from_value(payload.clone())
        .map_err(|e| JobError::Permanent(anyhow::anyhow!("bad {RECONNECT_PROMPT_JOB} payload: {e}")))?;
    let Some(conn) = storage::gmail::get(&state.db, &job.user_id).await? else {
        return Ok(());
    };
    let Some(broken_at) = conn.broken_at.filter(|b| b.timestamp_micros() == job.broken_at_us) else {
        return Ok(());
    };
    if conn.state != "needs_reconnect" || conn.reconnect_prompted_at.is_some() {
        return Ok(());
    }
    let link = links::connect_link(&state.config, &job.user_id)
        .map_err(|e| JobError::Permanent(anyhow::anyhow!("cannot make a connect link: {e}")))?;
    let lang = i18n::user_lang(&state.db, &job.user_id).await;
    let (text, blocks) =
        reconnect_prompt_blocks(lang, link.as_str(), broken_at, conn.broken_reason.as_deref().unwrap_or(""));
    let slack = state.slack.as_ref().ok_or_else(|| JobError::Permanent(anyhow::anyhow!("Slack is not configured")))?;
    let channel = slack.open_dm(&job.user_id).await?;
    // The prompt carries its breakage as message metadata; a retry after an
    // attempt whose post Slack took but whose answer was lost (a timeout, a
    // 5xx, a crash) finds it instead of prompting twice.
    let breakage = job.broken_at_us.to_string();
    let tag = Tag { event_type: PROMPT_METADATA_EVENT, key: "broken_at_us", value: &breakage, also: &[] };
    let oldest = format!("{}.000000", broken_at.timestamp() - 1);
    let earlier = found_or_post(slack.find_tagged(&channel, None, &oldest, &tag).await, "reconnect prompt")?;
    let ts = match earlier {
        Some(ts) => ts,
        None => slack.post_tagged_message(&channel, &text, Some(blocks), None, Some(&tag)).await?,
    };
    storage::gmail::record_reconnect_prompt(&state.db, &job.user_id, broken_at, &channel, &ts).await?;
    Ok(())
}

/// The Slack message metadata `event_type` of a reconnect prompt, with the
/// breakage (`broken_at_us`) in its payload.
pub const PROMPT_METADATA_EVENT: &str = "robeing_reconnect_prompt";

/// For "a user without a working Gmail asks for something that needs it":
/// a broken connection gets its one prompt (if not sent yet); a user who
/// never connected gets a connect button at most once per
/// [`CONNECT_PROMPT_INTERVAL`]. Returns whether a prompt was sent or queued.
pub async fn prompt_if_needed(state: &AppState, user_id: &str) -> anyhow::Result<bool> {
    if state.config.google.is_none() {
        return Ok(false);
    }
    let conn = storage::gmail::get(&state.db, user_id).await?;
    match conn.as_ref().map(|c| c.state.as_str()) {
        Some("connected") => Ok(false),
        Some("needs_reconnect") => {
            let conn = conn.expect("matched Some");
            let broken_at = conn.broken_at.context("needs_reconnect without broken_at")?;
            if conn.reconnect_prompted_at.is_some() {
                return Ok(false);
            }
            let payload = json!({ "user_id": user_id, "broken_at_us": broken_at.timestamp_micros() });
            let dedupe = format!("reconnect:{user_id}:{}", broken_at.timestamp_micros());
            let queued = storage::jobs::enqueue(&state.db, RECONNECT_PROMPT_JOB, Some(&dedupe), &payload, None).await?;
            state.wake_workers.notify_one();
            Ok(queued.is_some())
        }
        _ => {
            if let Some(at) = conn.as_ref().and_then(|c| c.reconnect_prompted_at)
                && at > Utc::now() - CONNECT_PROMPT_INTERVAL
            {
                return Ok(false);
            }
            let link = links::connect_link(&state.config, user_id).context("making a connect link")?;
            let lang = i18n::user_lang(&state.db, user_id).await;
            let blocks =
                vec![section(words::connect_prompt(lang)), button_row(words::connect_button(lang), link.as_str())];
            let (channel, ts) = post_dm(state, user_id, words::connect_prompt_fallback(lang), blocks).await?;
            storage::gmail::record_connect_prompt(&state.db, user_id, &channel, &ts).await?;
            Ok(true)
        }
    }
}

/// The single reminder before the next morning briefing while a connection
/// is still broken (after its first prompt). Returns whether it was sent.
pub async fn remind_before_briefing(state: &AppState, user_id: &str) -> anyhow::Result<bool> {
    let Some(conn) = storage::gmail::get(&state.db, user_id).await? else {
        return Ok(false);
    };
    if conn.state != "needs_reconnect" || conn.reconnect_prompted_at.is_none() || conn.reconnect_reminded_at.is_some() {
        return Ok(false);
    }
    if !storage::gmail::claim_reminder(&state.db, user_id).await? {
        return Ok(false);
    }
    let link = links::connect_link(&state.config, user_id).context("making a connect link")?;
    let lang = i18n::user_lang(&state.db, user_id).await;
    let since = conn.broken_at.unwrap_or_else(Utc::now);
    let reason = conn.broken_reason.as_deref().unwrap_or("");
    let (_, mut blocks) = reconnect_prompt_blocks(lang, link.as_str(), since, reason);
    blocks[0] = section(&words::reminder(lang, &slack_date(since), &escape_mrkdwn(reason)));
    post_dm(state, user_id, words::reminder_fallback(lang), blocks).await?;
    Ok(true)
}

/// Disconnects Gmail: revokes the token at Google (best effort: a failure is
/// logged, the local tokens are deleted regardless). Returns whether the
/// user had a connection to disconnect.
pub async fn disconnect(state: &AppState, user_id: &str) -> anyhow::Result<bool> {
    let conn = storage::gmail::get(&state.db, user_id).await?;
    if let (Some(conn), Some(google), Some(vault)) = (&conn, state.config.google.as_ref(), state.vault.as_deref())
        && let (Some(sealed), Some(key_id)) = (&conn.refresh_token_ciphertext, &conn.token_key_id)
    {
        match vault.decrypt(key_id, user_id, Purpose::Refresh, sealed) {
            Ok(token) => {
                let revoked = state
                    .http
                    .post(google.revoke_url.clone())
                    .form(&[("token", token.expose_secret())])
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.without_url()))
                    .and_then(|r| {
                        if r.status().is_success() { Ok(()) } else { Err(anyhow::anyhow!("HTTP {}", r.status())) }
                    });
                if let Err(e) = revoked {
                    tracing::warn!(user_id, error = %e, "could not revoke the Gmail token at Google; deleting it locally anyway");
                }
            }
            Err(e) => tracing::warn!(user_id, error = %e, "could not open the stored token to revoke it; deleting it"),
        }
    }
    Ok(storage::gmail::disconnect(&state.db, user_id).await?)
}

/// The answer to a user asking in their DM to (re)connect Gmail: the state
/// of their connection and, unless Gmail is not configured, the button that
/// runs Google's sign-in (a fresh signed link). Returns the plain-text
/// fallback (notifications, the stored reply) and the blocks.
pub async fn connection_reply(state: &AppState, user_id: &str, lang: Lang) -> anyhow::Result<(String, Vec<Value>)> {
    let status = super::status(state, user_id).await.context("reading the Gmail connection")?;
    let link = links::connect_link(&state.config, user_id).ok();
    let with_button = |text: &str, fallback: String, label: &str| {
        let mut blocks = vec![section(text)];
        if let Some(link) = &link {
            blocks.push(button_row(label, link.as_str()));
        }
        (fallback, blocks)
    };
    Ok(match status {
        GmailStatus::NotConfigured => {
            let text = words::home_not_configured(lang);
            (text.to_owned(), vec![section(text)])
        }
        GmailStatus::NotConnected => {
            (words::connect_prompt_fallback(lang).to_owned(), connect_offer(state, user_id, lang))
        }
        GmailStatus::NeedsReconnect { since, reason, .. } => match &link {
            Some(link) => {
                let (fallback, blocks) = reconnect_prompt_blocks(lang, link.as_str(), since, &reason);
                (fallback, blocks)
            }
            None => {
                let text = words::home_needs_reconnect(lang, &slack_date(since), &escape_mrkdwn(&reason));
                (words::reconnect_prompt_fallback(lang).to_owned(), vec![section(&text)])
            }
        },
        GmailStatus::Connected { email, .. } => with_button(
            &words::connected_already(lang, &escape_mrkdwn(&email)),
            words::connected_already(lang, &email),
            words::reconnect_button(lang),
        ),
    })
}

/// The offer to connect Gmail, for a user who never did: why, and the
/// Connect Gmail button (a fresh signed link; without one, the text alone).
pub fn connect_offer(state: &AppState, user_id: &str, lang: Lang) -> Vec<Value> {
    let mut blocks = vec![section(words::connect_prompt(lang))];
    if let Ok(link) = links::connect_link(&state.config, user_id) {
        blocks.push(button_row(words::connect_button(lang), link.as_str()));
    }
    blocks
}

/// The Gmail section of the user's App Home.
pub async fn home_blocks(state: &AppState, user_id: &str) -> Vec<Value> {
    let lang = i18n::user_lang(&state.db, user_id).await;
    let mut blocks =
        vec![json!({ "type": "header", "text": { "type": "plain_text", "text": words::home_title(lang) } })];
    if state.config.google.is_none() {
        blocks.push(section(words::home_not_configured(lang)));
        return blocks;
    }
    let status = match super::status(state, user_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(user_id, error = %e, "could not read the Gmail connection for App Home");
            blocks.push(section(words::home_lookup_failed(lang)));
            return blocks;
        }
    };
    let link = links::connect_link(&state.config, user_id).ok();
    match status {
        GmailStatus::Connected { email, since } => {
            let since = since.map(slack_date);
            blocks.push(section(&words::home_connected(lang, &escape_mrkdwn(&email), since.as_deref())));
            blocks.push(json!({
                "type": "actions",
                "block_id": "gmail_connection",
                "elements": [{
                    "type": "button",
                    "action_id": DISCONNECT_ACTION,
                    "text": { "type": "plain_text", "text": words::disconnect_button(lang) },
                    "style": "danger",
                    "value": "disconnect",
                    "confirm": {
                        "title": { "type": "plain_text", "text": words::disconnect_confirm_title(lang) },
                        "text": { "type": "mrkdwn", "text": words::disconnect_confirm_text(lang) },
                        "confirm": { "type": "plain_text", "text": words::disconnect_confirm(lang) },
                        "deny": { "type": "plain_text", "text": i18n::home::keep(lang) }
                    }
                }]
            }));
        }
        GmailStatus::NeedsReconnect { since, reason, .. } => {
            blocks.push(section(&words::home_needs_reconnect(lang, &slack_date(since), &escape_mrkdwn(&reason))));
            if let Some(link) = link {
                blocks.push(button_row(words::reconnect_button(lang), link.as_str()));
            }
        }
        GmailStatus::NotConnected | GmailStatus::NotConfigured => {
            blocks.push(section(words::home_not_connected(lang)));
            if let Some(link) = link {
                blocks.push(button_row(words::connect_button(lang), link.as_str()));
            }
        }
    }
    blocks
}
