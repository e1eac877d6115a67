//! The body phase: parse the complete body once, check the model against
//! the key, resolve the route, run the input guardrails, then carry out the
//! exchange plan (`core::exchange`): rewrite the body, record the route
//! stage's decision, and take the budget from a lease.

use super::served::Fallback;
use super::{Phase, RequestStage};
use crate::core::api;
use crate::core::decision::RouteDecision;
use crate::core::digest;
use crate::core::error::GatewayError;
use crate::core::exchange::{self, Exchange, Plan};
use crate::core::fallback::{DIRECT, HANDOFF};
use crate::core::request::LlmRequest;
use crate::core::residency::{self, Pinned};
use crate::core::routing;
use crate::filter::context::Action;
use crate::filter::env::Host;
use crate::filter::route_headers;
use crate::filter::trace::RequestTrace;
use std::sync::Arc;

impl<H: Host> RequestStage<H> {
    /// Routes the complete body held in Envoy's buffer.
    pub(super) fn route_body(&mut self, body_size: usize) -> Action {
        let body = self.host.request_body(body_size);
        match self.route(&body) {
            Ok(()) if matches!(self.phase, Phase::Reserving | Phase::CacheLookup) => Action::Pause,
            Ok(()) => Action::Continue,
            Err(error) => self.reject(&error),
        }
    }

    /// Parses the complete body, picks the provider and carries out the plan.
    pub(super) fn route(&mut self, body: &[u8]) -> Result<(), GatewayError> {
        let api = self
            .api()
            .ok_or(GatewayError::Internal("request without API"))?;
        if self.shared.config.audit.body_digests {
            self.request_digest = Some(digest::sha256_hex(body));
            self.response.digest = Some(Default::default());
        }
        let mut request = LlmRequest::parse(body, api::azure_deployment(&self.client_path))?;
        if let Some(info) = self.key_info()? {
            if !info.allows(&request.model) {
                return Err(GatewayError::ModelNotAllowed(request.model));
            }
        }
        let shared = Arc::clone(&self.shared);
        let (mut route, mut chain) =
            routing::resolve(&shared.config, api, &request.model, request.stream)?;
        if let Some(c) = chain.as_mut().filter(|_| !self.host.can_relay()) {
            c.direct_cluster = None;
        }
        let pins = shared
            .config
            .residency
            .as_ref()
            .and_then(|r| r.pins(self.key_info().ok().flatten()));
        if let Some(pins) = pins {
            let call = (api, request.model.as_str(), request.stream);
            match residency::apply(&shared.config, &pins, call, &route, chain.as_ref()) {
                Ok(Pinned::AsResolved) => {}
                // Along its allowed targets, on their cluster: the handoff
                // tells the attempt stage which one the body is for.
                Ok(Pinned::Chain(first, allowed)) => {
                    route = first;
                    chain = Some(allowed);
                }
                Ok(Pinned::Alone(target)) => {
                    // Sent to one target of its chain: an attempt stage there lets it go.
                    if !self.host.set_property(DIRECT, b"1") {
                        return Err(GatewayError::Internal(
                            "could not mark the request as prepared",
                        ));
                    }
                    route = target;
                    chain = None;
                }
                Err(refused) => {
                    // Recorded: the ledger and the audit log show the refusal.
                    self.forwarded = Some(Exchange::new(api, &request, &route));
                    return Err(refused);
                }
            }
        }
        // Recorded before the guardrails, so a blocked request is recorded too.
        self.forwarded = Some(Exchange::new(api, &request, &route));
        self.check_input(api, &mut request)?;
        // Keyed on the checked body, before the plan rewrites it.
        self.cache = self.cache_state(&request, &route);
        self.response.apis = Some((api, route.upstream_api));
        let capture = RequestTrace::captures_content(&shared)
            && self.trace.as_ref().is_some_and(|t| t.sampled);
        let plan = match &self.forwarded {
            Some(exchange) => Plan::new(
                &exchange::Context {
                    config: &shared.config,
                    api,
                    key: self.key_info()?,
                    client_path: &self.client_path,
                    account_headers: &self.account_headers,
                    traceparent: self.trace.as_ref().map(RequestTrace::upstream_traceparent),
                    capture_content: capture,
                },
                &mut request,
                &route,
                chain.as_ref(),
                exchange,
            )?,
            None => return Err(GatewayError::Internal("request without a record")),
        };
        if let Some(handoff) = plan.handoff.clone() {
            self.fallback = Some(Fallback {
                handoff,
                relay: plan.decision.retries.is_some_and(|r| r.relay),
                // A stream's option: the rest answer with their usage.
                client_wants_usage: request.stream
                    && api.inbound().wants_stream_usage(&request.body),
                attempts: Vec::new(),
            });
        }
        self.carry_out(plan, body.len())
    }

    /// Routes the held headers (single stage: `content-length` of a
    /// rewritten body too, which Envoy does not fix), or hands the decision
    /// to the route stage in filter state (two stages).
    fn apply_decision(
        &self,
        decision: &RouteDecision,
        rewritten_len: Option<usize>,
    ) -> Result<(), GatewayError> {
        if !self.holds_headers() {
            return if self
                .host
                .set_property("tollgate.route", decision.encode().as_bytes())
            {
                Ok(())
            } else {
                Err(GatewayError::Internal(
                    "could not record the routing decision",
                ))
            };
        }
        if let Some(len) = rewritten_len {
            if !self
                .host
                .set_request_header("content-length", Some(&len.to_string()))
            {
                return Err(GatewayError::Internal("could not set the body length"));
            }
        }
        route_headers::apply(&self.host, decision, &self.shared.secrets)
    }

    /// Does what the plan says, in the order Envoy needs: the body and the
    /// decision before the request moves on, the budget last.
    fn carry_out(&mut self, plan: Plan, body_len: usize) -> Result<(), GatewayError> {
        self.response.translation = plan.translation;
        if let Some(new_body) = &plan.body {
            if !self.host.set_request_body(body_len, new_body) {
                return Err(GatewayError::Internal("could not rewrite the request body"));
            }
        }
        // A request on the direct cluster hands nothing over: its first
        // attempt runs no attempt stage, and the relay rebuilds it.
        let relay = plan.decision.retries.is_some_and(|r| r.relay);
        if let Some(handoff) = plan.handoff.as_ref().filter(|_| !relay) {
            if !self.host.set_property(HANDOFF, handoff.encode().as_bytes()) {
                return Err(GatewayError::Internal(
                    "could not hand the request to the attempt stage",
                ));
            }
        }
        self.apply_decision(&plan.decision, plan.body.as_ref().map(Vec::len))?;
        if let Some(f) = &mut self.forwarded {
            f.estimated_input = plan.estimated_input;
            f.input_messages = plan.input_messages;
            // The clock read as this callback began: routing takes
            // microseconds, and a host call costs more than it is worth.
            f.upstream_start_ns = self.callback_ns;
        }
        self.response.captured = plan.capture_output.then(String::new);
        self.phase = Phase::Forwarded;
        self.look_up_or_lease(plan.lease)
    }
}
