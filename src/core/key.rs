//! Client keys: where the SDKs put them, and the hash the sidecar knows them by.

use sha2::{Digest, Sha256};

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
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

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
