//! The bot token's OAuth scopes: which ones robeing needs (the bot scopes
//! `manifest.yaml` requests, compiled in so the binary and the manifest it
//! ships with cannot disagree) and which ones a token has (Slack lists them
//! in the `x-oauth-scopes` header of every Web API answer; `robeing doctor`
//! reads it from `auth.test`).

use std::{collections::BTreeSet, time::Duration};

use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

/// The app manifest robeing ships (the one operators paste into Slack).
const MANIFEST: &str = include_str!("../../manifest.yaml");

/// The bot scopes `manifest.yaml` requests under `oauth_config.scopes.bot`.
///
/// A deliberately small reader for the manifest's own shape (block mappings,
/// one `- scope` per line), not a YAML parser: the unit test below pins what
/// it finds, so a manifest edit that it cannot read fails the build's tests.
pub fn required_bot_scopes() -> Vec<&'static str> {
    let mut path: Vec<(usize, &str)> = Vec::new(); // (indent, key) of the enclosing mappings
    let mut scopes = Vec::new();
    for line in MANIFEST.lines() {
        let content = line.split(" #").next().unwrap_or("").trim_end();
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = content.len() - trimmed.len();
        if let Some(item) = trimmed.strip_prefix("- ") {
            let keys: Vec<&str> = path.iter().map(|(_, k)| *k).collect();
            if keys == ["oauth_config", "scopes", "bot"] {
                scopes.push(item.trim().trim_matches('"'));
            }
            continue;
        }
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        if let Some(key) = trimmed.strip_suffix(':') {
            path.push((indent, key));
        }
    }
    scopes
}

/// What `auth.test` said about the bot token.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    pub team_id: String,
    pub user_id: String,
    /// The granted scopes, or `None` when Slack sent no `x-oauth-scopes`.
    pub scopes: Option<BTreeSet<String>>,
}

/// Calls `auth.test` with the bot token and reads the answer's body and its
/// `x-oauth-scopes` header. The error is a sentence for the operator (Slack's
/// error code, or the network failure without the URL's secrets).
pub async fn auth_test(api_url: &Url, token: &SecretString, timeout: Duration) -> Result<TokenCheck, String> {
    let url = format!("{}/auth.test", api_url.as_str().trim_end_matches('/'));
    let response =
        reqwest::Client::new().post(url).bearer_auth(token.expose_secret()).timeout(timeout).send().await.map_err(
            |e| if e.is_timeout() { format!("no answer within {} s", timeout.as_secs()) } else { e.to_string() },
        )?;
    let status = response.status();
    let scopes = response
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect());
    let body: serde_json::Value =
        response.json().await.map_err(|e| format!("HTTP {status}, not a Slack answer: {e}"))?;
    if body.get("ok").and_then(|v| v.as_bool()) != Some(true) {
        let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("no error code");
        return Err(format!("Slack answered `{error}` (HTTP {})", status.as_u16()));
    }
    let field = |name: &str| body.get(name).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    Ok(TokenCheck { team_id: field("team_id"), user_id: field("user_id"), scopes })
}

/// Scopes `manifest.yaml` requests whose absence degrades one feature
/// instead of breaking robeing, with what goes without them. `robeing
/// doctor` warns about these and fails on the others.
const DEGRADING_SCOPES: &[(&str, &str)] = &[
    ("files:read", "files users send in a DM are not read (their replies say so)"),
    ("files:write", "history exports are sent as messages instead of a file"),
];

/// What goes without `scope` when it only degrades a feature
/// ([`DEGRADING_SCOPES`]); `None` for a scope robeing needs to work.
pub fn degrades_only(scope: &str) -> Option<&'static str> {
    DEGRADING_SCOPES.iter().find(|(s, _)| *s == scope).map(|(_, without)| *without)
}

/// The required scopes a token lacks, in manifest order.
pub fn missing<'a>(required: &[&'a str], granted: &BTreeSet<String>) -> Vec<&'a str> {
    required.iter().copied().filter(|s| !granted.contains(*s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bot_scopes_of_the_shipped_manifest() {
        assert_eq!(
            required_bot_scopes(),
            ["chat:write", "files:read", "files:write", "im:history", "im:read", "im:write", "commands", "users:read"],
            "manifest.yaml's oauth_config.scopes.bot, in order"
        );
    }

    #[test]
    fn missing_lists_what_is_not_granted() {
        let granted: BTreeSet<String> =
            ["chat:write", "commands", "extra:scope"].iter().map(|s| s.to_string()).collect();
        assert_eq!(missing(&["chat:write", "users:read", "commands", "im:read"], &granted), ["users:read", "im:read"]);
        assert!(missing(&["chat:write"], &granted).is_empty());
    }
}
