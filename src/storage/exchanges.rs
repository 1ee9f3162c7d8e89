//! DM exchanges (`exchanges`): a user's message and robeing's reply, the
//! durable conversation log the seed's State Service never managed to write.
//!
//! A row is created when the message is received (idempotent on the
//! message's channel + ts), gets its reply text and Slack `ts` when the reply
//! is posted, and is `failed` (with why) when every attempt to reply failed.
//! `memorized_at` says when ChromaDB got it.
//!
//! Postgres `text` cannot hold NUL (U+0000); [`sanitize`] replaces it with
//! U+FFFD before anything is stored. Every other character, including
//! bidirectional overrides, is stored as received.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::users::User;

/// A stored exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub id: Uuid,
    pub user_id: String,
    pub channel_id: String,
    pub thread_ts: Option<String>,
    pub user_ts: String,
    pub user_text: String,
    pub reply_text: Option<String>,
    pub reply_ts: Option<String>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub event_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub replied_at: Option<DateTime<Utc>>,
    pub memorized_at: Option<DateTime<Utc>>,
    /// The text read from the message's files, each under its name
    /// (`slack::files`); `None` when no file of it could be read.
    pub file_text: Option<String>,
}

impl Exchange {
    /// Replied or failed: nothing more will be sent for it.
    pub fn is_final(&self) -> bool {
        self.status != "received"
    }
}

/// An exchange as a history export shows it.
#[derive(Debug, Clone)]
pub struct Exported {
    pub id: Uuid,
    pub user_text: String,
    pub user_files: Vec<String>,
    pub file_text: Option<String>,
    pub reply_text: Option<String>,
    pub status: String,
    pub received_at: DateTime<Utc>,
}

/// A received message, before it is stored, and what its reply needs read
/// with it (see [`insert_many`]).
#[derive(Debug, Clone)]
pub struct NewExchange {
    pub user_id: String,
    pub channel_id: String,
    pub thread_ts: Option<String>,
    pub user_ts: String,
    /// Already [`sanitize`]d.
    pub user_text: String,
    /// Names of the files the message carried, without [`FILE_NAME_SEPARATOR`].
    pub user_files: Vec<String>,
    pub event_id: Option<String>,
    pub wanted: HistoryWanted,
}

/// Joins a message's file names into one array element for
/// [`insert_many`]'s UNNEST (which cannot take an array per row); the ASCII
/// unit separator, which no file name holds.
pub const FILE_NAME_SEPARATOR: char = '\u{1f}';

/// Makes text storable in Postgres: NUL becomes U+FFFD (the only character
/// `text` refuses). Everything else is kept as is.
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}")) } else { text.into() }
}

/// What [`insert_many`] found for one message.
#[derive(Debug)]
pub enum Inserted {
    /// The sender is not a stored user; nothing was inserted.
    UnknownUser,
    /// Stored and claimed now.
    New(User, Box<Exchange>, History),
    /// The message was stored before (then call [`claim`] or [`by_message`]).
    Existing(User, History),
}

/// One of the user's past replied exchanges, as the prompt uses it.
#[derive(Debug, Clone)]
pub struct Past {
    pub id: Uuid,
    pub user_text: String,
    pub reply_text: String,
    /// ChromaDB holds it (`memorized_at` is set).
    pub memorized: bool,
}

/// The user's latest replied exchanges, read by the statement that stores
/// the message (see [`insert_many`]).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Newest first, at most the limit asked for.
    pub past: Vec<Past>,
    /// Whether ChromaDB holds any exchange of the user that is not in
    /// `past` (only looked up when asked for; false otherwise).
    pub memorized_beyond: bool,
}

/// What [`insert_many`] reads besides the user row.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryWanted {
    /// Latest replied exchanges to return (0: none).
    pub limit: i64,
    /// Whether to look up [`History::memorized_beyond`].
    pub memorized_beyond: bool,
}

