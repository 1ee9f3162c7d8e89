//! Delivering briefings: the `briefing_deliver` job that composes, renders
//! and posts a claimed daily briefing by DM, and the direct paths used by
//! `/brief` (the slash command's `response_url`, else a DM) and the CLI.
//!
//! # Exactly once, and what is left of "at least once"
//!
//! The scheduler claims a daily briefing (a row in `briefings`, unique per
//! user and local date) and enqueues its job (`dedupe_key`
//! `briefing:<id>`) in ONE statement: there is never a claim without a job
//! (so never no briefing), nor two claims (so never two jobs). The job runs
//! under a lease and is retried until it succeeds or its attempts run out,
//! and then the row says `failed` with the reason — never silently nothing.
//! A job whose row is no longer `claimed` does nothing.
//!
//! Slack's `chat.postMessage` has no idempotency key, so a crash after Slack
//! accepted the message but before `mark_delivered` commits would, on the
//! retry, post it again. To close most of that window every briefing carries
//! message metadata (`robeing_briefing`, its id), and a retried job first
//! looks for it in the DM's history ([`find_posted`]) and records the message
//! it finds instead of posting. The metadata also carries the sections'
//! statuses, so the row records what that message said; they are recorded
//! with the delivery, and the job ends, in one statement
//! (`storage::briefings::mark_delivered`). What remains is honest at-least-once: if that
//! history check itself fails (Slack down, scope missing) the retry posts
//! anyway, because a briefing sent twice is better than none.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    compose::{self, Briefing, Section},
    render::{self, Rendered},
};
use crate::{
    jobs::{Done, JobError},
    slack::client::{SlackError, Tag},
    startup::AppState,
    storage::{
        self,
        briefings::{Delivery, Sections},
        jobs::Job,
        users::User,
    },
};

/// The job kind in the outbox.
pub const JOB_KIND: &str = "briefing_deliver";
/// Mail window when there was no earlier briefing.
pub const DEFAULT_MAIL_WINDOW: Duration = Duration::hours(24);
/// Longest mail window: after a long absence, a week of mail is already more
/// than a morning message can summarise.
pub const MAX_MAIL_WINDOW: Duration = Duration::days(7);

/// The job's payload.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    pub briefing_id: Uuid,
}

/// The outbox dedupe key of a briefing's delivery (the claim statement,
/// `storage::briefings::claim_daily_batch`, builds the same).
pub fn dedupe_key(briefing_id: Uuid) -> String {
    format!("briefing:{briefing_id}")
}

/// Where the mail window of a briefing starts, given when the user's last
/// briefing with its mail was delivered.
pub fn mail_since(last_mail_delivered_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    last_mail_delivered_at.unwrap_or(now - DEFAULT_MAIL_WINDOW).max(now - MAX_MAIL_WINDOW)
}

/// Composes and renders one user's briefing that has no row (a dry run):
/// reads the mail window's start and the Gmail connection first.
pub async fn build(
    state: &AppState,
    user: &User,
    sections: Option<Section>,
    local_date: NaiveDate,
) -> (Briefing, Rendered) {
    let last = storage::briefings::last_mail_delivered_at(&state.db, &user.user_id).await.unwrap_or_else(|e| {
        tracing::warn!(user = %user.user_id, error = %e, "could not read the last briefing; using 24 h");
        None
    });
    let gmail = match storage::briefings::gmail_state(&state.db, &user.user_id).await {
        Ok(g) => Ok(g),
        Err(e) => {
            tracing::error!(user = %user.user_id, error = %e, "could not read the Gmail connection");
            Err(())
        }
    };
    let briefing = compose::compose(state, user, sections, mail_since(last, Utc::now()), local_date, gmail).await;
    let rendered = render::render(&briefing);
    (briefing, rendered)
}

/// Composes and renders the briefing of a row whose [`Delivery`] was read.
async fn build_for(state: &AppState, d: &Delivery, sections: Option<Section>) -> (Briefing, Rendered) {
    let since = mail_since(d.last_mail_delivered_at, Utc::now());
    let briefing = compose::compose(state, &d.user, sections, since, d.local_date, Ok(d.gmail.clone())).await;
    let rendered = render::render(&briefing);
    (briefing, rendered)
}

