//! DM conversation: a human's message in, a reply out, the exchange stored.
//!
//! Interface with the transport: the worker handling a stored inbound event
//! (`slack::dispatch`) calls [`handle_message`] for every [`DirectMessage`],
//! and block actions `forget_confirm` / `forget_cancel` go to
//! [`handle_forget_action`]. When an event's handling dies, the job runner
//! calls [`on_event_dead`] so the user gets an apology instead of
//! silence.
//!
//! # The life of an exchange
//!
//! 1. The message is stored as an `exchanges` row (`received`), idempotent on
//!    its channel + ts. A row already `replied` or `failed` ends the call:
//!    a message never gets a second reply, however often it is delivered.
//!    The worker replying holds a short claim on the row (set by the same
//!    insert), so a second run of the same message at the same time (a job
//!    whose lease expired while the first run waits on the LLM) backs off.
//! 2. The text files and PDFs the message carried are read
//!    ([`crate::slack::files`]) and their text stored with the exchange; the
//!    others are named in the reply with why they were not read. A reply in
//!    a thread brings the thread's first message (a briefing, say) into the
//!    LLM's prompt.
//!    The reply is composed: commands (forget, export) and, without
//!    `LLM_BASE_URL`, everything else by the built-in responder; otherwise by
//!    the LLM ([`llm`]) with the user's name, locale, local time, recent
//!    history and relevant memories (asked of ChromaDB while the message is
//!    being stored when the user's memory added to their previous prompt,
//!    else once the history shows it may add). An LLM that is slow to
//!    answer first gets a placeholder ("…") posted, whose ts is stored at
//!    once; the reply then replaces it with `chat.update` (on this attempt
//!    or a retried one).
//! 3. The reply is posted (split into chunks of at most [`MAX_CHUNK_CHARS`]
//!    on paragraph or line boundaries; `&`, `<`, `>` escaped so no text can
//!    ping `<!channel>`; a history export follows as a file, see
//!    [`export`]), then one statement marks the exchange `replied`
//!    and queues its `memory_upsert` job (when ChromaDB is configured).
//! 4. Any failure returns [`JobError::Retry`]; the outbox retries with
//!    backoff. When the job dies, [`on_event_dead`] posts the apology
//!    (over the placeholder, if any) and marks the exchange `failed` with why.
//!    If Slack does not take the apology either (unavailable, rate limited),
//!    it waits in the outbox as an [`APOLOGY_JOB`] for about a day, so a
//!    long Slack outage does not leave the user with silence.
//!
//! Every user-facing sentence lives in [`crate::i18n`] (its `chat` part).

mod export;
pub mod intent;
pub mod llm;
pub mod recorder;
pub mod welcome;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use slack_morphism::prelude::*;
use uuid::Uuid;

use self::{intent::Intent, llm::ChatMessage};
use crate::{
    i18n::{
        Lang,
        chat::{self as strings, StatusFacts},
    },
    jobs::{Done, JobError},
    memory,
    slack::{
        events::DirectMessage,
        files::{FileRead, Unread},
    },
    startup::AppState,
    storage::{
        self,
        exchanges::{Exchange, FollowUp, History, HistoryWanted, Inserted, NewExchange, ReplyRecord, sanitize},
        users::User,
    },
};

/// The most characters in one posted message: Slack's limit for a section
/// block's text, and comfortably readable.
pub const MAX_CHUNK_CHARS: usize = 3_000;
/// How long an LLM may think before a placeholder shows the user that a
/// reply is coming. Most answers come sooner; a longer silence looks broken.
pub const PLACEHOLDER_AFTER: Duration = Duration::from_millis(1_500);
/// Characters of past exchanges in the LLM prompt (about 2,000 tokens).
pub const HISTORY_BUDGET_CHARS: usize = 8_000;
/// Past exchanges considered for the prompt.
pub const HISTORY_MAX_EXCHANGES: i64 = 20;
/// Memories put in the prompt.
pub const MEMORY_TOP_K: usize = 5;
/// The longest user message sent to the LLM as is; longer ones are cut
/// (the whole text stays stored).
pub const MAX_PROMPT_MESSAGE_CHARS: usize = 24_000;
/// Characters of the text read from the message's files in the LLM prompt,
/// all files together (the whole text stays stored).
pub const MAX_PROMPT_FILE_CHARS: usize = 24_000;
/// Block Kit action ids of the forget confirmation.
pub const FORGET_CONFIRM_ACTION: &str = "forget_confirm";
pub const FORGET_CANCEL_ACTION: &str = "forget_cancel";

/// Escapes the three characters Slack's mrkdwn treats as control (so user or
/// LLM text cannot mention `<!channel>`, users or links), and replaces NUL.
pub fn escape(text: &str) -> String {
    crate::slack::client::escape_mrkdwn(&text.replace('\0', "\u{FFFD}"))
}

/// Splits (escaped) text into chunks of at most `max` characters, preferring
/// paragraph breaks, then line breaks, then spaces, and never cutting an
/// `&…;` entity in half.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let limit = rest.char_indices().nth(max).map(|(i, _)| i).unwrap_or(rest.len());
        let window = &rest[..limit];
        let half = window.len() / 2;
        let cut = window
            .rfind("\n\n")
            .filter(|&i| i >= half)
            .or_else(|| window.rfind('\n').filter(|&i| i >= half))
            .or_else(|| window.rfind(' ').filter(|&i| i >= half))
            .unwrap_or(limit);
        let cut = match window[..cut].rfind('&') {
            Some(a) if cut - a < 5 && !window[a..cut].contains(';') && a > 0 => a,
            _ => cut,
        };
        // Only the separators cut at are dropped (a tab or an ideographic
        // space at a hard cut is text, and stays).
        let chunk = rest[..cut].trim_end_matches(['\n', ' ']);
        if !chunk.is_empty() {
            out.push(chunk.to_owned());
        }
        rest = rest[cut..].trim_start_matches(['\n', ' ']);
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Where a Slack write goes.
enum Target<'a> {
    /// A new message; `tag` marks it as part of an exchange's reply, so
    /// that a retry finds it instead of posting it again.
    New {
        channel: &'a str,
        thread_ts: Option<&'a str>,
        tag: Option<Mark<'a>>,
    },
    Update {
        channel: &'a str,
        ts: &'a str,
    },
}

/// Which message of an exchange's reply a post is (Slack message metadata).
#[derive(Debug, Clone, Copy)]
enum Mark<'a> {
    /// The first message (placeholder or answer), found by [`earlier_post`].
    Reply(Uuid),
    /// A later one: a chunk of a long reply ("2", "3", …) or a message of a
    /// history sent as messages ("export-0", …), found by [`posted_parts`].
    Part(Uuid, &'a str),
}

/// Deletes the parts an earlier attempt posted that this attempt's reply
/// does not have. Best effort: a part left behind is logged, and the reply
/// is not retried for it.
async fn remove_parts(state: &AppState, exchange: &Exchange, parts: PostedParts) {
    let Some(slack) = state.slack.as_ref() else { return };
    for (part, ts) in parts {
        match slack.delete_message(&exchange.channel_id, &ts).await {
            Ok(()) => tracing::info!(exchange = %exchange.id, part, "removed a part of an earlier attempt's reply"),
            Err(e) => {
                tracing::warn!(exchange = %exchange.id, part, error = %e, "could not remove a part of an earlier attempt's reply; the user sees it")
            }
        }
    }
}

