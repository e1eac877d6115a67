//! The relay stage: Tollgate first in the `tollgate_relay` internal
//! listener (root_id "relay"), where a model's direct cluster retries a
//! request whose first attempt failed; the listener's route tries the
//! chain's other targets, each attempt through the attempt stage. The
//! gateway listener hands nothing over, so that a first attempt that
//! answers costs nothing here: this stage rebuilds the hand-over from the
//! request itself (`Handoff::relayed`), holding the headers until the body
//! is in, puts it in filter state for the attempt stages, and sets the
//! relay route's retry headers from the chain: the attempts left after
//! the first, and the model's attempt timeout.

use super::context::{Action, Context, HttpContext};
use super::env::Host;
use super::route_headers;
use super::shared::Shared;
use crate::core::api::{self, Endpoint};
use crate::core::decision::Retries;
use crate::core::error::GatewayError;
use crate::core::fallback::{Handoff, HANDOFF};
use crate::core::request::LlmRequest;
use crate::core::routing;
use std::sync::Arc;

pub struct RelayStage<H: Host> {
    host: H,
    /// The request stage's configuration in this VM, when it has one.
    shared: Option<Arc<Shared>>,
    /// The relay cluster the request is for (`:authority`) and its path.
    authority: String,
    path: String,
}

impl<H: Host> RelayStage<H> {
    pub fn new(shared: Option<Arc<Shared>>, host: H) -> RelayStage<H> {
        RelayStage {
            host,
            shared,
            authority: String::new(),
            path: String::new(),
        }
    }

    #[cfg(test)]
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Hands the request of `size` body bytes over to the attempt stages
    /// and sets the relay route's attempt cap and timeout.
    fn hand_over(&self, size: usize) -> Result<(), GatewayError> {
        let shared = self.shared.as_ref().ok_or(GatewayError::Internal(
            "the relay stage has no configuration: give it the request stage's vm_config (same vm_id)",
        ))?;
        let config = &shared.config;
        let stream = LlmRequest::parse(&self.host.request_body(size), None)?.stream;
        let handoff = Handoff::relayed(config, &self.authority, &self.path, stream).ok_or(
            GatewayError::Internal(
                "a request reached the relay listener that no model's direct cluster sent (its host names no relay_cluster, or its path no API the first target speaks)",
            ),
        )?;
        let entry = config
            .models
            .get(handoff.entry)
            .ok_or(GatewayError::Internal("relayed model out of range"))?;
        if !self.host.set_property(HANDOFF, handoff.encode().as_bytes()) {
            return Err(GatewayError::Internal(
                "could not hand the request to the attempt stage",
            ));
        }
        let retries = Retries {
            // The first attempt was the direct cluster's.
            max_retries: routing::chain_attempts(entry).saturating_sub(2),
            per_try_timeout_ms: entry.attempt_timeout_ms,
            relay: false,
        };
        route_headers::apply_retries(&self.host, &retries);
        Ok(())
    }

    /// Answers `error` in the format of the client's API, as far as the
    /// path tells it.
    fn fail(&self, error: &GatewayError) -> Action {
        log::warn!("tollgate: relay stage: {}", error.message());
        let format = api::client_format(Endpoint::detect("POST", &self.path), false);
        self.host
            .send_json(error.status(), &error.body(format), error.retry_after_s());
        Action::Pause
    }
}

impl<H: Host> Context for RelayStage<H> {}

impl<H: Host> HttpContext for RelayStage<H> {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.authority = self.host.request_header(":authority").unwrap_or_default();
        self.path = self.host.request_header(":path").unwrap_or_default();
        if end_of_stream {
            return self.fail(&GatewayError::Internal(
                "a request without a body reached the relay listener",
            ));
        }
        // Held (allow_on_headers_stop_iteration) until the body is here.
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        match self.hand_over(size) {
            Ok(()) => Action::Continue,
            Err(e) => self.fail(&e),
        }
    }
}
