//! `GET /oauth/google/start` and `GET /oauth/google/callback`: the browser
//! side of connecting Gmail. Every outcome is a small HTML page that tells
//! the person what happened and what to do, with the right status code; when
//! the Slack user is known, they also get a DM (sent in the background, so a
//! slow Slack never holds the browser). Pages and DMs are in the user's
//! language ([`crate::i18n`]): the stored Slack locale of the user the link or
//! `state` belongs to, the browser's `Accept-Language` before that is known.
//!
//! Authentication: `start` accepts only a signed, unexpired connect link
//! ([`crate::google::links`]); `callback` only a stored, unexpired, unused
//! `state` (consumed atomically) and exchanges the code with that flow's PKCE
//! verifier. Repeated parameters are refused outright: a request with two
//! `state` or two `code` values is not one we made.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;

use crate::{
    google::{
        links::{self, LinkError},
        oauth::{self, CallbackError, StartError},
        prompt,
    },
    i18n::{
        self, Lang,
        gmail::{self as words, Failure},
        web::Page,
    },
    slack::client::escape_mrkdwn,
    startup::AppState,
};

/// Parses a query string, refusing any parameter given twice (the error
/// names that parameter, reduced to safe characters).
fn single_valued(raw: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(clip(&k));
        }
    }
    Ok(out)
}

/// The browser's language, until the Slack user is known.
fn browser_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// `GET /oauth/google/start?t=<signed link token>`.
pub async fn start(State(state): State<Arc<AppState>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = browser_lang(&headers);
    let params = match single_valued(raw.as_deref()) {
        Ok(p) => p,
        Err(param) => {
            return page(StatusCode::BAD_REQUEST, lang, Page::DuplicateParam { param, callback: false });
        }
    };
    if state.config.google.is_none() {
        return page(StatusCode::SERVICE_UNAVAILABLE, lang, Page::NotConfigured);
    }
    let Some(token) = params.get("t") else {
        return page(StatusCode::BAD_REQUEST, lang, Page::MissingToken);
    };
    let user_id = match links::verify(&state.config, token, Utc::now()) {
        Ok(user) => user,
        Err(LinkError::Expired) => {
            // The signature is good, so robeing made this link for someone; send
            // that person (and only them) a fresh one.
            let mut lang = lang;
            if let Some(user) = expired_link_user(&state, token) {
                lang = i18n::user_lang(&state.db, &user).await;
                dm_with_button(&state, &user, |l| words::link_expired(l).to_owned());
            }
            return page(StatusCode::BAD_REQUEST, lang, Page::LinkExpired);
        }
        Err(LinkError::NotConfigured) => return page(StatusCode::SERVICE_UNAVAILABLE, lang, Page::NotConfigured),
        Err(LinkError::Invalid) => return page(StatusCode::BAD_REQUEST, lang, Page::LinkInvalid),
    };
    let lang = i18n::user_lang(&state.db, &user_id).await;
    match oauth::begin(&state, &user_id).await {
        Ok(url) => no_store((StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()),
        Err(StartError::UnknownUser) => page(StatusCode::BAD_REQUEST, lang, Page::UnknownUser),
        Err(StartError::NotConfigured) => page(StatusCode::SERVICE_UNAVAILABLE, lang, Page::NotConfigured),
        Err(StartError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "could not start the Google OAuth flow");
            page(StatusCode::INTERNAL_SERVER_ERROR, lang, Page::StartFailed)
        }
    }
}

/// The user an expired (but genuinely signed) link was made for.
fn expired_link_user(state: &AppState, token: &str) -> Option<String> {
    // Verifying "as of" the expiry's own moment would need the expiry; instead
    // check the signature at the Unix epoch, when every link was still valid.
    links::verify(&state.config, token, chrono::DateTime::<Utc>::UNIX_EPOCH).ok()
}