/// Stores many received messages in one statement (one round trip, one
/// commit) and answers for each, in order, what [`Inserted`] says. For each
/// message: the exchange is inserted unless the message is already stored,
/// claimed for `claim_secs` (see [`claim`]); its sender's user row and the
/// sender's latest replied exchanges are read in the same statement (the
/// history as of before the insert, so never a message being stored, which
/// is not replied). Nothing is inserted for a sender who is not a stored
/// user. The event link is kept only if the event is recorded
/// (`slack_events`). A message given twice is inserted once, and only its
/// first occurrence is `New`.
pub async fn insert_many(
    executor: impl PgExecutor<'_>,
    messages: &[&NewExchange],
    claim_secs: f64,
) -> Result<Vec<Inserted>, sqlx::Error> {
    let user_ids: Vec<&str> = messages.iter().map(|m| m.user_id.as_str()).collect();
    let channel_ids: Vec<&str> = messages.iter().map(|m| m.channel_id.as_str()).collect();
    let thread_tss: Vec<Option<&str>> = messages.iter().map(|m| m.thread_ts.as_deref()).collect();
    let user_tss: Vec<&str> = messages.iter().map(|m| m.user_ts.as_str()).collect();
    let texts: Vec<&str> = messages.iter().map(|m| m.user_text.as_str()).collect();
    let files: Vec<String> = messages
        .iter()
        .map(|m| {
            let names: Vec<String> = m.user_files.iter().map(|f| f.replace(FILE_NAME_SEPARATOR, " ")).collect();
            names.join(&FILE_NAME_SEPARATOR.to_string())
        })
        .collect();
    let event_ids: Vec<Option<&str>> = messages.iter().map(|m| m.event_id.as_deref()).collect();
    let limits: Vec<i64> = messages.iter().map(|m| m.wanted.limit.max(0)).collect();
    let beyond: Vec<bool> = messages.iter().map(|m| m.wanted.memorized_beyond).collect();
    // Runtime-checked (not `query!`): arrays in, the history arrays built here.
    let rows = sqlx::query(
        r#"WITH input AS (
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                    $7::int8[], $8::bool[], $10::text[])
                   WITH ORDINALITY AS t(user_id, channel_id, thread_ts, user_ts, user_text, event_id,
                                        history_limit, want_beyond, user_files, ord)
           ), ins AS (
               INSERT INTO exchanges (user_id, channel_id, thread_ts, user_ts, user_text, user_files, event_id,
                                      reply_claimed_until)
               SELECT i.user_id, i.channel_id, i.thread_ts, i.user_ts, i.user_text,
                      COALESCE(string_to_array(NULLIF(i.user_files, ''), chr(31)), '{}'),
                      (SELECT e.event_id FROM slack_events e WHERE e.event_id = i.event_id),
                      now() + make_interval(secs => $9)
               FROM input i JOIN slack_users u ON u.user_id = i.user_id
               ORDER BY i.ord
               ON CONFLICT (channel_id, user_ts) DO NOTHING
               RETURNING id, event_id, received_at, channel_id, user_ts
           )
           SELECT u.user_id, u.team_id, u.real_name, u.display_name, u.tz, u.locale, u.dm_channel_id,
                  u.briefing_time, u.briefing_enabled, u.profile_fetched_at,
                  ins.id, ins.event_id, ins.received_at,
                  COALESCE(h.ids, '{}') AS h_ids, COALESCE(h.user_texts, '{}') AS h_user_texts,
                  COALESCE(h.reply_texts, '{}') AS h_reply_texts, COALESCE(h.memorized, '{}') AS h_memorized,
                  CASE WHEN i.want_beyond AND u.user_id IS NOT NULL THEN EXISTS (
                      SELECT 1 FROM exchanges x
                      WHERE x.user_id = i.user_id AND x.memorized_at IS NOT NULL
                        AND x.id <> ALL (COALESCE(h.ids, '{}')))
                  ELSE false END AS memorized_beyond
           FROM input i
           LEFT JOIN slack_users u ON u.user_id = i.user_id
           LEFT JOIN ins ON ins.channel_id = i.channel_id AND ins.user_ts = i.user_ts
                AND i.ord = (SELECT min(j.ord) FROM input j
                             WHERE j.channel_id = i.channel_id AND j.user_ts = i.user_ts)
           LEFT JOIN LATERAL (
               SELECT array_agg(p.id ORDER BY p.received_at DESC, p.id DESC) AS ids,
                      array_agg(p.user_text ORDER BY p.received_at DESC, p.id DESC) AS user_texts,
                      array_agg(p.reply_text ORDER BY p.received_at DESC, p.id DESC) AS reply_texts,
                      array_agg(p.memorized ORDER BY p.received_at DESC, p.id DESC) AS memorized
               FROM (SELECT id, user_text, COALESCE(reply_text, '') AS reply_text,
                            memorized_at IS NOT NULL AS memorized, received_at
                     FROM exchanges WHERE user_id = i.user_id AND status = 'replied'
                     ORDER BY received_at DESC, id DESC LIMIT i.history_limit) p
           ) h ON u.user_id IS NOT NULL AND i.history_limit > 0
           ORDER BY i.ord"#,
    )
    .bind(&user_ids)
    .bind(&channel_ids)
    .bind(&thread_tss)
    .bind(&user_tss)
    .bind(&texts)
    .bind(&event_ids)
    .bind(&limits)
    .bind(&beyond)
    .bind(claim_secs)
    .bind(&files)
    .fetch_all(executor)
    .await?;
    if rows.len() != messages.len() {
        return Err(sqlx::Error::Protocol(format!("storing {} messages returned {} rows", messages.len(), rows.len())));
    }
    rows.iter().zip(messages).map(|(r, new)| inserted_from_row(r, new)).collect()
}

