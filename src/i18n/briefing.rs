//! The briefing: the message itself (rendered by
//! [`crate::briefing::render`]), App Home's briefing settings
//! ([`crate::briefing::home`]) and the `/brief` acknowledgement.
//!
//! Arguments are mrkdwn-ready (escaped by the caller).

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

use super::Lang;

pub fn header(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "☀️ 오늘의 브리핑",
        Lang::En => "☀️ Your briefing",
    }
}

/// "Thursday, 27 November 2026" / "2026년 11월 27일 (목)".
pub fn date_label(lang: Lang, date: NaiveDate) -> String {
    match lang {
        Lang::En => date.format("%A, %-d %B %Y").to_string(),
        Lang::Ko => {
            const DAYS: [&str; 7] = ["월", "화", "수", "목", "금", "토", "일"];
            format!(
                "{}년 {}월 {}일 ({})",
                date.year(),
                date.month(),
                date.day(),
                DAYS[date.weekday().num_days_from_monday() as usize]
            )
        }
    }
}

pub fn greeting(lang: Lang, name: &str, date: NaiveDate) -> String {
    match lang {
        Lang::Ko => format!("{name}님, 좋은 아침입니다 · {}", date_label(lang, date)),
        Lang::En => format!("Good morning, {name} · {}", date_label(lang, date)),
    }
}

/// The first line of the notification text.
pub fn fallback_title(lang: Lang, date: NaiveDate) -> String {
    match lang {
        Lang::Ko => format!("{} 브리핑", date_label(lang, date)),
        Lang::En => format!("Your briefing for {}", date_label(lang, date)),
    }
}

/// The last line of a section that did not fit.
pub fn and_more(lang: Lang, rest: usize) -> String {
    match lang {
        Lang::Ko => format!("…외 {rest}건 더"),
        Lang::En => format!("…and {rest} more"),
    }
}

pub fn gmail_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "📧 *Gmail*",
        Lang::En => "📧 *Gmail*",
    }
}

pub fn no_new_mail(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "지난 브리핑 이후 새 메일이 없습니다.",
        Lang::En => "No new mail since your last briefing.",
    }
}

/// After the top senders: how many more there were.
pub fn and_others(lang: Lang, others: usize) -> String {
    match lang {
        Lang::Ko => format!("외 {others}명"),
        Lang::En => format!("and {others} others"),
    }
}

/// The head of the mail section: counts and senders.
pub fn mail_head(lang: Lang, title: &str, count: usize, unread: usize, senders: &str) -> String {
    match lang {
        Lang::Ko => format!("{title} — 새 메일 {count}통 (읽지 않음 {unread}통)\n보낸 사람: {senders}"),
        Lang::En => format!(
            "{title} — {count} new message{} ({unread} unread)\nFrom: {senders}",
            if count == 1 { "" } else { "s" }
        ),
    }
}

pub fn no_subject(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "(제목 없음)",
        Lang::En => "(no subject)",
    }
}

pub fn more_in_inbox(lang: Lang, more: usize) -> String {
    match lang {
        Lang::Ko => format!("…받은편지함에 {more}통 더"),
        Lang::En => format!("…and {more} more in your inbox"),
    }
}

/// The mail section's line in the notification text.
pub fn mail_line(lang: Lang, count: usize, unread: usize) -> String {
    match lang {
        Lang::Ko => format!("Gmail: 새 메일 {count}통, 읽지 않음 {unread}통"),
        Lang::En => format!("Gmail: {count} new, {unread} unread"),
    }
}

pub fn mail_not_configured(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => {
            "이 robeing에는 Gmail 연동이 설정되어 있지 않아 메일 요약이 없습니다. 운영자에게 Google 설정을 요청하세요."
        }
        Lang::En => {
            "Gmail is not set up on this robeing, so there is no mail summary. Ask your operator to configure Google."
        }
    }
}

pub fn mail_not_connected(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail이 연결되어 있지 않아 메일 요약이 없습니다. 연결하면 여기에서 받은편지함을 볼 수 있습니다.",
        Lang::En => "Your Gmail is not connected, so there is no mail summary. Connect it to see your inbox here.",
    }
}

pub fn mail_needs_reconnect(lang: Lang, when: &str, reason: &str) -> String {
    match lang {
        Lang::Ko => format!(
            "⚠️ 메일을 읽지 못했습니다: {when}부터 Gmail 접근이 끊겼습니다 ({reason}). Gmail을 다시 연결하면 메일 요약이 돌아옵니다."
        ),
        Lang::En => format!(
            "⚠️ Your mail could not be read: access to Gmail stopped working on {when} ({reason}). Reconnect Gmail to get your mail summary back."
        ),
    }
}

