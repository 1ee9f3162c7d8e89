//! The token vault: AES-256-GCM encryption of OAuth tokens at rest.
//!
//! Every value gets a fresh random 96-bit nonce; the stored form is
//! `nonce || ciphertext || tag`. The associated data binds a ciphertext to
//! its user, provider and purpose (`refresh`, `access`, `pkce`), so a token
//! copied into another user's row, or a PKCE verifier pasted into a refresh
//! token column, fails to decrypt instead of being used.
//!
//! Keys rotate: [`Vault::encrypt`] always uses `TOKEN_ENCRYPTION_KEY`, and
//! [`Vault::decrypt`] accepts that key or `TOKEN_ENCRYPTION_KEY_PREVIOUS`,
//! picked by the key id stored next to the ciphertext (`token_key_id`). A key
//! id is the first 8 bytes of SHA-256 of the key, in hex: it names a key
//! without revealing it.
//!
//! [`Vault::check_canaries`] runs at start-up: each key has a canary row in
//! `vault_keys` (a known value encrypted under it). A canary that the
//! configured keys cannot open means the key changed by mistake, and start-up
//! stops with a message naming `TOKEN_ENCRYPTION_KEY` instead of every user's
//! Gmail failing one by one.

use aes_gcm::{
    Aes256Gcm, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::config::{Config, EncryptionKey};

/// Bytes of nonce in front of every ciphertext (AES-GCM's standard 96 bits).
pub const NONCE_LEN: usize = 12;
/// Bytes of authentication tag at the end of every ciphertext.
pub const TAG_LEN: usize = 16;

/// The provider every ciphertext here belongs to.
pub const PROVIDER: &str = "google";

/// The plaintext of a canary; its value is not secret, only its ciphertext matters.
const CANARY_PLAINTEXT: &str = "robeing token vault canary v1";

/// What a ciphertext is for; part of its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Refresh,
    Access,
    Pkce,
    Canary,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Access => "access",
            Self::Pkce => "pkce",
            Self::Canary => "canary",
        }
    }
}

/// Why the vault could not do something. Never contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no key with id `{0}` is configured (TOKEN_ENCRYPTION_KEY / TOKEN_ENCRYPTION_KEY_PREVIOUS)")]
    UnknownKey(String),
    #[error("a stored value did not decrypt under key `{0}` (wrong key, or bound to another user or purpose)")]
    Undecryptable(String),
    #[error("encryption failed")]
    Encrypt,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn new(key: &EncryptionKey) -> Self {
        let bytes: &[u8; 32] = key.expose_secret();
        Self { id: key_id(bytes), cipher: Aes256Gcm::new(bytes.into()) }
    }
}

/// The id of a key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

