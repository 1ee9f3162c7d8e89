//! Logging: `tracing` with an env-filter (`RUST_LOG`), JSON when stderr is not
//! a terminal (or `LOG_FORMAT=json`), human-readable otherwise.
//!
//! Policy (after crates.io's `LOGGING.md`): a failure is logged once, where it
//! is handled, with its cause chain; never a token, a request body or an
//! e-mail's content. Each inbound event or request runs in a span carrying its
//! id, so one grep follows it through the workers.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are ignored), which tests rely on.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact().with_writer(std::io::stderr)).try_init(),
    };
    let _ = result;
}