/// What [`insert_many`] found for one message, from its row.
fn inserted_from_row(r: &sqlx::postgres::PgRow, new: &NewExchange) -> Result<Inserted, sqlx::Error> {
    use sqlx::Row as _;
    let Some(user_id) = r.try_get::<Option<String>, _>("user_id")? else { return Ok(Inserted::UnknownUser) };
    let user = User {
        user_id,
        team_id: r.try_get("team_id")?,
        real_name: r.try_get("real_name")?,
        display_name: r.try_get("display_name")?,
        tz: r.try_get("tz")?,
        locale: r.try_get("locale")?,
        dm_channel_id: r.try_get("dm_channel_id")?,
        briefing_time: r.try_get("briefing_time")?,
        briefing_enabled: r.try_get("briefing_enabled")?,
        profile_fetched_at: r.try_get("profile_fetched_at")?,
    };
    let ids: Vec<Uuid> = r.try_get("h_ids")?;
    let user_texts: Vec<String> = r.try_get("h_user_texts")?;
    let reply_texts: Vec<String> = r.try_get("h_reply_texts")?;
    let memorized: Vec<bool> = r.try_get("h_memorized")?;
    let history = History {
        past: ids
            .into_iter()
            .zip(user_texts)
            .zip(reply_texts)
            .zip(memorized)
            .map(|(((id, user_text), reply_text), memorized)| Past { id, user_text, reply_text, memorized })
            .collect(),
        memorized_beyond: r.try_get("memorized_beyond")?,
    };
    let id: Option<Uuid> = r.try_get("id")?;
    let received_at: Option<DateTime<Utc>> = r.try_get("received_at")?;
    let (Some(id), Some(received_at)) = (id, received_at) else { return Ok(Inserted::Existing(user, history)) };
    let exchange = Exchange {
        id,
        user_id: user.user_id.clone(),
        channel_id: new.channel_id.clone(),
        thread_ts: new.thread_ts.clone(),
        user_ts: new.user_ts.clone(),
        user_text: new.user_text.clone(),
        reply_text: None,
        reply_ts: None,
        status: "received".to_owned(),
        failure_reason: None,
        event_id: r.try_get("event_id")?,
        received_at,
        replied_at: None,
        memorized_at: None,
        file_text: None,
    };
    Ok(Inserted::New(user, Box::new(exchange), history))
}

