//! Callouts the root context makes for the request stages, off the request
//! path: lease refills before a slot runs dry (`filter::leases`) and key
//! verdict refreshes before they expire (`filter::key_cache`), and answers
//! for the response cache: each tick sends what is queued in one batch
//! (a callout costs Envoy about as much as the rest of a miss), and the
//! keys the sidecar stored are listed in `filter::cache_index`. A stage
//! queues a job after raising its flag in shared data (so one per slot or
//! key is under way per Envoy); the root's tick sends the queue and its
//! `on_http_call_response` hands each answer back here by its token.
//! A job that cannot be sent is dropped: its flag goes stale and a later
//! request queues it again.

use super::cache_index;
use super::env::Host;
use super::key_cache;
use super::leases;
use super::sidecar::{self, SidecarClient};
use crate::core::auth::{self, KeyCheck};
use crate::core::budget::LeaseRequest;
use crate::core::config::Config;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tollgate_protocol::CachePutAnswer;

/// Jobs waiting for the next tick; beyond it no more are queued.
const MAX_QUEUED: usize = 256;
/// Jobs whose answer is awaited; the rest wait for a later tick.
const MAX_IN_FLIGHT: usize = 32;
/// Bytes of cache stores waiting; beyond it an answer is not stored.
const MAX_QUEUED_STORE_BYTES: usize = 8 * 1024 * 1024;
/// A batch of stores stops growing past this many bytes.
const MAX_STORE_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Added to the callout timeout before a flag counts as lost: the job may
/// wait up to a tick in the queue before it leaves.
const STALE_MARGIN_MS: u64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// A lease for this request size's slot, merged into the slot.
    Refill(LeaseRequest),
    /// The key check of this key hash, shared when it lands.
    KeyRefresh(String),
}

/// A stored key and when its answer expires, listed once the sidecar has it.
type Listing = ([u8; 32], u64);

/// An answer for the response cache: its `CachePut`, encoded, and the key
/// to list in the index until `expires_s` once the sidecar has stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheStore {
    pub key: [u8; 32],
    pub expires_s: u64,
    pub put: Vec<u8>,
}

pub struct Background {
    timeout_ms: u64,
    key_ttl_ms: u64,
    queue: VecDeque<Job>,
    in_flight: HashMap<u32, Job>,
    stores: VecDeque<CacheStore>,
    /// Bytes of the queued `stores`.
    store_bytes: usize,
    /// Each batch of stores sent: the keys and expiries it carries.
    stores_in_flight: HashMap<u32, Vec<Listing>>,
    /// `cache.index_slots`.
    index_slots: u32,
}

impl Background {
    /// What the configuration asks of it (timeouts, the cache's index).
    pub fn for_config(config: &Config) -> Background {
        let index_slots = config.cache.as_ref().map_or(1, |c| c.index_slots);
        Background::new(
            config.sidecar.timeout_ms,
            config.key_cache_ttl_ms,
            index_slots,
        )
    }

    pub fn new(timeout_ms: u64, key_ttl_ms: u64, index_slots: u32) -> Background {
        Background {
            timeout_ms,
            key_ttl_ms,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            stores: VecDeque::new(),
            store_bytes: 0,
            stores_in_flight: HashMap::new(),
            index_slots,
        }
    }

    /// How long a raised flag holds before it counts as lost.
    pub fn stale_ms(&self) -> u64 {
        self.timeout_ms.saturating_add(STALE_MARGIN_MS)
    }

    pub fn has_room(&self) -> bool {
        self.queue.len() < MAX_QUEUED
    }

    /// Queues a job; false when the queue is full.
    pub fn push(&mut self, job: Job) -> bool {
        if !self.has_room() {
            return false;
        }
        self.queue.push_back(job);
        true
    }

    /// Queues an answer for the cache; false when the bytes waiting are at
    /// their bound (the answer is then not stored).
    pub fn push_store(&mut self, store: CacheStore) -> bool {
        let bytes = self.store_bytes.saturating_add(store.put.len());
        if bytes > MAX_QUEUED_STORE_BYTES {
            return false;
        }
        self.store_bytes = bytes;
        self.stores.push_back(store);
        true
    }

    /// Jobs waiting for the next tick.
    #[cfg(test)]
    pub fn queued(&self) -> impl Iterator<Item = &Job> {
        self.queue.iter()
    }

