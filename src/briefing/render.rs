//! Rendering a composed briefing as a Slack message: Block Kit blocks plus a
//! plain-text fallback (`text`, used in notifications and by clients that
//! cannot show blocks), in Korean or English.
//!
//! Slack's limits hold by construction: at most [`MAX_BLOCKS`] blocks, at
//! most [`MAX_SECTION_CHARS`] characters per text object (lines that do not
//! fit become "…and N more"), and every string that came from outside (mail
//! subjects and senders, feed titles, names, error reasons) is escaped
//! (`&`, `<`, `>`) so it can neither break the markup nor forge a mention
//! or a link. The words are in [`crate::i18n::briefing`].

use serde_json::{Value, json};

use super::{
    compose::{self, Briefing, truncate_chars},
    email::EmailSection,
};
use crate::{
    i18n::{self, Lang, briefing as words},
    news::News,
    slack::client::mrkdwn_to_plain,
};

/// Slack: at most 50 blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack: at most 3,000 characters in a section's (or context element's) text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Longest fallback `text` we send: a notification preview, not the briefing.
pub const MAX_FALLBACK_CHARS: usize = 3000;
/// Longest subject or headline shown (before escaping).
pub const MAX_TITLE_CHARS: usize = 150;
/// Longest sender name or source shown (before escaping).
pub const MAX_NAME_CHARS: usize = 60;
/// Room kept at the end of a packed section for the "…and N more" line.
const MORE_RESERVE: usize = 40;

/// The `action_id` of the Reconnect Gmail button (handled by the
/// interactions route).
pub const RECONNECT_ACTION_ID: &str = "gmail_reconnect";

/// A message ready to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub blocks: Vec<Value>,
}

impl Rendered {
    /// The body for a slash command's `response_url`.
    pub fn response_url_body(&self) -> Value {
        json!({ "response_type": "ephemeral", "replace_original": false, "text": self.text, "blocks": self.blocks })
    }
}

/// The message as plain text for a terminal (`robeing brief --dry-run`):
/// block texts in order, links as `title (url)`, buttons as `[label] url`,
/// escapes undone.
pub fn to_terminal(message: &Rendered) -> String {
    let mut out = Vec::new();
    for b in &message.blocks {
        match b["type"].as_str() {
            Some("header") => {
                let t = b["text"]["text"].as_str().unwrap_or_default();
                out.push(format!("{t}\n{}", "=".repeat(t.chars().count().max(3))));
            }
            Some("divider") => out.push("----".into()),
            Some("context") => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    out.push(mrkdwn_to_plain(e["text"].as_str().unwrap_or_default()));
                }
            }
            _ => {
                if let Some(t) = b["text"]["text"].as_str() {
                    out.push(mrkdwn_to_plain(t));
                }
                if let Some(label) = b["accessory"]["text"]["text"].as_str() {
                    out.push(format!("[{label}] {}", b["accessory"]["url"].as_str().unwrap_or_default()));
                }
            }
        }
    }
    out.join("\n")
}

/// Escapes the three characters Slack's markup gives meaning to (the
/// transport's one escaping rule).
pub fn escape(s: &str) -> String {
    crate::slack::client::escape_mrkdwn(s)
}

/// `<url|title>` for an http(s) URL, else the escaped title alone. The
/// title is one line (a line break inside `<…|…>` breaks Slack's link and
/// shows the markup); an empty one shows the URL.
fn link(url: Option<&str>, title: &str) -> String {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    match url.and_then(|u| url::Url::parse(u).ok()).filter(|u| matches!(u.scheme(), "http" | "https")) {
        Some(u) => {
            let href = escape(u.as_str()).replace('|', "%7C");
            let shown = if title.is_empty() { href.clone() } else { escape(&title) };
            format!("<{href}|{shown}>")
        }
        None => escape(&title),
    }
}

fn mrkdwn_section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// `head`, then as many `lines` as fit in [`MAX_SECTION_CHARS`], then
/// "…and N more" for the rest.
pub fn pack(head: &str, lines: &[String], lang: Lang) -> String {
    let mut out = truncate_chars(head, MAX_SECTION_CHARS - MORE_RESERVE);
    let mut used = out.chars().count();
    for (i, line) in lines.iter().enumerate() {
        let n = line.chars().count() + 1;
        if used + n > MAX_SECTION_CHARS - MORE_RESERVE {
            let rest = lines.len() - i;
            out.push('\n');
            out.push_str(&words::and_more(lang, rest));
            return out;
        }
        out.push('\n');
        out.push_str(line);
        used += n;
    }
    out
}