/// Every Slack write of the conversation goes through here (one place to
/// switch to the transport's retrying client). `text` must already be
/// escaped. Returns the message's ts.
async fn slack_write(
    state: &AppState,
    target: Target<'_>,
    text: &str,
    blocks: Option<Vec<SlackBlock>>,
) -> Result<String, JobError> {
    // `robeing console`: its channel is a terminal, not Slack.
    if let Some(console) = state.console.get() {
        let (channel, update) = match &target {
            Target::New { channel, .. } => (*channel, None),
            Target::Update { channel, ts } => (*channel, Some(*ts)),
        };
        if channel == crate::console::CHANNEL_ID {
            return Ok(console.write(text, update));
        }
    }
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set; cannot reply")))?;
    // Through the transport's client: per-channel pacing, 429s waited out,
    // and an error that tells the outbox whether (and when) to retry.
    let blocks = match blocks {
        Some(b) => Some(
            b.iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JobError::Permanent(anyhow::Error::new(e).context("building Block Kit blocks")))?,
        ),
        None => None,
    };
    match target {
        Target::New { channel, thread_ts, tag } => {
            let (id, part) = match tag {
                Some(Mark::Reply(id)) => (Some(id.to_string()), None),
                Some(Mark::Part(id, part)) => (Some(id.to_string()), Some([("part", part)])),
                None => (None, None),
            };
            let tag = id.as_deref().map(|id| match &part {
                None => reply_tag(id),
                Some(part) => part_tag(id, part),
            });
            Ok(slack.post_tagged_message(channel, text, blocks, thread_ts, tag.as_ref()).await?)
        }
        Target::Update { channel, ts } => {
            slack.update_message(channel, ts, text, blocks).await?;
            Ok(ts.to_owned())
        }
    }
}

/// The Slack message metadata `event_type` of a reply's first message, with
/// the exchange id as `exchange_id` in its payload.
pub const REPLY_METADATA_EVENT: &str = "robeing_reply";

fn reply_tag(exchange_id: &str) -> crate::slack::client::Tag<'_> {
    crate::slack::client::Tag { event_type: REPLY_METADATA_EVENT, key: "exchange_id", value: exchange_id, also: &[] }
}

/// The Slack message metadata `event_type` of a reply's later messages,
/// with the exchange id as `exchange_id` and which part it is as `part`.
pub const REPLY_PART_METADATA_EVENT: &str = "robeing_reply_part";

fn part_tag<'a>(exchange_id: &'a str, part: &'a [(&'a str, &'a str)]) -> crate::slack::client::Tag<'a> {
    crate::slack::client::Tag {
        event_type: REPLY_PART_METADATA_EVENT,
        key: "exchange_id",
        value: exchange_id,
        also: part,
    }
}

/// The parts of this exchange's reply an earlier attempt posted (chunks
/// after the first, the history's messages) and their ts: a retry updates
/// them in place instead of posting them again, and removes those its own
/// reply no longer has (an LLM answers a retry in other words); an apology
/// removes them all. A lookup Slack refuses (a missing `im:history`) finds
/// none: a repeated part is better than a missing one.
async fn posted_parts(state: &AppState, ex: &Exchange) -> Result<PostedParts, JobError> {
    let Some(slack) = state.slack.as_ref() else { return Ok(Default::default()) };
    if state.console.get().is_some_and(|_| ex.channel_id == crate::console::CHANNEL_ID) {
        return Ok(Default::default());
    }
    let id = ex.id.to_string();
    let tag = part_tag(&id, &[]);
    let lookup = slack.find_tagged_messages(&ex.channel_id, ex.thread_ts.as_deref(), &ex.user_ts, &tag).await;
    let found = crate::slack::client::found_or_post(lookup.map(Some), "reply's parts")?.unwrap_or_default();
    let parts: PostedParts =
        found.into_iter().filter_map(|m| Some((m.payload.get("part")?.as_str()?.to_owned(), m.ts))).collect();
    if !parts.is_empty() {
        tracing::info!(exchange = %ex.id, parts = parts.len(), "an earlier attempt posted parts of this reply; posting only the rest");
    }
    Ok(parts)
}

/// The ts of a reply (or placeholder) an earlier attempt posted for this
/// exchange without recording it — it timed out waiting for Slack's answer,
/// or the process died before the exchange was marked — found by its
/// metadata in the DM after the user's message. The reply then updates that
/// message instead of posting a second one. When Slack refuses the lookup
/// (a missing `im:history` scope) the reply is posted: two replies are
/// better than none. A transient failure retries the job.
async fn earlier_post(state: &AppState, exchange: &Exchange) -> Result<Option<String>, JobError> {
    let Some(slack) = state.slack.as_ref() else { return Ok(None) };
    if state.console.get().is_some_and(|_| exchange.channel_id == crate::console::CHANNEL_ID) {
        return Ok(None);
    }
    let id = exchange.id.to_string();
    let lookup = slack
        .find_tagged(&exchange.channel_id, exchange.thread_ts.as_deref(), &exchange.user_ts, &reply_tag(&id))
        .await;
    let found = crate::slack::client::found_or_post(lookup, "reply")?;
    if let Some(ts) = &found {
        tracing::info!(exchange = %exchange.id, ts = %ts, "an earlier attempt posted this reply; updating it instead of posting again");
    }
    Ok(found)
}

/// The longest Slack rate-limit wait taken inside a reply (Slack allows
/// about one message per second per channel, so a multi-part reply can hit
/// it); longer waits fail the attempt and the outbox retries later.
const MAX_INLINE_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Parts of a reply already in Slack: part name → ts.
type PostedParts = std::collections::HashMap<String, String>;

/// Posts a later message of the reply (tagged as `part`), or updates the
/// one an earlier attempt posted (`earlier`, its ts), waiting out Slack's
/// rate limit in place (a retry of the whole reply costs a history read
/// and the wait before it).
async fn post_part(turn: &Turn<'_>, part: &str, earlier: Option<String>, text: &str) -> Result<(), JobError> {
    let ex = turn.exchange;
    let (channel, thread_ts) = (ex.channel_id.as_str(), ex.thread_ts.as_deref());
    let mut tries = 0;
    loop {
        let target = match earlier.as_deref() {
            Some(ts) => Target::Update { channel, ts },
            None => Target::New { channel, thread_ts, tag: Some(Mark::Part(ex.id, part)) },
        };
        match slack_write(turn.state, target, text, None).await {
            Err(JobError::Retry { after: Some(wait), .. }) if tries < 3 && wait <= MAX_INLINE_RATE_LIMIT_WAIT => {
                tries += 1;
                tokio::time::sleep(wait).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// A composed reply.
struct Reply {
    /// What robeing says (unescaped); stored as the exchange's reply.
    text: String,
    /// Block Kit blocks sent with the first chunk.
    blocks: Option<Vec<SlackBlock>>,
    /// A history export, shared as a file after the text.
    file: Option<export::HistoryFile>,
    /// Whether the exchange goes to vector memory.
    memorize: bool,
}

impl Reply {
    fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), blocks: None, file: None, memorize: true }
    }
    fn private(mut self) -> Self {
        self.memorize = false;
        self
    }
}

/// One message being answered.
struct Turn<'a> {
    state: &'a AppState,
    user: &'a User,
    exchange: &'a Exchange,
    lang: Lang,
    /// The files the message carried, read or with why not.
    files: &'a [FileRead],
    /// A retry: an earlier attempt may have posted parts of the reply.
    again: bool,
}

impl Turn<'_> {
    fn tz(&self) -> Tz {
        user_tz(self.state, self.user)
    }
}

/// The name to greet by: Slack's display name, written as in the real name
/// when they are the same word ("jane" with real name "Jane Doe" → "Jane").
pub fn greeting_name(user: &User) -> &str {
    let name = user.name();
    user.real_name
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .filter(|first| first.to_lowercase() == name.to_lowercase())
        .unwrap_or(name)
}

fn user_tz(state: &AppState, user: &User) -> Tz {
    user.tz.as_deref().and_then(|t| t.parse().ok()).unwrap_or(state.config.default_timezone)
}

