//! News headlines for the briefing: fetches every feed in `NEWS_FEEDS` (RSS
//! 0.x/1.0/2.0 and Atom, parsed by `feed-rs`), with bounded concurrency, a
//! timeout and a size cap per feed, then de-duplicates (by link and by
//! normalised title), sorts newest first and keeps the top N.
//!
//! A feed that could not be read (HTTP error, timeout, not a feed) is never
//! dropped silently: it is returned in [`News::failed`], and the briefing
//! names it in a footnote. [`cached`] shares one fetch between the many
//! briefings composed around the same minute.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

/// Headlines shown in a briefing.
pub const TOP_N: usize = 5;
/// Feeds fetched at once: a handful of hosts, no need to hammer any of them.
pub const CONCURRENCY: usize = 4;
/// Per feed. A feed slower than this is reported as failed rather than
/// holding every briefing back.
pub const FEED_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest feed body read. Real news feeds are 10–500 kB; anything bigger is
/// not a headline feed and would only cost memory.
pub const MAX_FEED_BYTES: usize = 4 * 1024 * 1024;
/// How long one fetch serves later briefings. Ten thousand users due at
/// 09:00 share one fetch; headlines a few minutes old are still news.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// One headline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Headline {
    pub title: String,
    /// An http(s) link to the article, when the feed gave one.
    pub link: Option<String>,
    pub published: Option<DateTime<Utc>>,
    /// The feed's title, or its host.
    pub source: String,
}

/// A feed that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedFailure {
    pub url: String,
    pub reason: String,
}

/// The outcome of fetching every feed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct News {
    pub headlines: Vec<Headline>,
    pub failed: Vec<FeedFailure>,
    pub feeds: usize,
}

/// How complete the news section is (stored as `briefings.news_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewsStatus {
    Ok,
    Partial,
    Error,
}

impl NewsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Error => "error",
        }
    }
}

impl News {
    pub fn status(&self) -> NewsStatus {
        if self.failed.is_empty() {
            NewsStatus::Ok
        } else if self.failed.len() < self.feeds {
            NewsStatus::Partial
        } else {
            NewsStatus::Error
        }
    }

    /// A one-line description for the operator (`briefings.news_detail`).
    pub fn detail(&self) -> String {
        let mut s = format!("{} headlines from {} feeds", self.headlines.len(), self.feeds);
        if !self.failed.is_empty() {
            let names: Vec<String> = self.failed.iter().map(|f| format!("{} ({})", f.url, f.reason)).collect();
            s.push_str(&format!("; failed: {}", names.join(", ")));
        }
        s
    }
}

type CacheSlot = Option<(Instant, Vec<Url>, Arc<News>)>;

fn cache() -> &'static Mutex<CacheSlot> {
    static CACHE: OnceLock<Mutex<CacheSlot>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(None))
}

/// [`fetch`], shared: one fetch per feed list per [`CACHE_TTL`]. Callers
/// arriving while a fetch runs wait for it instead of starting their own.
pub async fn cached(http: &reqwest::Client, feeds: &[Url]) -> Arc<News> {
    let mut slot = cache().lock().await;
    if let Some((at, urls, news)) = slot.as_ref()
        && at.elapsed() < CACHE_TTL
        && urls.as_slice() == feeds
    {
        return news.clone();
    }
    let news = Arc::new(fetch(http, feeds, TOP_N).await);
    *slot = Some((Instant::now(), feeds.to_vec(), news.clone()));
    news
}

/// Fetches every feed and returns the top `top` headlines and the failures.
pub async fn fetch(http: &reqwest::Client, feeds: &[Url], top: usize) -> News {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, url) in feeds.iter().cloned().enumerate() {
        let http = http.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            let result = match tokio::time::timeout(FEED_TIMEOUT, fetch_one(&http, &url)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", FEED_TIMEOUT.as_secs())),
            };
            (index, url, result)
        });
    }
    let mut results = Vec::with_capacity(feeds.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!(error = %e, "a feed task panicked"),
        }
    }
    // Feed order decides ties, so the result does not depend on which answered first.
    results.sort_by_key(|(index, _, _)| *index);

    let mut all = Vec::new();
    let mut failed = Vec::new();
    for (_, url, result) in results {
        match result {
            Ok(items) => all.extend(items),
            Err(reason) => {
                tracing::warn!(feed = %url, reason = %reason, "news feed could not be read");
                failed.push(FeedFailure { url: url.to_string(), reason });
            }
        }
    }
    News { headlines: select(all, top), failed, feeds: feeds.len() }
}

