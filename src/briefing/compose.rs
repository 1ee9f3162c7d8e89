//! Composing a briefing: gathers the requested sections for one user (the
//! Gmail section from [`super::email`], headlines from [`crate::news`]) and
//! reduces the mail to what a morning message shows: how many, who wrote,
//! and the most important few, ranked by Gmail's own labels (an extractive
//! summary; nothing is invented).

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, NaiveDate, Utc};

use super::email::{self, EmailSection, MailItem};
use crate::i18n::Lang;
use crate::{
    news::News,
    startup::AppState,
    storage::{briefings::GmailState, users::User},
};

/// Mail items shown by subject and gist.
pub const TOP_MAIL: usize = 5;
/// Senders named before "and N others".
pub const TOP_SENDERS: usize = 5;
/// Longest gist, in characters: one line in Slack on a laptop.
pub const GIST_CHARS: usize = 140;
/// Longest wait for one section. Well under the job lease
/// ([`crate::jobs::LEASE`], 90 s), so a slow Gmail or feed can never let a
/// second worker take over a delivery that is still running; a section that
/// times out says so in the briefing.
pub const SECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest LLM summary shown, in characters: three short sentences.
pub const LLM_SUMMARY_CHARS: usize = 600;
/// How long the LLM may take. Its summary is one optional line on top of the
/// extractive one, not worth holding the briefing for.
pub const LLM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Messages the LLM is shown (the highest ranked).
pub const LLM_MAX_ITEMS: usize = 20;

/// Which part of the briefing (`/brief email`, `/brief news`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Email,
    News,
}

impl Section {
    /// Parses the argument of `/brief` (`email`, `mail`, `메일`, `news`, `뉴스`).
    pub fn parse(arg: &str) -> Option<Self> {
        match arg.trim().to_lowercase().as_str() {
            "email" | "mail" | "gmail" | "메일" | "이메일" => Some(Self::Email),
            "news" | "뉴스" => Some(Self::News),
            _ => None,
        }
    }
}

/// Everything a briefing says, before rendering.
#[derive(Debug, Clone)]
pub struct Briefing {
    pub user_id: String,
    pub user_name: String,
    pub lang: Lang,
    pub local_date: NaiveDate,
    /// The user's time zone, for the times the briefing mentions.
    pub tz: chrono_tz::Tz,
    /// `None`: not requested.
    pub email: Option<EmailSection>,
    pub news: Option<Arc<News>>,
    /// Where the Reconnect button leads (from [`email::reconnect_url`]);
    /// made only for a Gmail section that was not read (one that was has
    /// no button, and signing a link per briefing is not free).
    pub reconnect_url: Option<String>,
    /// The LLM's summary of the mail, when `LLM_BASE_URL` is set and it answered.
    pub mail_summary: Option<String>,
    /// Why the LLM summary is missing although an LLM is configured.
    pub mail_summary_error: Option<String>,
}

/// Builds the requested sections for `user`: mail since `since`, headlines.
/// `gmail` is the user's Gmail connection as the caller read it (`Err`: it
/// could not be read, which the Gmail section reports).
pub async fn compose(
    state: &AppState,
    user: &User,
    sections: Option<Section>,
    since: DateTime<Utc>,
    local_date: NaiveDate,
    gmail: Result<Option<GmailState>, ()>,
) -> Briefing {
    let want_email = sections.is_none_or(|s| s == Section::Email);
    let want_news = sections.is_none_or(|s| s == Section::News);
    let email_fut = async {
        if !want_email {
            return None;
        }
        Some(
            tokio::time::timeout(SECTION_TIMEOUT, Box::pin(email::fetch(state, user, since, gmail)))
                .await
                .unwrap_or_else(|_| EmailSection::Error {
                    message: format!("Gmail did not answer within {} s", SECTION_TIMEOUT.as_secs()),
                }),
        )
    };
    let news_fut = async {
        if !want_news {
            return None;
        }
        let feeds = &state.config.news_feeds;
        Some(tokio::time::timeout(SECTION_TIMEOUT, crate::news::cached(&state.http, feeds)).await.unwrap_or_else(
            |_| {
                Arc::new(News {
                    headlines: Vec::new(),
                    failed: feeds
                        .iter()
                        .map(|u| crate::news::FeedFailure {
                            url: u.to_string(),
                            reason: format!("no answer within {} s", SECTION_TIMEOUT.as_secs()),
                        })
                        .collect(),
                    feeds: feeds.len(),
                })
            },
        ))
    };
    let (email, news) = tokio::join!(email_fut, news_fut);
    let lang = Lang::of_locale(user.locale.as_deref());
    let (mut mail_summary, mut mail_summary_error) = (None, None);
    if let (Some(EmailSection::Ok { items }), Some(llm)) = (&email, &state.config.llm)
        && !items.is_empty()
    {
        match tokio::time::timeout(LLM_TIMEOUT, llm_summary(&state.http, llm, items, lang)).await {
            Ok(Ok(s)) => mail_summary = Some(s),
            Ok(Err(e)) => mail_summary_error = Some(format!("{e:#}")),
            Err(_) => mail_summary_error = Some(format!("no answer within {} s", LLM_TIMEOUT.as_secs())),
        }
        if let Some(e) = &mail_summary_error {
            tracing::warn!(user = %user.user_id, error = %e, "LLM mail summary failed; the extractive summary stands");
        }
    }
    let reconnect_url = match &email {
        None | Some(EmailSection::Ok { .. }) => None,
        Some(_) => Some(email::reconnect_url(state, &user.user_id)),
    };
    Briefing {
        user_id: user.user_id.clone(),
        user_name: user.name().to_owned(),
        lang,
        local_date,
        tz: super::scheduler::user_tz(state, user.tz.as_deref()),
        email,
        news,
        reconnect_url,
        mail_summary,
        mail_summary_error,
    }
}