/// Handles one DM: store, compose, reply, record. Idempotent; never replies
/// twice to one message. A sender robeing has not met yet is fetched
/// (`users.info`) and stored first. With `event_id`, the stored inbound
/// event whose handling this is, the statement that records the reply also
/// records that event handled ([`Done::Recorded`]).
pub async fn handle_message(
    state: &AppState,
    message: &DirectMessage,
    event_id: Option<&str>,
) -> Result<Done, JobError> {
    // The recall, when it is likely to be needed, runs while the message is
    // stored: one waits on ChromaDB, the other on Postgres.
    let (recorded, early) = tokio::join!(record(state, message), early_recall(state, message));
    let (user, history, exchange, again) = match recorded? {
        (user, history, Recorded::New(e)) => (user, history, e, false),
        (user, history, Recorded::Again(e)) => (user, history, e, true),
        (_, _, Recorded::Final(e)) => {
            tracing::info!(exchange = %e.id, status = %e.status, "message already answered; not replying again");
            return Ok(Done::ByRunner);
        }
        (_, _, Recorded::Busy(e)) => {
            return Err(JobError::Retry {
                after: Some(BUSY_RETRY),
                error: anyhow::anyhow!("exchange {} is being replied to by another worker", e.id),
            });
        }
    };
    let result = reply_to(state, &user, history, early, &exchange, message, again, event_id).await;
    if result.is_err()
        && let Err(e) =
            crate::jobs::persist("releasing a reply claim", || storage::exchanges::release(&state.db, exchange.id))
                .await
    {
        tracing::warn!(error = %e, exchange = %exchange.id, "could not release the reply claim; it expires by itself");
    }
    result
}

/// Composes, posts and records the reply to a claimed exchange of
/// `message`. Its own text says which command it is (not what it
/// forwarded). Its files are read first ([`read_files`]); a file that
/// could not be read is named in the reply with why (a message that is only
/// such files gets only that). `again`: an earlier attempt may have posted
/// without recording it (see [`earlier_post`]).
#[allow(clippy::too_many_arguments)]
async fn reply_to(
    state: &AppState,
    user: &User,
    history: History,
    early: EarlyRecall,
    exchange: &Exchange,
    message: &DirectMessage,
    again: bool,
    event_id: Option<&str>,
) -> Result<Done, JobError> {
    let intent = intent::detect(&message.text);
    // Images are fetched only to show an LLM that takes them.
    let images = state.config.llm.is_some() && state.config.llm_images && !intent.is_command();
    let files = read_files(state, exchange, message, images).await?;
    let lang = Lang::detect(&exchange.user_text, user.locale.as_deref());
    let turn = Turn { state, user, exchange, lang, files: &files, again };
    let mut placeholder = exchange.reply_ts.clone();
    if placeholder.is_none() && again {
        placeholder = earlier_post(state, exchange).await?;
    }
    let unread: Vec<(&str, Unread)> = files.iter().filter_map(|f| Some((f.name.as_str(), f.unread()?))).collect();
    let read: Vec<&FileRead> = files.iter().filter(|f| f.text().is_some()).collect();
    let read_names: Vec<&str> = read.iter().map(|f| f.name.as_str()).collect();
    let read_cut = read.iter().any(|f| f.is_cut());
    let no_text = exchange.user_text.trim().is_empty();
    // Nothing to answer but files, none of them read: only that is said.
    let nothing_read = no_text && !files.is_empty() && read.is_empty() && files.iter().all(|f| f.image().is_none());
    let mut reply = match &state.config.llm {
        _ if nothing_read => Reply::text(strings::files_only(lang, &unread)).private(),
        Some(llm) if !intent.is_command() => llm_reply(&turn, llm, history, early, &mut placeholder).await?,
        _ if no_text && !read.is_empty() => {
            let chars = read.iter().filter_map(|f| f.text()).map(|t| t.chars().count()).sum();
            Reply::text(strings::files_read(lang, &read_names, chars, read_cut))
        }
        _ => {
            let mut reply = builtin_reply(&turn, intent).await?;
            if !read.is_empty() {
                reply.text.push_str("\n\n");
                reply.text.push_str(&strings::files_read_note(lang, &read_names, read_cut));
            }
            reply
        }
    };
    if !unread.is_empty() && !nothing_read {
        reply.text.push_str("\n\n");
        reply.text.push_str(&strings::files_unread(lang, &unread));
    }
    deliver(&turn, reply, placeholder, event_id).await
}

/// Reads the message's text files and PDFs ([`crate::slack::files`]) and stores what
/// was read with the exchange, before the reply is composed, so memory gets
/// it with the reply. Each attempt reads them again (a retry may succeed
/// where Slack failed before).
async fn read_files(
    state: &AppState,
    exchange: &Exchange,
    message: &DirectMessage,
    images: bool,
) -> Result<Vec<FileRead>, JobError> {
    if message.files.is_empty() {
        return Ok(Vec::new());
    }
    let reader = crate::slack::files::Reader {
        http: &state.http,
        token: state.config.slack.bot_token.as_ref(),
        files_url: &state.config.slack.files_url,
        document_reader: state.config.document_reader.as_deref(),
        images,
    };
    let files = crate::slack::files::read_all(&reader, &message.files).await;
    if let Some(text) = crate::slack::files::stored_text(&files) {
        storage::exchanges::set_file_text(&state.db, exchange.id, &text).await?;
    }
    Ok(files)
}

/// What storing a message found.
enum Recorded {
    /// New, and claimed by us: reply to it.
    New(Exchange),
    /// Stored earlier, still waiting, and now claimed by us: reply to it,
    /// minding that an earlier attempt may have posted already.
    Again(Exchange),
    /// Replied or failed already: never reply again.
    Final(Exchange),
    /// Another worker is replying right now.
    Busy(Exchange),
}

/// How long a reply claim lasts: longer than one attempt can take (the LLM
/// budget plus posting), so that only a crashed worker's claim expires.
const CLAIM: Duration = Duration::from_secs(120);
/// When a duplicate run finds the message being answered, it looks again
/// this much later (by then the other run has normally finished).
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Stores the message (or finds it stored) and claims it for replying; with
/// its sender's user row (a DM from a user not stored yet waits for it) and,
/// when the LLM will compose the reply, the history its prompt needs.
async fn record(state: &AppState, message: &DirectMessage) -> Result<(User, History, Recorded), JobError> {
    let text = sanitize(&message.stored_text()).into_owned();
    // One statement (its own transaction, shared with other workers'
    // messages, see `recorder`) reads the user and the history and stores
    // and claims a new message; a known one is claimed if it still waits
    // and nobody holds it.
    let llm_composes = llm_composes(state, &message.text);
    let new = NewExchange {
        user_id: message.user_id.clone(),
        channel_id: message.channel_id.clone(),
        thread_ts: message.thread_ts.clone(),
        user_ts: message.ts.clone(),
        user_text: text,
        user_files: message.file_names(),
        event_id: Some(message.event_id.clone()),
        wanted: HistoryWanted {
            // One more than fits, to know whether anything older exists.
            limit: if llm_composes { HISTORY_MAX_EXCHANGES + 1 } else { 0 },
            memorized_beyond: llm_composes && state.memory.is_some(),
        },
    };
    let mut inserted = state.messages.write(new.clone()).await.map_err(JobError::retry)?;
    if matches!(inserted, Inserted::UnknownUser) {
        // First contact: fetch and store the sender's profile, then the message.
        crate::slack::dispatch::ensure_user(state, &message.team_id, &message.user_id).await?;
        inserted = state.messages.write(new).await.map_err(JobError::retry)?;
    }
    let (user, history, new) = match inserted {
        Inserted::UnknownUser => {
            return Err(JobError::retry(anyhow::anyhow!(
                "user {} is not stored yet; the DM waits for the user row",
                message.user_id
            )));
        }
        Inserted::New(user, e, history) => {
            crate::metrics::metrics().exchanges_stored.inc();
            (user, history, Some(e))
        }
        Inserted::Existing(user, history) => (user, history, None),
    };
    let user = known_sender(state, message, user).await;
    if let Some(e) = new {
        return Ok((user, history, Recorded::New(*e)));
    }
    if let Some(e) = storage::exchanges::claim(&state.db, &message.channel_id, &message.ts, CLAIM.as_secs_f64()).await?
    {
        return Ok((user, history, Recorded::Again(e)));
    }
    let e = storage::exchanges::by_message(&state.db, &message.channel_id, &message.ts)
        .await?
        .ok_or_else(|| JobError::retry(anyhow::anyhow!("the exchange was not found after a conflicting insert")))?;
    Ok((user, history, if e.is_final() { Recorded::Final(e) } else { Recorded::Busy(e) }))
}

