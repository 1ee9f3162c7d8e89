//! The OAuth side of Google: building the authorization URL (code + PKCE
//! S256, `access_type=offline`, `prompt=consent`), completing the callback
//! (single-use state, code exchange with the PKCE verifier, scope check,
//! learning the address) and refreshing access tokens.
//!
//! The `oauth2` crate does the protocol; it talks HTTP through
//! [`OAuthHttp`], a small adapter over our shared `reqwest` client (the
//! crate's own reqwest integration is a different reqwest major version).

use std::{future::Future, pin::Pin};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse as _, TokenUrl,
    basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse},
};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use url::Url;

use super::vault::{Purpose, Vault};
use crate::{
    config::{Config, GoogleConfig},
    startup::AppState,
    storage,
};

/// How long an OAuth `state` (and so a started flow) stays usable: Google's
/// consent screen takes a minute; ten leave room without keeping states around.
pub const STATE_TTL_SECS: f64 = 600.0;

/// The access token lifetime assumed when Google's answer omits `expires_in`
/// (Google's access tokens live one hour).
pub const DEFAULT_ACCESS_TTL_SECS: i64 = 3600;

/// `oauth2`'s HTTP adapter over our reqwest client. Status, version and every
/// header are copied (oauth2 checks `Content-Type`). A 5xx answer becomes an
/// error of the transport, so the caller can tell "Google is down, retry"
/// from "Google refused this token" (`invalid_grant`, always a 400).
pub struct OAuthHttp<'a>(pub &'a reqwest::Client);

/// A transport failure talking to Google's OAuth endpoints.
#[derive(Debug, thiserror::Error)]
pub enum OAuthHttpError {
    #[error("could not reach Google: {0}")]
    Network(String),
    #[error("Google answered HTTP {0}")]
    ServerError(u16),
    #[error("could not build the request: {0}")]
    Request(String),
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp<'_> {
    type Error = OAuthHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| OAuthHttpError::Request(e.to_string()))?;
            let response =
                self.0.execute(request).await.map_err(|e| OAuthHttpError::Network(e.without_url().to_string()))?;
            if response.status().is_server_error() {
                return Err(OAuthHttpError::ServerError(response.status().as_u16()));
            }
            let mut builder = oauth2::http::Response::builder().status(response.status()).version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await.map_err(|e| OAuthHttpError::Network(e.without_url().to_string()))?;
            builder.body(body.to_vec()).map_err(|e| OAuthHttpError::Request(e.to_string()))
        })
    }
}

type GoogleClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(google: &GoogleConfig, public_url: &Url) -> anyhow::Result<GoogleClient> {
    Ok(BasicClient::new(ClientId::new(google.client_id.clone()))
        .set_client_secret(ClientSecret::new(google.client_secret.expose_secret().to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri(AuthUrl::from_url(google.auth_url.clone()))
        .set_token_uri(TokenUrl::from_url(google.token_url.clone()))
        .set_redirect_uri(RedirectUrl::from_url(redirect_url(public_url)?)))
}

/// Where Google sends the browser back: `{ROBEING_PUBLIC_URL}/oauth/google/callback`.
pub fn redirect_url(public_url: &Url) -> anyhow::Result<Url> {
    super::links::public_path(public_url, "oauth/google/callback").context("ROBEING_PUBLIC_URL cannot be a base URL")
}

fn google_and_vault(state: &AppState) -> Option<(&GoogleConfig, &Vault)> {
    Some((state.config.google.as_ref()?, state.vault.as_deref()?))
}

/// SHA-256 of a state value: all the database ever holds.
pub fn state_hash(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

/// Why a flow could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Gmail is not configured")]
    NotConfigured,
    #[error("robeing does not know this Slack user yet")]
    UnknownUser,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Starts a flow for `user_id`: stores a fresh state (hashed) with the
/// encrypted PKCE verifier and returns Google's authorization URL.
pub async fn begin(state: &AppState, user_id: &str) -> Result<Url, StartError> {
    let (google, vault) = google_and_vault(state).ok_or(StartError::NotConfigured)?;
    if storage::users::get(&state.db, user_id).await.context("looking up the user")?.is_none() {
        return Err(StartError::UnknownUser);
    }
    if let Err(e) = storage::oauth_states::prune(&state.db).await {
        tracing::warn!(error = %e, "could not prune old OAuth states");
    }
    let client = client(google, &state.config.public_url)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state_value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let sealed = vault
        .encrypt(user_id, Purpose::Pkce, &SecretString::from(verifier.secret().as_str()))
        .context("sealing the PKCE verifier")?;
    storage::oauth_states::insert(&state.db, &state_hash(&state_value), user_id, &sealed.bytes, STATE_TTL_SECS)
        .await
        .context("storing the OAuth state")?;
    let csrf = state_value.clone();
    let (url, _) = client
        .authorize_url(move || CsrfToken::new(csrf))
        .add_scopes(super::SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
        .set_pkce_challenge(challenge)
        .add_extra_param("access_type", "offline")
        .add_extra_param("prompt", "consent")
        .url();
    Ok(url)
}

/// Why a callback did not connect Gmail. `user_id` is known when the state
/// was one of ours, so the user can also be told in Slack.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("this sign-in link was not issued by robeing")]
    UnknownState,
    #[error("this sign-in link was already used")]
    ReusedState { user_id: String },
    #[error("this sign-in link has expired")]
    ExpiredState { user_id: String },
    #[error("Google refused the sign-in code ({error})")]
    CodeRejected { error: String, user_id: String },
    #[error("Google did not return a refresh token")]
    NoRefreshToken { user_id: String },
    #[error("Gmail access was not granted")]
    MissingScope { user_id: String },
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl CallbackError {
    /// The Slack user the failed flow belonged to, when known.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::ReusedState { user_id }
            | Self::ExpiredState { user_id }
            | Self::NoRefreshToken { user_id }
            | Self::MissingScope { user_id }
            | Self::CodeRejected { user_id, .. } => Some(user_id),
            Self::UnknownState | Self::Internal(_) => None,
        }
    }
}

/// Consumes a state (single use, unexpired): the user it belongs to and the
/// PKCE verifier. A state that cannot be consumed is classified for the page.
pub async fn consume_state(state: &AppState, state_value: &str) -> Result<(String, SecretString), CallbackError> {
    let Some((_, vault)) = google_and_vault(state) else {
        return Err(CallbackError::UnknownState);
    };
    let hash = state_hash(state_value);
    let consumed = storage::oauth_states::consume(&state.db, &hash)
        .await
        .context("consuming the OAuth state")
        .map_err(CallbackError::Internal)?;
    match consumed {
        Some((user_id, sealed)) => {
            let verifier = vault
                .decrypt_any(&user_id, Purpose::Pkce, &sealed)
                .context("opening the PKCE verifier")
                .map_err(CallbackError::Internal)?;
            Ok((user_id, verifier))
        }
        None => {
            let spent = storage::oauth_states::lookup(&state.db, &hash)
                .await
                .context("looking up the OAuth state")
                .map_err(CallbackError::Internal)?;
            Err(match spent {
                None => CallbackError::UnknownState,
                Some(s) if s.used_at.is_some() => CallbackError::ReusedState { user_id: s.user_id },
                Some(s) => CallbackError::ExpiredState { user_id: s.user_id },
            })
        }
    }
}

/// A completed connection.
#[derive(Debug)]
pub struct Connected {
    pub user_id: String,
    pub email: String,
    /// The earlier Reconnect prompt (channel, ts), to update in place.
    pub previous_prompt: Option<(String, String)>,
    /// The Slack user's name, shown on the success page so whoever is in the
    /// browser can see whose robeing now reads this inbox.
    pub slack_name: String,
}

/// Exchanges the code (with the PKCE verifier), checks what was granted,
/// learns the address and stores the connection.
pub async fn complete(
    state: &AppState,
    user_id: String,
    verifier: SecretString,
    code: &str,
) -> Result<Connected, CallbackError> {
    let (google, vault) = google_and_vault(state).ok_or(CallbackError::UnknownState)?;
    let client = client(google, &state.config.public_url).map_err(CallbackError::Internal)?;
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()))
        .request_async(&OAuthHttp(&state.http))
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                CallbackError::CodeRejected { error: r.error().to_string(), user_id: user_id.clone() }
            }
            other => CallbackError::Internal(anyhow::anyhow!("exchanging the code at Google: {}", describe(&other))),
        })?;

    let granted: Vec<String> = token.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default();
    if token.scopes().is_some() && !granted.iter().any(|s| s == super::GMAIL_SCOPE) {
        return Err(CallbackError::MissingScope { user_id });
    }
    let Some(refresh) = token.refresh_token() else {
        return Err(CallbackError::NoRefreshToken { user_id });
    };
    let access = SecretString::from(token.access_token().secret().as_str());
    let refresh = SecretString::from(refresh.secret().as_str());

    let gmail = super::gmail::GmailClient::new(state.http.clone(), state.config.gmail_api_url.clone());
    let email = match gmail.profile(&access).await {
        Ok(p) => p.email_address,
        Err(super::gmail::GmailError::Forbidden(_)) => return Err(CallbackError::MissingScope { user_id }),
        Err(e) => return Err(CallbackError::Internal(anyhow::Error::new(e).context("reading the Gmail profile"))),
    };

    let tokens = seal(vault, &user_id, &refresh, &access, expires_at(&token)).map_err(CallbackError::Internal)?;
    let granted = if granted.is_empty() { super::SCOPES.iter().map(|s| s.to_string()).collect() } else { granted };
    let mut tx = state.db.begin().await.map_err(|e| CallbackError::Internal(e.into()))?;
    let before =
        storage::gmail::get_for_update(&mut *tx, &user_id).await.map_err(|e| CallbackError::Internal(e.into()))?;
    storage::gmail::save_connected(&mut *tx, &user_id, &email, &granted, &tokens)
        .await
        .map_err(|e| CallbackError::Internal(e.into()))?;
    tx.commit().await.map_err(|e| CallbackError::Internal(e.into()))?;
    let previous_prompt = before.and_then(|c| c.reconnect_prompt_channel.zip(c.reconnect_prompt_ts));
    let slack_name = match storage::users::get(&state.db, &user_id).await {
        Ok(Some(user)) => user.name().to_owned(),
        _ => user_id.clone(),
    };
    Ok(Connected { user_id, email, previous_prompt, slack_name })
}

