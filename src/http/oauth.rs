//! `GET /oauth/google/start` and `GET /oauth/google/callback`: the browser
//! side of connecting Gmail. Every outcome is a small HTML page that tells
//! the person what happened and what to do, with the right status code; when
//! the Slack user is known, they also get a DM (sent in the background, so a
//! slow Slack never holds the browser).
//!
//! Authentication: `start` accepts only a signed, unexpired connect link
//! ([`crate::google::links`]); `callback` only a stored, unexpired, unused
//! `state` (consumed atomically) and exchanges the code with that flow's PKCE
//! verifier. Repeated parameters are refused outright: a request with two
//! `state` or two `code` values is not one we made.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;

use crate::{
    google::{
        links::{self, LinkError},
        oauth::{self, CallbackError, StartError},
        prompt,
    },
    startup::AppState,
};

/// Parses a query string, refusing any parameter given twice.
fn single_valued(raw: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("the parameter `{}` was given more than once", escape(&clip(&k))));
        }
    }
    Ok(out)
}

/// `GET /oauth/google/start?t=<signed link token>`.
pub async fn start(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let params = match single_valued(raw.as_deref()) {
        Ok(p) => p,
        Err(why) => return page(StatusCode::BAD_REQUEST, "This link is not valid", &why, ASK_AGAIN),
    };
    if state.config.google.is_none() {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Gmail is not set up",
            "This robeing has no Google OAuth client configured, so Gmail cannot be connected.",
            "Ask your operator to set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET.",
        );
    }
    let Some(token) = params.get("t") else {
        return page(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link is missing its signed token.",
            ASK_AGAIN,
        );
    };
    let user_id = match links::verify(&state.config, token, Utc::now()) {
        Ok(user) => user,
        Err(LinkError::Expired) => {
            // The signature is good, so robeing made this link for someone; send
            // that person (and only them) a fresh one.
            if let Some(user) = expired_link_user(&state, token) {
                let state = state.clone();
                tokio::spawn(async move {
                    prompt::notify_with_button(
                        &state,
                        &user,
                        "That Gmail link had expired (links work for 15 minutes). Here is a fresh one.",
                        "Connect Gmail",
                    )
                    .await;
                });
            }
            return page(
                StatusCode::BAD_REQUEST,
                "This link has expired",
                "Connect links work for 15 minutes. I have sent you a fresh one in Slack.",
                "Open Slack and click the new button.",
            );
        }
        Err(LinkError::NotConfigured) => {
            return page(StatusCode::SERVICE_UNAVAILABLE, "Gmail is not set up", "Gmail is not configured.", "");
        }
        Err(LinkError::Invalid) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This link is not valid",
                "The link was changed or was not made by robeing.",
                ASK_AGAIN,
            );
        }
    };
    match oauth::begin(&state, &user_id).await {
        Ok(url) => no_store((StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()),
        Err(StartError::UnknownUser) => page(
            StatusCode::BAD_REQUEST,
            "Unknown Slack user",
            "robeing has not met the Slack user this link was made for.",
            "Send robeing a direct message in Slack first, then ask for a new link.",
        ),
        Err(StartError::NotConfigured) => {
            page(StatusCode::SERVICE_UNAVAILABLE, "Gmail is not set up", "Gmail is not configured.", "")
        }
        Err(StartError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "could not start the Google OAuth flow");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "robeing could not start the Google sign-in.",
                "Please try again in a minute; the operator's logs have the cause.",
            )
        }
    }
}

/// The user an expired (but genuinely signed) link was made for.
fn expired_link_user(state: &AppState, token: &str) -> Option<String> {
    // Verifying "as of" the expiry's own moment would need the expiry; instead
    // check the signature at the Unix epoch, when every link was still valid.
    links::verify(&state.config, token, chrono::DateTime::<Utc>::UNIX_EPOCH).ok()
}

const ASK_AGAIN: &str = "Ask robeing in Slack for a new link (the Gmail section of its Home tab has one).";

