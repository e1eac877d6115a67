//! Envoy's shared data as the stages change it: read, decide, write back
//! with compare-and-swap, and start over from a fresh read when another
//! worker wrote in between. Bounded: under heavy contention the caller
//! gets `None` and takes its slow path instead of spinning.
//!
//! A key that does not exist yet is written without a CAS check (Envoy
//! ignores the token then), so two workers creating the same key at once
//! can lose one's write: callers only ever create values whose loss is
//! safe (a lease slot losing a lease holds budget back, never hands it out
//! twice; a key verdict or a refill flag is written again later).
//!
//! Shared data has no delete: every key written stays until Envoy
//! restarts. The callers bound how many keys they create (see
//! `filter::leases` and `filter::key_cache`).

use super::env::{Host, SharedWrite};
#[cfg(any(test, feature = "dynamic-module"))]
use std::collections::HashMap;

/// Shared data where this process keeps it: the native module's (one per
/// Envoy) and the test hosts'. Envoy's rules: each write takes the next
/// token of one counter; a write with a token that is not the value's
/// current one is a mismatch; a key that does not exist yet is written
/// regardless.
#[cfg(any(test, feature = "dynamic-module"))]
#[derive(Default)]
pub struct SharedData {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

#[cfg(any(test, feature = "dynamic-module"))]
impl SharedData {
    pub fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    pub fn write(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let current = self.values.get(key).map(|(_, c)| *c);
        if let (Some(current), Some(cas)) = (current, cas) {
            if current != cas {
                return SharedWrite::CasMismatch;
            }
        }
        self.last_cas = self.last_cas.wrapping_add(1);
        self.values
            .insert(key.to_string(), (value.to_vec(), self.last_cas));
        SharedWrite::Ok
    }

    /// Keys written so far.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.values.len()
    }

    /// The token of the latest write (`None` before any).
    #[cfg(test)]
    pub fn last_token(&self) -> Option<u32> {
        (self.last_cas > 0).then_some(self.last_cas)
    }
}

/// Reads of one update before it gives up.
pub const MAX_TRIES: usize = 8;

/// What an update makes of the value it read.
pub enum Step<T> {
    /// Write this value (if nobody wrote since the read), then answer `T`.
    Write(Vec<u8>, T),
    /// Leave the value as it is and answer `T`.
    Keep(T),
}

/// Applies `f` to the value of `key` (`None` when absent) until its write
/// lands. `None`: it did not land in `MAX_TRIES` reads, or the host refused it.
pub fn update<H: Host, T>(
    host: &H,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> Step<T>,
) -> Option<T> {
    for _ in 0..MAX_TRIES {
        let (value, cas) = host.shared_data(key);
        match f(value.as_deref()) {
            Step::Keep(out) => return Some(out),
            Step::Write(bytes, out) => match host.set_shared_data(key, &bytes, cas) {
                SharedWrite::Ok => return Some(out),
                SharedWrite::CasMismatch => continue,
                SharedWrite::Failed => return None,
            },
        }
    }
    log::debug!("tollgate: shared data {key} stayed contended for {MAX_TRIES} tries");
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_write_needs_the_token_of_the_value_it_read() {
        let mut data = SharedData::default();
        assert_eq!(data.read("k"), (None, None));
        // A new key is written whatever the token.
        assert_eq!(data.write("k", b"a", Some(77)), SharedWrite::Ok);
        let (value, token) = data.read("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        assert_eq!(data.write("k", b"b", token), SharedWrite::Ok);
        // The token read before that write no longer matches.
        assert_eq!(data.write("k", b"c", token), SharedWrite::CasMismatch);
        assert_eq!(data.read("k").0.as_deref(), Some(&b"b"[..]));
        // Without a token the write lands; every write takes a new token.
        assert_eq!(data.write("k", b"d", None), SharedWrite::Ok);
        assert_ne!(data.read("k").1, token);
        assert_eq!((data.keys(), data.last_token()), (1, Some(3)));
    }

    fn add(host: &MockHost, n: u8) -> Option<u8> {
        update(host, "counter", |v| {
            let next = v.and_then(|v| v.first().copied()).unwrap_or(0) + n;
            Step::Write(vec![next], next)
        })
    }

    #[test]
    fn a_write_between_read_and_write_is_not_lost() {
        let a = Rc::new(MockHost::default());
        let b = Rc::new(MockHost::default().sharing(&a));
        assert_eq!(add(&a, 1), Some(1));
        // Worker b adds 10 between a's read and a's write: a reads again.
        let other = Rc::clone(&b);
        *a.before_write.borrow_mut() = Some(Box::new(move || {
            add(&other, 10);
        }));
        assert_eq!(add(&a, 1), Some(12));
        assert_eq!(a.cas_mismatches.get(), 1);
        assert_eq!(b.shared_value("counter"), Some(vec![12]));
    }

    #[test]
    fn gives_up_when_always_contended_and_keeps_without_writing() {
        let host = MockHost::default();
        add(&host, 1);
        let tries = Cell::new(0);
        let out = update(&host, "counter", |_| {
            tries.set(tries.get() + 1);
            // Another worker always writes first.
            host.shared
                .borrow_mut()
                .values
                .get_mut("counter")
                .unwrap()
                .1 += 1000;
            Step::Write(vec![0], ())
        });
        assert_eq!((out, tries.get()), (None, MAX_TRIES));
        let writes = host.shared_writes.get();
        assert_eq!(update(&host, "counter", |_| Step::Keep(7)), Some(7));
        assert_eq!(host.shared_writes.get(), writes);
    }
}
