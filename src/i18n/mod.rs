//! Every sentence a user sees, in Korean and English, in one place.
//!
//! The language is a [`Lang`], chosen from the user's Slack locale (`ko…` →
//! Korean, anything else → English; [`Lang::of_locale`]). A DM reply also
//! looks at the message's own script ([`Lang::detect`]): "하이" gets Korean
//! even from an English-locale account. The browser pages of the Gmail OAuth
//! flow have no Slack locale on the request, so they use the stored locale
//! of the user the signed link or the OAuth `state` belongs to, and the
//! browser's `Accept-Language` before that user is known
//! ([`Lang::from_accept_language`]).
//!
//! # Layout
//!
//! - [`chat`]: replies in a DM conversation.
//! - [`gmail`]: the Gmail connection: Connect/Reconnect prompts and
//!   reminders, the outcome DMs of the OAuth flow, App Home's Gmail section.
//! - [`web`]: the OAuth flow's browser pages, one [`web::Page`] per outcome.
//! - [`briefing`]: the briefing message, App Home's briefing settings, and
//!   the `/brief` acknowledgement.
//! - [`home`]: the top of App Home (who robeing is, your data, Forget me).
//!
//! Every text is a `match` on [`Lang`], so a string without its other
//! language does not compile. Slack texts are mrkdwn; anything that came
//! from outside (names, e-mail addresses, reasons) is escaped by the caller
//! before it is passed in, and HTML pages are escaped by the page builder.
//! Operator-facing text (logs, `robeing doctor`, `/readyz`, stored failure
//! reasons) is English and lives with its code.

pub mod briefing;
pub mod chat;
pub mod gmail;
pub mod home;
pub mod web;

/// The language of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    /// Both languages, for callers that check every text.
    pub const ALL: [Lang; 2] = [Lang::Ko, Lang::En];

    /// The message's own script decides (Hangul → Korean, Latin letters →
    /// English); a message with neither (emoji, digits) follows the Slack
    /// locale (`ko…` → Korean), else English.
    pub fn detect(text: &str, locale: Option<&str>) -> Self {
        if text.chars().any(is_hangul) {
            return Lang::Ko;
        }
        if text.chars().any(|c| c.is_ascii_alphabetic()) {
            return Lang::En;
        }
        Self::of_locale(locale)
    }

    /// From the Slack locale alone (`ko`, `ko-KR`, `ko_KR` → Korean).
    pub fn of_locale(locale: Option<&str>) -> Self {
        match locale {
            Some(l) if l.to_ascii_lowercase().starts_with("ko") => Lang::Ko,
            _ => Lang::En,
        }
    }

    /// From an HTTP `Accept-Language` header: the first of Korean or English
    /// by the browser's preference (`q`), English when neither is listed.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "ko" || tag.starts_with("ko-") {
                Lang::Ko
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    /// The language's English name (for an LLM prompt).
    pub fn name(self) -> &'static str {
        match self {
            Lang::Ko => "Korean",
            Lang::En => "English",
        }
    }

    /// The HTML `lang` attribute.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }
}

/// The language of a known Slack user: their stored Slack locale's, English
/// when robeing has not met them or the database does not answer (a
/// message in the wrong language beats no message; the failure is logged).
pub async fn user_lang(db: &sqlx::PgPool, user_id: &str) -> Lang {
    match crate::storage::users::get(db, user_id).await {
        Ok(user) => Lang::of_locale(user.as_ref().and_then(|u| u.locale.as_deref())),
        Err(e) => {
            tracing::warn!(user_id, error = %e, "could not read the user's locale; using English");
            Lang::En
        }
    }
}

