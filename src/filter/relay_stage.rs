//! The relay stage: Tollgate first in the `tollgate_relay` internal
//! listener (root_id "relay"), where a model's direct cluster retries a
//! request whose first attempt failed; the listener's route tries the
//! chain's other targets, each attempt through the attempt stage. The
//! gateway listener's route retries once, into the relay; this stage sets
//! the relay route's retry headers from the request's chain: the attempts
//! left after the first, and the model's attempt timeout.

use super::attempt_stage::handoff;
use super::context::{Action, Context, HttpContext};
use super::env::Host;
use super::route_headers;
use super::shared::Shared;
use crate::core::api::ClientFormat;
use crate::core::decision::Retries;
use crate::core::error::GatewayError;
use crate::core::routing;
use std::sync::Arc;

pub struct RelayStage<H: Host> {
    host: H,
    /// The request stage's configuration in this VM, when it has one.
    shared: Option<Arc<Shared>>,
}

impl<H: Host> RelayStage<H> {
    pub fn new(shared: Option<Arc<Shared>>, host: H) -> RelayStage<H> {
        RelayStage { host, shared }
    }

    #[cfg(test)]
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Sets the relay route's attempt cap and timeout; the format of the
    /// client's errors, when the hand-over tells it.
    fn limit_attempts(&self) -> Result<(), (GatewayError, ClientFormat)> {
        let Some(handoff) = handoff(&self.host) else {
            return Err((
                GatewayError::Internal(
                    "a request reached the relay listener without the tollgate request stage's hand-over",
                ),
                ClientFormat::OpenAi,
            ));
        };
        let format = handoff.api.inbound().format();
        let entry = self
            .shared
            .as_ref()
            .and_then(|s| s.config.models.get(handoff.entry))
            .ok_or((
                GatewayError::Internal(
                    "the relay stage has no configuration for the request: give it the request stage's vm_config (same vm_id)",
                ),
                format,
            ))?;
        let retries = Retries {
            // The first attempt was the direct cluster's.
            max_retries: routing::chain_attempts(entry).saturating_sub(2),
            per_try_timeout_ms: entry.attempt_timeout_ms,
            relay: false,
        };
        route_headers::apply_retries(&self.host, &retries);
        Ok(())
    }
}

impl<H: Host> Context for RelayStage<H> {}

impl<H: Host> HttpContext for RelayStage<H> {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match self.limit_attempts() {
            Ok(()) => Action::Continue,
            Err((error, format)) => {
                log::warn!("tollgate: relay stage: {}", error.message());
                self.host
                    .send_json(error.status(), &error.body(format), error.retry_after_s());
                Action::Pause
            }
        }
    }
}