/// Claims a stored exchange that still waits for its reply and that no one
/// else holds, for `claim_secs`. `None`: replied, failed, or being replied to.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    channel_id: &str,
    user_ts: &str,
    claim_secs: f64,
) -> Result<Option<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"UPDATE exchanges SET reply_claimed_until = now() + make_interval(secs => $3)
           WHERE channel_id = $1 AND user_ts = $2 AND status = 'received'
             AND (reply_claimed_until IS NULL OR reply_claimed_until < now())
           RETURNING id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                     failure_reason, event_id, received_at, replied_at, memorized_at, file_text"#,
        channel_id,
        user_ts,
        claim_secs
    )
    .fetch_optional(executor)
    .await
}

/// Gives up a claim (the attempt failed; a retry may claim it at once).
pub async fn release(executor: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"UPDATE exchanges SET reply_claimed_until = NULL WHERE id = $1"#, id)
        .execute(executor)
        .await
        .map(|_| ())
}

/// The exchange for one Slack message.
pub async fn by_message(
    executor: impl PgExecutor<'_>,
    channel_id: &str,
    user_ts: &str,
) -> Result<Option<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE channel_id = $1 AND user_ts = $2"#,
        channel_id,
        user_ts
    )
    .fetch_optional(executor)
    .await
}

/// One exchange by id.
pub async fn get(executor: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE id = $1"#,
        id
    )
    .fetch_optional(executor)
    .await
}

/// Several exchanges by id, of one user, in no particular order.
pub async fn get_many(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    ids: &[Uuid],
) -> Result<Vec<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE user_id = $1 AND id = ANY($2)"#,
        user_id,
        ids
    )
    .fetch_all(executor)
    .await
}

/// The exchange a Slack event created, if any.
pub async fn by_event(executor: impl PgExecutor<'_>, event_id: &str) -> Result<Option<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE event_id = $1"#,
        event_id
    )
    .fetch_optional(executor)
    .await
}