/// `GET /oauth/google/callback?state=…&code=…` (or `error=…`).
pub async fn callback(State(state): State<Arc<AppState>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = browser_lang(&headers);
    let params = match single_valued(raw.as_deref()) {
        Ok(p) => p,
        Err(param) => return page(StatusCode::BAD_REQUEST, lang, Page::DuplicateParam { param, callback: true }),
    };
    let Some(state_value) = params.get("state") else {
        return page(StatusCode::BAD_REQUEST, lang, Page::NoState);
    };
    let (code, error) = (params.get("code"), params.get("error"));
    if code.is_some() && error.is_some() {
        return page(StatusCode::BAD_REQUEST, lang, Page::CodeAndError);
    }
    let (user_id, verifier) = match oauth::consume_state(&state, state_value).await {
        Ok(found) => found,
        Err(e) => {
            let lang = match e.user_id() {
                Some(user) => i18n::user_lang(&state.db, user).await,
                None => lang,
            };
            return failure(&state, lang, e);
        }
    };
    let lang = i18n::user_lang(&state.db, &user_id).await;
    if let Some(error) = error {
        let error = clip(error);
        if error == "access_denied" {
            dm_with_button(&state, &user_id, |l| words::declined(l).to_owned());
            return page(StatusCode::OK, lang, Page::Declined);
        }
        let shown = error.clone();
        dm_with_button(&state, &user_id, move |l| words::google_error(l, &shown));
        return page(StatusCode::BAD_REQUEST, lang, Page::GoogleError { error });
    }
    let Some(code) = code else {
        return page(StatusCode::BAD_REQUEST, lang, Page::NeitherCodeNorError);
    };
    match oauth::complete(&state, user_id, verifier, code).await {
        Ok(connected) => {
            let shown = Page::Connected { email: connected.email.clone(), slack_name: connected.slack_name.clone() };
            let bg = state.clone();
            tokio::spawn(async move {
                let email = escape_mrkdwn(&connected.email);
                if let Some((channel, ts)) = &connected.previous_prompt {
                    let text = words::connected(lang, &email);
                    let blocks =
                        vec![serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })];
                    if let Err(e) = prompt::update_message(&bg, channel, ts, &text, blocks).await {
                        tracing::warn!(error = format!("{e:#}"), "could not update the earlier Reconnect message");
                    }
                }
                prompt::notify(&bg, &connected.user_id, &words::connected_short(lang, &email)).await;
            });
            page(StatusCode::OK, lang, shown)
        }
        Err(e) => failure(&state, lang, e),
    }
}

/// The page (and DM) for a failed callback.
fn failure(state: &Arc<AppState>, lang: Lang, e: CallbackError) -> Response {
    let user = e.user_id().map(str::to_owned);
    let (status, shown, dm): (StatusCode, Page, Option<Failure>) = match &e {
        CallbackError::UnknownState => (StatusCode::BAD_REQUEST, Page::UnknownState, None),
        CallbackError::ReusedState { .. } => (StatusCode::BAD_REQUEST, Page::ReusedState, Some(Failure::Reused)),
        CallbackError::ExpiredState { .. } => (StatusCode::BAD_REQUEST, Page::ExpiredState, Some(Failure::Expired)),
        CallbackError::CodeRejected { error, .. } => {
            (StatusCode::BAD_REQUEST, Page::CodeRejected { error: error.clone() }, Some(Failure::CodeRejected))
        }
        CallbackError::NoRefreshToken { .. } => {
            (StatusCode::BAD_REQUEST, Page::NoRefreshToken, Some(Failure::NoRefreshToken))
        }
        CallbackError::MissingScope { .. } => {
            (StatusCode::BAD_REQUEST, Page::MissingScope, Some(Failure::MissingScope))
        }
        CallbackError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "Google OAuth callback failed");
            (StatusCode::BAD_GATEWAY, Page::CallbackFailed, Some(Failure::Internal))
        }
    };
    if let (Some(user), Some(failure)) = (user, dm) {
        dm_with_button(state, &user, move |l| words::callback_failed(l, failure).to_owned());
    }
    page(status, lang, shown)
}

/// DMs the user (in the background) a notice in their language with a fresh
/// Connect Gmail button.
fn dm_with_button(state: &Arc<AppState>, user_id: &str, text: impl Fn(Lang) -> String + Send + 'static) {
    let (state, user_id) = (state.clone(), user_id.to_owned());
    tokio::spawn(async move { prompt::notify_with_button(&state, &user_id, text).await });
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A minimal HTML page in `lang`; every text is escaped here.
fn page(status: StatusCode, lang: Lang, shown: Page) -> Response {
    let text = shown.text(lang);
    let body = format!(
        "<!doctype html><html lang=\"{l}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · robeing</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}}</style>\
         </head><body><h1>{t}</h1><p>{w}</p><p>{n}</p></body></html>",
        l = lang.tag(),
        t = escape(text.title),
        w = escape(&text.what),
        n = escape(text.next),
    );
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Untrusted short values (error codes) reduced to something safe to show.
fn clip(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(64).collect()
}