/// What the briefing says about each section, as recorded on its row and
/// carried in its message's metadata.
pub fn sections(b: &Briefing) -> Sections {
    let (email_status, email_detail) = match &b.email {
        Some(e) => {
            let mut detail = e.detail();
            if let Some(err) = &b.mail_summary_error {
                detail.push_str(&format!("; LLM summary unavailable ({err}), extractive summary sent"));
            }
            (e.status(), Some(detail))
        }
        None => ("not_requested", None),
    };
    let (news_status, news_detail) = match &b.news {
        Some(n) => (n.status().as_str(), Some(n.detail())),
        None => ("not_requested", None),
    };
    Sections { email_status: email_status.into(), email_detail, news_status: news_status.into(), news_detail }
}

/// The `briefings.email_status` / `news_status` values (the table checks them too).
const EMAIL_STATUSES: &[&str] = &["ok", "not_connected", "needs_reconnect", "error", "not_configured", "not_requested"];
const NEWS_STATUSES: &[&str] = &["ok", "partial", "error", "not_requested"];

/// The sections of a briefing message an earlier attempt posted, read back
/// from its metadata (see [`post_dm`]); `None` from a message without them,
/// or with statuses robeing never writes (metadata is not ours alone).
fn sections_posted(payload: &serde_json::Map<String, serde_json::Value>) -> Option<Sections> {
    let text = |k: &str| payload.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let status = |k: &str, known: &[&str]| text(k).filter(|s| known.contains(&s.as_str()));
    Some(Sections {
        email_status: status("email_status", EMAIL_STATUSES)?,
        email_detail: text("email_detail"),
        news_status: status("news_status", NEWS_STATUSES)?,
        news_detail: text("news_detail"),
    })
}

/// Sections of a message that was posted but whose content is not known
/// any more: recorded as errors, so the briefing counts as incomplete and an
/// operator looks, rather than as a complete one nobody checked.
fn sections_unknown() -> Sections {
    let why = "posted by an earlier attempt that stopped before recording what this section said";
    Sections {
        email_status: "error".into(),
        email_detail: Some(why.into()),
        news_status: "error".into(),
        news_detail: Some(why.into()),
    }
}

/// Longest section detail carried in a message's metadata (the row keeps
/// all of it): metadata is for finding the message again, not an archive.
const METADATA_DETAIL_CHARS: usize = 300;

/// Where a message was posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel_id: String,
    pub ts: String,
}

/// Why posting failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Worth retrying (network, Slack 5xx, rate limit).
    #[error("{error}")]
    Retry { after: Option<std::time::Duration>, error: String },
    /// Retrying cannot help (user gone, token revoked, not configured).
    #[error("{0}")]
    Permanent(String),
}

/// Slack error codes that no retry will fix.
const PERMANENT_SLACK_ERRORS: &[&str] = &[
    "account_inactive",
    "channel_not_found",
    "user_not_found",
    "user_disabled",
    "cannot_dm_bot",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "no_permission",
    "not_allowed_token_type",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "team_access_not_granted",
];

/// What a failed Slack call (through the client, which already waited out
/// short 429s and repeated what is safe to repeat) means for a briefing.
fn classify(e: SlackError) -> PostError {
    match e {
        SlackError::RateLimited { after, .. } => {
            PostError::Retry { after: Some(after), error: "Slack rate limit (HTTP 429 or our own budget)".into() }
        }
        SlackError::Refused { code, .. } if PERMANENT_SLACK_ERRORS.contains(&code.as_str()) => {
            PostError::Permanent(format!("Slack refused: {code}"))
        }
        SlackError::Refused { code, .. } => PostError::Retry { after: None, error: format!("Slack error: {code}") },
        e @ SlackError::Transient { .. } => PostError::Retry { after: None, error: e.to_string() },
    }
}

/// Longest wait for Slack to accept a briefing, all of it: the channel's
/// pacing, the workspace budget (at most [`crate::ratelimit::MAX_WAIT`]) and
/// the client's call. With composing (sections in parallel, at most
/// [`super::compose::SECTION_TIMEOUT`], then the LLM, at most
/// [`super::compose::LLM_TIMEOUT`]) a delivery stays inside the job lease
/// ([`crate::jobs::LEASE`], 90 s), so no second worker runs it meanwhile.
pub const SLACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(35);
const _: () = assert!(
    super::compose::SECTION_TIMEOUT.as_secs() + super::compose::LLM_TIMEOUT.as_secs() + SLACK_TIMEOUT.as_secs()
        < crate::jobs::LEASE.as_secs(),
    "a briefing job must finish inside its lease"
);