/// Records the ts of a placeholder ("…") posted while the reply is composed,
/// so that a retry updates it instead of posting another message.
pub async fn set_placeholder(executor: impl PgExecutor<'_>, id: Uuid, ts: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"UPDATE exchanges SET reply_ts = $2 WHERE id = $1 AND status = 'received'"#, id, ts)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Stores the text read from an exchange's files (before its reply is
/// recorded, so memory gets it with the reply).
pub async fn set_file_text(executor: impl PgExecutor<'_>, id: Uuid, text: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"UPDATE exchanges SET file_text = $2 WHERE id = $1"#, id, text).execute(executor).await.map(|_| ())
}

/// A job queued by the same statement that marks an exchange replied.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub kind: &'static str,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
}

/// A posted reply to record: the exchange, its reply text and Slack ts, the
/// job to queue if the exchange is marked now, and the inbound event it
/// answers.
#[derive(Debug, Clone)]
pub struct ReplyRecord {
    pub id: Uuid,
    pub reply_text: String,
    pub reply_ts: String,
    pub follow_up: Option<FollowUp>,
    pub event_id: Option<String>,
    /// The reply is kept out of vector memory on purpose (the forget
    /// confirmation, exports): memory never catches up on it.
    pub kept_out_of_memory: bool,
}

/// Records many posted replies in one statement (one round trip, one
/// commit): each exchange still waiting is marked replied (its reply text
/// and ts, claim released) and, only then, its follow-up job is queued
/// (skipped when its dedupe key exists); every given inbound event is
/// recorded handled, marked or not. Returns the exchanges marked now; one
/// not waiting any more (replied or failed already) is left as it is.
pub async fn mark_replied_many(
    executor: impl PgExecutor<'_>,
    records: &[&ReplyRecord],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let texts: Vec<&str> = records.iter().map(|r| r.reply_text.as_str()).collect();
    let tss: Vec<&str> = records.iter().map(|r| r.reply_ts.as_str()).collect();
    let kinds: Vec<Option<&str>> = records.iter().map(|r| r.follow_up.as_ref().map(|f| f.kind)).collect();
    let keys: Vec<Option<&str>> = records.iter().map(|r| r.follow_up.as_ref().map(|f| f.dedupe_key.as_str())).collect();
    let payloads: Vec<Option<sqlx::types::Json<&serde_json::Value>>> =
        records.iter().map(|r| r.follow_up.as_ref().map(|f| sqlx::types::Json(&f.payload))).collect();
    let events: Vec<Option<&str>> = records.iter().map(|r| r.event_id.as_deref()).collect();
    let kept_out: Vec<bool> = records.iter().map(|r| r.kept_out_of_memory).collect();
    // Runtime-checked (not `query!`), like `events::record_batch`: arrays in.
    let marked: Vec<Uuid> = sqlx::query_scalar(
        r#"WITH input AS (
               SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[],
                                    $8::bool[])
                   AS t(id, reply_text, reply_ts, kind, dedupe_key, payload, event_id, kept_out_of_memory)
           ), replied AS (
               UPDATE exchanges x SET status = 'replied', reply_text = i.reply_text, reply_ts = i.reply_ts,
                      replied_at = now(), reply_claimed_until = NULL, kept_out_of_memory = i.kept_out_of_memory
               FROM input i
               WHERE x.id = i.id AND x.status = 'received'
               RETURNING x.id
           ), queued AS (
               INSERT INTO jobs (kind, dedupe_key, payload)
               SELECT i.kind, i.dedupe_key, i.payload FROM input i JOIN replied r ON r.id = i.id
               WHERE i.kind IS NOT NULL
               ON CONFLICT (dedupe_key) DO NOTHING
               RETURNING id
           ), handled AS (
               UPDATE slack_events SET state = 'done', locked_until = NULL, finished_at = now(), last_error = NULL
               WHERE event_id IN (SELECT event_id FROM input WHERE event_id IS NOT NULL)
           )
           SELECT id FROM replied"#,
    )
    .bind(&ids)
    .bind(&texts)
    .bind(&tss)
    .bind(&kinds)
    .bind(&keys)
    .bind(&payloads)
    .bind(&events)
    .bind(&kept_out)
    .fetch_all(executor)
    .await?;
    Ok(marked.into_iter().collect())
}

