//! Our Slack Web API client: slack-morphism over our own hyper-rustls
//! connector, so the base URL (`SLACK_API_URL`) may be plain `http://` for the
//! loopback fakes in tests. The bot token stays a `SecretString` until a
//! session is opened for a call.

use std::sync::Arc;

use anyhow::Context as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::prelude::*;
use url::Url;

/// The connector type we use for every Slack call.
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// A Slack Web API client bound to the bot token.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: Arc<SlackApiToken>,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackApi { .. }")
    }
}

/// Builds the hyper-rustls connector: native roots, HTTPS or (for tests on
/// loopback) plain HTTP, HTTP/1 and HTTP/2.
pub fn connector(api_url: &Url) -> anyhow::Result<Connector> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's TLS root certificates")?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url.as_str().trim_end_matches('/')))
}

impl SlackApi {
    pub fn new(api_url: &Url, bot_token: &SecretString) -> anyhow::Result<Self> {
        let client = SlackClient::new(connector(api_url)?);
        let token = SlackApiToken::new(SlackApiTokenValue(bot_token.expose_secret().to_owned()));
        Ok(Self { client: Arc::new(client), token: Arc::new(token) })
    }

    /// The underlying slack-morphism client, for Socket Mode.
    pub fn raw_client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// A session for one or more calls with the bot token.
    pub fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }

    /// `auth.test`: is the bot token valid, and for which workspace.
    pub async fn auth_test(&self) -> Result<SlackApiAuthTestResponse, slack_morphism::errors::SlackClientError> {
        self.session().auth_test().await
    }
}