/// A sealed value and the id of the key that sealed it.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// The configured keys.
pub struct Vault {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

fn associated_data(user_id: &str, purpose: Purpose) -> Vec<u8> {
    format!("robeing/v1/{PROVIDER}/{}/{user_id}", purpose.as_str()).into_bytes()
}

impl Vault {
    /// The vault for this configuration, or `None` when no key is configured.
    pub fn from_config(config: &Config) -> Option<Self> {
        let current = Key::new(config.token_encryption_key.as_ref()?);
        let previous = config.token_encryption_key_previous.as_ref().map(Key::new).filter(|k| k.id != current.id);
        Some(Self { current, previous })
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// The id of the previous key, if one is configured.
    pub fn previous_key_id(&self) -> Option<&str> {
        self.previous.as_ref().map(|k| k.id.as_str())
    }

    fn key(&self, key_id: &str) -> Result<&Key, VaultError> {
        if self.current.id == key_id {
            return Ok(&self.current);
        }
        match &self.previous {
            Some(k) if k.id == key_id => Ok(k),
            _ => Err(VaultError::UnknownKey(key_id.to_owned())),
        }
    }

    /// Seals `plaintext` for one user and purpose with the current key.
    pub fn encrypt(&self, user_id: &str, purpose: Purpose, plaintext: &SecretString) -> Result<Sealed, VaultError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(user_id, purpose);
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), Payload { msg: plaintext.expose_secret().as_bytes(), aad: &aad })
            .map_err(|_| VaultError::Encrypt)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce_bytes);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: self.current.id.clone(), bytes })
    }

    /// Opens a value sealed under `key_id` for this user and purpose.
    pub fn decrypt(
        &self,
        key_id: &str,
        user_id: &str,
        purpose: Purpose,
        sealed: &[u8],
    ) -> Result<SecretString, VaultError> {
        let key = self.key(key_id)?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Undecryptable(key_id.to_owned()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = associated_data(user_id, purpose);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| VaultError::Undecryptable(key_id.to_owned()))?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| VaultError::Undecryptable(key_id.to_owned()))
    }

    /// Opens a value whose key id was not stored (PKCE verifiers live ten
    /// minutes): the current key first, then the previous one.
    pub fn decrypt_any(&self, user_id: &str, purpose: Purpose, sealed: &[u8]) -> Result<SecretString, VaultError> {
        self.decrypt(&self.current.id, user_id, purpose, sealed).or_else(|e| match &self.previous {
            Some(k) => self.decrypt(&k.id, user_id, purpose, sealed),
            None => Err(e),
        })
    }

    /// The read-only half of [`Vault::check_canaries`] (for `doctor`): every
    /// stored canary must open with a configured key. Returns the key ids
    /// that have a canary.
    pub async fn verify_canaries(&self, pool: &PgPool) -> Result<Vec<String>, CanaryError> {
        let stored = crate::storage::gmail::canaries(pool).await.map_err(|e| CanaryError::Database(e.into()))?;
        for (key_id, canary) in &stored {
            match self.decrypt(key_id, "-", Purpose::Canary, canary) {
                Ok(plain) if plain.expose_secret() == CANARY_PLAINTEXT => {}
                Ok(_) | Err(VaultError::Undecryptable(_)) => {
                    return Err(CanaryError::WrongKey(format!(
                        "the canary stored for key id `{key_id}` does not decrypt with the configured key"
                    )));
                }
                Err(_) => {
                    return Err(CanaryError::WrongKey(format!(
                        "tokens in this database were encrypted with key id `{key_id}`, but TOKEN_ENCRYPTION_KEY has id `{}`{}",
                        self.current.id,
                        match &self.previous {
                            Some(p) => format!(" and TOKEN_ENCRYPTION_KEY_PREVIOUS has id `{}`", p.id),
                            None => String::new(),
                        }
                    )));
                }
            }
        }
        Ok(stored.into_iter().map(|(id, _)| id).collect())
    }

    /// The start-up check: every stored canary must open with a configured
    /// key, and the current key gets a canary if it has none. With a previous
    /// key configured, tokens still sealed under it are re-sealed with the
    /// current key and its canary is dropped once no stored token uses it, so
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS` can be unset after one start-up.
    pub async fn check_canaries(&self, pool: &PgPool) -> Result<(), CanaryError> {
        let stored = self.verify_canaries(pool).await?;
        if !stored.contains(&self.current.id) {
            let sealed = self
                .encrypt("-", Purpose::Canary, &SecretString::from(CANARY_PLAINTEXT))
                .map_err(|e| CanaryError::Database(e.into()))?;
            crate::storage::gmail::insert_canary(pool, &sealed.key_id, &sealed.bytes)
                .await
                .map_err(|e| CanaryError::Database(e.into()))?;
            tracing::info!(key_id = %sealed.key_id, "stored a canary for the new token encryption key");
        }
        if let Some(previous) = &self.previous {
            let resealed = self.reseal_previous(pool).await.map_err(CanaryError::Database)?;
            if resealed > 0 {
                tracing::info!(connections = resealed, from = %previous.id, to = %self.current.id, "re-encrypted tokens with the new key");
            }
            let retired = crate::storage::gmail::retire_canary_if_unused(pool, &previous.id)
                .await
                .map_err(|e| CanaryError::Database(e.into()))?;
            if retired {
                tracing::info!(
                    key_id = %previous.id,
                    "no token uses TOKEN_ENCRYPTION_KEY_PREVIOUS any more; its canary is retired and the variable may be unset"
                );
            }
        }
        Ok(())
    }
}

impl CanaryError {
    /// A wrong key is bad configuration (exit 2); a database failure is a runtime one (exit 1).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::WrongKey(_) => crate::error::EXIT_CONFIG,
            Self::Database(_) => crate::error::EXIT_FAILURE,
        }
    }
}

impl Vault {
    /// Re-seals every token still under the previous key with the current
    /// one, so a rotation completes at the first start-up with both keys.
    /// Returns how many connections were re-sealed.
    async fn reseal_previous(&self, pool: &PgPool) -> anyhow::Result<usize> {
        use anyhow::Context as _;
        let Some(previous) = &self.previous else { return Ok(0) };
        let rows =
            crate::storage::gmail::sealed_under(pool, &previous.id).await.context("listing tokens to re-seal")?;
        let mut resealed = 0;
        for (user_id, refresh, access) in rows {
            let reseal = |purpose, sealed: &[u8]| -> anyhow::Result<Vec<u8>> {
                let plain = self.decrypt(&previous.id, &user_id, purpose, sealed)?;
                Ok(self.encrypt(&user_id, purpose, &plain)?.bytes)
            };
            let new_refresh =
                reseal(Purpose::Refresh, &refresh).with_context(|| format!("re-sealing {user_id}'s token"))?;
            let new_access = access
                .as_deref()
                .map(|a| reseal(Purpose::Access, a))
                .transpose()
                .with_context(|| format!("re-sealing {user_id}'s token"))?;
            if crate::storage::gmail::reseal(
                pool,
                &user_id,
                &previous.id,
                &self.current.id,
                &new_refresh,
                new_access.as_deref(),
            )
            .await
            .context("storing re-sealed tokens")?
            {
                resealed += 1;
            }
        }
        Ok(resealed)
    }
}

/// Why the start-up key check failed.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(
        "TOKEN_ENCRYPTION_KEY is not the key this database's tokens were encrypted with: {0}. Fix: set TOKEN_ENCRYPTION_KEY to the original key (or, when rotating, put the old key in TOKEN_ENCRYPTION_KEY_PREVIOUS)"
    )]
    WrongKey(String),
    #[error("checking the token encryption key canary: {0:#}")]
    Database(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    fn vault(current: u8, previous: Option<u8>) -> Vault {
        let k = |b: u8| Key::new(&SecretBox::new(Box::new([b; 32])));
        Vault { current: k(current), previous: previous.map(k) }
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let v = vault(1, None);
        let secret = SecretString::from("1//refresh-token");
        let a = v.encrypt("U1", Purpose::Refresh, &secret).unwrap();
        let b = v.encrypt("U1", Purpose::Refresh, &secret).unwrap();
        assert_ne!(a.bytes, b.bytes, "each value has its own nonce");
        assert_eq!(a.bytes.len(), NONCE_LEN + "1//refresh-token".len() + TAG_LEN);
        assert_eq!(v.decrypt(&a.key_id, "U1", Purpose::Refresh, &a.bytes).unwrap().expose_secret(), "1//refresh-token");
    }

    #[test]
    fn bound_to_user_and_purpose() {
        let v = vault(1, None);
        let s = v.encrypt("U1", Purpose::Refresh, &SecretString::from("t")).unwrap();
        assert!(v.decrypt(&s.key_id, "U2", Purpose::Refresh, &s.bytes).is_err());
        assert!(v.decrypt(&s.key_id, "U1", Purpose::Access, &s.bytes).is_err());
        let mut tampered = s.bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(v.decrypt(&s.key_id, "U1", Purpose::Refresh, &tampered).is_err());
    }

    #[test]
    fn rotation_decrypts_old_and_encrypts_new() {
        let old = vault(1, None);
        let sealed = old.encrypt("U1", Purpose::Access, &SecretString::from("ya29.x")).unwrap();
        let rotated = vault(2, Some(1));
        assert_eq!(
            rotated.decrypt(&sealed.key_id, "U1", Purpose::Access, &sealed.bytes).unwrap().expose_secret(),
            "ya29.x"
        );
        assert_ne!(rotated.encrypt("U1", Purpose::Access, &SecretString::from("y")).unwrap().key_id, sealed.key_id);
        assert!(matches!(
            vault(3, None).decrypt(&sealed.key_id, "U1", Purpose::Access, &sealed.bytes),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn debug_shows_only_key_ids() {
        let text = format!("{:?}", vault(7, Some(8)));
        assert!(text.contains(&key_id(&[7; 32])) && !text.contains("cipher"), "{text}");
    }
}
