//! The response cache's store: answers the filter kept, by the key it
//! derived (tenant scope included), in memory, bounded in bytes, each until
//! its TTL passes. A full cache drops the least recently used answers.
//! Entries are opaque here: the filter decides what a key covers and what
//! an answer is; this only keeps bytes and hands them back.
//!
//! Memory, not the database: an entry is worth less than a provider call
//! only while reading it is fast, and losing them all (a restart) costs
//! each key one provider call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::clock::Clock;

/// Default bound of the cache's bytes.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

struct Entry {
    /// The `CachedAnswer` as JSON, answered as is.
    answer: Bytes,
    expires_at: i64,
    /// Its place in `by_use`.
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Entries by last use, oldest first.
    by_use: BTreeMap<u64, String>,
    next_use: u64,
    bytes: u64,
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.by_use.remove(&e.used);
            self.bytes -= cost(key, &e.answer);
        }
    }

    fn touch(&mut self, key: &str) -> Option<&Entry> {
        let use_no = self.next_use;
        let e = self.entries.get_mut(key)?;
        self.by_use.remove(&e.used);
        e.used = use_no;
        self.by_use.insert(use_no, key.to_string());
        self.next_use += 1;
        self.entries.get(key)
    }
}

/// What an entry counts against the bound: its bytes and key.
fn cost(key: &str, answer: &Bytes) -> u64 {
    (key.len() + answer.len()) as u64
}

pub struct AnswerCache {
    max_bytes: u64,
    clock: Arc<Clock>,
    inner: Mutex<Inner>,
}

impl AnswerCache {
    pub fn new(max_bytes: u64, clock: Arc<Clock>) -> AnswerCache {
        AnswerCache {
            max_bytes,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The answer under `key`, if it is there and fresh.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let now = self.clock.now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.entries.get(key) {
            Some(e) if e.expires_at > now => {}
            Some(_) => {
                inner.remove(key);
                return None;
            }
            None => return None,
        }
        inner.touch(key).map(|e| e.answer.clone())
    }

    /// Keeps `answer` under `key` for `ttl_s` seconds; false when it alone
    /// is larger than the cache.
    pub fn put(&self, key: String, answer: Bytes, ttl_s: u64) -> bool {
        let size = cost(&key, &answer);
        if size > self.max_bytes {
            return false;
        }
        let expires_at = self
            .clock
            .now()
            .saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.remove(&key);
        while inner.bytes + size > self.max_bytes {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
        let used = inner.next_use;
        inner.next_use += 1;
        inner.by_use.insert(used, key.clone());
        inner.bytes += size;
        inner.entries.insert(
            key,
            Entry {
                answer,
                expires_at,
                used,
            },
        );
        true
    }

    /// Entries and their bytes, for the logs and tests.
    pub fn size(&self) -> (usize, u64) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(max: u64) -> (AnswerCache, Arc<Clock>) {
        let clock = Arc::new(Clock::shifted());
        (AnswerCache::new(max, Arc::clone(&clock)), clock)
    }

    #[test]
    fn kept_until_the_ttl_passes() {
        let (c, clock) = cache(1000);
        assert!(c.put("k".into(), Bytes::from_static(b"a"), 10));
        assert_eq!(c.get("k").as_deref(), Some(&b"a"[..]));
        clock.advance(10).unwrap();
        assert_eq!(c.get("k"), None);
        assert_eq!(c.size(), (0, 0));
    }

    #[test]
    fn a_full_cache_drops_the_least_recently_used() {
        let (c, _) = cache(30);
        for k in ["a", "b", "c"] {
            assert!(c.put(k.into(), Bytes::from(vec![0u8; 9]), 60));
        }
        assert!(c.get("a").is_some());
        assert!(c.put("d".into(), Bytes::from(vec![0u8; 9]), 60));
        assert!(c.get("b").is_none(), "least recently used");
        assert!(c.get("a").is_some() && c.get("c").is_some() && c.get("d").is_some());
        assert_eq!(c.size(), (3, 30));
        // Replacing an entry does not count it twice; too large is refused.
        assert!(c.put("a".into(), Bytes::from(vec![1u8; 9]), 60));
        assert_eq!(c.size(), (3, 30));
        assert!(!c.put("e".into(), Bytes::from(vec![0u8; 31]), 60));
    }
}
