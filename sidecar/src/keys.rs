//! Virtual key material: generation, hashing and identifiers.
//!
//! The plaintext key only ever exists in memory between `generate_key` and the
//! response that hands it to the operator; the store keeps its SHA-256 hash,
//! which is also what the Envoy filter sends us.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Every virtual key starts with this, so leaked keys are easy to grep for.
pub const KEY_PREFIX: &str = "tg-";
/// How many leading characters of a key are kept for display.
pub const DISPLAY_PREFIX_LEN: usize = 8;
const KEY_ID_PREFIX: &str = "key_";
const ID_RANDOM_LEN: usize = 12;
const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A freshly minted secret (a key or an invite token): the plaintext plus
/// what the store keeps of it.
pub struct GeneratedKey {
    pub plaintext: String,
    pub hash: String,
    pub prefix: String,
}

/// `tg-` + URL-safe base64 (no padding) of 32 bytes from the OS RNG: 46 chars.
pub fn generate_key() -> Result<GeneratedKey> {
    generate_secret(KEY_PREFIX)
}

/// `prefix` + URL-safe base64 (no padding) of 32 bytes from the OS RNG.
pub fn generate_secret(prefix: &str) -> Result<GeneratedKey> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Rng)?;
    let mut plaintext = String::with_capacity(prefix.len() + 43);
    plaintext.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut plaintext);
    let hash = hash_key(&plaintext);
    let prefix = plaintext.chars().take(DISPLAY_PREFIX_LEN).collect();
    Ok(GeneratedKey {
        plaintext,
        hash,
        prefix,
    })
}

/// SHA-256 of the key as lowercase hex; must match the filter's hashing.
pub fn hash_key(key: &str) -> String {
    hex_lower(&Sha256::digest(key.as_bytes()))
}

/// `key_` + 12 random lowercase alphanumerics.
pub fn new_key_id() -> Result<String> {
    new_id(KEY_ID_PREFIX)
}

/// `prefix` + 12 random lowercase alphanumerics, for any record id.
pub fn new_id(prefix: &str) -> Result<String> {
    let mut id = String::with_capacity(prefix.len() + ID_RANDOM_LEN);
    id.push_str(prefix);
    let mut buf = [0u8; 32];
    while id.len() < prefix.len() + ID_RANDOM_LEN {
        getrandom::fill(&mut buf).map_err(Error::Rng)?;
        for &b in &buf {
            // Reject the top 4 byte values so `b % 36` stays uniform (252 = 7 * 36).
            if b < 252 && id.len() < prefix.len() + ID_RANDOM_LEN {
                if let Some(&c) = ID_ALPHABET.get(usize::from(b % 36)) {
                    id.push(char::from(c));
                }
            }
        }
    }
    Ok(id)
}

/// Accepts 64 hex digits in either case and returns them lowercased, which is
/// how hashes are stored.
pub fn normalize_key_hash(s: &str) -> Option<String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(s.to_ascii_lowercase())
    } else {
        None
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(&c) = HEX.get(usize::from(nibble)) {
                out.push(char::from(c));
            }
        }
    }
    out
}

/// Equality that takes the same time wherever the inputs differ, for secrets.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 digest, used to compare secrets at a fixed length.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A shared secret the service checks callers against (the master key, the
/// filter's service token). Only its SHA-256 digest is kept, and candidates
/// are hashed and compared in constant time, so neither the secret's length
/// nor where a guess differs shows in the timing.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &str) -> Self {
        SecretDigest(sha256(secret.as_bytes()))
    }

    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(&sha256(candidate.as_bytes()), &self.0)
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_has_documented_shape() {
        let k = generate_key().unwrap();
        assert_eq!(k.plaintext.len(), 46);
        assert!(k.plaintext.starts_with("tg-"));
        assert!(k.plaintext[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(k.prefix, &k.plaintext[..8]);
        assert_eq!(k.hash, hash_key(&k.plaintext));
        assert_ne!(generate_key().unwrap().plaintext, k.plaintext);
    }

    #[test]
    fn hash_matches_known_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_ids_are_prefixed_lowercase_alnum() {
        let id = new_key_id().unwrap();
        assert_eq!(id.len(), 16);
        assert!(id.starts_with("key_"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn key_hash_normalization() {
        let h = "A".repeat(64);
        assert_eq!(normalize_key_hash(&h).unwrap(), "a".repeat(64));
        assert!(normalize_key_hash(&"g".repeat(64)).is_none());
        assert!(normalize_key_hash(&"a".repeat(63)).is_none());
        assert!(normalize_key_hash("").is_none());
    }

    #[test]
    fn constant_time_eq_detects_difference() {
        let a = sha256(b"one");
        assert!(constant_time_eq(&a, &sha256(b"one")));
        assert!(!constant_time_eq(&a, &sha256(b"two")));
    }

    #[test]
    fn secret_digest_matches_only_the_secret() {
        let s = SecretDigest::of("s3cret-value");
        assert!(s.matches("s3cret-value"));
        assert!(!s.matches("s3cret-valu"));
        assert!(!s.matches("s3cret-value "));
        assert!(!s.matches(""));
        assert_eq!(format!("{s:?}"), "SecretDigest(..)");
    }
}
