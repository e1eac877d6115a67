//! Budget lease slots in Envoy's shared data (the slot and its rules are
//! `core::lease`): one slot per (key, upstream model), from which every
//! worker draws shares with compare-and-swap, so a lease is spent once
//! however many workers admit from it; a worker admits from its share
//! (`Drawn`) without touching the slot until the share is spent. A slot
//! that cannot be read (garbage, another format version) counts as empty
//! and is overwritten by the next grant.
//!
//! Refills: when a draw leaves no lease in good health, a refill is queued
//! to the root context (`filter::background`), which sends it on its next
//! tick and merges the grant into the slot. A flag in shared data
//! (`tollgate.refill.<...>`, the time it was raised) keeps it to one refill
//! per slot in flight per Envoy; a flag older than the callout timeout plus
//! a margin is taken over (its refill was lost), and a refused or failed
//! refill leaves the flag raised that long, as a back-off.
//!
//! Growth: shared data has no delete. Slots (and their flags) are created
//! only for a valid key's lease grants, so they are bounded by the (key,
//! upstream model) pairs that were granted a lease at this Envoy; a slot
//! holds at most `lease::MAX_LEASES` leases and `lease::MAX_RELEASES`
//! releases (a few hundred bytes). With a routing pattern (`gpt-4o*`) the
//! upstream model is the client's word, so a key can add one slot per model
//! name it sends; each such request is a billed request through a valid key.

use super::background::{Background, Job};
use super::env::Host;
use super::shared_data::{self, Step};
use super::sidecar;
use super::sync::Lock;
use crate::core::budget::{self, LeaseAnswer, LeaseRequest};
use crate::core::key;
use crate::core::lease::{self, Debit, Lease, Size, Slot};
use std::collections::HashMap;
use tollgate_protocol::LeaseRelease;

/// Longest `<key_id>.<model>` kept readable in a shared-data key; longer
/// ones (and key ids with a dot, which would make the split ambiguous) are
/// hashed.
const MAX_PLAIN_NAME: usize = 200;

/// `<prefix><key_id>.<upstream_model>`, or `<prefix>#<sha256>` of both
/// (never has a dot after the prefix).
fn name(prefix: &str, key_id: &str, upstream_model: &str) -> String {
    if !key_id.contains('.') && key_id.len() + upstream_model.len() < MAX_PLAIN_NAME {
        [prefix, key_id, ".", upstream_model].concat()
    } else {
        let both = [key_id, "\n", upstream_model].concat();
        [prefix, "#", &key::hash(&both)].concat()
    }
}

/// `tollgate.lease.<key_id>.<upstream_model>`: the request's slot.
pub fn slot_key(need: &LeaseRequest) -> String {
    name("tollgate.lease.", &need.key_id, &need.upstream_model)
}

/// `tollgate.refill.<key_id>.<upstream_model>`: the slot's refill flag.
pub fn refill_key(need: &LeaseRequest) -> String {
    name("tollgate.refill.", &need.key_id, &need.upstream_model)
}

/// One request's size, as its lease request states it.
pub fn size(need: &LeaseRequest) -> Size {
    Size {
        input: need.estimated_input_tokens,
        output: need.max_output_tokens,
    }
}

fn slot_of(value: Option<&[u8]>) -> Slot {
    value.and_then(Slot::decode).unwrap_or_default()
}

/// Slots a worker keeps drawn shares for; when that many hold live
/// shares, it draws one request at a time for the others.
const MAX_DRAWN_SLOTS: usize = 1024;

/// The shares this worker drew from the slots (`core::lease`'s module
/// comment), by slot key: most requests are admitted from them with no
/// shared-data read or write, which costs a VM more than the rest of the
/// budget work.
#[derive(Default)]
pub struct Drawn(Lock<HashMap<String, Vec<Lease>>>);

