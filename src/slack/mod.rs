//! Everything Slack: the Web API client ([`client`]), the Socket Mode
//! connection ([`socket_mode`]), the token's scopes ([`scopes`]), our `SlackEvent` enum and its parsing
//! ([`events`]), reading the files users send ([`files`]), and the handling that routes each stored event
//! ([`dispatch`]). The HTTP routes are in [`crate::http::slack`].

pub mod client;
pub mod dispatch;
pub mod events;
pub mod files;
pub mod scopes;
pub mod socket_mode;
