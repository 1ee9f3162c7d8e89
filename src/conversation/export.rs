//! The history export ("export", "내보내기"): the user's whole conversation
//! history as one plain-text file shared in their DM.
//!
//! This module owns what the file says ([`history_file`]) and how it reaches
//! the user ([`deliver`]): Slack's file upload, once, even when the reply
//! job is retried (an earlier attempt's file is looked up by its name, which
//! carries the exchange id). When Slack refuses the file (a workspace that
//! installed robeing before it asked for `files:write` answers
//! `missing_scope`), the history goes out as labelled messages instead, and
//! both the user and the log say why: the export is degraded, not lost.
//! In `robeing console` the file's text is printed.

use chrono::Utc;

use super::{MAX_CHUNK_CHARS, PostedParts, Turn, escape, post_part, split};
use crate::{
    i18n::{Lang, chat as strings},
    jobs::JobError,
    slack::client::{SlackError, found_or_post},
    storage::{self, exchanges::Exported},
};

/// The most messages a history sent as messages takes (about 90,000
/// characters); a longer history is sent from its most recent end, and the
/// user is told so. The file has no such limit.
pub const MAX_MESSAGE_PARTS: usize = 30;

/// The export a reply carries: the file, and the messages that replace it
/// when Slack will not take a file.
pub struct HistoryFile {
    /// Unique per exchange, so a retry recognises its own earlier upload.
    pub filename: String,
    pub title: String,
    pub content: String,
    /// How many exchanges the file holds.
    pub exchanges: usize,
    /// The same history as labelled messages, already escaped and sized.
    pub as_messages: Vec<String>,
    /// How many messages the whole history would have taken (more than
    /// `as_messages.len()` when it was cut to [`MAX_MESSAGE_PARTS`]).
    pub parts_needed: usize,
}

/// The user's history, every exchange but the one asking for it; `None`
/// when there is none yet.
pub(super) async fn history_file(turn: &Turn<'_>) -> Result<Option<HistoryFile>, JobError> {
    let all: Vec<Exported> = storage::exchanges::all_for_user(&turn.state.db, &turn.user.user_id)
        .await?
        .into_iter()
        .filter(|e| e.id != turn.exchange.id)
        .collect();
    if all.is_empty() {
        return Ok(None);
    }
    let lang = turn.lang;
    let tz = turn.tz();
    let now = Utc::now().with_timezone(&tz);
    let mut content = strings::export_file_header(
        lang,
        super::greeting_name(turn.user),
        &turn.user.user_id,
        all.len(),
        &format!("{} ({tz})", now.format("%Y-%m-%d %H:%M")),
    );
    content.push_str("\n\n");
    let mut blocks: Vec<String> = Vec::with_capacity(all.len());
    for e in &all {
        let when = e.received_at.with_timezone(&tz).format("%Y-%m-%d %H:%M");
        let reply = match (&e.reply_text, e.status.as_str()) {
            (Some(r), _) => r.clone(),
            (None, status) => strings::export_no_reply(lang, status == "failed").to_owned(),
        };
        let said = match (e.user_text.is_empty(), e.user_files.is_empty()) {
            (_, true) => e.user_text.clone(),
            (true, false) => strings::export_files(lang, &e.user_files),
            (false, false) => format!("{} {}", e.user_text, strings::export_files(lang, &e.user_files)),
        };
        let read = e.file_text.as_deref().map(|t| format!("\n{t}")).unwrap_or_default();
        let block = format!("[{when}] {}: {said}{read}\n[{when}] robeing: {reply}\n\n", strings::export_you(lang));
        content.push_str(&block);
        blocks.push(block);
    }
    let (as_messages, parts_needed) = as_messages(lang, &blocks);
    let short_id: String = turn.exchange.id.simple().to_string().chars().take(8).collect();
    Ok(Some(HistoryFile {
        filename: format!("robeing-history-{}-{short_id}.txt", now.format("%Y-%m-%d")),
        title: strings::export_file_title(lang, &now.format("%Y-%m-%d").to_string()),
        content,
        exchanges: all.len(),
        as_messages,
        parts_needed,
    }))
}

/// The history as labelled messages of at most [`MAX_CHUNK_CHARS`], the
/// most recent [`MAX_MESSAGE_PARTS`] of them, and how many it would take.
fn as_messages(lang: Lang, blocks: &[String]) -> (Vec<String>, usize) {
    // Room for the "History export (12/34)" label.
    let budget = MAX_CHUNK_CHARS - 60;
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for block in blocks {
        for piece in split(&escape(block), budget) {
            if current.chars().count() + piece.chars().count() + 2 > budget && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            current.push_str(&piece);
            current.push_str("\n\n");
        }
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    let needed = parts.len();
    if needed > MAX_MESSAGE_PARTS {
        parts.drain(..needed - MAX_MESSAGE_PARTS);
    }
    let n = parts.len();
    let parts = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| format!("{}\n{}", strings::export_part(lang, i + 1, n), p.trim_end()))
        .collect();
    (parts, needed)
}

/// Shares the file in the exchange's DM (after the reply's first message),
/// unless an earlier attempt already did; when Slack refuses the file, sends
/// the history as messages with a sentence saying why (over those an
/// earlier attempt posted: taken out of `posted`, see `posted_parts`).
pub(super) async fn deliver(turn: &Turn<'_>, file: HistoryFile, posted: &mut PostedParts) -> Result<(), JobError> {
    let state = turn.state;
    let ex = turn.exchange;
    let (channel, thread_ts) = (ex.channel_id.as_str(), ex.thread_ts.as_deref());
    if let Some(console) = state.console.get()
        && channel == crate::console::CHANNEL_ID
    {
        console.write(&escape(&format!("{}\n\n{}", file.filename, file.content.trim_end())), None);
        return Ok(());
    }
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set; cannot send the export")))?;
    let lookup = slack.find_shared_file(channel, thread_ts, &ex.user_ts, &file.filename).await;
    if let Some(id) = found_or_post(lookup, "export")? {
        tracing::info!(exchange = %ex.id, file = %id, "an earlier attempt shared this export; not sharing it again");
        return Ok(());
    }
    match slack.share_file(channel, thread_ts, &file.filename, &file.title, file.content.as_bytes()).await {
        Ok(id) => {
            tracing::info!(exchange = %ex.id, file = %id, bytes = file.content.len(), exchanges = file.exchanges, "shared a history export");
            Ok(())
        }
        Err(SlackError::Refused { method, code }) => {
            tracing::warn!(
                exchange = %ex.id,
                method,
                code = %code,
                "Slack refused the history export as a file; sending it as messages (a missing files:write scope: reinstall the app from manifest.yaml)"
            );
            let lang = turn.lang;
            let mut note = strings::export_not_a_file(lang, &code, file.as_messages.len());
            if file.parts_needed > file.as_messages.len() {
                note.push(' ');
                note.push_str(&strings::export_truncated(lang, file.parts_needed));
            }
            let note = escape(&note);
            let messages = std::iter::once(&note).chain(&file.as_messages);
            for (i, text) in messages.enumerate() {
                let part = format!("export-{i}");
                post_part(turn, &part, posted.remove(&part), text).await?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