/// Renders the briefing.
pub fn render(b: &Briefing) -> Rendered {
    let lang = b.lang;
    let name = escape(&truncate_chars(&b.user_name, MAX_NAME_CHARS));
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "emoji": true, "text": words::header(lang) } }),
        json!({ "type": "context", "elements": [
            { "type": "mrkdwn", "text": words::greeting(lang, &name, b.local_date) }
        ] }),
    ];
    let mut fallback = vec![words::fallback_title(lang, b.local_date)];

    if let Some(email) = &b.email {
        let (email_blocks, line) =
            render_email(email, b.reconnect_url.as_deref(), lang, b.tz, b.mail_summary.as_deref());
        blocks.extend(email_blocks);
        fallback.push(line);
    }
    if b.email.is_some() && b.news.is_some() {
        blocks.push(json!({ "type": "divider" }));
    }
    if let Some(news) = &b.news {
        let (news_blocks, line) = render_news(news, lang);
        blocks.extend(news_blocks);
        fallback.push(line);
    }
    blocks.truncate(MAX_BLOCKS);
    Rendered { text: truncate_chars(&fallback.join("\n"), MAX_FALLBACK_CHARS), blocks }
}

fn button(text: &str, url: &str) -> Value {
    json!({
        "type": "button",
        "action_id": RECONNECT_ACTION_ID,
        "style": "primary",
        "text": { "type": "plain_text", "emoji": true, "text": text },
        "url": url,
    })
}

/// The Gmail blocks and the fallback line.
fn render_email(
    email: &EmailSection,
    reconnect_url: Option<&str>,
    lang: Lang,
    tz: chrono_tz::Tz,
    llm_summary: Option<&str>,
) -> (Vec<Value>, String) {
    let title = words::gmail_title(lang);
    let with_button = |text: String, label: &str| -> Value {
        let mut section = mrkdwn_section(text);
        if let Some(url) = reconnect_url {
            section["accessory"] = button(label, url);
        }
        section
    };
    match email {
        EmailSection::Ok { items } if items.is_empty() => {
            let line = words::no_new_mail(lang);
            (vec![mrkdwn_section(format!("{title}\n{line}"))], format!("Gmail: {line}"))
        }
        EmailSection::Ok { items } => {
            let s = compose::summarize(items);
            let mut senders: Vec<String> = s
                .senders
                .iter()
                .take(compose::TOP_SENDERS)
                .map(|(n, c)| {
                    let n = escape(&truncate_chars(n, MAX_NAME_CHARS));
                    if *c > 1 { format!("{n} ({c})") } else { n }
                })
                .collect();
            let others = s.senders.len().saturating_sub(compose::TOP_SENDERS);
            if others > 0 {
                senders.push(words::and_others(lang, others));
            }
            let head = words::mail_head(lang, title, s.count, s.unread, &senders.join(", "));
            let head = match llm_summary {
                Some(summary) => format!("{head}\n>{}", escape(&truncate_chars(summary, compose::LLM_SUMMARY_CHARS))),
                None => head,
            };
            let lines: Vec<String> = s
                .top
                .iter()
                .map(|t| {
                    let subject = if t.subject.is_empty() {
                        words::no_subject(lang).to_owned()
                    } else {
                        escape(&truncate_chars(&t.subject, MAX_TITLE_CHARS))
                    };
                    let mark = if t.important { "❗ " } else { "" };
                    let from = escape(&truncate_chars(&t.from, MAX_NAME_CHARS));
                    let gist = escape(&t.gist);
                    if gist.is_empty() {
                        format!("• {mark}*{subject}* — {from}")
                    } else {
                        format!("• {mark}*{subject}* — {from}\n    _{gist}_")
                    }
                })
                .collect();
            let more = s.count.saturating_sub(s.top.len());
            let mut text = pack(&head, &lines, lang);
            if more > 0 && text.chars().count() + 40 <= MAX_SECTION_CHARS {
                text.push('\n');
                text.push_str(&words::more_in_inbox(lang, more));
            }
            (vec![mrkdwn_section(text)], words::mail_line(lang, s.count, s.unread))
        }
        EmailSection::NotConfigured => {
            let line = words::mail_not_configured(lang);
            (vec![mrkdwn_section(format!("{title}\n{line}"))], format!("Gmail: {line}"))
        }
        EmailSection::NotConnected => {
            let (line, label) = (words::mail_not_connected(lang), i18n::gmail::connect_button(lang));
            (vec![with_button(format!("{title}\n{line}"), label)], format!("Gmail: {line}"))
        }
        EmailSection::NeedsReconnect { since, reason } => {
            let reason = escape(&truncate_chars(reason, 200));
            let when = format!("{} ({tz})", since.with_timezone(&tz).format("%Y-%m-%d %H:%M"));
            let (line, label) =
                (words::mail_needs_reconnect(lang, &when, &reason), i18n::gmail::reconnect_button(lang));
            let fallback = words::mail_needs_reconnect_line(lang).to_owned();
            (vec![with_button(format!("{title}\n{line}"), label)], fallback)
        }
        EmailSection::Error { message } => {
            let message = escape(&truncate_chars(message, 300));
            let line = words::mail_error(lang, &message);
            let fallback = words::mail_error_line(lang).to_owned();
            (vec![mrkdwn_section(format!("{title}\n{line}"))], fallback)
        }
    }
}

