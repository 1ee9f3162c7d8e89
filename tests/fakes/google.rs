//! A fake Google: the OAuth authorization endpoint (which "consents" at once
//! and redirects back, like a browser session would), the token endpoint
//! (Google's real form parameters and JSON shapes, PKCE S256 checked),
//! revocation, and the Gmail profile/messages endpoints with the batch
//! endpoint (the calls inside batches are in [`FakeGoogle::gmail_calls`]).
//! Every token it issues is remembered, so a test can scan the database for
//! them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use super::{
    gmail::InnerCalls,
    recorder::{Recorded, Recorder, Scripted},
};

pub const CLIENT_ID: &str = "fake-client-id.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "fake-client-secret-GOCSPX";
pub const EMAIL: &str = "kim@example.com";
pub const GMAIL_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// What the consent screen does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Grants everything asked.
    Grant,
    /// The user clicks Cancel: `error=access_denied`.
    Deny,
    /// Grants but the token response has no refresh token.
    NoRefreshToken,
    /// The user unticks Gmail: the scope comes back without it.
    WithoutGmail,
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    consent: Consent,
}

#[derive(Default)]
pub struct State {
    consent: Option<Consent>,
    codes: HashMap<String, Grant>,
    live_access: HashSet<String>,
    live_refresh: HashSet<String>,
    /// Every secret value handed out or received (tokens, codes, verifiers).
    pub issued: Vec<String>,
    /// Whether a refresh returns a new refresh token (rotation).
    pub rotate_refresh: bool,
    counter: u64,
}

#[derive(Clone)]
pub struct FakeGoogle {
    pub server: Recorder,
    pub state: Arc<Mutex<State>>,
    /// The Gmail calls made inside batch requests.
    pub gmail_calls: InnerCalls,
}

fn error(status: u16, error: &str, description: &str) -> Scripted {
    Scripted::json(status, serde_json::json!({ "error": error, "error_description": description }))
}