impl Drawn {
    fn debit(&self, key: &str, now_ms: u64, size: Size) -> Option<Debit> {
        let mut drawn = self.0.borrow_mut();
        let shares = drawn.get_mut(key)?;
        shares.retain(|l| l.live(now_ms) && !l.spent());
        shares
            .iter_mut()
            .find(|l| l.covers(size))
            .map(|l| l.take(size))
    }

    /// Room to keep a share for `key` (expired shares are dropped first).
    fn has_room(&self, key: &str, now_ms: u64) -> bool {
        let mut drawn = self.0.borrow_mut();
        if drawn.len() < MAX_DRAWN_SLOTS || drawn.contains_key(key) {
            return true;
        }
        drawn.retain(|_, shares| {
            shares.retain(|l| l.live(now_ms));
            !shares.is_empty()
        });
        drawn.len() < MAX_DRAWN_SLOTS
    }

    fn keep(&self, key: String, share: Lease) {
        let mut drawn = self.0.borrow_mut();
        let shares = drawn.entry(key).or_default();
        shares.push(share);
        shares.retain(|l| !l.spent());
        if shares.len() > lease::MAX_LEASES {
            shares.remove(0);
        }
    }
}

/// Debits the request from this worker's share of a lease, drawing a new
/// share from the slot when none covers it. `None`: no lease covers it (or
/// the slot stayed contended: the caller asks for a lease instead). With
/// the debit: whether the slot wants a refill.
pub fn debit(
    host: &impl Host,
    drawn: &Drawn,
    need: &LeaseRequest,
    now_ms: u64,
) -> Option<(Debit, bool)> {
    let size = size(need);
    let key = slot_key(need);
    if let Some(debit) = drawn.debit(&key, now_ms, size) {
        return Some((debit, false));
    }
    let many = drawn.has_room(&key, now_ms);
    let (mut share, refill) = shared_data::update(host, &key, |value| {
        let mut slot = slot_of(value);
        let live = slot.leases.len();
        match slot.draw(now_ms, size, many) {
            Some(share) => {
                slot.prune(now_ms);
                let refill = slot.wants_refill(now_ms, size);
                // A lease of no hard budget gives shares of nothing: no
                // write, so the workers do not contend for a slot that does
                // not change.
                if share.budgets.is_empty() && slot.leases.len() == live {
                    Step::Keep(Some((share, refill)))
                } else {
                    Step::Write(slot.encode(), Some((share, refill)))
                }
            }
            None => Step::Keep(None),
        }
    })
    .flatten()?;
    let debit = share.take(size);
    if many {
        drawn.keep(key, share);
    }
    Some((debit, refill))
}

/// Takes the unused rest of the slot's expired and replaced leases, for a
/// lease request to hand back.
pub fn take_releases(host: &impl Host, need: &LeaseRequest, now_ms: u64) -> Vec<LeaseRelease> {
    shared_data::update(host, &slot_key(need), |value| {
        let decoded = value.and_then(Slot::decode);
        let garbage = value.is_some() && decoded.is_none();
        let mut slot = decoded.unwrap_or_default();
        let releases = slot.take_releases(now_ms);
        if releases.is_empty() && !garbage {
            Step::Keep(releases)
        } else {
            Step::Write(slot.encode(), releases)
        }
    })
    .unwrap_or_default()
}

/// Merges a granted lease (what is left of it) into the slot. Answers
/// whether the slot then wants a refill for requests of the need's size;
/// `None` when it could not be stored (its rest is held at the sidecar
/// until the lease's hold expires).
pub fn store(host: &impl Host, need: &LeaseRequest, lease: Lease, now_ms: u64) -> Option<bool> {
    if !lease.storable() {
        log::warn!(
            "tollgate: lease {} is beyond what a slot holds; used for one request only",
            budget::capped(&lease.lease_id, 64)
        );
        return None;
    }
    let size = size(need);
    shared_data::update(host, &slot_key(need), |value| {
        let mut slot = slot_of(value);
        slot.merge(lease.clone(), now_ms);
        let refill = slot.wants_refill(now_ms, size);
        Step::Write(slot.encode(), refill)
    })
}