/// `GET /oauth/google/callback?state=…&code=…` (or `error=…`).
pub async fn callback(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let params = match single_valued(raw.as_deref()) {
        Ok(p) => p,
        Err(why) => return page(StatusCode::BAD_REQUEST, "This sign-in response is not valid", &why, ASK_AGAIN),
    };
    let Some(state_value) = params.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in response is not valid",
            "It has no `state` parameter, so it did not come from a sign-in robeing started.",
            ASK_AGAIN,
        );
    };
    let (code, error) = (params.get("code"), params.get("error"));
    if code.is_some() && error.is_some() {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in response is not valid",
            "It carries both a code and an error.",
            ASK_AGAIN,
        );
    }
    let (user_id, verifier) = match oauth::consume_state(&state, state_value).await {
        Ok(found) => found,
        Err(e) => return failure(&state, e),
    };
    if let Some(error) = error {
        let error = clip(error);
        if error == "access_denied" {
            dm_with_button(
                &state,
                &user_id,
                "You declined Gmail access, so briefings will leave your email out. If that was a mistake, click *Connect Gmail* and choose *Allow*.",
                "Connect Gmail",
            );
            return page(
                StatusCode::OK,
                "Gmail was not connected",
                "You declined access on Google's page, so robeing cannot read your Gmail and briefings will leave email out.",
                "Changed your mind? Use the Connect Gmail button robeing sent you in Slack.",
            );
        }
        dm_with_button(
            &state,
            &user_id,
            &format!("Google did not connect your Gmail (it said `{error}`). Please try again with the button below."),
            "Connect Gmail",
        );
        return page(
            StatusCode::BAD_REQUEST,
            "Gmail was not connected",
            &format!("Google answered with the error `{}`.", escape(&error)),
            "Try again with the button robeing sent you in Slack.",
        );
    }
    let Some(code) = code else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in response is not valid",
            "It has neither a code nor an error.",
            ASK_AGAIN,
        );
    };
    match oauth::complete(&state, user_id, verifier, code).await {
        Ok(connected) => {
            let what = format!(
                "robeing can now read the inbox of {} (read-only) for the Slack user {}.",
                escape(&connected.email),
                escape(&connected.slack_name)
            );
            let bg = state.clone();
            tokio::spawn(async move {
                let text = format!(
                    ":white_check_mark: Gmail connected as *{}*. Your briefings will include your inbox.",
                    connected.email
                );
                if let Some((channel, ts)) = &connected.previous_prompt {
                    let blocks =
                        vec![serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })];
                    if let Err(e) = prompt::update_message(&bg, channel, ts, &text, blocks).await {
                        tracing::warn!(error = format!("{e:#}"), "could not update the earlier Reconnect message");
                    }
                }
                prompt::notify(&bg, &connected.user_id, &format!("Gmail connected as {}", connected.email)).await;
            });
            page(StatusCode::OK, "Gmail connected", &what, "You can close this tab and go back to Slack.")
        }
        Err(e) => failure(&state, e),
    }
}

/// The page (and DM) for a failed callback.
fn failure(state: &Arc<AppState>, e: CallbackError) -> Response {
    let user = e.user_id().map(str::to_owned);
    let (status, title, what, next, dm): (StatusCode, &str, String, &str, Option<String>) = match &e {
        CallbackError::UnknownState => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "robeing did not start this sign-in (or the link was altered).".into(),
            ASK_AGAIN,
            None,
        ),
        CallbackError::ReusedState { .. } => (
            StatusCode::BAD_REQUEST,
            "This sign-in was already used",
            "Each sign-in works once; this one was already completed or attempted.".into(),
            "If Gmail is not connected yet, use the button robeing sent you in Slack.",
            Some("That Gmail sign-in link was already used. If Gmail is still not connected, use this fresh button.".into()),
        ),
        CallbackError::ExpiredState { .. } => (
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "A sign-in must be finished within 10 minutes of starting it.".into(),
            "Start again with the button robeing sent you in Slack.",
            Some("Your Gmail sign-in took longer than 10 minutes and expired. Start again with this button.".into()),
        ),
        CallbackError::CodeRejected { error, .. } => (
            StatusCode::BAD_REQUEST,
            "Google refused the sign-in",
            format!("Google did not accept the sign-in code (`{}`).", escape(error)),
            "Start again with the button robeing sent you in Slack.",
            Some("Google refused the Gmail sign-in. Please try again with this button.".into()),
        ),
        CallbackError::NoRefreshToken { .. } => (
            StatusCode::BAD_REQUEST,
            "Gmail was not connected",
            "Google did not give robeing lasting (offline) access, so it could not read your Gmail tomorrow.".into(),
            "Remove robeing at https://myaccount.google.com/permissions, then connect again with the button in Slack.",
            Some("Google did not give me lasting access to your Gmail. Remove robeing at https://myaccount.google.com/permissions, then click *Connect Gmail* again.".into()),
        ),
        CallbackError::MissingScope { .. } => (
            StatusCode::BAD_REQUEST,
            "Gmail access was not granted",
            "You signed in, but did not allow robeing to read your email.".into(),
            "Connect again and tick the box that lets robeing read your Gmail.",
            Some("You signed in but did not tick *Read your email*, so I still cannot read your Gmail. Click *Connect Gmail* and allow it.".into()),
        ),
        CallbackError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "Google OAuth callback failed");
            (
                StatusCode::BAD_GATEWAY,
                "Something went wrong",
                "robeing could not finish connecting Gmail (Google or the database did not answer).".into(),
                "Please try again in a minute with the button in Slack.",
                Some("Something went wrong while connecting your Gmail. Please try again in a minute.".into()),
            )
        }
    };
    if let (Some(user), Some(text)) = (user, dm) {
        dm_with_button(state, &user, &text, "Connect Gmail");
    }
    page(status, title, &what, next)
}

fn dm_with_button(state: &Arc<AppState>, user_id: &str, text: &str, label: &'static str) {
    let (state, user_id, text) = (state.clone(), user_id.to_owned(), text.to_owned());
    tokio::spawn(async move { prompt::notify_with_button(&state, &user_id, &text, label).await });
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A minimal HTML page. `what` may contain already-escaped HTML; titles and
/// `next` are escaped here.
fn page(status: StatusCode, title: &str, what: &str, next: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · robeing</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}}</style>\
         </head><body><h1>{t}</h1><p>{what}</p><p>{n}</p></body></html>",
        t = escape(title),
        n = escape(next),
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