/// Posts a message to the user's DM (opening it when its id is not stored)
/// through the Slack client ([`crate::slack::client::SlackApi`]): its
/// per-channel pacing, the workspace `SLACK_MAX_POSTS_PER_SECOND` budget,
/// its 429/5xx policy and its metrics. A briefing carries its id as message
/// metadata, which [`find_posted`] looks for.
pub async fn post_dm(
    state: &AppState,
    user: &User,
    message: &Rendered,
    briefing: Option<(Uuid, &Sections)>,
) -> Result<Posted, PostError> {
    tokio::time::timeout(SLACK_TIMEOUT, post_dm_inner(state, user, message, briefing)).await.unwrap_or_else(|_| {
        Err(PostError::Retry {
            after: None,
            error: format!("Slack did not answer within {} s", SLACK_TIMEOUT.as_secs()),
        })
    })
}

async fn post_dm_inner(
    state: &AppState,
    user: &User,
    message: &Rendered,
    briefing: Option<(Uuid, &Sections)>,
) -> Result<Posted, PostError> {
    let slack = state
        .slack
        .as_ref()
        .ok_or_else(|| PostError::Permanent("Slack is not configured (SLACK_BOT_TOKEN unset)".into()))?;
    let channel = match &user.dm_channel_id {
        Some(c) => c.clone(),
        None => {
            let opened = slack.open_dm(&user.user_id).await.map_err(classify)?;
            if let Err(e) = storage::users::set_dm_channel(&state.db, &user.user_id, &opened).await {
                tracing::warn!(user = %user.user_id, error = %e, "could not store the DM channel");
            }
            opened
        }
    };
    let ts = match briefing {
        Some((id, sections)) => {
            let id = id.to_string();
            let short = |d: &Option<String>| d.as_deref().map(|d| compose::truncate_chars(d, METADATA_DETAIL_CHARS));
            let (email_detail, news_detail) = (short(&sections.email_detail), short(&sections.news_detail));
            let mut also =
                vec![("email_status", sections.email_status.as_str()), ("news_status", &sections.news_status)];
            also.extend(email_detail.as_deref().map(|d| ("email_detail", d)));
            also.extend(news_detail.as_deref().map(|d| ("news_detail", d)));
            let tag = Tag { event_type: METADATA_EVENT, key: "briefing_id", value: &id, also: &also };
            slack.post_bulk_tagged_message(&channel, &message.text, Some(message.blocks.clone()), Some(&tag)).await
        }
        None => slack.post_message(&channel, &message.text, Some(message.blocks.clone()), None).await,
    }
    .map_err(classify)?;
    Ok(Posted { channel_id: channel, ts })
}

/// The Slack message metadata `event_type` that marks a briefing, with
/// `briefing_id` in its payload.
pub const METADATA_EVENT: &str = "robeing_briefing";

/// Looks in the user's DM for a briefing message an earlier attempt already
/// posted (by its metadata, through the Slack client's
/// `conversations.history`), so a retry after a crash records that message
/// instead of posting a second one.
pub async fn find_posted(
    state: &AppState,
    user: &User,
    briefing_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Option<(Posted, Option<Sections>)>, PostError> {
    let (Some(slack), Some(channel)) = (state.slack.as_ref(), user.dm_channel_id.as_ref()) else { return Ok(None) };
    let oldest = format!("{}.000000", since.timestamp() - 1);
    let wanted = briefing_id.to_string();
    let tag = Tag { event_type: METADATA_EVENT, key: "briefing_id", value: &wanted, also: &[] };
    let found = tokio::time::timeout(SLACK_TIMEOUT, slack.find_tagged_message(channel, None, &oldest, &tag))
        .await
        .map_err(|_| PostError::Retry { after: None, error: "Slack did not answer conversations.history".into() })?
        .map_err(classify)?;
    Ok(found.map(|m| (Posted { channel_id: channel.clone(), ts: m.ts }, sections_posted(&m.payload))))
}

/// Posts an ephemeral message to a slash command's `response_url`.
pub async fn post_response_url(state: &AppState, response_url: &str, message: &Rendered) -> anyhow::Result<()> {
    let url = url::Url::parse(response_url).context("the response_url is not a URL")?;
    anyhow::ensure!(matches!(url.scheme(), "http" | "https"), "the response_url is not http(s)");
    let resp =
        state.http.post(url).json(&message.response_url_body()).send().await.context("posting to the response_url")?;
    anyhow::ensure!(resp.status().is_success(), "the response_url answered HTTP {}", resp.status().as_u16());
    Ok(())
}

fn payload(job: &Job) -> Result<Payload, JobError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(anyhow::anyhow!("bad briefing_deliver payload: {e}")))
}