/// De-duplicates, sorts newest first (undated last, in feed order) and keeps `top`.
pub fn select(items: Vec<Headline>, top: usize) -> Vec<Headline> {
    let mut seen_links = HashSet::new();
    let mut seen_titles = HashSet::new();
    let mut unique: Vec<Headline> = Vec::new();
    for item in items {
        let title_key = normalize_title(&item.title);
        if title_key.is_empty() {
            continue;
        }
        let link_key = item.link.as_deref().map(normalize_link);
        if link_key.as_ref().is_some_and(|l| seen_links.contains(l)) || seen_titles.contains(&title_key) {
            continue;
        }
        if let Some(l) = link_key {
            seen_links.insert(l);
        }
        seen_titles.insert(title_key);
        unique.push(item);
    }
    // Stable sort: equal dates keep feed order.
    unique.sort_by_key(|h| std::cmp::Reverse(h.published));
    unique.truncate(top);
    unique
}

/// Lower case, letters and digits only, single spaces: "Fed raises rates!"
/// and "FED raises  rates" are the same story.
pub fn normalize_title(title: &str) -> String {
    let mapped: String =
        title.chars().map(|c| if c.is_alphanumeric() { c.to_lowercase().next().unwrap_or(c) } else { ' ' }).collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Scheme-less, without a fragment or trailing slash, and without the usual
/// tracking parameters.
fn normalize_link(link: &str) -> String {
    match Url::parse(link) {
        Ok(mut u) => {
            u.set_fragment(None);
            let kept: Vec<(String, String)> =
                u.query_pairs().filter(|(k, _)| !k.starts_with("utm_")).map(|(k, v)| (k.into(), v.into())).collect();
            if kept.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(kept);
            }
            let s = u.as_str();
            let s = s.split_once("://").map(|(_, rest)| rest).unwrap_or(s);
            s.trim_end_matches('/').to_lowercase()
        }
        Err(_) => link.trim().to_lowercase(),
    }
}

async fn fetch_one(http: &reqwest::Client, url: &Url) -> Result<Vec<Headline>, String> {
    let mut resp = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5")
        .send()
        .await
        .map_err(|e| describe_reqwest(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_reqwest(&e))? {
        if body.len() + chunk.len() > MAX_FEED_BYTES {
            return Err(format!("larger than {} MB", MAX_FEED_BYTES / (1024 * 1024)));
        }
        body.extend_from_slice(&chunk);
    }
    parse(url, &body)
}

/// Parses a feed body into headlines.
pub fn parse(url: &Url, body: &[u8]) -> Result<Vec<Headline>, String> {
    let feed = feed_rs::parser::parse(body).map_err(|e| format!("not an RSS or Atom feed ({e})"))?;
    let source = feed
        .title
        .as_ref()
        .map(|t| t.content.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_string());
    Ok(feed
        .entries
        .into_iter()
        .filter_map(|e| {
            let title = e.title.map(|t| collapse_whitespace(&t.content))?;
            if title.is_empty() {
                return None;
            }
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or(e.links.first())
                .map(|l| l.href.trim().to_owned())
                .filter(|h| Url::parse(h).is_ok_and(|u| matches!(u.scheme(), "http" | "https")));
            Some(Headline { title, link, published: e.published.or(e.updated), source: source.clone() })
        })
        .collect())
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "could not connect".into();
    }
    // Without the URL: the footnote already names the feed.
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" for url ({u})"), "").replace(&format!(" ({u})"), "");
    }
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(title: &str, link: Option<&str>, day: Option<u32>) -> Headline {
        Headline {
            title: title.into(),
            link: link.map(str::to_owned),
            published: day.map(|d| DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T00:00:00Z")).unwrap().into()),
            source: "s".into(),
        }
    }

    #[test]
    fn select_dedupes_by_link_and_title_and_sorts_newest_first() {
        let items = vec![
            h("Old story", Some("https://a.example/1"), Some(1)),
            h("New story", Some("https://a.example/2?utm_source=rss"), Some(5)),
            h("new  STORY!", Some("https://b.example/other"), Some(6)),
            h("Same link, other title", Some("http://a.example/2/"), Some(7)),
            h("Undated", None, None),
            h("Middle", Some("https://a.example/3"), Some(3)),
        ];
        let got: Vec<String> = select(items, 10).into_iter().map(|h| h.title).collect();
        assert_eq!(got, vec!["New story", "Middle", "Old story", "Undated"]);
    }

    #[test]
    fn select_keeps_top_n() {
        let items: Vec<Headline> = (1..=20).map(|d| h(&format!("story {d}"), None, Some(d))).collect();
        let got = select(items, 5);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].title, "story 20");
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_feed() {
        let url = Url::parse("http://x.example/feed").unwrap();
        assert!(parse(&url, b"<html><body>502 Bad Gateway</body></html>").is_err());
        assert!(parse(&url, b"\x00\x01garbage").is_err());
    }
}
