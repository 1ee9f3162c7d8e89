//! Fake news feeds: a real RSS 2.0 feed, a real Atom feed, a feed that
//! answers 200 with an HTML error page (garbage), and one that answers 500,
//! from `tests/fixtures/feeds/`.

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;

use super::recorder::{Recorded, Recorder, Scripted};

pub const RSS: &str = "/world/rss.xml";
pub const ATOM: &str = "/tech/feed.atom";
pub const GARBAGE: &str = "/garbage/feed.xml";
pub const DOWN: &str = "/down/feed.xml";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/feeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn answer(status: u16, content_type: &str, body: String) -> Scripted {
    Scripted {
        status: StatusCode::from_u16(status).unwrap(),
        headers: vec![("content-type".into(), content_type.into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

pub async fn start() -> Recorder {
    let handler = |r: &Recorded| -> Scripted {
        match r.path.as_str() {
            RSS => answer(200, "application/rss+xml; charset=utf-8", fixture("world.rss")),
            ATOM => answer(200, "application/atom+xml; charset=utf-8", fixture("tech.atom")),
            GARBAGE => answer(200, "text/html", fixture("garbage.html")),
            DOWN => answer(500, "text/plain", "internal error".into()),
            _ => answer(404, "text/plain", "not found".into()),
        }
    };
    Recorder::start(Arc::new(handler)).await
}

/// `NEWS_FEEDS` for these paths.
pub fn feeds(fake: &Recorder, paths: &[&str]) -> String {
    paths.iter().map(|p| fake.url(p)).collect::<Vec<_>>().join(",")
}