/// Raises the slot's refill flag unless a refill is already under way
/// (raised less than `stale_ms` ago); true when this worker raised it.
fn claim_refill(host: &impl Host, flag: &str, now_ms: u64, stale_ms: u64) -> bool {
    shared_data::update(host, flag, |value| {
        let raised = value.and_then(lease::decode_stamp);
        if raised.is_some_and(|t| t <= now_ms && now_ms < t.saturating_add(stale_ms)) {
            Step::Keep(false)
        } else {
            Step::Write(lease::encode_stamp(now_ms.max(1)).to_vec(), true)
        }
    })
    .unwrap_or(false)
}

/// Queues a refill of the request's slot for the root context, unless one
/// is under way at this Envoy or the queue is full. True when queued.
pub fn queue_refill(
    host: &impl Host,
    background: &Lock<Background>,
    need: &LeaseRequest,
    now_ms: u64,
) -> bool {
    let (room, stale_ms) = {
        let b = background.borrow();
        (b.has_room(), b.stale_ms())
    };
    if !room || !claim_refill(host, &refill_key(need), now_ms, stale_ms) {
        return false;
    }
    let mut refill = need.clone();
    refill.release = Vec::new();
    background.borrow_mut().push(Job::Refill(refill))
}

/// The sidecar answered a refill: the grant goes into the slot and the
/// flag comes down; a refusal or a failure leaves it raised, so the next
/// refill waits (the requests meanwhile use what the slot holds, then ask
/// for a lease themselves).
pub fn refilled(
    host: &impl Host,
    need: &LeaseRequest,
    status: Option<&str>,
    body: &[u8],
    now_ms: u64,
) {
    let flag = refill_key(need);
    let answer = sidecar::answer(status, body, budget::parse_lease_response);
    let done = match answer {
        Ok(LeaseAnswer::Granted(grant)) => {
            store(host, need, Lease::from_grant(&grant, now_ms), now_ms);
            0
        }
        Ok(LeaseAnswer::Denied(error)) => {
            log::debug!("tollgate: lease refill refused: {}", error.message());
            now_ms.max(1)
        }
        Err(why) => {
            log::warn!("tollgate: lease refill failed: {why}");
            now_ms.max(1)
        }
    };
    host.set_shared_data(&flag, &lease::encode_stamp(done), None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;
    use std::rc::Rc;
    use tollgate_protocol::{LeaseGrant, LeasedBudget};

    fn need(key_id: &str, model: &str) -> LeaseRequest {
        LeaseRequest {
            key_id: key_id.into(),
            team: None,
            user: None,
            model: model.into(),
            upstream_model: model.into(),
            provider: "openai".into(),
            estimated_input_tokens: 100,
            max_output_tokens: 100,
            release: vec![],
        }
    }

    fn grant(id: &str, requests: f64) -> Lease {
        let grant = LeaseGrant {
            allowed: true,
            lease_id: id.into(),
            ttl_ms: 10_000,
            budgets: vec![LeasedBudget {
                budget_id: "b".into(),
                kind: "requests".into(),
                granted: requests,
            }],
            price: None,
            warnings: vec![],
        };
        Lease::from_grant(&grant, 0)
    }

    #[test]
    fn slot_names_are_unambiguous_and_bounded() {
        assert_eq!(
            slot_key(&need("key_1", "gpt-4.1")),
            "tollgate.lease.key_1.gpt-4.1"
        );
        assert_eq!(
            refill_key(&need("key_1", "gpt-4.1")),
            "tollgate.refill.key_1.gpt-4.1"
        );
        // "a.b" + "c" and "a" + "b.c" must not share a slot.
        assert_ne!(slot_key(&need("a.b", "c")), slot_key(&need("a", "b.c")));
        let long = slot_key(&need("k", &"m".repeat(500)));
        assert!(long.starts_with("tollgate.lease.#") && long.len() < 100);
    }

    #[test]
    fn two_workers_share_one_lease_without_double_spending() {
        let a = Rc::new(MockHost::default());
        let b = Rc::new(MockHost::default().sharing(&a));
        let n = need("k", "m");
        assert_eq!(store(&*a, &n, grant("l1", 3.0), 0), Some(false));
        // b debits between a's read and a's write: a reads again and
        // takes the next request's worth, not the same one.
        let (drawn_a, drawn_b) = (Drawn::default(), Rc::new(Drawn::default()));
        let (other, other_drawn, other_need) = (Rc::clone(&b), Rc::clone(&drawn_b), n.clone());
        *a.before_write.borrow_mut() = Some(Box::new(move || {
            debit(&*other, &other_drawn, &other_need, 1).unwrap();
        }));
        // A lease of 3 gives shares of one request (a quarter of 3 is less).
        let (d, refill) = debit(&*a, &drawn_a, &n, 1).unwrap();
        assert_eq!((d.lease_id.as_str(), d.amounts[0].amount), ("l1", 1.0));
        assert!(refill, "1 of 3 left: below a quarter... and 2 requests");
        assert_eq!(a.cas_mismatches.get(), 1);
        // One left for either worker, then none.
        assert!(debit(&*b, &drawn_b, &n, 2).is_some());
        assert!(debit(&*a, &drawn_a, &n, 2).is_none());
        let slot = Slot::decode(&a.shared_value(&slot_key(&n)).unwrap()).unwrap();
        assert_eq!(slot.leases[0].budgets[0].remaining, 0.0);
    }

    #[test]
    fn releases_are_taken_once() {
        let (host, drawn) = (MockHost::default(), Drawn::default());
        let n = need("k", "m");
        store(&host, &n, grant("l1", 10.0), 0);
        debit(&host, &drawn, &n, 1).unwrap();
        assert!(take_releases(&host, &n, 5).is_empty());
        let released = take_releases(&host, &n, 10_000);
        assert_eq!(released.len(), 1);
        // The worker drew 2 of the 10 (a quarter, in whole requests) and
        // spent 1: the slot hands back the 8 it still holds.
        assert_eq!(released[0].unused[0].amount, 8.0);
        assert!(take_releases(&host, &n, 10_001).is_empty());
        // Garbage in the slot reads as empty and is replaced.
        host.set_shared_data(&slot_key(&n), b"garbage", None);
        assert!(debit(&host, &Drawn::default(), &n, 1).is_none());
        assert!(take_releases(&host, &n, 1).is_empty());
        assert_eq!(
            Slot::decode(&host.shared_value(&slot_key(&n)).unwrap()),
            Some(Slot::default())
        );
    }

    #[test]
    fn one_refill_in_flight_per_slot() {
        let a = MockHost::default();
        let b = MockHost::default().sharing(&a);
        let background = Lock::new(Background::new(1000, 10_000, 1));
        let n = need("k", "m");
        assert!(queue_refill(&a, &background, &n, 100));
        assert!(!queue_refill(&b, &background, &n, 200), "in flight");
        assert!(queue_refill(&b, &background, &need("k", "other"), 200));
        // Lost (no answer for longer than the timeout and a margin): retried.
        let stale = background.borrow().stale_ms();
        assert!(queue_refill(&b, &background, &n, 100 + stale));
        // Granted: the flag comes down at once.
        let granted = br#"{"allowed":true,"lease_id":"r","ttl_ms":1000,"budgets":[]}"#;
        refilled(&a, &n, Some("200"), granted, 5000);
        assert!(queue_refill(&a, &background, &n, 5001));
        // Refused: it stays up as a back-off.
        refilled(&a, &n, Some("200"), br#"{"allowed":false}"#, 6000);
        assert!(!queue_refill(&a, &background, &n, 6001));
        assert!(queue_refill(&a, &background, &n, 6000 + stale));
    }
}