/// The sender's row, brought up to date: a user stored without a profile
/// (met some other way) gets one now, and the DM channel is remembered.
/// Neither blocks the reply: the message is stored already, and a missing
/// name only makes the greeting plainer.
async fn known_sender(state: &AppState, message: &DirectMessage, mut user: User) -> User {
    if user.profile_fetched_at.is_none() {
        match crate::slack::dispatch::refresh_profile(state, &message.team_id, &message.user_id).await {
            Ok(()) => match storage::users::get(&state.db, &user.user_id).await {
                Ok(Some(fresh)) => user = fresh,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(user = %user.user_id, error = %e, "could not read the sender's new profile; replying without it")
                }
            },
            Err(JobError::Retry { error, .. }) | Err(JobError::Permanent(error)) => {
                tracing::warn!(user = %user.user_id, error = format!("{error:#}"), "could not fetch the sender's profile; replying without it");
            }
        }
    }
    if user.dm_channel_id.as_deref() != Some(message.channel_id.as_str()) {
        match storage::users::set_dm_channel(&state.db, &message.user_id, &message.channel_id).await {
            Ok(()) => user.dm_channel_id = Some(message.channel_id.clone()),
            Err(e) => {
                tracing::warn!(user = %user.user_id, error = %e, "could not record the DM channel; the next message tries again")
            }
        }
    }
    user
}

/// Posts the reply and records it (and the event `event_id` handled, when
/// given).
async fn deliver(
    turn: &Turn<'_>,
    reply: Reply,
    placeholder: Option<String>,
    event_id: Option<&str>,
) -> Result<Done, JobError> {
    let state = turn.state;
    let ex = turn.exchange;
    let channel = ex.channel_id.as_str();
    let thread_ts = ex.thread_ts.as_deref();
    let mut chunks = split(&escape(&reply.text), MAX_CHUNK_CHARS).into_iter();
    let first = chunks.next().unwrap_or_default();
    let first_ts = match &placeholder {
        Some(ts) => slack_write(state, Target::Update { channel, ts }, &first, reply.blocks).await?,
        None => {
            let tag = Some(Mark::Reply(ex.id));
            let ts = slack_write(state, Target::New { channel, thread_ts, tag }, &first, reply.blocks).await?;
            if chunks.len() > 0 || reply.file.is_some() {
                // A retry after a partial delivery updates this message instead of repeating it.
                storage::exchanges::set_placeholder(&state.db, ex.id, &ts).await?;
            }
            ts
        }
    };
    // A first attempt has posted none.
    let mut posted = if turn.again { posted_parts(state, ex).await? } else { Default::default() };
    for (i, chunk) in chunks.enumerate() {
        let part = (i + 2).to_string();
        post_part(turn, &part, posted.remove(&part), &chunk).await?;
    }
    if let Some(file) = reply.file {
        export::deliver(turn, file, &mut posted).await?;
    }
    remove_parts(state, ex, posted).await;
    let memorize = reply.memorize && state.memory.is_some();
    // One statement, shared with other workers' replies (see `recorder`),
    // marks it replied, queues its memory job and records the event it
    // answers handled.
    let follow_up = memorize.then(|| {
        let (dedupe_key, payload) = memory::upsert_job(ex.id);
        FollowUp { kind: memory::UPSERT_JOB, dedupe_key, payload }
    });
    let record = ReplyRecord {
        id: ex.id,
        reply_text: sanitize(&reply.text).into_owned(),
        reply_ts: first_ts,
        follow_up,
        event_id: event_id.map(str::to_owned),
        kept_out_of_memory: !reply.memorize,
    };
    let marked = state.replies.write(record).await.map_err(JobError::retry)?;
    if marked {
        let m = crate::metrics::metrics();
        m.replies.get_or_create(&crate::metrics::outcome("replied")).inc();
        let waited = (chrono::Utc::now() - ex.received_at).num_milliseconds().max(0) as f64 / 1000.0;
        m.reply_latency_seconds.observe(waited);
    }
    if marked && memorize {
        state.wake_memory_writer.notify_one();
    }
    Ok(if event_id.is_some() { Done::Recorded } else { Done::ByRunner })
}

/// Composes the reply with the LLM, posting a placeholder if it is slow.
async fn llm_reply(
    turn: &Turn<'_>,
    llm: &crate::config::OpenAiCompatible,
    history: History,
    early: EarlyRecall,
    placeholder: &mut Option<String>,
) -> Result<Reply, JobError> {
    // The recall (when not started early) and the thread's first message
    // are independent reads: one waits on ChromaDB, the other on Slack.
    let (mut messages, parent) = tokio::join!(prompt(turn, history, early), thread_parent(turn));
    let parent_unread = match parent {
        Ok(Some(parent)) => {
            messages[0].content.push_str(&parent.for_prompt());
            false
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the message a thread reply answers; the reply says so");
            true
        }
    };
    let mut answer = ask_llm(turn, llm, &messages, placeholder).await;
    // A model that takes no images refuses the request (400): asked again
    // without them, and the reply says so.
    let images: Vec<&str> = turn.files.iter().filter(|f| f.image().is_some()).map(|f| f.name.as_str()).collect();
    let refused_images = !images.is_empty()
        && answer.as_ref().is_err_and(|e| e.downcast_ref::<llm::Refused>().is_some_and(|r| r.status == 400));
    if refused_images {
        tracing::warn!(
            images = images.len(),
            "the LLM refused a request with images; answering without them (its model may not accept images: set LLM_IMAGES=off)"
        );
        without_images(&mut messages, turn);
        answer = ask_llm(turn, llm, &messages, placeholder).await;
    }
    match answer {
        Ok(llm::Answer { text, ending }) => {
            let mut text = sanitize(&text).into_owned();
            let note = match ending {
                llm::Ending::Complete => None,
                llm::Ending::CutShort => Some(strings::llm_cut_short(turn.lang)),
                llm::Ending::Filtered => Some(strings::llm_filtered(turn.lang)),
            };
            let unread = parent_unread.then(|| strings::thread_parent_unread(turn.lang));
            let unseen = refused_images.then(|| strings::images_not_shown(turn.lang, &images));
            for note in [note, unread, unseen.as_deref()].into_iter().flatten() {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(note);
            }
            Ok(Reply::text(text))
        }
        Err(error) => {
            say_still_trying(turn, placeholder).await;
            Err(JobError::retry(error))
        }
    }
}

/// One LLM call; a placeholder is posted if it takes long (unless there is
/// one already).
async fn ask_llm(
    turn: &Turn<'_>,
    llm: &crate::config::OpenAiCompatible,
    messages: &[ChatMessage],
    placeholder: &mut Option<String>,
) -> anyhow::Result<llm::Answer> {
    let state = turn.state;
    let call = llm::complete(&state.http, llm, state.config.llm_timeout, messages);
    tokio::pin!(call);
    if placeholder.is_some() {
        return call.await;
    }
    tokio::select! {
        r = &mut call => r,
        _ = tokio::time::sleep(PLACEHOLDER_AFTER) => {
            *placeholder = post_placeholder(turn, strings::PLACEHOLDER).await;
            call.await
        }
    }
}