/// Asks an OpenAI-compatible chat-completions API for a short summary of
/// the mail (senders, subjects, labels and Gmail's snippets; never bodies).
pub async fn llm_summary(
    http: &reqwest::Client,
    llm: &crate::config::OpenAiCompatible,
    items: &[MailItem],
    lang: Lang,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use secrecy::ExposeSecret as _;
    let mut ranked: Vec<&MailItem> = items.iter().collect();
    ranked.sort_by(|a, b| score(b).cmp(&score(a)).then(b.received_at.cmp(&a.received_at)));
    let listing: Vec<String> = ranked
        .iter()
        .take(LLM_MAX_ITEMS)
        .map(|m| {
            format!(
                "- From: {} | Subject: {} | Labels: {} | Snippet: {}",
                sender_name(&m.from),
                truncate_chars(&collapse(&m.subject), 200),
                m.labels.join(","),
                truncate_chars(&collapse(&unescape_html(&m.snippet)), 300)
            )
        })
        .collect();
    let language = lang.name();
    let body = serde_json::json!({
        "model": llm.model,
        "temperature": 0.2,
        "max_tokens": 300,
        "messages": [
            { "role": "system", "content": format!(
                "You summarise a person's new email for their morning briefing. Answer in {language}, in at most three short sentences of plain text (no markdown, no links, no lists). Say first what needs their attention. Use only the messages given; never invent." ) },
            { "role": "user", "content": format!("{} new messages:\n{}", items.len(), listing.join("\n")) }
        ]
    });
    let mut request =
        http.post(format!("{}/chat/completions", llm.base_url.as_str().trim_end_matches('/'))).json(&body);
    if let Some(key) = &llm.api_key {
        request = request.bearer_auth(key.expose_secret());
    }
    let resp = request.send().await.context("calling the LLM")?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "the LLM answered HTTP {}", status.as_u16());
    let answer: serde_json::Value = resp.json().await.context("reading the LLM's answer")?;
    let text = answer["choices"][0]["message"]["content"].as_str().map(collapse).unwrap_or_default();
    anyhow::ensure!(!text.is_empty(), "the LLM's answer had no text");
    Ok(truncate_chars(&text, LLM_SUMMARY_CHARS))
}

/// The mail section reduced to what is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSummary {
    pub count: usize,
    pub unread: usize,
    /// Sender names with how many messages each, most first.
    pub senders: Vec<(String, usize)>,
    pub top: Vec<TopItem>,
}

/// One highlighted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopItem {
    pub from: String,
    pub subject: String,
    pub gist: String,
    pub important: bool,
    pub unread: bool,
}

/// How much a message matters, from Gmail's labels: Gmail's own importance
/// guess first, then unread, then the Primary (personal) tab; promotions and
/// social mail sink.
pub fn score(item: &MailItem) -> i32 {
    let has = |l: &str| item.labels.iter().any(|x| x == l);
    let mut s = 0;
    if has("IMPORTANT") {
        s += 8;
    }
    if has("UNREAD") {
        s += 4;
    }
    if has("CATEGORY_PERSONAL") {
        s += 2;
    }
    if has("STARRED") {
        s += 2;
    }
    if has("CATEGORY_PROMOTIONS") || has("CATEGORY_SOCIAL") || has("SPAM") {
        s -= 5;
    }
    s
}

