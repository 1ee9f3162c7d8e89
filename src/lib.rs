//! robeing: a Slack-native personal assistant.
//!
//! One binary answers each user's Slack DMs (Socket Mode or the HTTP Events
//! API), keeps every exchange in Postgres and in ChromaDB vector memory, and
//! posts a morning briefing (Gmail summary and news) in each user's own time
//! zone. Nothing fails silently: a degraded result says so to the user and to
//! the operator, and work that could not be done is retried until it is.
//!
//! # Layout
//!
//! - [`config`]: every setting, loaded and validated once (the operator contract).
//! - [`startup`]: builds the application, supervises its tasks, shuts down gracefully.
//! - [`cli`], [`doctor`]: the command line; [`console`]: a terminal transport.
//! - [`http`]: the axum routes.
//! - [`pipeline`]: the one path every Slack input takes: group-committed to
//!   Postgres, then acknowledged.
//! - [`jobs`]: workers for the durable outbox.
//! - [`conversation`]: DM in → reply out, with memory.
//! - [`google`]: Gmail: OAuth, the token vault, refresh, prompts, the Gmail client.
//! - [`memory`]: ChromaDB vector memory and the embedders.
//! - [`briefing`], [`news`]: the morning briefing (scheduler, Gmail and news sections, delivery).
//! - [`slack`]: the Slack Web API client and transport pieces.
//! - [`storage`]: Postgres — connection, migrations, all SQL.
//! - [`i18n`]: every sentence a user sees, in Korean and English.
//! - [`health`]: the readiness report; [`metrics`]: Prometheus counters.
//! - [`ratelimit`]: the configured outbound budgets (Slack posts, Gmail calls).
//! - [`error`], [`telemetry`]: the error and logging policies.

/// The process's allocator. robeing allocates and frees many small,
/// short-lived buffers per request (HTTP bodies, JSON values, SQL rows); a
/// profile of the conversation path put glibc's `malloc`/`free` at 13–20 %
/// of all CPU samples. mimalloc serves those from per-thread free lists.
/// Declared here, in the library, so the tests and benchmarks that link it
/// run with the same allocator as the binary; not under `cargo fuzz`, whose
/// sanitizers watch the system allocator. Built with `no_thp`: asking for
/// transparent huge pages for its arenas made mimalloc's idle process
/// 29 MiB resident instead of 16 (the start-up target is 20 MB).
/// `docs/benchmarks.md` has the before/after figures.
#[cfg(not(fuzzing))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod briefing;
pub mod cli;
pub mod config;
pub mod console;
pub mod conversation;
pub mod doctor;
pub mod documents;
pub mod error;
pub mod google;
pub mod health;
pub mod housekeeping;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod news;
pub mod pipeline;
pub mod ratelimit;
pub mod slack;
pub mod startup;
pub mod storage;
pub mod telemetry;