fn gmail_error(status: u16, reason: &str, message: &str) -> Scripted {
    Scripted::json(
        status,
        serde_json::json!({ "error": { "code": status, "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }], "status": "UNAUTHENTICATED" } }),
    )
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query(r: &Recorded) -> HashMap<String, String> {
    serde_urlencoded::from_str(r.query.as_deref().unwrap_or("")).unwrap_or_default()
}

/// Gmail's answer to one `GET /gmail/v1/users/me/…` (alone or inside a batch).
fn gmail_get(s: &State, r: &Recorded) -> Scripted {
    let path = r.path.as_str();
    let bearer = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !s.live_access.contains(bearer) {
        return gmail_error(401, "authError", "Request had invalid authentication credentials.");
    }
    let rest = path.trim_start_matches("/gmail/v1/users/me/");
    if rest == "profile" {
        return Scripted::json(
            200,
            serde_json::json!({ "emailAddress": EMAIL, "messagesTotal": 3, "threadsTotal": 3, "historyId": "1234" }),
        );
    }
    if rest == "messages" {
        return Scripted::json(
            200,
            serde_json::json!({ "messages": [
                    { "id": "m1", "threadId": "t1" }, { "id": "m2", "threadId": "t2" }, { "id": "m3", "threadId": "t3" }
                ], "resultSizeEstimate": 3 }),
        );
    }
    if let Some(id) = rest.strip_prefix("messages/") {
        return Scripted::json(
            200,
            serde_json::json!({
                "id": id, "threadId": format!("t{}", &id[1..]), "labelIds": ["INBOX", "UNREAD"],
                "snippet": format!("snippet of {id}"), "internalDate": "1764288000000",
                "payload": { "mimeType": "multipart/alternative", "headers": [
                    { "name": "From", "value": format!("Sender {id} <{id}@example.com>") },
                    { "name": "Subject", "value": format!("Subject {id}") },
                    { "name": "Date", "value": "Fri, 28 Nov 2025 09:00:00 +0900" }
                ] }
            }),
        );
    }
    gmail_error(404, "notFound", "Not Found")
}

fn handle(state: &Arc<Mutex<State>>, calls: &InnerCalls, r: &Recorded) -> Scripted {
    let mut s = state.lock().unwrap();
    s.counter += 1;
    let n = s.counter;
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/o/oauth2/v2/auth") => {
            let q = query(r);
            let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
            let st = q.get("state").cloned().unwrap_or_default();
            let consent = s.consent.unwrap_or(Consent::Grant);
            let location = if consent == Consent::Deny {
                format!("{redirect}?error=access_denied&state={st}")
            } else {
                let code = format!("4/0fake-code-{n}");
                s.issued.push(code.clone());
                s.codes.insert(
                    code.clone(),
                    Grant {
                        challenge: q.get("code_challenge").cloned().unwrap_or_default(),
                        redirect_uri: redirect.clone(),
                        consent,
                    },
                );
                format!(
                    "{redirect}?state={st}&code={}&scope={}",
                    urlencode(&code),
                    urlencode(&format!("{GMAIL_SCOPE} openid email"))
                )
            };
            Scripted {
                status: axum::http::StatusCode::FOUND,
                headers: vec![("location".into(), location)],
                body: Vec::new(),
                delay: Default::default(),
            }
        }
        ("POST", "/token") => {
            let f = r.form();
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return error(401, "invalid_client", "The OAuth client was not found.");
            }
            match f.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let code = f.get("code").cloned().unwrap_or_default();
                    let Some(grant) = s.codes.remove(&code) else {
                        return error(400, "invalid_grant", "Malformed auth code.");
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    s.issued.push(verifier.clone());
                    if s256(&verifier) != grant.challenge || grant.challenge.is_empty() {
                        return error(400, "invalid_grant", "Invalid code verifier.");
                    }
                    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
                        return error(400, "redirect_uri_mismatch", "Bad Request");
                    }
                    let access = format!("ya29.fake-access-{n}");
                    s.issued.push(access.clone());
                    s.live_access.insert(access.clone());
                    let scope = match grant.consent {
                        Consent::WithoutGmail => "openid https://www.googleapis.com/auth/userinfo.email".to_owned(),
                        _ => format!("{GMAIL_SCOPE} openid https://www.googleapis.com/auth/userinfo.email"),
                    };
                    let mut body = serde_json::json!({
                        "access_token": access, "expires_in": 3599, "scope": scope,
                        "token_type": "Bearer", "id_token": "eyJhbGciOiJSUzI1NiJ9.fake.sig"
                    });
                    if grant.consent != Consent::NoRefreshToken {
                        let refresh = format!("1//0fake-refresh-{n}");
                        s.issued.push(refresh.clone());
                        s.live_refresh.insert(refresh.clone());
                        body["refresh_token"] = refresh.into();
                    }
                    Scripted::json(200, body)
                }
                Some("refresh_token") => {
                    let refresh = f.get("refresh_token").cloned().unwrap_or_default();
                    if !s.live_refresh.contains(&refresh) {
                        return error(400, "invalid_grant", "Token has been expired or revoked.");
                    }
                    let access = format!("ya29.fake-access-{n}");
                    s.issued.push(access.clone());
                    s.live_access.insert(access.clone());
                    let mut body = serde_json::json!({
                        "access_token": access, "expires_in": 3599,
                        "scope": format!("{GMAIL_SCOPE} openid https://www.googleapis.com/auth/userinfo.email"),
                        "token_type": "Bearer"
                    });
                    if s.rotate_refresh {
                        let new = format!("1//0fake-refresh-{n}");
                        s.live_refresh.remove(&refresh);
                        s.issued.push(new.clone());
                        s.live_refresh.insert(new.clone());
                        body["refresh_token"] = new.into();
                    }
                    Scripted::json(200, body)
                }
                _ => error(400, "unsupported_grant_type", "Invalid grant_type."),
            }
        }
        ("POST", "/revoke") => {
            let token = r.form().get("token").cloned().unwrap_or_default();
            if s.live_refresh.remove(&token) || s.live_access.remove(&token) {
                Scripted::json(200, serde_json::json!({}))
            } else {
                error(400, "invalid_token", "Token expired or revoked")
            }
        }
        ("GET", path) if path.starts_with("/gmail/v1/users/me/") => gmail_get(&s, r),
        ("POST", super::gmail::BATCH_PATH) => super::gmail::answer_batch(r, calls, |inner| gmail_get(&s, inner)),
        _ => error(404, "not_found", "no such fake endpoint"),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl FakeGoogle {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let gmail_calls = InnerCalls::default();
        let calls = gmail_calls.clone();
        let server = Recorder::start(Arc::new(move |r: &Recorded| handle(&s, &calls, r))).await;
        Self { server, state, gmail_calls }
    }

    /// The variables pointing robeing at this fake.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("GOOGLE_CLIENT_ID".into(), CLIENT_ID.into()),
            ("GOOGLE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("GOOGLE_AUTH_URL".into(), self.server.url("/o/oauth2/v2/auth")),
            ("GOOGLE_TOKEN_URL".into(), self.server.url("/token")),
            ("GOOGLE_REVOKE_URL".into(), self.server.url("/revoke")),
            ("GMAIL_API_URL".into(), self.server.url("")),
        ]
    }

    pub fn set_consent(&self, consent: Consent) {
        self.state.lock().unwrap().consent = Some(consent);
    }

    pub fn set_rotation(&self, on: bool) {
        self.state.lock().unwrap().rotate_refresh = on;
    }

    /// Revokes every refresh token (the user removed the app, changed their password…).
    pub fn revoke_all(&self) {
        self.state.lock().unwrap().live_refresh.clear();
    }

    /// Invalidates every access token (they expired early).
    pub fn expire_access_tokens(&self) {
        self.state.lock().unwrap().live_access.clear();
    }

    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    pub fn is_live_refresh(&self, token: &str) -> bool {
        self.state.lock().unwrap().live_refresh.contains(token)
    }

    /// Token endpoint requests with this grant type.
    pub fn token_requests(&self, grant_type: &str) -> Vec<Recorded> {
        self.server
            .requests_to("/token")
            .into_iter()
            .filter(|r| r.form().get("grant_type").map(String::as_str) == Some(grant_type))
            .collect()
    }
}