/// The news blocks and the fallback line.
fn render_news(news: &News, lang: Lang) -> (Vec<Value>, String) {
    let title = words::news_title(lang);
    let mut blocks = Vec::new();
    let fallback = if news.headlines.is_empty() {
        let line = words::no_news(lang, news.feeds > 0 && news.failed.len() == news.feeds);
        blocks.push(mrkdwn_section(format!("{title}\n{line}")));
        format!("{}: {line}", words::news_label(lang))
    } else {
        let lines: Vec<String> = news
            .headlines
            .iter()
            .map(|h| {
                format!(
                    "• {} — _{}_",
                    link(h.link.as_deref(), &truncate_chars(&h.title, MAX_TITLE_CHARS)),
                    escape(&truncate_chars(&h.source, MAX_NAME_CHARS))
                )
            })
            .collect();
        blocks.push(mrkdwn_section(pack(title, &lines, lang)));
        words::news_line(lang, news.headlines.len())
    };
    if !news.failed.is_empty() {
        let head = words::feeds_failed(lang, news.failed.len(), news.feeds);
        let lines: Vec<String> = news
            .failed
            .iter()
            .map(|f| format!("{} ({})", escape(&truncate_chars(&f.url, 200)), escape(&truncate_chars(&f.reason, 200))))
            .collect();
        blocks.push(
            json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": pack(&head, &lines, lang) } ] }),
        );
    }
    (blocks, fallback)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, NaiveDate, Utc};

    use super::*;
    use crate::{
        briefing::email::MailItem,
        news::{FeedFailure, Headline},
    };

    fn briefing(email: Option<EmailSection>, news: Option<News>, lang: Lang) -> Briefing {
        Briefing {
            user_id: "U0TEST001".into(),
            user_name: "Jane <@U0ADMIN> & co".into(),
            lang,
            local_date: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            tz: chrono_tz::Asia::Seoul,
            email,
            news: news.map(Arc::new),
            reconnect_url: Some("http://localhost:3000/oauth/google/start".into()),
            mail_summary: Some("<@U0ADMIN> wrote & asked".into()),
            mail_summary_error: None,
        }
    }

    fn texts(r: &Rendered) -> Vec<String> {
        let mut out = Vec::new();
        for b in &r.blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                out.push(t.to_owned());
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                if let Some(t) = e["text"].as_str() {
                    out.push(t.to_owned());
                }
            }
        }
        out
    }

    fn assert_within_limits(r: &Rendered) {
        assert!(r.blocks.len() <= MAX_BLOCKS, "{} blocks", r.blocks.len());
        for t in texts(r) {
            assert!(t.chars().count() <= MAX_SECTION_CHARS, "a text of {} chars", t.chars().count());
        }
        assert!(r.text.chars().count() <= MAX_FALLBACK_CHARS);
        assert!(!r.text.is_empty());
        // Every block deserializes as slack-morphism's Block Kit model.
        let parsed: Vec<slack_morphism::prelude::SlackBlock> =
            serde_json::from_value(Value::Array(r.blocks.clone())).unwrap();
        assert_eq!(parsed.len(), r.blocks.len());
    }

    fn mail(i: usize, subject: String) -> MailItem {
        MailItem {
            from: format!("Sender {} <s{}@example.com>", i % 37, i),
            subject,
            snippet: format!("snippet <b>{i}</b> & more"),
            received_at: DateTime::<Utc>::from_timestamp(1_800_000_000 + i as i64, 0).unwrap(),
            labels: if i.is_multiple_of(3) { vec!["IMPORTANT".into(), "UNREAD".into()] } else { vec![] },
        }
    }

    #[test]
    fn huge_inputs_stay_within_slacks_limits() {
        for lang in [Lang::En, Lang::Ko] {
            for n in [0usize, 1, 5, 49, 50, 51, 500] {
                for subject_len in [0usize, 10, 3_000, 10_000] {
                    let items: Vec<MailItem> = (0..n).map(|i| mail(i, "<&>".repeat(subject_len / 3 + i % 2))).collect();
                    let headlines: Vec<Headline> = (0..n)
                        .map(|i| Headline {
                            title: "x&".repeat(subject_len / 2 + 1),
                            link: Some(format!("https://news.example/{i}?a=1&b=<2>|3")),
                            published: None,
                            source: "<src>".repeat(100),
                        })
                        .collect();
                    let failed: Vec<FeedFailure> = (0..n)
                        .map(|i| FeedFailure {
                            url: format!("https://f{i}.example/"),
                            reason: "<&>".repeat(subject_len),
                        })
                        .collect();
                    let news = News { headlines, feeds: n * 2, failed };
                    let r = render(&briefing(Some(EmailSection::Ok { items }), Some(news), lang));
                    assert_within_limits(&r);
                    for t in texts(&r) {
                        assert!(
                            !t.contains("<&>") && !t.contains("<src>") && !t.contains("<@U0ADMIN>"),
                            "unescaped: {t}"
                        );
                    }
                    if n == 500 && subject_len == 0 {
                        let all = texts(&r).join("\n");
                        assert!(all.contains("500") && (all.contains("more") || all.contains("더")), "{all}");
                    }
                }
            }
        }
    }

    #[test]
    fn many_failed_feeds_are_packed_with_and_n_more() {
        let failed: Vec<FeedFailure> = (0..500)
            .map(|i| FeedFailure { url: format!("https://feed{i}.example/rss"), reason: "HTTP 502".into() })
            .collect();
        let news = News { headlines: vec![], feeds: 500, failed };
        let r = render(&briefing(None, Some(news), Lang::En));
        assert_within_limits(&r);
        let all = texts(&r).join("\n");
        assert!(all.contains("No news feed could be read"), "{all}");
        assert!(all.contains("https://feed0.example/rss (HTTP 502)"), "{all}");
        assert!(all.contains("…and ") && all.contains(" more"), "{all}");
    }

    #[test]
    fn every_non_ok_gmail_state_is_an_explicit_line() {
        let since = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let cases = [
            (EmailSection::NotConfigured, "not set up", false),
            (EmailSection::NotConnected, "not connected", true),
            (EmailSection::NeedsReconnect { since, reason: "invalid_grant <x>".into() }, "Reconnect Gmail", true),
            (EmailSection::Error { message: "Gmail answered HTTP 500".into() }, "could not be read this time", false),
        ];
        for (section, expected, button) in cases {
            let r = render(&briefing(Some(section.clone()), Some(News::default()), Lang::En));
            assert_within_limits(&r);
            let all = texts(&r).join("\n");
            assert!(all.contains(expected), "{section:?}: {all}");
            assert!(!all.contains("<x>"));
            let has_button = r.blocks.iter().any(|b| b["accessory"]["action_id"] == RECONNECT_ACTION_ID);
            assert_eq!(has_button, button, "{section:?}");
            assert!(r.text.contains("Gmail"), "fallback names Gmail: {}", r.text);
        }
    }

    #[test]
    fn korean_locale_gives_korean() {
        let r = render(&briefing(Some(EmailSection::NotConnected), Some(News::default()), Lang::Ko));
        let all = texts(&r).join("\n");
        assert!(all.contains("Gmail이 연결되어 있지 않아"), "{all}");
        assert!(all.contains("2026년 11월 28일 (토)"), "{all}");
    }

    #[test]
    fn the_llm_summary_is_quoted_and_escaped() {
        let items = vec![mail(3, "Contract".into())];
        let r = render(&briefing(Some(EmailSection::Ok { items }), None, Lang::En));
        assert_within_limits(&r);
        let all = texts(&r).join("\n");
        assert!(all.contains("\n>&lt;@U0ADMIN&gt; wrote &amp; asked"), "{all}");
        assert!(all.contains("*Contract*"), "{all}");
    }

    #[test]
    fn escape_and_link() {
        assert_eq!(escape("a&b<c>d"), "a&amp;b&lt;c&gt;d");
        assert_eq!(link(Some("https://x.example/?a=1&b=2"), "T<i>"), "<https://x.example/?a=1&amp;b=2|T&lt;i&gt;>");
        assert_eq!(link(Some("javascript:alert(1)"), "T"), "T");
    }
}
