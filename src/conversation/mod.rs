//! DM conversation: a human's message in, a reply out, the exchange stored.
//!
//! Interface with the transport: the `slack_event` job calls
//! [`handle_message`] for every [`DirectMessage`]; it must be idempotent (a
//! job can run again after a crash) and must never reply twice.

use crate::{jobs::JobError, slack::events::DirectMessage, startup::AppState};

/// Handles one DM. (The conversation engine replaces this body.)
pub async fn handle_message(state: &AppState, message: &DirectMessage) -> Result<(), JobError> {
    let _ = (state, message);
    Err(JobError::Permanent(anyhow::anyhow!("the conversation engine is not built yet")))
}