pub fn mail_needs_reconnect_line(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail: 읽지 못함 — Gmail을 다시 연결하세요",
        Lang::En => "Gmail: could not be read — reconnect Gmail",
    }
}

pub fn mail_error(lang: Lang, message: &str) -> String {
    match lang {
        Lang::Ko => format!("⚠️ 이번에는 메일을 읽지 못했습니다: {message}. 브리핑의 나머지 부분은 정상입니다."),
        Lang::En => {
            format!("⚠️ Your mail could not be read this time: {message}. The rest of this briefing is complete.")
        }
    }
}

pub fn mail_error_line(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "Gmail: 이번에는 읽지 못함",
        Lang::En => "Gmail: could not be read this time",
    }
}

pub fn news_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "📰 *뉴스*",
        Lang::En => "📰 *News*",
    }
}

/// No headlines: because every feed failed, or because there were none.
pub fn no_news(lang: Lang, all_feeds_failed: bool) -> &'static str {
    match (lang, all_feeds_failed) {
        (Lang::Ko, true) => "⚠️ 뉴스 피드를 하나도 읽지 못했습니다.",
        (Lang::En, true) => "⚠️ No news feed could be read.",
        (Lang::Ko, false) => "지금은 헤드라인이 없습니다.",
        (Lang::En, false) => "No headlines right now.",
    }
}

/// The news section's name in the notification text.
pub fn news_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "뉴스",
        Lang::En => "News",
    }
}

pub fn news_line(lang: Lang, headlines: usize) -> String {
    match lang {
        Lang::Ko => format!("뉴스: 헤드라인 {headlines}건"),
        Lang::En => format!("News: {headlines} headlines"),
    }
}

pub fn feeds_failed(lang: Lang, failed: usize, feeds: usize) -> String {
    match lang {
        Lang::Ko => format!("⚠️ 뉴스 피드 {feeds}개 중 {failed}개를 읽지 못했습니다:"),
        Lang::En => format!("⚠️ {failed} of {feeds} news feeds could not be read:"),
    }
}

/// The immediate, ephemeral answer to `/brief`.
pub fn ack(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "브리핑을 준비하고 있어요…",
        Lang::En => "Preparing your briefing…",
    }
}

/// The immediate answer to another slash command (`command` escaped).
pub fn working_on(lang: Lang, command: &str) -> String {
    match lang {
        Lang::Ko => format!("`{command}` 처리 중이에요…"),
        Lang::En => format!("Working on `{command}`…"),
    }
}

pub fn settings_header(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "☀️ 모닝 브리핑",
        Lang::En => "☀️ Morning briefing",
    }
}

/// When the next daily briefing arrives, in the user's time zone.
pub fn next_at(lang: Lang, at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let local = at.with_timezone(&tz);
    match lang {
        Lang::Ko => format!("다음 브리핑: *{}* ({tz})", local.format("%m월 %d일 %H:%M")),
        Lang::En => format!("Next briefing: *{}* ({tz})", local.format("%a %-d %b, %H:%M")),
    }
}

pub fn off(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "매일 브리핑이 *꺼져* 있습니다.",
        Lang::En => "Your daily briefing is *off*.",
    }
}

pub fn none_yet(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "아직 브리핑이 없습니다.",
        Lang::En => "No briefing yet.",
    }
}

/// How the last briefing went; `status`, `email` and `news` are the stored
/// status codes, `reason` is empty or " — why" (escaped).
pub fn last(lang: Lang, when: &str, status: &str, email: &str, news: &str, reason: &str) -> String {
    match lang {
        Lang::Ko => format!("지난 브리핑: {when} · {status} · 메일 {email}, 뉴스 {news}{reason}"),
        Lang::En => format!("Last briefing: {when} · {status} · email {email}, news {news}{reason}"),
    }
}

/// The time picker's "default" option.
pub fn default_time(lang: Lang, time: &str) -> String {
    match lang {
        Lang::Ko => format!("기본값 ({time})"),
        Lang::En => format!("Default ({time})"),
    }
}

pub fn time_placeholder(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "브리핑 시간",
        Lang::En => "Briefing time",
    }
}

/// The on/off button's label, given whether the briefing is on now.
pub fn toggle(lang: Lang, enabled: bool) -> &'static str {
    match (lang, enabled) {
        (Lang::Ko, true) => "끄기",
        (Lang::En, true) => "Turn off",
        (Lang::Ko, false) => "켜기",
        (Lang::En, false) => "Turn on",
    }
}

pub fn send_now(lang: Lang) -> &'static str {
    match lang {
        Lang::Ko => "지금 받기",
        Lang::En => "Send one now",
    }
}
