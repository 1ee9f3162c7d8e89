//! Signed connect links: `{ROBEING_PUBLIC_URL}/oauth/google/start?t=<token>`.
//!
//! The token binds one Slack user id to an expiry with an HMAC-SHA256 whose
//! key is derived from `TOKEN_ENCRYPTION_KEY` under its own label (so the
//! encryption key itself never signs anything). Only someone holding a link
//! robeing made can start the OAuth flow for that user; a bare user id in a
//! URL is never accepted.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use secrecy::ExposeSecret as _;
use sha2::Sha256;
use url::Url;

use crate::config::{Config, EncryptionKey};

/// How long a connect link works: long enough to read a DM and click, short
/// enough that a link forwarded or found in a log later is useless.
pub const LINK_TTL: chrono::Duration = chrono::Duration::minutes(15);

const LABEL: &[u8] = b"robeing/v1/connect-link-signing-key";
const VERSION: &str = "v1";

/// Why a link token was refused (the page says which, without detail an
/// attacker could use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed or its signature does not match")]
    Invalid,
    #[error("the link has expired")]
    Expired,
    #[error("Gmail is not configured on this robeing (GOOGLE_CLIENT_ID / TOKEN_ENCRYPTION_KEY unset)")]
    NotConfigured,
}

fn signing_key(key: &EncryptionKey) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret()).expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.finalize().into_bytes().into()
}

fn mac(key: &EncryptionKey, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&signing_key(key)).expect("HMAC takes any key length");
    mac.update(VERSION.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac
}

/// A token for `user_id` valid until `expires_at`.
pub fn sign(key: &EncryptionKey, user_id: &str, expires_at: DateTime<Utc>) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{user_id}:{}", expires_at.timestamp()));
    let sig = URL_SAFE_NO_PAD.encode(mac(key, &payload).finalize().into_bytes());
    format!("{VERSION}.{payload}.{sig}")
}

/// Checks a token with the configured keys (current, then previous) and
/// returns the Slack user id it was made for.
pub fn verify(config: &Config, token: &str, now: DateTime<Utc>) -> Result<String, LinkError> {
    let key = config.token_encryption_key.as_ref().ok_or(LinkError::NotConfigured)?;
    let mut parts = token.split('.');
    let (Some(VERSION), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Invalid);
    };
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Invalid)?;
    let signed_by_a_key = std::iter::once(key)
        .chain(config.token_encryption_key_previous.as_ref())
        .any(|k| mac(k, payload).verify_slice(&sig).is_ok());
    if !signed_by_a_key {
        return Err(LinkError::Invalid);
    }
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Invalid)?)
        .map_err(|_| LinkError::Invalid)?;
    let (user_id, expiry) = decoded.rsplit_once(':').ok_or(LinkError::Invalid)?;
    let expiry: i64 = expiry.parse().map_err(|_| LinkError::Invalid)?;
    if now.timestamp() >= expiry {
        return Err(LinkError::Expired);
    }
    Ok(user_id.to_owned())
}

/// `path` under `ROBEING_PUBLIC_URL`, whether or not that URL ends in a
/// slash (`https://host/robeing` and `https://host/robeing/` both keep `/robeing`).
pub fn public_path(public_url: &Url, path: &str) -> Result<Url, url::ParseError> {
    Url::parse(&format!("{}/{path}", public_url.as_str().trim_end_matches('/')))
}

/// The connect link for one Slack user, valid for [`LINK_TTL`]. Used by the
/// Reconnect button, App Home and `robeing connect-link`.
pub fn connect_link(config: &Config, user_id: &str) -> Result<Url, LinkError> {
    connect_link_at(config, user_id, Utc::now())
}

/// [`connect_link`] made as if at `now` (tests make expired links with it).
pub fn connect_link_at(config: &Config, user_id: &str, now: DateTime<Utc>) -> Result<Url, LinkError> {
    if config.google.is_none() {
        return Err(LinkError::NotConfigured);
    }
    let key = config.token_encryption_key.as_ref().ok_or(LinkError::NotConfigured)?;
    let mut url = public_path(&config.public_url, "oauth/google/start").map_err(|_| LinkError::NotConfigured)?;
    url.query_pairs_mut().append_pair("t", &sign(key, user_id, now + LINK_TTL));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(key: &str, previous: Option<&str>) -> Config {
        let mut vars: HashMap<&str, &str> = HashMap::from([
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "secret"),
            ("TOKEN_ENCRYPTION_KEY", key),
            ("ROBEING_PUBLIC_URL", "https://robeing.example/base/"),
        ]);
        if let Some(p) = previous {
            vars.insert("TOKEN_ENCRYPTION_KEY_PREVIOUS", p);
        }
        Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap()
    }
    const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

    fn token_of(url: &Url) -> String {
        url.query_pairs().find(|(k, _)| k == "t").unwrap().1.into_owned()
    }

    #[test]
    fn a_link_names_its_user_until_it_expires() {
        let c = config(K1, None);
        let now = Utc::now();
        let url = connect_link_at(&c, "U0KIMJT01", now).unwrap();
        assert!(url.as_str().starts_with("https://robeing.example/base/oauth/google/start?t=v1."), "{url}");
        assert!(!url.as_str().contains("U0KIMJT01"), "no bare user id in the URL: {url}");
        let t = token_of(&url);
        assert_eq!(verify(&c, &t, now).unwrap(), "U0KIMJT01");
        assert_eq!(verify(&c, &t, now + LINK_TTL), Err(LinkError::Expired));
    }

    #[test]
    fn the_public_url_keeps_its_path_with_or_without_a_slash() {
        for base in ["https://h.example/robeing", "https://h.example/robeing/"] {
            let url = public_path(&Url::parse(base).unwrap(), "oauth/google/callback").unwrap();
            assert_eq!(url.as_str(), "https://h.example/robeing/oauth/google/callback");
        }
        let root = public_path(&Url::parse("http://localhost:3000").unwrap(), "oauth/google/start").unwrap();
        assert_eq!(root.as_str(), "http://localhost:3000/oauth/google/start");
    }

    #[test]
    fn forged_and_foreign_links_are_refused() {
        let now = Utc::now();
        let t = token_of(&connect_link_at(&config(K1, None), "U0KIMJT01", now).unwrap());
        assert_eq!(verify(&config(K2, None), &t, now), Err(LinkError::Invalid));
        let other_payload = URL_SAFE_NO_PAD.encode(format!("U0OTHER01:{}", (now + LINK_TTL).timestamp()));
        let sig = t.rsplit('.').next().unwrap();
        assert_eq!(verify(&config(K1, None), &format!("v1.{other_payload}.{sig}"), now), Err(LinkError::Invalid));
        assert_eq!(verify(&config(K1, None), "U0KIMJT01", now), Err(LinkError::Invalid));
        // During a rotation, links signed with the previous key still work.
        assert_eq!(verify(&config(K2, Some(K1)), &t, now).unwrap(), "U0KIMJT01");
    }
}
