//! Key verdicts shared by the workers of one Envoy: `tollgate.key.<hash>`
//! in shared data holds the sidecar's answer and when it came
//! (`core::auth::SharedVerdict`), so a key is checked once per Envoy per
//! `key_cache_ttl_ms`, not once per worker. Each worker keeps its own
//! `AuthCache` in front (no host call or parse per request), whose entries
//! age from when the sidecar answered: a revocation bites within
//! `key_cache_ttl_ms` on every worker.
//!
//! A verdict in the last quarter of its life is refreshed ahead: the first
//! worker to see it there claims the refresh in the entry (compare-and-swap)
//! and the root context asks the sidecar (`filter::background`), so hot keys
//! never wait for a key check and the workers' caches, which all expire
//! together, find a fresh verdict.
//!
//! Growth: shared data has no delete, so an entry is only created for a key
//! the sidecar said was valid (existing entries are overwritten, also with a
//! refusal); entries are bounded by the keys ever valid and used at this
//! Envoy, not by what clients send. Refusals of unknown keys stay per worker.

use super::env::Host;
use super::shared_data::{self, Step};
use crate::core::auth::{KeyCheck, SharedVerdict, MAX_SHARED_ANSWER};

pub fn entry_key(key_hash: &str) -> String {
    format!("tollgate.key.{key_hash}")
}

/// A verdict younger than `ttl_ms`, and when the sidecar gave it.
pub fn read(host: &impl Host, key_hash: &str, now_ms: u64, ttl_ms: u64) -> Option<(KeyCheck, u64)> {
    let bytes = host.shared_data(&entry_key(key_hash)).0?;
    let entry = SharedVerdict::decode(&bytes)?;
    // Too old, or given "in the future" (the clock stepped back).
    if now_ms < entry.fetched_ms || now_ms >= entry.fetched_ms.saturating_add(ttl_ms) {
        return None;
    }
    Some((entry.check()?, entry.fetched_ms))
}

/// Shares the sidecar's answer (`valid`: it granted the key), given at
/// `now_ms`: a new entry only for a valid key (see the module comment).
pub fn store(
    host: &impl Host,
    key_hash: &str,
    answer: &[u8],
    valid: bool,
    now_ms: u64,
    ttl_ms: u64,
) {
    if ttl_ms == 0 || answer.len() > MAX_SHARED_ANSWER {
        return;
    }
    let entry = SharedVerdict {
        fetched_ms: now_ms,
        refreshing_since_ms: 0,
        answer: answer.to_vec(),
    }
    .encode();
    shared_data::update(host, &entry_key(key_hash), |current| {
        if current.is_none() && !valid {
            Step::Keep(())
        } else {
            Step::Write(entry.clone(), ())
        }
    });
}

/// What came of a claim on a refresh ahead of expiry.
#[derive(Debug, PartialEq)]
pub enum Refresh {
    /// This worker refreshes it: queue the callout.
    Claimed,
    /// Someone already did: the newer verdict and when it was given.
    Newer(KeyCheck, u64),
    /// Another worker's refresh is under way, or there is nothing to refresh.
    Skip,
}

/// Claims the refresh of the verdict given at `fetched_ms`; a claim older
/// than `stale_ms` (its refresh was lost) can be taken over.
pub fn claim_refresh(
    host: &impl Host,
    key_hash: &str,
    fetched_ms: u64,
    now_ms: u64,
    stale_ms: u64,
) -> Refresh {
    let claimed = shared_data::update(host, &entry_key(key_hash), |current| {
        let Some(mut entry) = current.and_then(SharedVerdict::decode) else {
            return Step::Keep(Refresh::Skip);
        };
        if entry.fetched_ms > fetched_ms {
            return Step::Keep(match entry.check() {
                Some(check) => Refresh::Newer(check, entry.fetched_ms),
                None => Refresh::Skip,
            });
        }
        let since = entry.refreshing_since_ms;
        if since != 0 && since <= now_ms && now_ms < since.saturating_add(stale_ms) {
            return Step::Keep(Refresh::Skip);
        }
        entry.refreshing_since_ms = now_ms.max(1);
        Step::Write(entry.encode(), Refresh::Claimed)
    });
    claimed.unwrap_or(Refresh::Skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;

    const VALID: &[u8] = br#"{"valid":true,"key_id":"k1"}"#;
    const REVOKED: &[u8] = br#"{"valid":false,"reason":"revoked"}"#;

    #[test]
    fn only_valid_keys_create_entries() {
        let host = MockHost::default();
        store(&host, "unknown", br#"{"valid":false}"#, false, 10, 1000);
        assert_eq!(host.shared.borrow().keys(), 0);
        store(&host, "h", VALID, true, 10, 1000);
        let (check, fetched) = read(&host, "h", 500, 1000).unwrap();
        assert!(matches!(check, KeyCheck::Valid(_)) && fetched == 10);
        // Revoked later: the entry is overwritten with the refusal.
        store(&host, "h", REVOKED, false, 600, 1000);
        let (check, fetched) = read(&host, "h", 700, 1000).unwrap();
        assert_eq!((check, fetched), (KeyCheck::Invalid("revoked"), 600));
        // Too old to use, or from "the future" (the clock stepped back).
        assert!(read(&host, "h", 1600, 1000).is_none());
        assert!(read(&host, "h", 599, 1000).is_none());
        // No cache, nothing shared.
        store(&host, "off", VALID, true, 10, 0);
        assert!(host.shared_value(&entry_key("off")).is_none());
    }

    #[test]
    fn one_worker_claims_a_refresh() {
        let a = MockHost::default();
        let b = MockHost::default().sharing(&a);
        store(&a, "h", VALID, true, 100, 1000);
        assert_eq!(claim_refresh(&a, "h", 100, 900, 2000), Refresh::Claimed);
        assert_eq!(claim_refresh(&b, "h", 100, 910, 2000), Refresh::Skip);
        // The claim does not change the verdict or its age.
        assert_eq!(read(&b, "h", 950, 1000).unwrap().1, 100);
        // The refresh landed: a worker still holding the old one gets the new.
        store(&a, "h", REVOKED, false, 950, 1000);
        assert_eq!(
            claim_refresh(&b, "h", 100, 960, 2000),
            Refresh::Newer(KeyCheck::Invalid("revoked"), 950)
        );
        // A lost refresh can be taken over once stale.
        assert_eq!(claim_refresh(&a, "h", 950, 1700, 2000), Refresh::Claimed);
        assert_eq!(claim_refresh(&b, "h", 950, 3000, 2000), Refresh::Skip);
        assert_eq!(claim_refresh(&b, "h", 950, 3700, 2000), Refresh::Claimed);
        // Nothing to refresh for a key with no entry.
        assert_eq!(claim_refresh(&a, "none", 0, 10, 2000), Refresh::Skip);
    }
}
