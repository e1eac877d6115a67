//! The attempt stage: Tollgate as an upstream filter (root_id "attempt")
//! on a fallback chain's aggregate cluster, which Envoy runs once per
//! attempt. It tells the attempt's target by the `provider` in the
//! metadata of the endpoint Envoy picked, and sends the request stage's
//! checked body to it: translated for its API unless the request stage
//! already prepared it, with its path and its key. Envoy reuses one header
//! map for every attempt (what one attempt sets, the next sees) but gives
//! each the request stage's body, so every attempt sets its headers anew.
//! It runs on a model's `cluster`, and behind the relay listener, where a
//! model's `direct_cluster` retries a failed first attempt: there the
//! relay stage rebuilt the hand-over. The first attempt on the prepared
//! target goes as it is.
//!
//! A 429 goes to the router as it came: the cluster's outlier detection
//! counts it as an error (`error_matcher`), so a rate-limited key or
//! deployment is ejected as a failing one is.

use super::context::{Action, Context, HttpContext};
use super::env::Host;
use super::route_headers;
use super::shared::Shared;
use crate::core::api::ClientFormat;
use crate::core::decision::RouteDecision;
use crate::core::error::GatewayError;
use crate::core::exchange;
use crate::core::fallback::{self, Handoff};
use crate::core::provider::credential_headers;
use crate::core::request::LlmRequest;
use crate::core::routing::Route;
use std::sync::Arc;

use crate::core::fallback::{ATTEMPTS, DIRECT, HANDOFF};

/// The hand-over in this stream's filter state: the request stage's (the
/// gateway listener), or the relay stage's (the relay listener).
fn handoff(host: &impl Host) -> Option<Handoff> {
    host.property(HANDOFF).and_then(|b| Handoff::decode(&b))
}

pub struct AttemptStage<H: Host> {
    host: H,
    /// The request stage's configuration in this VM, when it has one.
    shared: Option<Arc<Shared>>,
    /// This attempt: the request as handed over and its target's index.
    attempt: Option<(Handoff, usize)>,
    /// Whether the body is sent from this stage (not as the request stage
    /// left it).
    rewrite: bool,
    /// The attempts record as this attempt wrote it.
    record: String,
    provider: String,
}

impl<H: Host> AttemptStage<H> {
    pub fn new(shared: Option<Arc<Shared>>, host: H) -> AttemptStage<H> {
        AttemptStage {
            host,
            shared,
            attempt: None,
            rewrite: false,
            record: String::new(),
            provider: String::new(),
        }
    }

    /// The host this stage runs on (the native module hands it callout
    /// answers and local replies).
    #[cfg(any(test, feature = "dynamic-module"))]
    pub fn host(&self) -> &H {
        &self.host
    }

    fn shared(&self) -> Result<Arc<Shared>, GatewayError> {
        self.shared.clone().ok_or(GatewayError::Internal(
            "the attempt stage has no configuration: give it the request stage's vm_config (same vm_id)",
        ))
    }

    /// Which target of the chain Envoy picked for this attempt, recorded;
    /// the first attempt on a first target the request stage prepared goes
    /// as it is, with its key.
    fn begin(&mut self) -> Result<Action, GatewayError> {
        let shared = self.shared()?;
        let Some(handoff) = handoff(&self.host) else {
            if self.host.property(DIRECT).is_some() {
                return Ok(Action::Continue);
            }
            return Err(GatewayError::Internal(
                "a request reached a fallback cluster without passing the tollgate request stage",
            ));
        };
        let provider = self
            .host
            .endpoint_metadata("provider")
            .ok_or(GatewayError::Internal(
                "the endpoint Envoy picked has no tollgate provider in its metadata",
            ))?;
        let models = &shared.config.models;
        let target = models
            .get(handoff.entry)
            .and_then(|entry| {
                entry
                    .targets
                    .iter()
                    .position(|&i| models.get(i).is_some_and(|m| m.provider == provider))
            })
            .ok_or(GatewayError::Internal(
                "the endpoint Envoy picked is not on a provider of the model's chain",
            ))?;
        let earlier = self.host.property(ATTEMPTS).unwrap_or_default();
        let first = earlier.is_empty();
        self.record = String::from_utf8(earlier).unwrap_or_default();
        fallback::push_attempt(&mut self.record, target, self.host.now_ns());
        self.host.set_property(ATTEMPTS, self.record.as_bytes());
        self.provider = provider;
        // Nothing an earlier attempt changed to undo, and the body is right.
        self.rewrite = !(first && handoff.prepared == Some(target));
        let (fast, api) = (!self.rewrite, handoff.api);
        self.attempt = Some((handoff, target));
        if fast {
            let route = self.route(&shared)?;
            let mut decision = exchange::attempt_headers(api, &route);
            decision.path = None;
            self.set_key(&mut decision);
            route_headers::apply_provider(&self.host, &decision, &shared.secrets)?;
            return Ok(Action::Continue);
        }
        // Held (allow_on_headers_stop_iteration) until the body is here.
        Ok(Action::Pause)
    }