/// Seals a token pair with the current key.
pub fn seal(
    vault: &Vault,
    user_id: &str,
    refresh: &SecretString,
    access: &SecretString,
    access_expires_at: DateTime<Utc>,
) -> anyhow::Result<storage::gmail::SealedTokens> {
    let r = vault.encrypt(user_id, Purpose::Refresh, refresh).context("sealing the refresh token")?;
    let a = vault.encrypt(user_id, Purpose::Access, access).context("sealing the access token")?;
    Ok(storage::gmail::SealedTokens { key_id: r.key_id, refresh: r.bytes, access: a.bytes, access_expires_at })
}

fn expires_at(token: &BasicTokenResponse) -> DateTime<Utc> {
    let secs = token.expires_in().map(|d| d.as_secs() as i64).unwrap_or(DEFAULT_ACCESS_TTL_SECS);
    Utc::now() + chrono::Duration::seconds(secs.clamp(0, 86_400))
}

/// The outcome of one refresh attempt.
pub enum Refreshed {
    /// New tokens (the refresh token is Google's new one if it sent one).
    Tokens { access: SecretString, refresh: SecretString, expires_at: DateTime<Utc> },
    /// Google says the refresh token is dead (`invalid_grant`): reconnect.
    Revoked { reason: String },
}

/// A refresh failure worth retrying (5xx, network), or not (a refused client).
#[derive(Debug)]
pub enum RefreshError {
    Transient(anyhow::Error),
    Permanent(anyhow::Error),
}

/// One refresh attempt with a refresh token.
pub async fn refresh(
    config: &Config,
    http: &reqwest::Client,
    refresh_token: &SecretString,
) -> Result<Refreshed, RefreshError> {
    let google =
        config.google.as_ref().ok_or_else(|| RefreshError::Permanent(anyhow::anyhow!("Google is not configured")))?;
    let client = client(google, &config.public_url).map_err(RefreshError::Permanent)?;
    let rt = RefreshToken::new(refresh_token.expose_secret().to_owned());
    match client.exchange_refresh_token(&rt).request_async(&OAuthHttp(http)).await {
        Ok(token) => Ok(Refreshed::Tokens {
            access: SecretString::from(token.access_token().secret().as_str()),
            refresh: token
                .refresh_token()
                .map(|r| SecretString::from(r.secret().as_str()))
                .unwrap_or_else(|| refresh_token.clone()),
            expires_at: expires_at(&token),
        }),
        Err(RequestTokenError::ServerResponse(r)) if *r.error() == BasicErrorResponseType::InvalidGrant => {
            let detail = r.error_description().map(|d| format!(": {}", clip(d))).unwrap_or_default();
            Ok(Refreshed::Revoked { reason: format!("Google refused the saved authorization (invalid_grant{detail})") })
        }
        Err(RequestTokenError::ServerResponse(r)) => {
            Err(RefreshError::Permanent(anyhow::anyhow!("Google's token endpoint answered `{}`", r.error())))
        }
        Err(e) => Err(RefreshError::Transient(anyhow::anyhow!("refreshing at Google: {}", describe(&e)))),
    }
}

/// Describes an oauth2 error without echoing a response body (which could
/// hold a token).
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse>(e: &RequestTokenError<RE, T>) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("error response `{r}`"),
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => format!("unexpected response shape at `{}`", e.path()),
        RequestTokenError::Other(m) => m.clone(),
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}
