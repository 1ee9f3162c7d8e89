//! Everything Slack: the Web API client ([`client`]), and (in later modules)
//! the Socket Mode listener, our `SlackEvent` enum and Block Kit rendering.

pub mod client;
pub mod dispatch;
pub mod events;
pub mod socket_mode;
