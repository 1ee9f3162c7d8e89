//! Black-box tests: the real application over its HTTP surface and the real
//! binary, against real Postgres and recording fakes on loopback.

#[path = "../fakes/mod.rs"]
mod fakes;
#[allow(dead_code)]
mod helpers;

mod bad_input;
mod briefing;
mod cli;
mod conversation;
mod faults;
mod foundation;
mod gmail;
mod i18n;
mod process;
mod request_id;
mod slack_http;
mod socket_mode;
