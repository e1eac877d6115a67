//! Which response cache keys this Envoy knows to be stored, in shared data,
//! so a miss is decided with one shared-data read and no callout: only a
//! request whose key is listed asks the sidecar for the answer.
//!
//! Bounded: a key falls in one of `index_slots` slots
//! (`tollgate.cache.<slot>`), each holding at most `PER_SLOT` entries of an
//! 8-byte fingerprint and the unix second the entry expires. A full slot
//! drops its soonest-expiring entry, and a key that drops out is only a
//! miss. A fingerprint that matches a key the sidecar no longer has (its
//! memory was full, it restarted) costs one lookup that finds nothing.
//!
//! A key is listed once the sidecar has stored its answer (the store's
//! 200), by the worker that sent the store, for every worker of this Envoy.

use super::env::Host;
use super::shared_data::{self, Step};
use crate::core::hex;

/// Entries kept per slot.
pub const PER_SLOT: usize = 8;
/// Fingerprint bytes, then the expiry as a little-endian u32.
const ENTRY: usize = 12;

fn slot_name(key: &[u8; 32], slots: u32) -> String {
    let n = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) % slots.max(1);
    let mut name = String::with_capacity(24);
    name.push_str("tollgate.cache.");
    hex::push(&mut name, &n.to_be_bytes());
    name
}

fn fingerprint(key: &[u8; 32]) -> [u8; 8] {
    [
        key[4], key[5], key[6], key[7], key[8], key[9], key[10], key[11],
    ]
}

/// The slot's entries: (fingerprint, expiry).
fn entries(value: &[u8]) -> impl Iterator<Item = ([u8; 8], u32)> + '_ {
    value.chunks_exact(ENTRY).filter_map(|e| {
        let e = <[u8; ENTRY]>::try_from(e).ok()?;
        let f = [e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]];
        Some((f, u32::from_le_bytes([e[8], e[9], e[10], e[11]])))
    })
}

/// Whether `key` is listed and fresh at `now_s`.
pub fn contains(host: &impl Host, key: &[u8; 32], slots: u32, now_s: u64) -> bool {
    let Some(value) = host.shared_data(&slot_name(key, slots)).0 else {
        return false;
    };
    let f = fingerprint(key);
    let listed = entries(&value).any(|(g, expires)| g == f && u64::from(expires) > now_s);
    listed
}

/// Lists `key` until `expires_s`: expired entries and the key's old entry
/// go; a full slot loses its soonest-expiring entry.
pub fn insert(host: &impl Host, key: &[u8; 32], slots: u32, expires_s: u64, now_s: u64) {
    let f = fingerprint(key);
    let expires = u32::try_from(expires_s).unwrap_or(u32::MAX);
    shared_data::update(host, &slot_name(key, slots), |current| {
        let mut kept: Vec<([u8; 8], u32)> = entries(current.unwrap_or(&[]))
            .filter(|(g, e)| *g != f && u64::from(*e) > now_s)
            .collect();
        kept.push((f, expires));
        kept.sort_by_key(|e| std::cmp::Reverse(e.1));
        kept.truncate(PER_SLOT);
        let mut out = Vec::with_capacity(kept.len() * ENTRY);
        for (g, e) in kept {
            out.extend_from_slice(&g);
            out.extend_from_slice(&e.to_le_bytes());
        }
        Step::Write(out, ())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;

    fn key(first: u8, rest: u8) -> [u8; 32] {
        let mut k = [rest; 32];
        k[0] = first;
        k
    }

    #[test]
    fn listed_until_it_expires() {
        let host = MockHost::default();
        let k = key(1, 7);
        assert!(!contains(&host, &k, 16, 100));
        insert(&host, &k, 16, 200, 100);
        assert!(contains(&host, &k, 16, 199));
        assert!(!contains(&host, &k, 16, 200));
        // Another key in the same slot is not listed by it.
        assert!(!contains(&host, &key(1, 8), 16, 150));
    }

    #[test]
    fn a_slot_is_bounded_and_keeps_the_longest_lived() {
        let host = MockHost::default();
        for i in 0..20u8 {
            insert(&host, &key(3, i), 1, 1000 + u64::from(i), 10);
        }
        let value = host.shared_value(&slot_name(&key(3, 0), 1)).unwrap();
        assert_eq!(value.len(), PER_SLOT * ENTRY);
        assert!(contains(&host, &key(3, 19), 1, 10));
        assert!(!contains(&host, &key(3, 0), 1, 10));
        // Re-listing a key replaces its entry instead of adding one.
        insert(&host, &key(3, 19), 1, 5000, 10);
        let value = host.shared_value(&slot_name(&key(3, 0), 1)).unwrap();
        assert_eq!(value.len(), PER_SLOT * ENTRY);
    }

    #[test]
    fn expired_entries_make_room() {
        let host = MockHost::default();
        for i in 0..PER_SLOT as u8 {
            insert(&host, &key(5, i), 1, 20, 10);
        }
        insert(&host, &key(5, 99), 1, 25, 30);
        let value = host.shared_value(&slot_name(&key(5, 0), 1)).unwrap();
        assert_eq!(value.len(), ENTRY);
    }
}
