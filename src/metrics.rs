//! Prometheus metrics (`GET /metrics`, text format), with `prometheus-client`.
//!
//! One process-wide registry, reached through [`metrics()`] so any module can
//! count without threading a handle through every call. Gauges that describe
//! stored state (the job backlog, Socket Mode) are read at scrape time, so
//! they are never stale. Labels are low-cardinality by construction: method
//! names, kinds, outcomes — never a user id or a message.

use std::sync::OnceLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKind {
    pub source: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Table {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SectionStatus {
    pub section: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodStatus {
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabel {
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetOutcome {
    pub budget: String,
    pub outcome: String,
}

/// Every metric robeing exports.
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<SourceKind, Counter>,
    pub events_deduplicated: Family<SourceKind, Counter>,
    pub events_rejected: Family<Reason, Counter>,
    pub replies: Family<Outcome, Counter>,
    pub reply_latency_seconds: Histogram,
    pub ingest_commit_seconds: Histogram,
    pub ingest_group_events: Histogram,
    pub reply_group_replies: Histogram,
    pub message_group_messages: Histogram,
    pub exchanges_stored: Counter,
    pub jobs_finished: Family<SourceKind, Counter>,
    pub job_backlog: Family<Kind, Gauge>,
    pub job_oldest_age_seconds: Family<Kind, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub jobs_dead: Family<Kind, Gauge>,
    pub rows_pruned: Family<Table, Counter>,
    pub chroma_upserts: Family<Outcome, Counter>,
    pub files_read: Family<Outcome, Counter>,
    pub briefings: Family<SectionStatus, Counter>,
    pub token_refreshes: Family<Outcome, Counter>,
    pub slack_api_calls: Family<MethodStatus, Counter>,
    pub socket_mode_connected: Gauge,
    pub budget_calls: Family<BudgetOutcome, Counter>,
    pub budget_wait_seconds: Family<BudgetLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("robeing");
        let m = Self {
            events_received: Family::default(),
            events_deduplicated: Family::default(),
            events_rejected: Family::default(),
            replies: Family::default(),
            // 5 ms … ~20 s: from an instant built-in reply to a slow LLM.
            reply_latency_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
            ]),
            // 0.25 ms … 1 s: a group commit on a healthy Postgres takes about a millisecond.
            ingest_commit_seconds: Histogram::new([
                0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            ingest_group_events: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            reply_group_replies: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            message_group_messages: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            exchanges_stored: Counter::default(),
            jobs_finished: Family::default(),
            job_backlog: Family::default(),
            job_oldest_age_seconds: Family::default(),
            jobs_dead: Family::default(),
            rows_pruned: Family::default(),
            chroma_upserts: Family::default(),
            files_read: Family::default(),
            briefings: Family::default(),
            token_refreshes: Family::default(),
            slack_api_calls: Family::default(),
            socket_mode_connected: Gauge::default(),
            budget_calls: Family::default(),
            budget_wait_seconds: Family::default(),
            registry: Registry::default(),
        };
        registry.register("events_received", "Slack events recorded, by transport and kind", m.events_received.clone());
        registry.register(
            "events_deduplicated",
            "Slack events already recorded (retries, second connections)",
            m.events_deduplicated.clone(),
        );
        registry.register("events_rejected", "Slack requests refused, by reason", m.events_rejected.clone());
        registry.register("replies", "DM replies, by outcome", m.replies.clone());
        registry.register(
            "reply_latency_seconds",
            "From receiving a DM to its reply being posted",
            m.reply_latency_seconds.clone(),
        );
        registry.register(
            "ingest_commit_seconds",
            "How long one group commit of inbound events took (acknowledgements wait for it)",
            m.ingest_commit_seconds.clone(),
        );
        registry.register("ingest_group_events", "Inbound events per group commit", m.ingest_group_events.clone());
        registry.register(
            "reply_group_replies",
            "Posted replies recorded per group commit",
            m.reply_group_replies.clone(),
        );
        registry.register(
            "message_group_messages",
            "Received DMs stored per group commit",
            m.message_group_messages.clone(),
        );
        registry.register("exchanges_stored", "Exchanges committed to Postgres", m.exchanges_stored.clone());
        registry.register(
            "jobs_finished",
            "Outbox jobs finished, by kind and outcome (source=outcome)",
            m.jobs_finished.clone(),
        );
        registry.register(
            "job_backlog",
            "Outbox jobs and inbound events (kind slack_event) queued or running, by kind",
            m.job_backlog.clone(),
        );
        registry.register(
            "job_oldest_age_seconds",
            "Age of the oldest pending job, by kind",
            m.job_oldest_age_seconds.clone(),
        );
        registry.register(
            "jobs_dead",
            "Outbox jobs and inbound events (kind slack_event) that exhausted their attempts, by kind",
            m.jobs_dead.clone(),
        );
        registry.register("rows_pruned", "Rows deleted by retention (RETENTION_DAYS), by table", m.rows_pruned.clone());
        registry.register("chroma_upserts", "ChromaDB upserts, by outcome", m.chroma_upserts.clone());
        registry.register(
            "files_read",
            "Files users sent in DMs, by outcome (read, not_text, no_access…)",
            m.files_read.clone(),
        );
        registry.register("briefings", "Briefing sections delivered, by section and status", m.briefings.clone());
        registry.register("token_refreshes", "Google token refreshes, by result", m.token_refreshes.clone());
        registry.register(
            "slack_api_calls",
            "Slack Web API calls, by method and status (429 counted)",
            m.slack_api_calls.clone(),
        );
        registry.register(
            "socket_mode_connected",
            "1 while a Socket Mode connection is open",
            m.socket_mode_connected.clone(),
        );
        registry.register(
            "budget_calls",
            "Outbound calls paced by a configured budget (slack_posts, gmail, gmail_user), by outcome",
            m.budget_calls.clone(),
        );
        registry.register(
            "budget_wait_seconds",
            "Time callers spent waiting for a slot of a configured budget",
            m.budget_wait_seconds.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Shorthand for a label set.
pub fn sk(source: &str, kind: &str) -> SourceKind {
    SourceKind { source: source.to_owned(), kind: kind.to_owned() }
}

pub fn outcome(o: &str) -> Outcome {
    Outcome { outcome: o.to_owned() }
}
