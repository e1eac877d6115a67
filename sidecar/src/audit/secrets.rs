//! Body HMACs: the filter sends the SHA-256 of a request's bodies; the log
//! keeps HMAC-SHA256(secret, digest) only. Whoever holds the secret can
//! check whether a given text was sent (`audit hmac`); nobody else can, and
//! deleting the secret (`audit forget-team`) leaves the HMACs matching no
//! text anyone can produce, while the log still verifies.
//!
//! Secrets are per team; a key without a team has its own, and a report
//! without a key the global one. They are 32 random bytes, created on
//! first use in `audit_secrets`, keyed by scope: `team:<name>`,
//! `key:<id>` or `global`. After a team's secret is forgotten its next
//! request creates a new one, so its later HMACs are checkable again.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::hex_lower;
use crate::store::sql::{params, Tx};
use crate::store::Store;

/// The secret a report's HMACs are under: its team's, else its key's.
pub fn scope(team: Option<&str>, key_id: Option<&str>) -> String {
    match (team, key_id) {
        (Some(team), _) => format!("team:{team}"),
        (None, Some(key)) => format!("key:{key}"),
        (None, None) => "global".to_owned(),
    }
}

/// HMAC-SHA256 of `digest` (the raw 32 bytes of a body's SHA-256) under
/// `secret`, hex.
pub fn hmac(secret: &[u8], digest: &[u8; 32]) -> Result<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|e| Error::invalid(format!("HMAC key: {e}")))?;
    mac.update(digest);
    Ok(hex_lower(&mac.finalize().into_bytes()))
}

/// The HMAC of a text, as the log holds it for a body with that text.
pub fn text_hmac(secret: &[u8], text: &[u8]) -> Result<String> {
    hmac(secret, &Sha256::digest(text).into())
}

/// A digest as the filter sends it: 64 hex characters.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    super::from_hex(hex)?.try_into().ok()
}

/// The secret of `scope`, created if it has none. The caller holds the
/// audit log's append lock, which serializes creation on PostgreSQL too.
pub(super) fn secret(tx: &mut dyn Tx, scope: &str, now: i64) -> Result<Vec<u8>> {
    if let Some(secret) = stored(tx, scope)? {
        return Ok(secret);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(Error::Rng)?;
    tx.execute(
        "INSERT INTO audit_secrets (scope, secret, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (scope) DO NOTHING",
        &params![scope, &hex_lower(&secret), now],
    )?;
    stored(tx, scope)?.ok_or_else(|| Error::Decode(format!("audit secret {scope} vanished")))
}

fn stored(tx: &mut dyn Tx, scope: &str) -> Result<Option<Vec<u8>>> {
    let Some(row) = tx.query_opt(
        "SELECT secret FROM audit_secrets WHERE scope = $1",
        &params![scope],
    )?
    else {
        return Ok(None);
    };
    let hex = row.text(0)?;
    super::from_hex(&hex)
        .map(Some)
        .ok_or_else(|| Error::Decode(format!("audit secret {scope} is not hex")))
}

impl Store {
    /// The current secret of `scope`, if it has one (`audit hmac`).
    pub fn audit_secret(&self, scope: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| stored(c, scope))
    }

    /// Deletes the secret of `scope` (erasure): the HMACs made under it
    /// can no longer be checked. Answers whether there was one.
    pub fn forget_audit_secret(&self, scope: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM audit_secrets WHERE scope = $1",
                &params![scope],
            )? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mac_hex(key: &[u8], data: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        hex_lower(&mac.finalize().into_bytes())
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            mac_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            mac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            mac_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_text_hmac_is_the_hmac_of_its_digest() {
        let secret = [7u8; 32];
        let digest: [u8; 32] = Sha256::digest(b"hello").into();
        assert_eq!(
            text_hmac(&secret, b"hello").unwrap(),
            hmac(&secret, &digest).unwrap()
        );
        assert_eq!(
            parse_digest(&hex_lower(&digest)),
            Some(digest),
            "the filter's hex reads back"
        );
        assert_eq!(parse_digest("abc"), None);
        assert_eq!(scope(Some("eng"), Some("k")), "team:eng");
        assert_eq!(scope(None, Some("k")), "key:k");
        assert_eq!(scope(None, None), "global");
    }
}
