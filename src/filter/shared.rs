//! What every request-stage context shares: the configuration, the key
//! cache, the budget shares, the background batches. One per worker VM in
//! the wasm build, one per Envoy in the native one (hence the locks).

use super::background::Background;
use super::env::Host;
use super::exporter::Exporter;
use super::leases;
use super::reporter::Reporter;
use super::route_headers::Secrets;
use super::sidecar::SidecarClient;
use super::stats::Stats;
use super::sync::Lock;
use crate::core::auth::AuthCache;
use crate::core::config::Config;
use crate::core::guard::Guardrails;
use crate::core::hex;
use crate::core::key;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Distinct keys remembered per worker before the cache is pruned.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// What every request-stage context of a worker shares.
pub struct Shared {
    pub config: Config,
    pub cache: Lock<AuthCache>,
    pub key_hashes: Lock<key::HashMemo>,
    /// This worker's shares of the budget leases.
    pub drawn: leases::Drawn,
    pub stats: Stats,
    /// Trace export, when `tracing` is configured.
    pub exporter: Option<Lock<Exporter>>,
    /// Compiled guardrails, when `guardrails` is configured.
    pub guardrails: Option<Guardrails>,
    /// Usage reports to the sidecar, when `budgets` is configured.
    pub reporter: Option<Lock<Reporter>>,
    /// Lease refills and key refreshes the root context sends.
    pub background: Lock<Background>,
    /// `tollgate.vm.memory_bytes`: this worker VM's linear memory.
    #[cfg(feature = "wasm")]
    pub memory_gauge: Option<u32>,
    /// Requests this VM has seen; also makes request ids unique within it.
    pub request_counter: AtomicU64,
    /// Random per VM: with the counter, the gateway's request ids.
    pub id_seed: u64,
    pub sidecar: Arc<SidecarClient>,
    /// Provider keys for `env` auth (the single-stage chain sets them).
    pub secrets: Secrets,
}

impl Shared {
    /// A configured request stage's state, before its first request.
    pub fn new(
        host: &impl Host,
        config: Config,
        guardrails: Option<Guardrails>,
        sidecar: Arc<SidecarClient>,
        node_id: Option<String>,
        id_seed: u64,
    ) -> Shared {
        Shared {
            cache: Lock::new(AuthCache::new(config.key_cache_ttl_ms, KEY_CACHE_CAPACITY)),
            key_hashes: Lock::default(),
            drawn: leases::Drawn::default(),
            stats: Stats::default(),
            exporter: config
                .tracing
                .clone()
                .map(|t| Lock::new(Exporter::new(host, t, node_id))),
            reporter: config
                .budgets
                .as_ref()
                .map(|b| Lock::new(Reporter::new(host, b, Arc::clone(&sidecar)))),
            background: Lock::new(Background::for_config(&config)),
            guardrails,
            #[cfg(feature = "wasm")]
            memory_gauge: host.define_gauge("tollgate.vm.memory_bytes"),
            request_counter: AtomicU64::new(0),
            id_seed,
            sidecar,
            secrets: Secrets::default(),
            config,
        }
    }

    /// Counts a new request (the count is also the request id's suffix).
    pub fn count_request(&self) {
        self.request_counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The periodic background work: counters, span and report batches,
    /// lease refills and key refreshes.
    pub fn tick(&self, host: &impl Host) {
        self.stats.flush(host);
        if let Some(exporter) = &self.exporter {
            exporter.borrow_mut().flush(host, host.now_ms());
        }
        if let Some(reporter) = &self.reporter {
            reporter.borrow_mut().tick(host, host.now_ms());
        }
        self.background.borrow_mut().tick(host, &self.sidecar);
    }

    /// This configuration is going away but can still make calls (wasm: its
    /// root context is done): from now on reports and spans leave without
    /// waiting for their flush interval. True once nothing is left to send.
    #[cfg(feature = "wasm")]
    pub fn drain(&self, host: &impl Host) -> bool {
        if let Some(reporter) = &self.reporter {
            reporter.borrow_mut().hurry();
        }
        if let Some(exporter) = &self.exporter {
            exporter.borrow_mut().hurry();
        }
        self.tick(host);
        self.drained()
    }

    /// No report waits or is in flight, and no span waits.
    pub fn drained(&self) -> bool {
        self.reports_pending() == 0 && self.exporter.as_ref().is_none_or(|e| e.borrow().idle())
    }

    /// This configuration is going away: `successor`, the one configured
    /// after it, takes its reports and spans when it sends them to the same
    /// place. True once nothing is left here.
    pub fn hand_over(&self, successor: &Shared) -> bool {
        let (ours, theirs) = (&self.config.sidecar, &successor.config.sidecar);
        if (&ours.cluster, &ours.authority) == (&theirs.cluster, &theirs.authority) {
            if let (Some(from), Some(to)) = (&self.reporter, &successor.reporter) {
                to.borrow_mut().adopt(&mut from.borrow_mut());
            }
        }
        if let (Some(from), Some(to)) = (&self.exporter, &successor.exporter) {
            let same = {
                let (a, b) = (&from.borrow().config, &to.borrow().config);
                (&a.cluster, &a.authority, &a.path) == (&b.cluster, &b.authority, &b.path)
            };
            if same {
                to.borrow_mut().adopt(&mut from.borrow_mut());
            }
        }
        self.drained()
    }

    /// Reports not yet taken by the sidecar.
    pub fn reports_pending(&self) -> usize {
        self.reporter.as_ref().map_or(0, |r| r.borrow().pending())
    }

    /// The answer to a background callout (`token`), to whichever part sent it.
    pub fn answered(&self, host: &impl Host, token: u32, status: Option<String>, body_size: usize) {
        if self.background.borrow().owns(token) {
            let body = host.call_body(body_size);
            let mut background = self.background.borrow_mut();
            background.on_response(host, token, status.as_deref(), &body);
        } else if let Some(reporter) = self.reporter.as_ref().filter(|r| r.borrow().owns(token)) {
            reporter.borrow_mut().on_response(host, status);
        } else if let Some(exporter) = self.exporter.as_ref().filter(|e| e.borrow().owns(token)) {
            exporter.borrow_mut().on_response(host, token, status);
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.request_counter.load(Ordering::Relaxed)
    }

    /// A request id of the gateway's own (never the client's): the ledger's
    /// idempotency key and the trace's seed. Unique per VM by the counter,
    /// across VMs and restarts by the random seed.
    pub fn mint_request_id(&self) -> String {
        let mut id = String::with_capacity(32);
        hex::push(&mut id, &self.id_seed.to_be_bytes());
        hex::push(&mut id, &self.requests().to_be_bytes());
        id
    }
}