/// The most characters of a thread's first message put in the prompt.
const MAX_PARENT_CHARS: usize = 6_000;

/// The first message of the thread a DM replies in (a briefing, an earlier
/// answer, the user's own message), for the LLM to know what "the second
/// one" is.
struct ThreadParent {
    by_robeing: bool,
    text: String,
}

impl ThreadParent {
    fn for_prompt(&self) -> String {
        let whose = if self.by_robeing {
            "an earlier message of yours (for example their briefing)"
        } else {
            "an earlier message of theirs"
        };
        format!(
            "\n\nThe user is replying in the thread of {whose}, which says:\n{}",
            truncate(&self.text, MAX_PARENT_CHARS)
        )
    }
}

/// [`ThreadParent`] of the turn's message; `None` when it is not a thread
/// reply (or its first message is gone or empty). A DM's messages are the
/// user's and robeing's, so a bot's message there is robeing's.
async fn thread_parent(turn: &Turn<'_>) -> Result<Option<ThreadParent>, crate::slack::client::SlackError> {
    let ex = turn.exchange;
    let (Some(thread_ts), Some(slack)) = (ex.thread_ts.as_deref(), turn.state.slack.as_ref()) else { return Ok(None) };
    if thread_ts == ex.user_ts || ex.channel_id == crate::console::CHANNEL_ID {
        return Ok(None);
    }
    let Some(message) = slack.message_at(&ex.channel_id, thread_ts).await? else { return Ok(None) };
    let text = crate::slack::client::readable_text(&message);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let by_robeing = message.get("bot_id").is_some_and(|b| !b.is_null())
        || slack.identity().is_some_and(|me| message.get("user").and_then(|u| u.as_str()) == Some(me.user_id.as_str()));
    Ok(Some(ThreadParent { by_robeing, text }))
}

/// After an attempt on which the LLM failed (its retries included, up to
/// [`llm::TOTAL_BUDGET`]), the placeholder says that the answer is late and
/// still coming, instead of a bare "…" for the many minutes the outbox may
/// keep retrying. Posted (tagged, like a placeholder) when there is none
/// yet. Best effort: the retry is what matters.
async fn say_still_trying(turn: &Turn<'_>, placeholder: &mut Option<String>) {
    let text = strings::llm_late(turn.lang);
    match placeholder.as_deref() {
        Some(ts) => {
            let target = Target::Update { channel: &turn.exchange.channel_id, ts };
            if let Err(JobError::Retry { error, .. } | JobError::Permanent(error)) =
                slack_write(turn.state, target, &escape(text), None).await
            {
                tracing::warn!(error = format!("{error:#}"), "could not tell the user that the reply is late");
            }
        }
        None => *placeholder = post_placeholder(turn, text).await,
    }
}

/// Posts `text` as the exchange's placeholder (tagged with it, so a retry
/// that did not learn its ts finds it) and stores its ts. Best effort: a
/// placeholder that cannot be posted is logged, and the reply goes on.
async fn post_placeholder(turn: &Turn<'_>, text: &str) -> Option<String> {
    let ex = turn.exchange;
    let target =
        Target::New { channel: &ex.channel_id, thread_ts: ex.thread_ts.as_deref(), tag: Some(Mark::Reply(ex.id)) };
    match slack_write(turn.state, target, &escape(text), None).await {
        Ok(ts) => {
            if let Err(e) = storage::exchanges::set_placeholder(&turn.state.db, ex.id, &ts).await {
                tracing::warn!(error = %e, "could not store the placeholder's ts; a retry looks for it in Slack");
            }
            Some(ts)
        }
        Err(JobError::Retry { error, .. } | JobError::Permanent(error)) => {
            tracing::warn!(error = format!("{error:#}"), "could not post the placeholder; the reply goes on");
            None
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push_str(strings::TRUNCATED);
        s
    }
}

/// Memories recalled while the message was being stored
/// ([`early_recall`]); `None` when that recall was not started.
type EarlyRecall = Option<anyhow::Result<Vec<memory::chroma::Hit>>>;

/// Recalls for the message while it is being stored, when the LLM will
/// compose the reply and the user's memory added to their latest prompt
/// ([`memory::Memory::adds_to_prompts`]); otherwise [`prompt`] recalls
/// after the history is read, if the history says memory may add.
async fn early_recall(state: &AppState, message: &DirectMessage) -> EarlyRecall {
    let memory = state.memory.as_deref()?;
    if !memory.adds_to_prompts(&message.user_id) {
        return None;
    }
    if !llm_composes(state, &message.text) {
        return None;
    }
    // The text exactly as it is stored, and as `prompt` would ask with it.
    let text = sanitize(&message.stored_text()).into_owned();
    Some(memory.recall(&message.user_id, &recall_text(&text), MEMORY_TOP_K).await)
}

/// Whether the LLM will compose the reply to a message whose own text is
/// `text`: one is configured and the text is not a command the built-in
/// responder runs.
fn llm_composes(state: &AppState, text: &str) -> bool {
    state.config.llm.is_some() && !intent::detect(text).is_command()
}

/// What a prompt's recall searches with: the start of the message.
fn recall_text(text: &str) -> String {
    truncate(text, 2_000)
}

/// The LLM prompt: who, where, when, what was said lately (`history`, read
/// when the message was stored) and what is remembered (recalled now, or
/// `early`), then the message.
async fn prompt(turn: &Turn<'_>, history: History, early: EarlyRecall) -> Vec<ChatMessage> {
    let state = turn.state;
    let ex = turn.exchange;
    let tz = turn.tz();
    let now = Utc::now().with_timezone(&tz);
    let History { past, memorized_beyond } = history;
    let mut budget = HISTORY_BUDGET_CHARS;
    let mut fits = 0;
    for e in past.iter().take(HISTORY_MAX_EXCHANGES as usize) {
        let len = e.user_text.chars().count() + e.reply_text.chars().count();
        if len > budget {
            break;
        }
        budget -= len;
        fits += 1;
    }
    // Memory can only add what ChromaDB holds beyond the history in the
    // prompt (its hits inside the history are left out below): when it
    // holds nothing else, the query would add nothing, and is not sent.
    let memory_may_add = memorized_beyond || past[fits..].iter().any(|e| e.memorized);
    let mut history = past;
    history.truncate(fits);
    history.reverse();
    let recalled = match &state.memory {
        Some(m) => {
            m.note_adds_to_prompts(&ex.user_id, memory_may_add);
            match early {
                // Recalled early for nothing: memory holds nothing beyond the history.
                _ if !memory_may_add => None,
                Some(recalled) => Some(recalled),
                None => Some(m.recall(&ex.user_id, &recall_text(&ex.user_text), MEMORY_TOP_K).await),
            }
        }
        None => None,
    };
    let memories = match recalled {
        Some(Ok(hits)) => hits,
        Some(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "memory recall failed; replying without memories");
            Vec::new()
        }
        None => Vec::new(),
    };
    let in_history: Vec<String> = history.iter().map(|e| e.id.to_string()).collect();
    let current = ex.id.to_string();
    let memory_lines: Vec<String> = memories
        .iter()
        .filter(|h| h.id != current && !in_history.contains(&h.id))
        .filter_map(|h| {
            let doc = h.document.as_deref()?;
            let when = h
                .metadata
                .as_ref()
                .and_then(|m| m.get("received_at"))
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&tz).format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            Some(format!("- [{when}] {}", truncate(doc, 600).replace('\n', " / ")))
        })
        .collect();
    let user = turn.user;
    let mut system = format!(
        "You are robeing, a personal assistant talking with {name} in a Slack direct message.\n\
         {name}'s Slack locale is {locale}; their local time is {time} ({tz}).\n\
         Reply in the language {name} writes in (this message looks {lang}). Be concise and helpful; use Slack mrkdwn.\n\
         You cannot run commands yourself: for a briefing the user types /brief; to delete their data they send \"forget me\"; to get their history they send \"export\"; for the button that (re)connects Gmail they send \"reconnect gmail\".",
        name = greeting_name(user),
        locale = user.locale.as_deref().unwrap_or("unknown"),
        time = now.format("%A %Y-%m-%d %H:%M"),
        tz = tz,
        lang = turn.lang.name(),
    );
    if !memory_lines.is_empty() {
        system.push_str("\n\nThings from earlier conversations that may be relevant (most relevant first):\n");
        system.push_str(&memory_lines.join("\n"));
    }
    let mut messages = vec![ChatMessage::system(system)];
    for e in history {
        messages.push(ChatMessage::user(e.user_text));
        messages.push(ChatMessage::assistant(e.reply_text));
    }
    let mut last = truncate(&ex.user_text, MAX_PROMPT_MESSAGE_CHARS);
    let mut file_budget = MAX_PROMPT_FILE_CHARS;
    for f in turn.files {
        match f.text() {
            Some(text) => {
                let whole = text.chars().count() <= file_budget;
                let shown = truncate(text, file_budget);
                file_budget = file_budget.saturating_sub(text.chars().count());
                let partly = if f.is_cut() || !whole { ", only its start" } else { "" };
                last.push_str(&format!("\n\n[The user sent the file \"{}\"{partly}; its text:]\n{shown}", f.name));
            }
            // The reply adds a sentence saying which could not be read and
            // why; an image is shown below.
            None => last.push_str(&image_marker(&f.name, f.image().is_some())),
        }
    }
    let mut message = ChatMessage::user(last);
    for (mime, bytes) in turn.files.iter().filter_map(FileRead::image) {
        message = message.with_image(mime, bytes);
    }
    messages.push(message);
    messages
}

