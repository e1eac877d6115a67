//! Client keys: where the SDKs put them, and the hash the sidecar knows them by.

use crate::core::digest;
use std::collections::HashMap;

/// Longest key accepted; anything longer is not a Tollgate key.
const MAX_KEY_LEN: usize = 256;

/// The key from `Authorization: Bearer <key>` (OpenAI and current Anthropic
/// SDKs), `x-api-key` (older Anthropic SDKs) or `api-key` (Azure OpenAI
/// SDK); the bearer header wins when several are present.
pub fn extract<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    let bearer = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let key = bearer.or(x_api_key.map(str::trim))?;
    (!key.is_empty() && key.len() <= MAX_KEY_LEN).then_some(key)
}

/// Lowercase hex SHA-256 of the key, the only form that leaves the filter.
pub fn hash(key: &str) -> String {
    digest::sha256_hex(key.as_bytes())
}

/// Keys a worker remembers the hash of before it forgets them all.
const MEMO_CAPACITY: usize = 1024;

/// The hashes of the keys a worker saw lately. SHA-256 costs a VM more
/// than the rest of a request's header phase, and a few keys make most
/// requests. Bounded: when full it starts over, so keys sprayed by a
/// client cost their hash and nothing more.
#[derive(Default)]
pub struct HashMemo(HashMap<String, String>);

impl HashMemo {
    pub fn hash(&mut self, key: &str) -> String {
        if let Some(hash) = self.0.get(key) {
            return hash.clone();
        }
        if self.0.len() >= MEMO_CAPACITY {
            self.0.clear();
        }
        let hashed = hash(key);
        self.0.insert(key.to_string(), hashed.clone());
        hashed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_gives_the_hash_and_stays_bounded() {
        let mut memo = HashMemo::default();
        for round in 0..2 {
            for i in 0..MEMO_CAPACITY + 10 {
                let key = format!("tg-{i}");
                assert_eq!(memo.hash(&key), hash(&key), "{round} {i}");
                assert!(memo.0.len() <= MEMO_CAPACITY);
            }
        }
    }

    #[test]
    fn extracts_from_either_header() {
        assert_eq!(extract(Some("Bearer tg-abc"), None), Some("tg-abc"));
        assert_eq!(extract(Some("bearer  tg-abc "), None), Some("tg-abc"));
        assert_eq!(extract(None, Some("tg-xyz")), Some("tg-xyz"));
        assert_eq!(extract(Some("Basic Zm9v"), Some("tg-xyz")), Some("tg-xyz"));
        assert_eq!(extract(Some("Bearer "), None), None);
        assert_eq!(extract(None, None), None);
        assert_eq!(extract(None, Some(&"k".repeat(300))), None);
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