    /// Cache stores waiting for the next tick.
    #[cfg(test)]
    pub fn queued_stores(&self) -> impl Iterator<Item = &CacheStore> {
        self.stores.iter()
    }

    /// One `CachePutBatch` of the queued stores (up to
    /// `MAX_STORE_BATCH_BYTES`, at least one), written around the encoded
    /// puts without re-encoding them.
    fn store_batch(&mut self) -> Option<(Vec<u8>, Vec<Listing>)> {
        let mut body = b"{\"entries\":[".to_vec();
        let mut listings = Vec::new();
        while let Some(store) = self.stores.front() {
            if !listings.is_empty() && body.len() + store.put.len() > MAX_STORE_BATCH_BYTES {
                break;
            }
            let store = self.stores.pop_front()?;
            self.store_bytes = self.store_bytes.saturating_sub(store.put.len());
            if !listings.is_empty() {
                body.push(b',');
            }
            body.extend_from_slice(&store.put);
            listings.push((store.key, store.expires_s));
        }
        body.extend_from_slice(b"]}");
        (!listings.is_empty()).then_some((body, listings))
    }

    /// Sends what is queued (within `MAX_IN_FLIGHT`).
    pub fn tick(&mut self, host: &impl Host, sidecar: &SidecarClient) {
        let now = host.now_ms();
        let timeout = Duration::from_millis(self.timeout_ms);
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let (path, body) = match &job {
                Job::Refill(need) => {
                    let mut request = need.clone();
                    request.release = leases::take_releases(host, need, now);
                    let Ok(body) = serde_json::to_vec(&request) else {
                        continue;
                    };
                    (tollgate_protocol::LEASE_PATH, body)
                }
                Job::KeyRefresh(key_hash) => (
                    tollgate_protocol::AUTHORIZE_PATH,
                    auth::authorize_request(key_hash),
                ),
            };
            if let Some(token) = sidecar.post(host, path, &body, timeout) {
                self.in_flight.insert(token, job);
            }
        }
        while self.in_flight.len() + self.stores_in_flight.len() < MAX_IN_FLIGHT {
            let Some((body, listings)) = self.store_batch() else {
                return;
            };
            // Not sent: those answers are not stored (a later miss stores them).
            if let Some(token) =
                sidecar.post(host, tollgate_protocol::CACHE_PUT_PATH, &body, timeout)
            {
                self.stores_in_flight.insert(token, listings);
            }
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.contains_key(&token) || self.stores_in_flight.contains_key(&token)
    }

