#![allow(dead_code)] // shared test support: not every test uses every helper
//! Fakes of the outside world, run on loopback by the test harness. Each
//! speaks the real wire format (responses are recorded fixtures from
//! `tests/fixtures/`) and records every request it received, so a test can
//! assert what was — and was not — sent.

pub mod chroma;
pub mod feeds;
pub mod gmail;
pub mod google;
pub mod llm;
pub mod recorder;
pub mod slack;
pub mod socket_mode;
