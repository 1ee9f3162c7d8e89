//! Our one internal event type. The HTTP routes and the Socket Mode listener
//! both record raw Slack payloads through [`crate::pipeline`]; the
//! `slack_event` job turns a stored payload into a [`SlackEvent`] and hands
//! it to the module that owns it.

/// Everything robeing reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackEvent {
    /// A person wrote to robeing in a DM.
    DirectMessage(DirectMessage),
    AppHomeOpened { team_id: String, user_id: String },
    UserChanged { team_id: String, user_id: String },
    AppUninstalled { team_id: String },
    TokensRevoked { team_id: String },
    SlashCommand(SlashCommand),
    BlockAction(BlockAction),
    /// Recorded but not acted on (bot messages, edits, non-IM channels…).
    Ignored { reason: &'static str },
}

/// A human's message in robeing's DM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    pub event_id: String,
    pub team_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
}

/// A slash command (`/brief`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub team_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub command: String,
    pub text: String,
    pub response_url: String,
    pub trigger_id: String,
}

/// A Block Kit button press (Reconnect, App Home settings, forget…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAction {
    pub team_id: String,
    pub user_id: String,
    pub action_id: String,
    pub value: Option<String>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub response_url: Option<String>,
    pub trigger_id: Option<String>,
}
