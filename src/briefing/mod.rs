//! The morning briefing: each user's Gmail summary and the news, by DM at
//! their own 09:00, and on demand.
//!
//! - [`scheduler`]: which daily briefings are due at an instant; the claim
//!   that makes them exactly-once; catch-up and recorded skips; the loop in
//!   `serve` (also driven by `POST /api/cron/daily-summary`).
//! - [`email`]: the Gmail section's states and the inbox read.
//! - [`compose`]: gathers the sections and summarises the mail.
//! - [`render`]: Block Kit within Slack's limits, plus a plain-text fallback.
//! - [`deliver`]: the `briefing_deliver` job, posting by DM or `response_url`.
//! - [`home`]: the App Home settings view and its actions.
//!
//! [`on_demand`] is `/brief`'s entry point.

pub mod compose;
pub mod deliver;
pub mod email;
pub mod home;
pub mod render;
pub mod scheduler;

pub use compose::Section;
pub use deliver::OnDemand;

use crate::startup::AppState;

/// Why an on-demand briefing was not sent.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    #[error("unknown Slack user `{0}`")]
    UnknownUser(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// `/brief [email|news]`: builds the briefing (or one section) now and
/// delivers it to `response_url` (ephemeral), falling back to a DM. Recorded
/// as an `on_demand` row, which is not limited per day. The slash command's
/// "preparing…" ack is the transport's; call this after it.
pub async fn on_demand(
    state: &AppState,
    user_id: &str,
    section: Option<Section>,
    response_url: Option<String>,
) -> Result<OnDemand, OnDemandError> {
    let user = crate::storage::users::get(&state.db, user_id)
        .await
        .map_err(|e| OnDemandError::Failed(anyhow::Error::new(e).context("reading the user")))?
        .ok_or_else(|| OnDemandError::UnknownUser(user_id.to_owned()))?;
    Ok(deliver::on_demand_for(state, &user, section, response_url.as_deref(), "command").await?)
}