/// What the prompt says of a file it has no text of: an image shown with
/// the message, or a file the model knows only by name.
fn image_marker(name: &str, shown: bool) -> String {
    if shown {
        format!("\n\n[The user attached the image \"{name}\"; it is shown with this message.]")
    } else {
        format!("\n\n[The user attached the file \"{name}\", which you cannot see (only its name).]")
    }
}

/// The prompt without its images, each named instead: for an LLM that
/// refused them.
fn without_images(messages: &mut [ChatMessage], turn: &Turn<'_>) {
    for m in messages.iter_mut().filter(|m| !m.images.is_empty()) {
        m.images.clear();
        for f in turn.files.iter().filter(|f| f.image().is_some()) {
            m.content = m.content.replace(&image_marker(&f.name, true), &image_marker(&f.name, false));
        }
    }
}

/// The built-in responder (and the commands, with or without an LLM).
async fn builtin_reply(turn: &Turn<'_>, intent: Intent) -> Result<Reply, JobError> {
    let state = turn.state;
    let lang = turn.lang;
    let name = greeting_name(turn.user);
    Ok(match intent {
        Intent::Greeting => Reply::text(strings::greeting(lang, name)),
        Intent::Help => Reply::text(strings::help(lang, state.config.llm.is_some())),
        Intent::Brief => Reply::text(strings::brief(lang)),
        Intent::Reconnect | Intent::ConnectGmail => {
            let (text, blocks) = crate::google::prompt::connection_reply(state, &turn.user.user_id, lang)
                .await
                .map_err(JobError::retry)?;
            let blocks = blocks
                .into_iter()
                .map(serde_json::from_value::<SlackBlock>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JobError::Permanent(anyhow::Error::new(e).context("reading the Gmail blocks")))?;
            // The link in the button is the user's own: not for memory.
            Reply { text, blocks: Some(blocks), file: None, memorize: false }
        }
        Intent::Status => {
            let (exchanges, memorized) = storage::exchanges::counts(&state.db, &turn.user.user_id).await?;
            let pending = storage::jobs::backlog(&state.db)
                .await?
                .iter()
                .filter(|b| b.kind == memory::UPSERT_JOB)
                .map(|b| b.pending)
                .sum();
            Reply::text(strings::status(
                lang,
                &StatusFacts {
                    exchanges,
                    memorized,
                    memory_on: state.memory.is_some(),
                    memory_pending: pending,
                    llm_on: state.config.llm.is_some(),
                },
            ))
        }
        Intent::Forget => Reply {
            text: strings::forget_prompt(lang).to_owned(),
            blocks: Some(forget_blocks(lang)),
            file: None,
            memorize: false,
        },
        Intent::ForgetConfirmed => {
            let deleted = forget(state, &turn.user.user_id, Some(turn.exchange.id)).await?;
            Reply::text(strings::forgotten(lang, deleted, state.memory.is_some())).private()
        }
        Intent::Export => export(turn).await?.private(),
        Intent::Recall(topic) => Reply::text(recall(turn, &topic).await?),
        Intent::Other => Reply::text(strings::fallback(lang, name)),
    })
}

fn forget_blocks(lang: Lang) -> Vec<SlackBlock> {
    let button = |action: &str, label: &str, style: SlackBlockButtonStyle| {
        SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(SlackBlockPlainText::new(label.to_owned()).into())
                .with_action_id(action.into())
                .with_style(style),
        )
    };
    vec![
        SlackBlock::Section(
            SlackSectionBlock::new()
                .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(escape(strings::forget_prompt(lang))))),
        ),
        SlackBlock::Actions(SlackActionsBlock::new(vec![
            button(FORGET_CONFIRM_ACTION, strings::forget_confirm_button(lang), SlackBlockButtonStyle::Danger),
            button(FORGET_CANCEL_ACTION, strings::forget_cancel_button(lang), SlackBlockButtonStyle::Primary),
        ])),
    ]
}

