//! The key check: the per-worker cache, then the one the Envoy's workers
//! share (`filter::key_cache`), else a callout to the sidecar's
//! `/v1/authorize`, and the failure mode when the sidecar cannot answer.

use super::{Phase, RequestStage};
use crate::core::api::Endpoint;
use crate::core::auth::{self, KeyCheck, KeyInfo};
use crate::core::config::FailureMode;
use crate::core::error::GatewayError;
use crate::core::models;
use crate::filter::background::Job;
use crate::filter::env::Host;
use crate::filter::key_cache::{self, Refresh};
use crate::filter::sidecar;
use std::sync::Arc;
use std::time::Duration;

impl<H: Host> RequestStage<H> {
    /// The key's verdict without a callout: this worker's cache, else the
    /// shared one (`None`: ask the sidecar). A verdict in the last quarter of
    /// its life is refreshed ahead, once per Envoy, from the root context.
    pub(super) fn cached_key(&self, now: u64) -> Option<Arc<KeyCheck>> {
        let hash = &self.key_hash;
        let cached = self.shared.cache.borrow().get(hash, now);
        if let Some(check) = cached {
            let due = self.shared.cache.borrow_mut().refresh_due(hash, now);
            return match due {
                Some(fetched) => Some(self.refresh_ahead(fetched, now).unwrap_or(check)),
                None => Some(check),
            };
        }
        let ttl = self.shared.config.key_cache_ttl_ms;
        let (check, fetched) = key_cache::read(&self.host, hash, now, ttl)?;
        let check = Arc::new(check);
        self.count("tollgate.key_cache.shared_hits", 1);
        self.shared
            .cache
            .borrow_mut()
            .insert(hash.clone(), Arc::clone(&check), fetched);
        Some(check)
    }

    /// Claims the refresh of the verdict given at `fetched` and queues it;
    /// when another worker's refresh already landed, the newer verdict.
    fn refresh_ahead(&self, fetched: u64, now: u64) -> Option<Arc<KeyCheck>> {
        let background = &self.shared.background;
        if !background.borrow().has_room() {
            return None;
        }
        let stale = background.borrow().stale_ms();
        match key_cache::claim_refresh(&self.host, &self.key_hash, fetched, now, stale) {
            Refresh::Claimed => {
                let job = Job::KeyRefresh(self.key_hash.clone());
                background.borrow_mut().push(job);
                None
            }
            Refresh::Newer(check, fetched) => {
                let check = Arc::new(check);
                self.shared.cache.borrow_mut().insert(
                    self.key_hash.clone(),
                    Arc::clone(&check),
                    fetched,
                );
                Some(check)
            }
            Refresh::Skip => None,
        }
    }

    pub(super) fn authorize_callout(&mut self) -> Result<(), GatewayError> {
        let body = auth::authorize_request(&self.key_hash);
        if self.call_sidecar(tollgate_protocol::AUTHORIZE_PATH, &body) {
            self.phase = Phase::Authorizing;
            Ok(())
        } else {
            self.sidecar_failed()
        }
    }

    /// POSTs JSON to the sidecar; the answer arrives in
    /// `on_http_call_response`. False (logged) when the call cannot start.
    pub(super) fn call_sidecar(&self, path: &str, body: &[u8]) -> bool {
        let sidecar = &self.shared.sidecar;
        // Envoy starts the timer from when its event loop woke up, so the
        // time this callback spent (a large body's scan) is not the
        // sidecar's: without it the call could time out before it leaves.
        let busy_ms = self.host.now_ns().saturating_sub(self.callback_ns) / 1_000_000;
        let timeout = Duration::from_millis(sidecar.config.timeout_ms.saturating_add(busy_ms));
        sidecar.post(&self.host, path, body, timeout).is_some()
    }

    /// Whether to go on without the sidecar (`Ok`, logged) or refuse with 503.
    pub(super) fn unavailable(
        &self,
        mode: FailureMode,
        passes_without: &str,
    ) -> Result<(), GatewayError> {
        self.count("tollgate.sidecar_failures", 1);
        match mode {
            FailureMode::Closed => Err(GatewayError::SidecarUnavailable),
            FailureMode::Open => {
                log::warn!("tollgate: sidecar unavailable, failing open: request passes without {passes_without}");
                Ok(())
            }
        }
    }

    /// Applies the failure mode when the key check cannot be made.
    fn sidecar_failed(&mut self) -> Result<(), GatewayError> {
        self.unavailable(self.shared.config.sidecar.failure_mode, "key checks")?;
        self.key = None;
        Ok(())
    }

    /// The sidecar answered the key check: caches and shares the verdict and
    /// goes on as `key_known`.
    pub(super) fn authorized(
        &mut self,
        status: Option<String>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let answer = sidecar::answer(status.as_deref(), body, auth::parse_authorize_response);
        match answer {
            Ok(check) => {
                let check = Arc::new(check);
                let now = self.callback_ms();
                let valid = matches!(*check, KeyCheck::Valid(_));
                let ttl = self.shared.config.key_cache_ttl_ms;
                key_cache::store(&self.host, &self.key_hash, body, valid, now, ttl);
                self.shared.cache.borrow_mut().insert(
                    self.key_hash.clone(),
                    Arc::clone(&check),
                    now,
                );
                self.key = Some(check);
            }
            Err(why) => {
                log::warn!("tollgate: key check failed: {why}");
                self.sidecar_failed()?;
            }
        }
        self.key_known()
    }

    /// The key is known (or failed open): checks it and answers what needs
    /// no body (the model listing, returned for the caller to send).
    pub(super) fn key_known(&mut self) -> Result<Option<Vec<u8>>, GatewayError> {
        self.phase = Phase::Authorized;
        let info = self.key_info()?;
        if self.endpoint == Some(Endpoint::Models) {
            return Ok(Some(models::list(&self.shared.config, info, self.format)));
        }
        if self.headers_ended {
            self.route(&[])?;
        } else if self.body_ended {
            let body = self.host.request_body(self.host.request_body_size());
            self.route(&body)?;
        }
        Ok(None)
    }

    /// The valid key's details; `None` when failing open.
    pub(super) fn key_info(&self) -> Result<Option<&KeyInfo>, GatewayError> {
        match &self.key {
            Some(check) => check.verdict(self.callback_ms() / 1000).map(Some),
            None => Ok(None),
        }
    }
}