    fn route<'a>(&self, shared: &'a Shared) -> Result<Route<'a>, GatewayError> {
        let Some((h, k)) = &self.attempt else {
            return Err(GatewayError::Internal("no attempt"));
        };
        h.target(&shared.config, *k)
    }

    /// The endpoint's own key variable, for a pool of keys or deployments.
    fn set_key(&self, decision: &mut RouteDecision) {
        if let (Some(auth), Some(var)) = (
            &mut decision.auth,
            self.host.endpoint_metadata("credential"),
        ) {
            auth.var = var;
        }
    }

    /// Sends the complete body of `size` bytes to this attempt's target,
    /// translated for its API when the request stage did not prepare it
    /// for it, with every header an earlier attempt may have changed.
    fn send(&self, size: usize) -> Result<(), GatewayError> {
        let shared = self.shared()?;
        let Some((handoff, k)) = &self.attempt else {
            return Ok(());
        };
        let route = self.route(&shared)?;
        let (body, mut decision) = if handoff.prepared == Some(*k) {
            (None, exchange::attempt_headers(handoff.api, &route))
        } else {
            let mut request = LlmRequest::parse(&self.host.request_body(size), None)?;
            exchange::attempt(handoff.api, &mut request, &route)?
        };
        if let Some(body) = &body {
            if !self.host.set_request_body(size, body) {
                return Err(GatewayError::Internal("could not rewrite the request body"));
            }
        }
        // An earlier attempt may have changed the length.
        let len = body.as_ref().map_or(size, Vec::len).to_string();
        self.host.set_request_header("content-length", Some(&len));
        // No key meant for one provider may reach another.
        for name in credential_headers() {
            self.host.set_request_header(name, None);
        }
        self.set_key(&mut decision);
        decision.path.get_or_insert_with(|| route.path.clone());
        route_headers::apply_provider(&self.host, &decision, &shared.secrets)
    }

    fn fail(&self, error: &GatewayError) -> Action {
        log::warn!("tollgate: attempt stage: {}", error.message());
        let format = self
            .attempt
            .as_ref()
            .map_or(ClientFormat::OpenAi, |(h, _)| h.api.inbound().format());
        self.host
            .send_json(error.status(), &error.body(format), error.retry_after_s());
        Action::Pause
    }
}

impl<H: Host> Context for AttemptStage<H> {}

impl<H: Host> HttpContext for AttemptStage<H> {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.begin() {
            Ok(Action::Pause) if end_of_stream => match self.send(0) {
                Ok(()) => Action::Continue,
                Err(e) => self.fail(&e),
            },
            Ok(action) => action,
            Err(e) => self.fail(&e),
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.rewrite {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        match self.send(size) {
            Ok(()) => Action::Continue,
            Err(e) => self.fail(&e),
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let status = self.host.response_headers().status();
        if let Some(shared) = &self.shared {
            shared
                .stats
                .count_attempt(&self.host, &self.provider, status);
        }
        if self.attempt.is_some() {
            // Attempts follow each other: the record is still this one's.
            fallback::push_status(&mut self.record, status);
            self.host.set_property(ATTEMPTS, self.record.as_bytes());
        }
        Action::Continue
    }
}
