//! Cryptography the modules share: argon2id password hashing, opaque tokens stored as hashes,
//! and the secret box that encrypts values at rest (XChaCha20-Poly1305 with key ids, so keys
//! can rotate).

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_ITERATIONS: u32 = 2;
const ARGON2_PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with unknown key `{0}`")]
    UnknownKey(String),
    #[error("sealed value does not authenticate (wrong key or tampered)")]
    Decrypt,
    #[error("encryption key must be 32 bytes, hex-encoded")]
    BadKey,
}

/// Hashes and verifies passwords with argon2id, PHC strings.
#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
}

impl fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHashing").finish_non_exhaustive()
    }
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self::owasp()
    }
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Mismatch,
    Match,
    /// Correct, but hashed with other parameters: store a fresh hash.
    MatchNeedsRehash,
}

impl PasswordHashing {
    pub fn owasp() -> Self {
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            None,
        )
        .unwrap_or_default();
        PasswordHashing { params }
    }

    /// Weaker parameters; only for comparing behaviour in tests of rehashing.
    pub fn with_params(memory_kib: u32, iterations: u32) -> Result<Self, CryptoError> {
        let params = Params::new(memory_kib, iterations, ARGON2_PARALLELISM, None)
            .map_err(|error| CryptoError::Hash(error.to_string()))?;
        Ok(PasswordHashing { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$...`.
    pub fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| CryptoError::Hash(error.to_string()))
    }

    pub fn verify(&self, password: &str, phc: &str) -> PasswordCheck {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return PasswordCheck::Mismatch;
        };
        if self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return PasswordCheck::Mismatch;
        }
        let current = parsed.algorithm.as_str() == "argon2id"
            && Params::try_from(&parsed)
                .map(|params| {
                    params.m_cost() == self.params.m_cost()
                        && params.t_cost() == self.params.t_cost()
                        && params.p_cost() == self.params.p_cost()
                })
                .unwrap_or(false);
        if current {
            PasswordCheck::Match
        } else {
            PasswordCheck::MatchNeedsRehash
        }
    }
}

/// A new opaque token: `prefix` + 32 random bytes, URL-safe base64.
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

/// How tokens are stored: SHA-256, hex. Tokens are random, so no salt or stretching is needed.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Encrypts values at rest. Sealed values read `v1:<key id>:<base64 nonce+ciphertext>`; the
/// key id picks the key on the way back, so old values stay readable after a key rotation as
/// long as their key is kept among the previous ones. `context` is authenticated with the
/// value (e.g. the owning row), so a sealed value copied elsewhere does not open.
#[derive(Clone)]
pub struct SecretBox {
    current: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// `current` seals; `previous` only open values sealed before a rotation.
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Result<Self, CryptoError> {
        let mut keys = HashMap::new();
        let (current_id, current_cipher) = Self::key(current)?;
        keys.insert(current_id.clone(), current_cipher);
        for key in previous {
            let (id, cipher) = Self::key(key)?;
            keys.entry(id).or_insert(cipher);
        }
        Ok(SecretBox {
            current: current_id,
            keys,
        })
    }

    fn key(hex_key: &SecretString) -> Result<(String, XChaCha20Poly1305), CryptoError> {
        let bytes = hex::decode(hex_key.expose_secret()).map_err(|_| CryptoError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let id = hex::encode(&Sha256::digest(&bytes)[..4]);
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok((id, cipher))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, CryptoError> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| CryptoError::UnknownKey(self.current.clone()))?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(format!(
            "v1:{}:{}",
            self.current,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 24 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(24);
        let plaintext = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }

    /// Seals a credential bound to `endpoint` (the identity of the URL it was entered for):
    /// it opens only for that endpoint again, so whoever changes where requests go cannot have
    /// the credential follow without entering it again.
    pub fn seal_for_endpoint(
        &self,
        plaintext: &str,
        context: &str,
        endpoint: &str,
    ) -> Result<String, CryptoError> {
        self.seal(plaintext, &endpoint_context(context, endpoint))
    }

    /// Opens a credential sealed with [`SecretBox::seal_for_endpoint`]; `None` when it was
    /// entered for another endpoint (or, indistinguishably, tampered with).
    pub fn open_for_endpoint(
        &self,
        sealed: &str,
        context: &str,
        endpoint: &str,
    ) -> Result<Option<SecretString>, CryptoError> {
        match self.open(sealed, &endpoint_context(context, endpoint)) {
            Ok(secret) => Ok(Some(secret)),
            Err(CryptoError::Decrypt) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The key id a sealed value names, without opening it.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split(':').nth(1)
    }
}

/// The authenticated context of a credential bound to `endpoint`.
fn endpoint_context(context: &str, endpoint: &str) -> String {
    format!("{context}|endpoint={endpoint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_open_only_for_the_endpoint_they_were_entered_for() {
        let secret_box = SecretBox::new(&key(1), &[]).unwrap();
        let sealed = secret_box
            .seal_for_endpoint(
                "sk-live",
                "project_secret:a:LLM_API_KEY",
                "https://api.openai.com/v1",
            )
            .unwrap();
        let opened = secret_box
            .open_for_endpoint(
                &sealed,
                "project_secret:a:LLM_API_KEY",
                "https://api.openai.com/v1",
            )
            .unwrap();
        assert_eq!(opened.unwrap().expose_secret(), "sk-live");
        for endpoint in [
            "https://attacker.example/v1",
            "https://api.openai.com/v1/x",
            "platform",
        ] {
            assert!(
                secret_box
                    .open_for_endpoint(&sealed, "project_secret:a:LLM_API_KEY", endpoint)
                    .unwrap()
                    .is_none(),
                "{endpoint}"
            );
        }
    }

    fn key(byte: u8) -> SecretString {
        hex::encode([byte; 32]).into()
    }

    #[test]
    fn sealed_values_open_only_with_their_context() {
        let secret_box = SecretBox::new(&key(1), &[]).unwrap();
        let sealed = secret_box.seal("sk-live-123", "project:a:OPENAI").unwrap();
        assert!(!sealed.contains("sk-live-123"));
        let opened = secret_box.open(&sealed, "project:a:OPENAI").unwrap();
        assert_eq!(opened.expose_secret(), "sk-live-123");
        assert!(matches!(
            secret_box.open(&sealed, "project:b:OPENAI"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn rotated_keys_still_open_old_values() {
        let old = SecretBox::new(&key(1), &[]).unwrap();
        let sealed = old.seal("value", "ctx").unwrap();
        let rotated = SecretBox::new(&key(2), &[key(1)]).unwrap();
        assert_ne!(rotated.current_key_id(), old.current_key_id());
        assert_eq!(
            rotated.open(&sealed, "ctx").unwrap().expose_secret(),
            "value"
        );
        assert!(
            rotated
                .seal("new", "ctx")
                .unwrap()
                .contains(rotated.current_key_id())
        );
        let forgotten = SecretBox::new(&key(2), &[]).unwrap();
        assert!(matches!(
            forgotten.open(&sealed, "ctx"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn passwords_verify_and_report_outdated_parameters() {
        let weak = PasswordHashing::with_params(8 * 1024, 1).unwrap();
        let hash = weak.hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        assert_eq!(weak.verify("correct horse", &hash), PasswordCheck::Match);
        assert_eq!(weak.verify("wrong", &hash), PasswordCheck::Mismatch);
        let owasp = PasswordHashing::owasp();
        assert_eq!(
            owasp.verify("correct horse", &hash),
            PasswordCheck::MatchNeedsRehash
        );
        assert_eq!(
            owasp.verify("x", "not a phc string"),
            PasswordCheck::Mismatch
        );
    }

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = random_token("rt_");
        let b = random_token("rt_");
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() > 40);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_eq!(hash_token(&a).len(), 64);
    }
}