/// The extractive summary: counts, senders, and the [`TOP_MAIL`] messages
/// with the highest [`score`] (newest first among equals).
pub fn summarize(items: &[MailItem]) -> MailSummary {
    let mut by_sender: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let entry = by_sender.entry(sender_name(&item.from)).or_insert((0, i));
        entry.0 += 1;
    }
    let mut senders: Vec<(String, usize, usize)> = by_sender.into_iter().map(|(n, (c, first))| (n, c, first)).collect();
    senders.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));

    let mut ranked: Vec<&MailItem> = items.iter().collect();
    ranked.sort_by(|a, b| score(b).cmp(&score(a)).then(b.received_at.cmp(&a.received_at)));
    let top = ranked
        .into_iter()
        .take(TOP_MAIL)
        .map(|m| TopItem {
            from: sender_name(&m.from),
            subject: if m.subject.trim().is_empty() { String::new() } else { collapse(&m.subject) },
            gist: gist(&m.snippet),
            important: m.labels.iter().any(|l| l == "IMPORTANT"),
            unread: m.labels.iter().any(|l| l == "UNREAD"),
        })
        .collect();
    MailSummary {
        count: items.len(),
        unread: items.iter().filter(|m| m.labels.iter().any(|l| l == "UNREAD")).count(),
        senders: senders.into_iter().map(|(n, c, _)| (n, c)).collect(),
        top,
    }
}

/// `"김종태 <jt@example.com>"` → `김종태`; `"<a@b.c>"` or `"a@b.c"` → `a@b.c`.
pub fn sender_name(from: &str) -> String {
    let from = from.trim();
    if let Some((name, rest)) = from.split_once('<') {
        let name = name.trim().trim_matches('"').trim();
        if !name.is_empty() {
            return collapse(name);
        }
        return rest.trim_end_matches('>').trim().to_owned();
    }
    if from.is_empty() { "(unknown sender)".into() } else { collapse(from) }
}

/// The first sentence of Gmail's snippet (which arrives HTML-escaped), at
/// most [`GIST_CHARS`] characters.
pub fn gist(snippet: &str) -> String {
    let text = collapse(&unescape_html(snippet));
    let end = text
        .char_indices()
        .find(|&(i, c)| matches!(c, '.' | '!' | '?' | '。') && text[i + c.len_utf8()..].starts_with(' '))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(text.len());
    truncate_chars(&text[..end], GIST_CHARS)
}

/// At most `max` characters, with `…` when cut. Never splits a character.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) => {
            let cut: String = s.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The entities Gmail snippets use.
fn unescape_html(s: &str) -> String {
    s.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(from: &str, subject: &str, labels: &[&str], minute: i64) -> MailItem {
        MailItem {
            from: from.into(),
            subject: subject.into(),
            snippet: format!("About {subject}. More text follows."),
            received_at: DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn important_unread_personal_mail_ranks_first() {
        let items = vec![
            item("Shop <deals@shop.example>", "50% off", &["UNREAD", "CATEGORY_PROMOTIONS"], 5),
            item("\"김종태\" <jt@example.com>", "계약서 검토", &["IMPORTANT", "UNREAD", "CATEGORY_PERSONAL"], 1),
            item("Bob <bob@example.com>", "Lunch?", &["CATEGORY_PERSONAL"], 4),
            item("Bob <bob@example.com>", "Re: Lunch?", &["UNREAD", "CATEGORY_PERSONAL"], 3),
            item("alerts@bank.example", "Statement", &["CATEGORY_UPDATES"], 2),
        ];
        let s = summarize(&items);
        assert_eq!(s.count, 5);
        assert_eq!(s.unread, 3);
        assert_eq!(s.senders[0], ("Bob".to_string(), 2));
        let subjects: Vec<&str> = s.top.iter().map(|t| t.subject.as_str()).collect();
        assert_eq!(subjects, vec!["계약서 검토", "Re: Lunch?", "Lunch?", "Statement", "50% off"]);
        assert_eq!(s.top[0].from, "김종태");
        assert_eq!(s.top[0].gist, "About 계약서 검토.");
    }

    #[test]
    fn sender_names_and_gists() {
        assert_eq!(sender_name("<a@b.example>"), "a@b.example");
        assert_eq!(sender_name("a@b.example"), "a@b.example");
        assert_eq!(sender_name(""), "(unknown sender)");
        assert_eq!(gist("It&#39;s done &amp; shipped. Next"), "It's done & shipped.");
        let long = "가".repeat(500);
        let g = gist(&long);
        assert_eq!(g.chars().count(), GIST_CHARS);
        assert!(g.ends_with('…'));
    }

    #[test]
    fn locale_and_section_parsing() {
        assert_eq!(Section::parse(" Email "), Some(Section::Email));
        assert_eq!(Section::parse("뉴스"), Some(Section::News));
        assert_eq!(Section::parse("weather"), None);
    }
}