/// Hangul syllables and jamo.
pub fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone as _, Utc};

    use super::*;
    use crate::slack::files::Unread;

    #[test]
    fn the_slack_locale_picks_the_language() {
        assert_eq!(Lang::of_locale(Some("ko-KR")), Lang::Ko);
        assert_eq!(Lang::of_locale(Some("ko_KR")), Lang::Ko);
        assert_eq!(Lang::of_locale(Some("en-US")), Lang::En);
        assert_eq!(Lang::of_locale(Some("ja-JP")), Lang::En);
        assert_eq!(Lang::of_locale(None), Lang::En);
        assert_eq!(Lang::detect("하이", Some("en-US")), Lang::Ko);
        assert_eq!(Lang::detect("hi", Some("ko-KR")), Lang::En);
        assert_eq!(Lang::detect("👍", Some("ko-KR")), Lang::Ko);
    }

    #[test]
    fn accept_language_follows_the_browsers_preference() {
        assert_eq!(Lang::from_accept_language(Some("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7")), Lang::Ko);
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9,ko;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr-FR, ko;q=0.5")), Lang::Ko);
        assert_eq!(Lang::from_accept_language(Some("en;q=0.2, ko;q=0.6")), Lang::Ko);
        assert_eq!(Lang::from_accept_language(Some("ko;q=0, en;q=0.1")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr")), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
        assert_eq!(Lang::from_accept_language(Some(";;,=q;")), Lang::En, "garbage is English, no panic");
    }

    /// Every text this module has, with sample arguments, in one language.
    /// The `match` on [`web::Page`] and the `match lang` in each function are
    /// checked by the compiler; this list is what the test below walks, so
    /// a new function belongs here too.
    fn every_text(lang: Lang) -> Vec<(&'static str, String)> {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 0, 30, 0).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let facts = chat::StatusFacts { exchanges: 3, memorized: 2, memory_on: true, memory_pending: 1, llm_on: false };
        let mut t: Vec<(&'static str, String)> = vec![
            ("chat::greeting", chat::greeting(lang, "Jane")),
            ("chat::welcome", chat::welcome(lang, "Jane")),
            ("chat::help", chat::help(lang, false)),
            ("chat::no_llm", chat::no_llm(lang).into()),
            ("chat::fallback", chat::fallback(lang, "Jane")),
            ("chat::brief", chat::brief(lang).into()),
            ("chat::status", chat::status(lang, &facts)),
            ("chat::recall_intro", chat::recall_intro(lang, "cat")),
            ("chat::recall_none", chat::recall_none(lang, "cat")),
            ("chat::recall_from_postgres_only", chat::recall_from_postgres_only(lang).into()),
            ("chat::forget_prompt", chat::forget_prompt(lang).into()),
            ("chat::forget_confirm_button", chat::forget_confirm_button(lang).into()),
            ("chat::forget_cancel_button", chat::forget_cancel_button(lang).into()),
            ("chat::forgotten", chat::forgotten(lang, 4, true)),
            ("chat::forget_cancelled", chat::forget_cancelled(lang).into()),
            ("chat::export_intro", chat::export_intro(lang, 10)),
            ("chat::llm_late", chat::llm_late(lang).into()),
            ("chat::llm_cut_short", chat::llm_cut_short(lang).into()),
            ("chat::llm_filtered", chat::llm_filtered(lang).into()),
            ("chat::images_not_shown", chat::images_not_shown(lang, &["a.png"])),
            ("chat::thread_parent_unread", chat::thread_parent_unread(lang).into()),
            ("chat::files_only", chat::files_only(lang, &[("a.png", Unread::NotText)])),
            (
                "chat::files_unread",
                chat::files_unread(
                    lang,
                    &[("a", Unread::TooLarge), ("b", Unread::NoAccess), ("c", Unread::Gone), ("d", Unread::TooMany)],
                ),
            ),
            ("chat::files_read", chat::files_read(lang, &["a.txt"], 120, true)),
            ("chat::files_read_note", chat::files_read_note(lang, &["a.txt", "b.md"], false)),
            ("chat::files_only(unavailable)", chat::files_only(lang, &[("x", Unread::Unavailable)])),
            ("chat::files_only(not_decodable)", chat::files_only(lang, &[("x", Unread::NotDecodable)])),
            ("chat::files_only(pdf_without_text)", chat::files_only(lang, &[("x", Unread::PdfWithoutText)])),
            ("chat::files_only(pdf_unreadable)", chat::files_only(lang, &[("x", Unread::PdfUnreadable)])),
            ("chat::files_only(document_without_text)", chat::files_only(lang, &[("x", Unread::DocumentWithoutText)])),
            ("chat::files_only(document_unreadable)", chat::files_only(lang, &[("x", Unread::DocumentUnreadable)])),
            ("chat::export_file_header", chat::export_file_header(lang, "Jane", "U1", 10, "2026-11-28 09:00 (UTC)")),
            ("chat::export_file_title", chat::export_file_title(lang, "2026-11-28")),
            ("chat::export_not_a_file", chat::export_not_a_file(lang, "missing_scope", 2)),
            ("chat::export_truncated", chat::export_truncated(lang, 9)),
            ("chat::export_empty", chat::export_empty(lang).into()),
            ("chat::export_part", chat::export_part(lang, 1, 2)),
            ("chat::export_you", chat::export_you(lang).into()),
            ("chat::export_files", chat::export_files(lang, &["a.png".into()])),
            ("chat::export_no_reply", chat::export_no_reply(lang, true).into()),
            ("chat::export_no_reply_yet", chat::export_no_reply(lang, false).into()),
            ("chat::apology", chat::apology(lang).into()),
            ("gmail::connect_button", gmail::connect_button(lang).into()),
            ("gmail::connected_already", gmail::connected_already(lang, "jane@example.com")),
            ("gmail::reconnect_button", gmail::reconnect_button(lang).into()),
            ("gmail::reconnect_prompt", gmail::reconnect_prompt(lang, "DATE", "invalid_grant")),
            ("gmail::reconnect_prompt_fallback", gmail::reconnect_prompt_fallback(lang).into()),
            ("gmail::reminder", gmail::reminder(lang, "DATE", "invalid_grant")),
            ("gmail::reminder_fallback", gmail::reminder_fallback(lang).into()),
            ("gmail::connect_prompt", gmail::connect_prompt(lang).into()),
            ("gmail::connect_prompt_fallback", gmail::connect_prompt_fallback(lang).into()),
            ("gmail::link_expired", gmail::link_expired(lang).into()),
            ("gmail::declined", gmail::declined(lang).into()),
            ("gmail::google_error", gmail::google_error(lang, "server_error")),
            ("gmail::connected", gmail::connected(lang, "a@example.com")),
            ("gmail::connected_short", gmail::connected_short(lang, "a@example.com")),
            ("gmail::callback_failed", gmail::callback_failed(lang, gmail::Failure::Internal).into()),
            ("gmail::home_title", gmail::home_title(lang).into()),
            ("gmail::home_not_configured", gmail::home_not_configured(lang).into()),
            ("gmail::home_lookup_failed", gmail::home_lookup_failed(lang).into()),
            ("gmail::home_connected", gmail::home_connected(lang, "a@example.com", Some("DATE"))),
            ("gmail::home_needs_reconnect", gmail::home_needs_reconnect(lang, "DATE", "invalid_grant")),
            ("gmail::home_not_connected", gmail::home_not_connected(lang).into()),
            ("gmail::disconnect_button", gmail::disconnect_button(lang).into()),
            ("gmail::disconnect_confirm_title", gmail::disconnect_confirm_title(lang).into()),
            ("gmail::disconnect_confirm_text", gmail::disconnect_confirm_text(lang).into()),
            ("gmail::disconnect_confirm", gmail::disconnect_confirm(lang).into()),
            ("briefing::header", briefing::header(lang).into()),
            ("briefing::greeting", briefing::greeting(lang, "Jane", day)),
            ("briefing::fallback_title", briefing::fallback_title(lang, day)),
            ("briefing::and_more", briefing::and_more(lang, 3)),
            ("briefing::gmail_title", briefing::gmail_title(lang).into()),
            ("briefing::no_new_mail", briefing::no_new_mail(lang).into()),
            ("briefing::and_others", briefing::and_others(lang, 2)),
            ("briefing::mail_head", briefing::mail_head(lang, "G", 2, 1, "Ann, Bob")),
            ("briefing::no_subject", briefing::no_subject(lang).into()),
            ("briefing::more_in_inbox", briefing::more_in_inbox(lang, 5)),
            ("briefing::mail_line", briefing::mail_line(lang, 2, 1)),
            ("briefing::mail_not_configured", briefing::mail_not_configured(lang).into()),
            ("briefing::mail_not_connected", briefing::mail_not_connected(lang).into()),
            ("briefing::mail_needs_reconnect", briefing::mail_needs_reconnect(lang, "WHEN", "invalid_grant")),
            ("briefing::mail_needs_reconnect_line", briefing::mail_needs_reconnect_line(lang).into()),
            ("briefing::mail_error", briefing::mail_error(lang, "timeout")),
            ("briefing::mail_error_line", briefing::mail_error_line(lang).into()),
            ("briefing::news_title", briefing::news_title(lang).into()),
            ("briefing::no_news", briefing::no_news(lang, true).into()),
            ("briefing::no_headlines", briefing::no_news(lang, false).into()),
            ("briefing::news_label", briefing::news_label(lang).into()),
            ("briefing::news_line", briefing::news_line(lang, 7)),
            ("briefing::feeds_failed", briefing::feeds_failed(lang, 1, 3)),
            ("briefing::ack", briefing::ack(lang).into()),
            ("briefing::working_on", briefing::working_on(lang, "/x")),
            ("briefing::settings_header", briefing::settings_header(lang).into()),
            ("briefing::next_at", briefing::next_at(lang, at, chrono_tz::Asia::Seoul)),
            ("briefing::off", briefing::off(lang).into()),
            ("briefing::none_yet", briefing::none_yet(lang).into()),
            ("briefing::last", briefing::last(lang, "2026-11-27 09:00", "delivered", "ok", "ok", "")),
            ("briefing::default_time", briefing::default_time(lang, "09:00")),
            ("briefing::time_placeholder", briefing::time_placeholder(lang).into()),
            ("briefing::turn_on", briefing::toggle(lang, false).into()),
            ("briefing::turn_off", briefing::toggle(lang, true).into()),
            ("briefing::send_now", briefing::send_now(lang).into()),
            ("home::intro", home::intro(lang, "Jane")),
            ("home::gmail_connected", home::gmail_state(lang, Some("connected")).into()),
            ("home::gmail_needs_reconnect", home::gmail_state(lang, Some("needs_reconnect")).into()),
            ("home::gmail_not_connected", home::gmail_state(lang, None).into()),
            ("home::brief_usage", home::brief_usage(lang).into()),
            ("home::your_data", home::your_data(lang).into()),
            ("home::forget_button", home::forget_button(lang).into()),
            ("home::forget_confirm_title", home::forget_confirm_title(lang).into()),
            ("home::forget_confirm_text", home::forget_confirm_text(lang).into()),
            ("home::keep", home::keep(lang).into()),
        ];
        for failure in gmail::Failure::ALL {
            t.push(("gmail::callback_failed(each)", gmail::callback_failed(lang, failure).into()));
        }
        let pages = web::Page::examples();
        assert_eq!(pages.len(), 21, "every page (the duplicate-parameter one twice)");
        for page in pages {
            let p = page.text(lang);
            t.push(("web::Page title", p.title.into()));
            t.push(("web::Page what", p.what));
            t.push(("web::Page next", p.next.into()));
        }
        t
    }

    /// Texts that are the same in both languages on purpose (a product name).
    const SAME_IN_BOTH: &[&str] = &["briefing::gmail_title", "gmail::home_title"];

    #[test]
    fn every_text_exists_in_korean_and_english() {
        let ko = every_text(Lang::Ko);
        let en = every_text(Lang::En);
        assert_eq!(ko.len(), en.len());
        for ((key, k), (_, e)) in ko.iter().zip(&en) {
            assert!(!k.trim().is_empty(), "{key}: empty Korean text");
            assert!(!e.trim().is_empty(), "{key}: empty English text");
            if SAME_IN_BOTH.contains(key) {
                continue;
            }
            assert_ne!(k, e, "{key}: the Korean text is the English one");
            assert!(k.chars().any(is_hangul), "{key}: Korean text without Hangul: {k}");
            assert!(!e.chars().any(is_hangul), "{key}: English text with Hangul: {e}");
        }
    }
}
