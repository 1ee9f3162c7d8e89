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
//! it finds instead of posting. What remains is honest at-least-once: if that
//! history check itself fails (Slack down, scope missing) the retry posts
//! anyway, because a briefing sent twice is better than none.

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    compose::{self, Briefing, Section},
    render::{self, Rendered},
};
use crate::{
    jobs::JobError,
    slack::client::{SlackError, Tag},
    startup::AppState,
    storage::{self, briefings::Delivery, jobs::Job, users::User},
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

/// Records each section's status on the briefing row.
pub async fn record_sections(state: &AppState, id: Uuid, b: &Briefing) -> Result<(), sqlx::Error> {
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
    storage::briefings::record_sections(
        &state.db,
        id,
        email_status,
        email_detail.as_deref(),
        news_status,
        news_detail.as_deref(),
    )
    .await
}

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
    briefing_id: Option<Uuid>,
) -> Result<Posted, PostError> {
    tokio::time::timeout(SLACK_TIMEOUT, post_dm_inner(state, user, message, briefing_id)).await.unwrap_or_else(|_| {
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
    briefing_id: Option<Uuid>,
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
    let ts = match briefing_id {
        Some(id) => {
            let id = id.to_string();
            let tag = Tag { event_type: METADATA_EVENT, key: "briefing_id", value: &id };
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
) -> Result<Option<Posted>, PostError> {
    let (Some(slack), Some(channel)) = (state.slack.as_ref(), user.dm_channel_id.as_ref()) else { return Ok(None) };
    let oldest = format!("{}.000000", since.timestamp() - 1);
    let wanted = briefing_id.to_string();
    let tag = Tag { event_type: METADATA_EVENT, key: "briefing_id", value: &wanted };
    let found = tokio::time::timeout(SLACK_TIMEOUT, slack.find_tagged(channel, None, &oldest, &tag))
        .await
        .map_err(|_| PostError::Retry { after: None, error: "Slack did not answer conversations.history".into() })?
        .map_err(classify)?;
    Ok(found.map(|ts| Posted { channel_id: channel.clone(), ts }))
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

/// Runs one `briefing_deliver` job. Idempotent: a briefing that is no longer
/// `claimed` (delivered, failed, skipped, or deleted with its user) is done.
pub async fn run_job(state: &AppState, job: &Job) -> Result<(), JobError> {
    let payload: Payload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(anyhow::anyhow!("bad briefing_deliver payload: {e}")))?;
    let id = payload.briefing_id;
    let Some(d) = storage::briefings::delivery(&state.db, id).await? else { return Ok(()) };
    if d.status != "claimed" {
        return Ok(());
    }
    let user = &d.user;
    if let Some(reason) = &d.team_inactive_reason {
        storage::briefings::mark_skipped(&state.db, id, &format!("workspace inactive: {reason}")).await?;
        return Ok(());
    }
    // A retry may follow an attempt that posted and then died before
    // recording it (sections are recorded before posting, so only then).
    if job.attempts > 1 && d.email_status.is_some() {
        match find_posted(state, user, id, d.claimed_at).await {
            Ok(Some(posted)) => {
                delivered(state, id, &posted.channel_id, &posted.ts).await?;
                tracing::info!(user = %user.user_id, briefing = %id, "briefing was already posted; recorded it");
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(user = %user.user_id, briefing = %id, error = %e, "could not check for an earlier post; posting")
            }
        }
    }
    let (briefing, rendered) = build_for(state, &d, None).await;
    record_sections(state, id, &briefing).await?;
    match post_dm(state, user, &rendered, Some(id)).await {
        Ok(posted) => {
            delivered(state, id, &posted.channel_id, &posted.ts).await?;
            tracing::info!(
                user = %user.user_id, briefing = %id, email = briefing.email.as_ref().map(|e| e.status()),
                "briefing delivered"
            );
            Ok(())
        }
        Err(PostError::Permanent(reason)) => {
            tracing::error!(user = %user.user_id, briefing = %id, reason = %reason, "briefing could not be delivered");
            storage::briefings::mark_failed(&state.db, id, &reason).await?;
            Ok(())
        }
        Err(PostError::Retry { after, error }) => {
            if job.attempts >= job.max_attempts {
                storage::briefings::mark_failed(
                    &state.db,
                    id,
                    &format!("gave up after {} attempts: {error}", job.attempts),
                )
                .await?;
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
    record_sections(state, id, &briefing).await?;
    let mut via = None;
    if let Some(url) = response_url {
        match post_response_url(state, url, &rendered).await {
            Ok(()) => {
                delivered(state, id, "response_url", "ephemeral").await?;
                via = Some(Via::ResponseUrl);
            }
            Err(e) => {
                tracing::warn!(user = %user.user_id, error = format!("{e:#}"), "response_url failed; sending a DM")
            }
        }
    }
    let via = match via {
        Some(v) => v,
        None => match post_dm(state, user, &rendered, Some(id)).await {
            Ok(p) => {
                delivered(state, id, &p.channel_id, &p.ts).await?;
                Via::Dm { channel_id: p.channel_id, ts: p.ts }
            }
            Err(e) => {
                storage::briefings::mark_failed(&state.db, id, &e.to_string()).await?;
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

/// Records a briefing as delivered and counts its sections in `/metrics`.
async fn delivered(state: &AppState, id: Uuid, channel_id: &str, ts: &str) -> Result<bool, sqlx::Error> {
    let Some((email, news)) = storage::briefings::mark_delivered(&state.db, id, channel_id, ts).await? else {
        return Ok(false);
    };
    let m = crate::metrics::metrics();
    for (section, status) in [("email", email), ("news", news)] {
        let status = status.unwrap_or_else(|| "unknown".into());
        m.briefings.get_or_create(&crate::metrics::SectionStatus { section: section.into(), status }).inc();
    }
    Ok(true)
}