/// Answers "what did I tell you about X" from ChromaDB memory and, always
/// as well, a word search of the user's stored messages (which also covers
/// what ChromaDB has not received yet, and ChromaDB being off or down).
async fn recall(turn: &Turn<'_>, topic: &str) -> Result<String, JobError> {
    let state = turn.state;
    let ex = turn.exchange;
    let words = intent::topic_words(topic);
    let mut memory_failed = false;
    // (exchange, memory distance)
    let mut candidates: Vec<(Exchange, Option<f32>)> = Vec::new();
    if let Some(m) = &state.memory {
        match m.recall(&ex.user_id, topic, 8).await {
            Ok(hits) => {
                let ids: Vec<Uuid> = hits.iter().filter_map(|h| h.id.parse().ok()).collect();
                let found = storage::exchanges::get_many(&state.db, &ex.user_id, &ids).await?;
                for h in &hits {
                    if let Some(e) = found.iter().find(|e| e.id.to_string() == h.id) {
                        candidates.push((e.clone(), h.distance));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "memory recall failed; searching Postgres only");
                memory_failed = true;
            }
        }
    }
    for e in storage::exchanges::search(&state.db, &ex.user_id, &words, ex.id, 10).await? {
        if !candidates.iter().any(|(c, _)| c.id == e.id) {
            candidates.push((e, None));
        }
    }
    let mut scored: Vec<(f32, Exchange)> = candidates
        .into_iter()
        .filter(|(e, _)| e.id != ex.id && matches!(intent::detect(&e.user_text), Intent::Other))
        .filter_map(|(e, distance)| {
            let lower = format!("{}\n{}", e.user_text, e.file_text.as_deref().unwrap_or("")).to_lowercase();
            let matched = words.iter().filter(|w| lower.contains(w.as_str())).count();
            // Squared L2 between unit vectors: below 0.8 means cosine above 0.6.
            let close = distance.is_some_and(|d| d < 0.8);
            (matched > 0 || close)
                .then(|| (matched as f32 * 10.0 + distance.map(|d| (2.0 - d).max(0.0)).unwrap_or(0.0), e))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.received_at.cmp(&a.1.received_at)));
    scored.truncate(3);
    let lang = turn.lang;
    if scored.is_empty() {
        let mut s = strings::recall_none(lang, topic);
        if memory_failed {
            s.push('\n');
            s.push_str(strings::recall_from_postgres_only(lang));
        }
        return Ok(s);
    }
    let tz = turn.tz();
    let mut s = strings::recall_intro(lang, topic);
    for (_, e) in &scored {
        let when = e.received_at.with_timezone(&tz).format("%Y-%m-%d %H:%M");
        s.push_str(&format!("\n• _{when}_: {}", recalled(e, &words).replace('\n', " ")));
    }
    if memory_failed {
        s.push('\n');
        s.push_str(strings::recall_from_postgres_only(lang));
    }
    Ok(s)
}

/// How a recalled exchange is quoted: the user's message, or, when the
/// words were found only in a file they sent (or they sent only files), the
/// file's first line holding one of them (else its first line), after the
/// file's name.
fn recalled(e: &Exchange, words: &[String]) -> String {
    let has_word = |text: &str| {
        let lower = text.to_lowercase();
        words.iter().any(|w| lower.contains(w.as_str()))
    };
    let Some(files) = e.file_text.as_deref().filter(|_| e.user_text.trim().is_empty() || !has_word(&e.user_text))
    else {
        return truncate(&e.user_text, 500);
    };
    let mut name = "";
    let mut first = None;
    for line in files.lines() {
        if let Some(header) = crate::slack::files::stored_name(line) {
            name = header;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        first.get_or_insert((name, line));
        if has_word(line) {
            first = Some((name, line));
            break;
        }
    }
    let quote = match first {
        Some((name, line)) => format!("[{name}] {}", truncate(line.trim(), 300)),
        None => String::new(),
    };
    match e.user_text.trim() {
        "" => quote,
        said => format!("{} {quote}", truncate(said, 200)),
    }
}

/// The user's history as a file, after a sentence saying what it holds.
async fn export(turn: &Turn<'_>) -> Result<Reply, JobError> {
    Ok(match export::history_file(turn).await? {
        None => Reply::text(strings::export_empty(turn.lang)),
        Some(file) => Reply {
            text: strings::export_intro(turn.lang, file.exchanges),
            blocks: None,
            file: Some(file),
            memorize: false,
        },
    })
}

/// Deletes the user's exchanges (all but `keep`) and queues the deletion of
/// their ChromaDB records, in one transaction. Returns how many were deleted.
async fn forget(state: &AppState, user_id: &str, keep: Option<Uuid>) -> Result<u64, JobError> {
    let mut tx = state.db.begin().await?;
    let deleted = storage::exchanges::forget_user(&mut tx, user_id, keep).await?;
    if state.memory.is_some() {
        memory::enqueue_forget(&mut *tx, user_id).await?;
    }
    tx.commit().await?;
    if state.memory.is_some() {
        state.wake_workers.notify_one();
    }
    tracing::info!(user = %user_id, deleted, "forgot a user's conversations at their request");
    Ok(deleted)
}

/// The `forget_confirm` / `forget_cancel` buttons.
pub async fn handle_forget_action(state: &AppState, user_id: &str, confirmed: bool) -> Result<(), JobError> {
    let user = storage::users::get(&state.db, user_id)
        .await?
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("forget action from unknown user {user_id}")))?;
    let lang = Lang::of_locale(user.locale.as_deref());
    let channel = dm_channel(state, &user).await?;
    let text = if confirmed {
        let deleted = forget(state, user_id, None).await?;
        strings::forgotten(lang, deleted, state.memory.is_some())
    } else {
        strings::forget_cancelled(lang).to_owned()
    };
    slack_write(state, Target::New { channel: &channel, thread_ts: None, tag: None }, &escape(&text), None).await?;
    Ok(())
}

/// The user's DM channel: stored, else where we last talked, else opened.
async fn dm_channel(state: &AppState, user: &User) -> Result<String, JobError> {
    if let Some(c) = &user.dm_channel_id {
        return Ok(c.clone());
    }
    if let Some(c) = storage::exchanges::last_channel(&state.db, &user.user_id).await? {
        return Ok(c);
    }
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set; cannot reply")))?;
    // Through the client: its 429/5xx policy and metrics, one DM-opening path.
    Ok(slack.open_dm(&user.user_id).await?)
}

/// Called when handling the inbound event `event_id` died: if it was a DM
/// whose exchange is still waiting, the user gets a short apology (over the
/// placeholder, if one was posted) and the exchange is marked `failed` with
/// the reason.
pub async fn on_event_dead(state: &AppState, event_id: &str, error: &anyhow::Error) {
    let exchange = match storage::exchanges::by_event(&state.db, event_id).await {
        Ok(Some(e)) => e,
        Ok(None) => return apologise_for_unstored_dm(state, event_id, error).await,
        Err(e) => {
            tracing::error!(error = %e, event_id, "could not look up the exchange of a dead reply job");
            return;
        }
    };
    if exchange.is_final() {
        return;
    }
    let posted = post_apology(state, &exchange, exchange.reply_ts.as_deref()).await;
    let mut reason: String = format!("{error:#}").chars().take(2_000).collect();
    let (ts, apology_waits) = match posted {
        Ok(ts) => (Some(ts), false),
        Err(JobError::Retry { error, .. }) => {
            // Slack is unavailable or slowing us down: the apology waits for it.
            reason
                .push_str(&format!("; the apology could not be posted yet ({error:#}) and waits until Slack takes it"));
            (None, true)
        }
        Err(JobError::Permanent(error)) => {
            reason.push_str(&format!("; the apology could not be posted either: {error:#}"));
            (None, false)
        }
    };
    crate::metrics::metrics().replies.get_or_create(&crate::metrics::outcome("failed")).inc();
    match mark_failed_and_queue_apology(state, &exchange, &reason, ts.as_deref(), apology_waits).await {
        Ok(()) if apology_waits => tracing::error!(
            exchange = %exchange.id,
            user = %exchange.user_id,
            reason,
            "reply failed for good, and Slack did not take the apology; it is queued until Slack does"
        ),
        Ok(()) => {
            tracing::warn!(exchange = %exchange.id, user = %exchange.user_id, "reply failed for good; the user got an apology")
        }
        Err(e) => tracing::error!(error = %e, exchange = %exchange.id, "could not mark the exchange failed"),
    }
}

/// Marks the exchange failed and, when its apology is still to be posted,
/// queues the [`APOLOGY_JOB`] in the same transaction (so the job never
/// finds the exchange still waiting).
async fn mark_failed_and_queue_apology(
    state: &AppState,
    exchange: &Exchange,
    reason: &str,
    ts: Option<&str>,
    queue_apology: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    storage::exchanges::mark_failed(&mut *tx, exchange.id, reason, ts).await?;
    if queue_apology {
        let (key, payload) = apology_job(exchange.id);
        storage::jobs::enqueue_with_attempts(&mut *tx, APOLOGY_JOB, &key, &payload, APOLOGY_ATTEMPTS).await?;
    }
    tx.commit().await?;
    if queue_apology {
        state.wake_workers.notify_one();
    }
    Ok(())
}

/// Job kind: post the apology that Slack could not take when a reply died:
/// for a failed exchange (payload `{"exchange_id"}`), or for a DM that was
/// never stored (payload `{"event_id"}`).
pub const APOLOGY_JOB: &str = "dm_apology";

/// Attempts of an [`APOLOGY_JOB`]: with the outbox's backoff (at most five
/// minutes apart) about a day, so an apology outlasts a long Slack outage.
pub const APOLOGY_ATTEMPTS: i32 = 300;