/// Reads the [`Delivery`] of every `briefing_deliver` job among `jobs` in
/// one query, by job id (`None`: the briefing is gone). Empty when there is
/// none, or when the read failed (logged; each job then reads its own).
pub async fn prefetch(state: &AppState, jobs: &[Job]) -> HashMap<i64, Option<Delivery>> {
    let wanted: Vec<(i64, Uuid)> =
        jobs.iter().filter(|j| j.kind == JOB_KIND).filter_map(|j| Some((j.id, payload(j).ok()?.briefing_id))).collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    let ids: Vec<Uuid> = wanted.iter().map(|(_, id)| *id).collect();
    match storage::briefings::deliveries(&state.db, &ids).await {
        Ok(found) => {
            let mut found: HashMap<Uuid, Delivery> = found.into_iter().map(|d| (d.id, d)).collect();
            wanted.into_iter().map(|(job, id)| (job, found.remove(&id))).collect()
        }
        Err(e) => {
            tracing::warn!(briefings = ids.len(), error = %e, "could not read the claimed briefings; each reads its own");
            HashMap::new()
        }
    }
}

/// Runs one `briefing_deliver` job. Idempotent: a briefing that is no longer
/// `claimed` (delivered, failed, skipped, or deleted with its user) is done.
/// A delivery records the briefing and ends its job in one statement.
/// `prefetched` is its [`Delivery`] when the runner read it with its batch's
/// ([`prefetch`]; `Some(None)`: the briefing is gone).
pub async fn run_job(state: &AppState, job: &Job, prefetched: Option<Option<Delivery>>) -> Result<Done, JobError> {
    let id = payload(job)?.briefing_id;
    let delivery = match prefetched {
        Some(d) => d,
        None => storage::briefings::delivery(&state.db, id).await?,
    };
    let Some(d) = delivery else { return Ok(Done::ByRunner) };
    if d.status != "claimed" {
        return Ok(Done::ByRunner);
    }
    let user = &d.user;
    if let Some(reason) = &d.team_inactive_reason {
        storage::briefings::mark_skipped(&state.db, id, &format!("workspace inactive: {reason}")).await?;
        return Ok(Done::ByRunner);
    }
    // A retry may follow an attempt that posted and then died before
    // recording it: the message carries its sections, so it is recorded as
    // it was posted.
    if job.attempts > 1 {
        match find_posted(state, user, id, d.claimed_at).await {
            Ok(Some((posted, posted_sections))) => {
                let sections = posted_sections.or(d.recorded_sections).unwrap_or_else(sections_unknown);
                delivered(state, id, Some(job.id), &sections, &posted.channel_id, &posted.ts).await?;
                tracing::info!(user = %user.user_id, briefing = %id, "briefing was already posted; recorded it");
                return Ok(Done::Recorded);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(user = %user.user_id, briefing = %id, error = %e, "could not check for an earlier post; posting")
            }
        }
    }
    let (briefing, rendered) = build_for(state, &d, None).await;
    let sections = sections(&briefing);
    match post_dm(state, user, &rendered, Some((id, &sections))).await {
        Ok(posted) => {
            delivered(state, id, Some(job.id), &sections, &posted.channel_id, &posted.ts).await?;
            tracing::info!(
                user = %user.user_id, briefing = %id, email = %sections.email_status, "briefing delivered"
            );
            Ok(Done::Recorded)
        }
        Err(PostError::Permanent(reason)) => {
            tracing::error!(user = %user.user_id, briefing = %id, reason = %reason, "briefing could not be delivered");
            storage::briefings::mark_failed(&state.db, id, Some(&sections), &reason).await?;
            Ok(Done::ByRunner)
        }
        Err(PostError::Retry { after, error }) => {
            if job.attempts >= job.max_attempts {
                let reason = format!("gave up after {} attempts: {error}", job.attempts);
                storage::briefings::mark_failed(&state.db, id, Some(&sections), &reason).await?;
            }
            Err(JobError::Retry { after, error: anyhow::anyhow!(error) })
        }
    }
}

/// How an on-demand briefing reached the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Via {
    ResponseUrl,
    Dm { channel_id: String, ts: String },
}

/// An on-demand briefing that was delivered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OnDemand {
    pub briefing_id: Uuid,
    pub via: Via,
    pub email_status: Option<&'static str>,
    pub news_status: Option<&'static str>,
}