    /// The answer to the job sent with `token`.
    pub fn on_response(&mut self, host: &impl Host, token: u32, status: Option<&str>, body: &[u8]) {
        let now = host.now_ms();
        if let Some(listings) = self.stores_in_flight.remove(&token) {
            let answer = sidecar::answer(status, body, |b| {
                serde_json::from_slice::<CachePutAnswer>(b).map_err(|e| e.to_string())
            });
            match answer {
                Ok(answer) => {
                    let stored = listings.iter().zip(answer.stored).filter(|(_, s)| *s);
                    for ((key, expires_s), _) in stored {
                        cache_index::insert(host, key, self.index_slots, *expires_s, now / 1000);
                    }
                }
                Err(why) => log::debug!("tollgate: cached answers not stored: {why}"),
            }
            return;
        }
        match self.in_flight.remove(&token) {
            Some(Job::Refill(need)) => leases::refilled(host, &need, status, body, now),
            Some(Job::KeyRefresh(key_hash)) => {
                let check = sidecar::answer(status, body, auth::parse_authorize_response);
                // A failed refresh leaves the claim: the verdict expires on
                // time and the next request checks the key itself.
                match check {
                    Ok(check) => {
                        let valid = matches!(check, KeyCheck::Valid(_));
                        key_cache::store(host, &key_hash, body, valid, now, self.key_ttl_ms);
                    }
                    Err(why) => log::warn!("tollgate: key refresh failed: {why}"),
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::SidecarConfig;
    use crate::core::lease::Slot;
    use crate::filter::mock::MockHost;

    const TOKEN_ENV: &str = "TOLLGATE_BACKGROUND_TEST_TOKEN";

    fn sidecar() -> SidecarClient {
        std::env::set_var(TOKEN_ENV, "t");
        SidecarClient::from_env(SidecarConfig {
            token_env: TOKEN_ENV.into(),
            ..SidecarConfig::default()
        })
        .unwrap()
    }

    fn need() -> LeaseRequest {
        LeaseRequest {
            key_id: "k".into(),
            team: None,
            user: None,
            model: "m".into(),
            upstream_model: "m".into(),
            provider: "p".into(),
            estimated_input_tokens: 1,
            max_output_tokens: 1,
            release: vec![],
        }
    }

    #[test]
    fn sends_on_tick_and_routes_answers_by_token() {
        let root = MockHost::default();
        let mut b = Background::new(1000, 10_000, 16);
        assert!(b.push(Job::Refill(need())));
        assert!(b.push(Job::KeyRefresh("h".into())));
        b.tick(&root, &sidecar());
        assert_eq!(b.queued().count(), 0);
        let callouts = root.callouts.borrow().clone();
        assert_eq!(callouts[0].path, "/v1/lease");
        let sent: LeaseRequest = serde_json::from_slice(&callouts[0].body).unwrap();
        assert_eq!(sent, need());
        assert_eq!(callouts[1].path, "/v1/authorize");
        assert!(b.owns(1) && b.owns(2) && !b.owns(3));
        // The refill's grant lands in the slot.
        let grant = br#"{"allowed":true,"lease_id":"r1","ttl_ms":1000,"budgets":[{"budget_id":"b","kind":"requests","granted":5}]}"#;
        b.on_response(&root, 1, Some("200"), grant);
        let slot = root.shared_value(&leases::slot_key(&need())).unwrap();
        assert_eq!(Slot::decode(&slot).unwrap().leases[0].lease_id, "r1");
        assert!(!b.owns(1));
        // The key refresh: a valid verdict is shared.
        b.on_response(&root, 2, Some("200"), br#"{"valid":true,"key_id":"k"}"#);
        assert!(root.shared_value(&key_cache::entry_key("h")).is_some());
    }

    fn store(first: u8, put: &str) -> CacheStore {
        let mut key = [0u8; 32];
        key[0] = first;
        CacheStore {
            key,
            expires_s: 100,
            put: put.as_bytes().to_vec(),
        }
    }

    #[test]
    fn cache_stores_leave_in_one_batch_and_only_stored_keys_are_listed() {
        let root = MockHost::default();
        let mut b = Background::new(1000, 10_000, 16);
        assert!(b.push_store(store(1, r#"{"key":"a"}"#)));
        assert!(b.push_store(store(2, r#"{"key":"b"}"#)));
        b.tick(&root, &sidecar());
        let calls = root.callouts.borrow().clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, tollgate_protocol::CACHE_PUT_PATH);
        assert_eq!(calls[0].body, br#"{"entries":[{"key":"a"},{"key":"b"}]}"#);
        assert_eq!((b.queued_stores().count(), b.store_bytes), (0, 0));
        b.on_response(&root, 1, Some("200"), br#"{"stored":[true,false]}"#);
        assert!(cache_index::contains(&root, &store(1, "").key, 16, 10));
        assert!(!cache_index::contains(&root, &store(2, "").key, 16, 10));
        // Nothing queued, nothing sent.
        b.tick(&root, &sidecar());
        assert_eq!(root.callouts.borrow().len(), 1);
    }

    #[test]
    fn queued_store_bytes_are_bounded() {
        let mut b = Background::new(1000, 10_000, 16);
        let big = "x".repeat(MAX_QUEUED_STORE_BYTES / 2);
        assert!(b.push_store(store(1, &big)) && b.push_store(store(2, &big)));
        assert!(!b.push_store(store(3, "x")));
    }

    #[test]
    fn bounded() {
        let mut b = Background::new(1000, 10_000, 16);
        for _ in 0..MAX_QUEUED {
            assert!(b.push(Job::KeyRefresh("h".into())));
        }
        assert!(!b.has_room() && !b.push(Job::KeyRefresh("h".into())));
        let root = MockHost::default();
        b.tick(&root, &sidecar());
        assert_eq!(root.callouts.borrow().len(), MAX_IN_FLIGHT);
        assert_eq!(b.queued().count(), MAX_QUEUED - MAX_IN_FLIGHT);
    }
}