/// The [`APOLOGY_JOB`] of one exchange: its dedupe key and payload.
pub fn apology_job(exchange_id: Uuid) -> (String, serde_json::Value) {
    (format!("apology:{exchange_id}"), serde_json::json!({ "exchange_id": exchange_id }))
}

/// Posts the apology for an exchange in the user's language: over `over`
/// (its placeholder, or an apology posted before), else as a new message
/// tagged as the exchange's reply, so that a retry finds it. Parts of a
/// long reply an attempt posted after its first message are removed (best
/// effort): the apology stands alone.
async fn post_apology(state: &AppState, exchange: &Exchange, over: Option<&str>) -> Result<String, JobError> {
    if over.is_some() {
        match posted_parts(state, exchange).await {
            Ok(parts) => remove_parts(state, exchange, parts).await,
            Err(JobError::Retry { error, .. } | JobError::Permanent(error)) => {
                tracing::warn!(exchange = %exchange.id, error = format!("{error:#}"), "could not look for parts of the failed reply; any stay beside the apology")
            }
        }
    }
    let locale = storage::users::get(&state.db, &exchange.user_id).await.ok().flatten().and_then(|u| u.locale);
    let lang = Lang::detect(&exchange.user_text, locale.as_deref());
    let apology = escape(strings::apology(lang));
    let channel = exchange.channel_id.as_str();
    let target = match over {
        Some(ts) => Target::Update { channel, ts },
        None => Target::New { channel, thread_ts: exchange.thread_ts.as_deref(), tag: Some(Mark::Reply(exchange.id)) },
    };
    slack_write(state, target, &apology, None).await
}

/// The [`APOLOGY_JOB`]: posts the apology that Slack could not take when
/// the reply died, over the placeholder if there is one, or over an
/// apology an earlier attempt posted without learning its ts; records its
/// ts. An exchange forgotten meanwhile needs nothing.
pub async fn run_apology_job(state: &AppState, job: &storage::jobs::Job) -> Result<(), JobError> {
    if let Some(event_id) = job.payload.get("event_id").and_then(|v| v.as_str()) {
        post_unstored_apology(state, event_id, job.attempts > 1).await?;
        return Ok(());
    }
    let id =
        job.payload.get("exchange_id").and_then(|v| v.as_str()).and_then(|s| s.parse::<Uuid>().ok()).ok_or_else(
            || JobError::Permanent(anyhow::anyhow!("{APOLOGY_JOB} payload has no exchange_id nor event_id")),
        )?;
    let Some(exchange) = storage::exchanges::get(&state.db, id).await.map_err(JobError::retry)? else {
        return Ok(());
    };
    if exchange.status != "failed" {
        return Ok(());
    }
    let over = match &exchange.reply_ts {
        Some(ts) => Some(ts.clone()),
        None => earlier_post(state, &exchange).await?,
    };
    let ts = post_apology(state, &exchange, over.as_deref()).await?;
    storage::exchanges::set_apology_ts(&state.db, exchange.id, &ts).await.map_err(JobError::retry)?;
    tracing::warn!(exchange = %exchange.id, user = %exchange.user_id, "the apology for a failed reply is posted, now that Slack takes it");
    Ok(())
}

/// A DM whose job died before its exchange was stored (say the user row
/// never arrived): the raw event still says where to apologise. If Slack
/// does not take the apology (unavailable, rate limited), it waits in the
/// outbox as an [`APOLOGY_JOB`] keyed by the event.
async fn apologise_for_unstored_dm(state: &AppState, event_id: &str, error: &anyhow::Error) {
    match post_unstored_apology(state, event_id, false).await {
        Ok(Some(_)) => tracing::warn!(
            event_id,
            error = format!("{error:#}"),
            "a DM could not be stored or answered; the user got an apology"
        ),
        Ok(None) => {}
        Err(JobError::Retry { error: e, .. }) => {
            let (key, payload) = unstored_apology_job(event_id);
            let queued =
                storage::jobs::enqueue_with_attempts(&state.db, APOLOGY_JOB, &key, &payload, APOLOGY_ATTEMPTS).await;
            state.wake_workers.notify_one();
            tracing::error!(
                event_id,
                error = format!("{error:#}"),
                apology_error = format!("{e:#}"),
                apology_queued = queued.is_ok(),
                "a DM could not be stored or answered, and Slack did not take the apology; it is queued until Slack does"
            );
        }
        Err(JobError::Permanent(e)) => tracing::error!(
            event_id,
            error = format!("{error:#}"),
            apology_error = format!("{e:#}"),
            "a DM could not be stored or answered, and the apology could not be posted"
        ),
    }
}

/// The [`APOLOGY_JOB`] of a DM that was never stored: keyed by its event.
fn unstored_apology_job(event_id: &str) -> (String, serde_json::Value) {
    (format!("apology:event:{event_id}"), serde_json::json!({ "event_id": event_id }))
}

/// Posts the apology for a DM that was never stored, where its raw event
/// says, tagged with the event id; with `look_first` (a retry), an apology
/// an earlier attempt posted is found by that tag instead of posted again.
/// `None` when the event is gone or is not a human's DM.
async fn post_unstored_apology(state: &AppState, event_id: &str, look_first: bool) -> Result<Option<String>, JobError> {
    let Some((_, payload)) = storage::events::payload(&state.db, event_id).await.map_err(JobError::retry)? else {
        return Ok(None);
    };
    let event = payload.get("event").unwrap_or(&payload);
    let field = |k: &str| event.get(k).and_then(|v| v.as_str());
    let is_human_dm = field("type") == Some("message")
        && field("channel_type") == Some("im")
        && field("user").is_some()
        && event.get("bot_id").is_none()
        && event.get("subtype").is_none();
    let (Some(channel), true) = (field("channel"), is_human_dm) else { return Ok(None) };
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("SLACK_BOT_TOKEN is not set; cannot apologise")))?;
    let tag =
        crate::slack::client::Tag { event_type: APOLOGY_METADATA_EVENT, key: "event_id", value: event_id, also: &[] };
    let thread_ts = field("thread_ts");
    if look_first {
        match slack.find_tagged(channel, thread_ts, field("ts").unwrap_or("0"), &tag).await {
            Ok(Some(ts)) => return Ok(Some(ts)),
            Ok(None) | Err(crate::slack::client::SlackError::Refused { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let lang = Lang::detect(field("text").unwrap_or(""), None);
    Ok(Some(slack.post_tagged_message(channel, &escape(strings::apology(lang)), None, thread_ts, Some(&tag)).await?))
}

/// The Slack message metadata `event_type` of an apology for a DM that was
/// never stored, with the event id as `event_id` in its payload.
pub const APOLOGY_METADATA_EVENT: &str = "robeing_apology";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_mentions() {
        assert_eq!(escape("<!channel> & <@U1>"), "&lt;!channel&gt; &amp; &lt;@U1&gt;");
        assert_eq!(escape("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn split_prefers_paragraphs_and_never_cuts_entities() {
        let text = format!("{}\n\n{}", "a".repeat(2500), "b".repeat(2500));
        let parts = split(&text, 3000);
        assert_eq!(parts, vec!["a".repeat(2500), "b".repeat(2500)]);
        let text = "&amp;".repeat(1000);
        for p in split(&text, 3000) {
            assert!(p.chars().count() <= 3000);
            assert!(p.starts_with("&amp;") && p.ends_with("&amp;"), "cut inside an entity");
        }
        let long = "가".repeat(40_000);
        let parts = split(&long, 3000);
        assert_eq!(parts.concat(), long);
        assert!(parts.iter().all(|p| p.chars().count() <= 3000));
        assert_eq!(split("short", 3000), vec!["short"]);
    }
}