/// Records the ts of the apology posted for a failed exchange, once it is
/// out (see `conversation::run_apology_job`).
pub async fn set_apology_ts(executor: impl PgExecutor<'_>, id: Uuid, ts: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(r#"UPDATE exchanges SET reply_ts = $2 WHERE id = $1 AND status = 'failed'"#, id, ts)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Marks the exchange failed, with why. Returns false if it was not waiting.
pub async fn mark_failed(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    reason: &str,
    reply_ts: Option<&str>,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        r#"UPDATE exchanges SET status = 'failed', failure_reason = $2, reply_ts = COALESCE($3, reply_ts),
                  reply_claimed_until = NULL
           WHERE id = $1 AND status = 'received'"#,
        id,
        reason,
        reply_ts
    )
    .execute(executor)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Records that ChromaDB holds the exchange. False when the exchange is gone
/// (forgotten meanwhile) or not replied.
pub async fn set_memorized(executor: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query!(r#"UPDATE exchanges SET memorized_at = now() WHERE id = $1 AND status = 'replied'"#, id)
        .execute(executor)
        .await
        .map(|r| r.rows_affected() == 1)
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The user's past messages (or the files they sent) containing any of
/// `words` (case-insensitive),
/// newest first: the memory fallback when ChromaDB is off or down.
pub async fn search(
    executor: impl PgExecutor<'_>,
    user_id: &str,
    words: &[String],
    except: Uuid,
    limit: i64,
) -> Result<Vec<Exchange>, sqlx::Error> {
    let patterns: Vec<String> = words.iter().map(|w| format!("%{}%", like_escape(w))).collect();
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE user_id = $1 AND id <> $2 AND (user_text ILIKE ANY($3) OR file_text ILIKE ANY($3))
           ORDER BY received_at DESC LIMIT $4"#,
        user_id,
        except,
        &patterns,
        limit
    )
    .fetch_all(executor)
    .await
}

/// Every exchange of the user, oldest first (for export).
pub async fn all_for_user(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Vec<Exported>, sqlx::Error> {
    sqlx::query_as!(
        Exported,
        r#"SELECT id, user_text, user_files, file_text, reply_text, status, received_at
           FROM exchanges WHERE user_id = $1 ORDER BY received_at, user_ts"#,
        user_id
    )
    .fetch_all(executor)
    .await
}

/// How many exchanges the user has, and how many ChromaDB holds.
pub async fn counts(executor: impl PgExecutor<'_>, user_id: &str) -> Result<(i64, i64), sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "total!", count(memorized_at) AS "memorized!" FROM exchanges WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(executor)
    .await?;
    Ok((r.total, r.memorized))
}

/// The channel robeing last talked to the user in.
pub async fn last_channel(executor: impl PgExecutor<'_>, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT channel_id FROM exchanges WHERE user_id = $1 ORDER BY received_at DESC LIMIT 1"#,
        user_id
    )
    .fetch_optional(executor)
    .await
}

/// Deletes the user's exchanges (all but `keep`, if given) and blanks the
/// raw Slack payloads those exchanges came from, which hold the same text.
/// The event rows themselves stay (with a tombstone payload) so a late
/// redelivery is still recognised as a duplicate. Returns how many
/// exchanges were deleted.
///
/// The exchanges are locked (deleted) before their events, the order in
/// which a reply group ([`mark_replied_many`]) locks them, so a forget and
/// the recording of one of the user's replies wait for each other instead
/// of deadlocking.
pub async fn forget_user(conn: &mut sqlx::PgConnection, user_id: &str, keep: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let events: Vec<Option<String>> = sqlx::query_scalar!(
        r#"DELETE FROM exchanges WHERE user_id = $1 AND id IS DISTINCT FROM $2 RETURNING event_id"#,
        user_id,
        keep
    )
    .fetch_all(&mut *conn)
    .await?;
    let deleted = events.len() as u64;
    let event_ids: Vec<String> = events.into_iter().flatten().collect();
    sqlx::query!(
        r#"UPDATE slack_events SET payload = '{"forgotten": true}'::jsonb WHERE event_id = ANY($1)"#,
        &event_ids
    )
    .execute(&mut *conn)
    .await?;
    Ok(deleted)
}

/// Several exchanges by id (any user).
pub async fn get_by_ids(executor: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Exchange>, sqlx::Error> {
    sqlx::query_as!(
        Exchange,
        r#"SELECT id, user_id, channel_id, thread_ts, user_ts, user_text, reply_text, reply_ts, status,
                  failure_reason, event_id, received_at, replied_at, memorized_at, file_text
           FROM exchanges WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(executor)
    .await
}

/// Which of these exchanges are still stored (not forgotten).
pub async fn existing_ids(executor: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT id FROM exchanges WHERE id = ANY($1)"#, ids).fetch_all(executor).await
}

/// Up to `limit` replied exchanges that ChromaDB does not hold yet and
/// should (not kept out of memory), in id order after `after` (a cursor:
/// each call goes on where the last one stopped, so finding them all reads
/// the table once).
pub async fn not_memorized_after(
    executor: impl PgExecutor<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id FROM exchanges
           WHERE ($1::uuid IS NULL OR id > $1) AND status = 'replied' AND memorized_at IS NULL
             AND NOT kept_out_of_memory
           ORDER BY id LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(executor)
    .await
}

/// Records that ChromaDB holds these exchanges; returns the ids that were
/// still there (replied and not forgotten meanwhile).
pub async fn set_memorized_many(executor: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE exchanges SET memorized_at = now() WHERE id = ANY($1) AND status = 'replied' RETURNING id"#,
        ids
    )
    .fetch_all(executor)
    .await
}