/// Builds and delivers an on-demand briefing now (no queue: the caller is
/// already asynchronous to Slack's ack). Tries the `response_url` first and
/// falls back to a DM; the row records the outcome either way. An ephemeral
/// `response_url` reply has no channel or ts: the row stores
/// `channel_id = 'response_url'`, `message_ts = 'ephemeral'`.
pub async fn on_demand_for(
    state: &AppState,
    user: &User,
    section: Option<Section>,
    response_url: Option<&str>,
    trigger: &str,
) -> anyhow::Result<OnDemand> {
    let local_date = Utc::now().with_timezone(&super::scheduler::user_tz(state, user.tz.as_deref())).date_naive();
    let id = storage::briefings::insert_on_demand(&state.db, &user.user_id, local_date, trigger).await?;
    let d = storage::briefings::delivery(&state.db, id)
        .await?
        .with_context(|| format!("briefing {id} disappeared as it was created (was {} deleted?)", user.user_id))?;
    if let Some(reason) = &d.team_inactive_reason {
        storage::briefings::mark_skipped(&state.db, id, &format!("workspace inactive: {reason}")).await?;
        anyhow::bail!("{}'s workspace {} is inactive: nothing was sent", user.user_id, user.team_id);
    }
    let (briefing, rendered) = build_for(state, &d, section).await;
    let sections = sections(&briefing);
    let mut via = None;
    if let Some(url) = response_url {
        match post_response_url(state, url, &rendered).await {
            Ok(()) => {
                delivered(state, id, None, &sections, "response_url", "ephemeral").await?;
                via = Some(Via::ResponseUrl);
            }
            Err(e) => {
                tracing::warn!(user = %user.user_id, error = format!("{e:#}"), "response_url failed; sending a DM")
            }
        }
    }
    let via = match via {
        Some(v) => v,
        None => match post_dm(state, user, &rendered, Some((id, &sections))).await {
            Ok(p) => {
                delivered(state, id, None, &sections, &p.channel_id, &p.ts).await?;
                Via::Dm { channel_id: p.channel_id, ts: p.ts }
            }
            Err(e) => {
                storage::briefings::mark_failed(&state.db, id, Some(&sections), &e.to_string()).await?;
                anyhow::bail!("the briefing could not be delivered: {e}");
            }
        },
    };
    Ok(OnDemand {
        briefing_id: id,
        via,
        email_status: briefing.email.as_ref().map(|e| e.status()),
        news_status: briefing.news.as_ref().map(|n| n.status().as_str()),
    })
}

/// Records a briefing as delivered (and its job, if any, as done) and
/// counts its sections in `/metrics`.
async fn delivered(
    state: &AppState,
    id: Uuid,
    job_id: Option<i64>,
    sections: &Sections,
    channel_id: &str,
    ts: &str,
) -> Result<bool, sqlx::Error> {
    if !storage::briefings::mark_delivered(&state.db, id, job_id, sections, channel_id, ts).await? {
        return Ok(false);
    }
    let m = crate::metrics::metrics();
    for (section, status) in [("email", &sections.email_status), ("news", &sections.news_status)] {
        m.briefings
            .get_or_create(&crate::metrics::SectionStatus { section: section.into(), status: status.clone() })
            .inc();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{briefing::email::EmailSection, news::NewsStatus};

    #[test]
    fn every_status_a_briefing_writes_is_read_back_from_its_metadata() {
        let emails = [
            EmailSection::Ok { items: Vec::new() },
            EmailSection::NotConfigured,
            EmailSection::NotConnected,
            EmailSection::NeedsReconnect { since: Utc::now(), reason: "invalid_grant".into() },
            EmailSection::Error { message: "HTTP 500".into() },
        ];
        let news = [NewsStatus::Ok, NewsStatus::Partial, NewsStatus::Error];
        for (email, news) in emails
            .iter()
            .map(|e| e.status())
            .chain(["not_requested"])
            .zip(news.iter().map(|n| n.as_str()).chain(["not_requested"]).cycle())
        {
            let payload = serde_json::json!({ "briefing_id": "b", "email_status": email, "news_status": news });
            let read = sections_posted(payload.as_object().unwrap()).unwrap();
            assert_eq!((read.email_status.as_str(), read.news_status.as_str()), (email, news));
        }
        let bogus = serde_json::json!({ "email_status": "ok", "news_status": "fine" });
        assert_eq!(sections_posted(bogus.as_object().unwrap()), None);
    }
}
