//! Request stage: key check (cached sidecar callout), body parsing, model
//! routing and the routing decision; on the way back, token usage.
//!
//! On the single-stage chain it holds the headers until the body is routed
//! and sets the routing headers itself; on the two-stage chain it pauses in
//! the header phase only while a key callout is in flight (Envoy then holds
//! the body) and leaves the headers to the route stage. Either way it
//! buffers the body until it is complete. Each job has its module; this one
//! holds the state and the callbacks.

mod admit;
mod cache;
mod forward;
mod guard;
mod key_check;
mod lease;
mod record;
mod served;
#[cfg(test)]
mod tests;

use super::context::{Action, Context, HttpContext};
use super::env::Host;
use super::response::ResponseState;
use super::shared::Shared;
use super::trace::RequestTrace;
use crate::core::api::{Api, ClientFormat, Endpoint};
use crate::core::auth::KeyCheck;
use crate::core::budget::{self, LeaseRequest};
use crate::core::cache::ClientWish;
use crate::core::config::Chain;
use crate::core::error::GatewayError;
use crate::core::exchange::Exchange;
use crate::core::guard::GuardEvent;
use std::sync::Arc;

/// A client's `x-request-id` is kept for traces up to this many bytes.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// Where a request stands on the way up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Headers seen, key not yet known.
    Headers,
    /// Waiting for the sidecar; the header phase returned Pause.
    Authorizing,
    /// Key accepted (or failed open); body flowing.
    Authorized,
    /// Body over the limit: discarding it, then 413.
    Draining,
    /// Routed; waiting for the sidecar's budget lease.
    Reserving,
    /// Routed; waiting for the response cache's answer.
    CacheLookup,
    /// Routed upstream.
    Forwarded,
    /// Answered locally.
    Done,
}

pub struct RequestStage<H: Host> {
    host: H,
    shared: Arc<Shared>,
    phase: Phase,
    endpoint: Option<Endpoint>,
    format: ClientFormat,
    key_hash: String,
    key: Option<Arc<KeyCheck>>,
    /// `:path` as the client sent it (header maps are gone after the header phase).
    client_path: String,
    /// Bytes of an oversized body discarded so far.
    drained: usize,
    /// The request body ended with the headers (no body callbacks follow).
    headers_ended: bool,
    /// The whole body has arrived while the key check was pending (the
    /// single-stage chain keeps delivering it): routed once the key is known.
    body_ended: bool,
    started_ns: u64,
    /// When the current callback began: callout timers count from the
    /// event loop's wake-up, so time computing here is added to timeouts.
    callback_ns: u64,
    /// The gateway's own id (the ledger's idempotency key).
    request_id: String,
    /// The client's `x-request-id`, only a correlation attribute on traces.
    client_request_id: Option<String>,
    /// Provider-account headers the client sent (`ACCOUNT_HEADERS`).
    account_headers: Vec<&'static str>,
    /// Guardrail events of both directions, counted by kind.
    guard_events: Vec<GuardEvent>,
    /// What was decided about a request the gateway then answered itself
    /// (a guardrail refused it, or the cache had the answer): recorded
    /// (with its events), never billed.
    answered: Option<Exchange>,
    trace: Option<RequestTrace>,
    forwarded: Option<Exchange>,
    /// What the request needs from the lease callout it waits for.
    lease_need: Option<LeaseRequest>,
    response: ResponseState,
    /// Set for a model with fallbacks.
    fallback: Option<served::Fallback>,
    /// Set for a request a cache rule covers.
    cache: Option<cache::CacheState>,
    /// The client's `cache-control`, read when a cache is configured.
    cache_wish: ClientWish,
    /// SHA-256 hex of the client's body, for the audit log (`audit.body_digests`).
    request_digest: Option<String>,
    /// A refusal before routing, reported for the audit log only.
    refused: Option<record::Refusal>,
}

impl<H: Host> RequestStage<H> {
    pub fn new(shared: Arc<Shared>, host: H) -> RequestStage<H> {
        RequestStage {
            host,
            shared,
            phase: Phase::Headers,
            endpoint: None,
            format: ClientFormat::OpenAi,
            key_hash: String::new(),
            key: None,
            client_path: String::new(),
            drained: 0,
            headers_ended: false,
            body_ended: false,
            started_ns: 0,
            callback_ns: 0,
            request_id: String::new(),
            client_request_id: None,
            account_headers: Vec::new(),
            guard_events: Vec::new(),
            answered: None,
            cache: None,
            cache_wish: ClientWish::Use,
            request_digest: None,
            refused: None,
            trace: None,
            forwarded: None,
            lease_need: None,
            response: ResponseState::default(),
            fallback: None,
        }
    }

    /// The host this stage runs on (the native module hands it callout
    /// answers).
    #[cfg(feature = "dynamic-module")]
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Whether this filter holds the headers until the body is routed
    /// (the single-stage chain) instead of the buffer filter doing it.
    fn holds_headers(&self) -> bool {
        self.shared.config.chain == Chain::SingleStage && !super::route_stage_present()
    }

    /// What the header and body callbacks answer while the request is not
    /// routed yet: the single-stage chain holds it here, the two-stage
    /// chain lets the buffer filter hold it.
    fn wait(&self) -> Action {
        if self.holds_headers() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// The header callback's answer once the key is known.
    fn after_headers(&self) -> Action {
        match self.phase {
            Phase::Forwarded => Action::Continue,
            Phase::Reserving | Phase::CacheLookup => Action::Pause,
            _ => self.wait(),
        }
    }

    /// The client API of a model call.
    fn api(&self) -> Option<Api> {
        match self.endpoint {
            Some(Endpoint::Llm(api)) => Some(api),
            Some(Endpoint::Models) | None => None,
        }
    }

    /// When the current callback began, in ms: the clock for decisions
    /// within it (each clock read is a host call).
    fn callback_ms(&self) -> u64 {
        self.callback_ns / 1_000_000
    }

    fn api_name(&self) -> &'static str {
        self.endpoint.map_or("unknown", Endpoint::name)
    }

    fn count(&self, name: &str, n: u64) {
        self.shared.stats.count(&self.host, name, n);
    }

    fn reject(&mut self, error: &GatewayError) -> Action {
        let api = self.api_name();
        log::debug!("tollgate: rejected {api} with {}", error.status());
        self.count(
            &format!("tollgate.rejected.api.{api}.reason.{}", error.code()),
            1,
        );
        let body = error.body(self.format);
        self.host
            .send_json(error.status(), &body, error.retry_after_s());
        // Nothing went upstream: no bill, no upstream span. A guardrail
        // block or a residency refusal is recorded at no cost (the ledger
        // and the audit log show them); any other refusal of an API call
        // goes to the audit log only, since a key out of budget retrying
        // must not grow the ledger. What the client got, for the record:
        self.response.status = error.status();
        self.response.sent(&body);
        let forwarded = self.forwarded.take();
        match error {
            GatewayError::GuardrailBlocked { .. } | GatewayError::RegionNotAllowed(_) => {
                self.answered = forwarded;
            }
            // A path the gateway does not serve is no API call to audit.
            GatewayError::NotFound(_) => {}
            _ => {
                let model = match error {
                    GatewayError::ModelNotAllowed(m) | GatewayError::UnknownModel(m) => m.clone(),
                    _ => String::new(),
                };
                self.refused = Some(record::Refusal {
                    code: error.code(),
                    model,
                    routed: forwarded,
                });
            }
        }
        self.phase = Phase::Done;
        Action::Pause
    }

    /// Answers `/v1/models` from the configuration.
    fn answer_listing(&mut self, listing: &[u8]) {
        self.host.send_json(200, listing, None);
        self.phase = Phase::Done;
    }
}

impl<H: Host> Context for RequestStage<H> {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.callback_ns = self.host.now_ns();
        let status = self.host.call_status();
        let body = self.host.call_body(body_size);
        if self.phase == Phase::CacheLookup {
            match self.looked_up(status, &body) {
                Ok(true) => {
                    if !self.host.resume_request() {
                        log::error!("tollgate: could not resume the request after a cache miss");
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    self.reject(&error);
                }
            }
            return;
        }
        if self.phase == Phase::Reserving {
            match self.leased(status, &body) {
                Ok(()) => {
                    if !self.host.resume_request() {
                        log::error!("tollgate: could not resume the request after the lease");
                    }
                }
                Err(error) => {
                    self.reject(&error);
                }
            }
            return;
        }
        if self.phase != Phase::Authorizing {
            // Answered already (the body was too large, or the client left).
            return;
        }
        match self.authorized(status, &body) {
            Ok(Some(listing)) => self.answer_listing(&listing),
            Ok(None) => {
                // Routed, or (two-stage) free to go to the buffer filter;
                // otherwise the body is still arriving, or the budget
                // answer is awaited, and that callback moves it on.
                let ready = self.phase == Phase::Forwarded
                    || (self.phase == Phase::Authorized && !self.holds_headers());
                if ready && !self.host.resume_request() {
                    log::error!("tollgate: could not resume the request after the key check");
                }
            }
            Err(error) => {
                self.reject(&error);
            }
        }
    }
}

impl<H: Host> HttpContext for RequestStage<H> {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.started_ns = self.host.now_ns();
        self.callback_ns = self.started_ns;
        self.headers_ended = end_of_stream;
        self.request_id = self.shared.mint_request_id();
        let headers = self.host.request_headers();
        self.client_request_id = headers
            .get("x-request-id")
            .map(|id| budget::capped(id, MAX_CLIENT_REQUEST_ID));
        self.trace = RequestTrace::start(&self.shared, &headers);
        if self.shared.config.cache.is_some() {
            self.cache_wish = ClientWish::from_header(headers.get("cache-control"));
        }
        match self.start(&headers) {
            Ok(admit::Start::Callout) => Action::Pause,
            Ok(admit::Start::Drain) => self.wait(),
            Ok(admit::Start::KeyKnown) => match self.key_known() {
                Ok(Some(listing)) => {
                    self.answer_listing(&listing);
                    Action::Pause
                }
                Ok(None) => self.after_headers(),
                Err(error) => self.reject(&error),
            },
            Err(error) => self.reject(&error),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.callback_ns = self.host.now_ns();
        let oversized = body_size > self.shared.config.max_request_bytes;
        match self.phase {
            Phase::Draining => return self.drain(body_size, end_of_stream),
            Phase::Authorizing | Phase::Authorized if oversized => {
                return self.drain(body_size, end_of_stream)
            }
            // The single-stage chain delivers the body while the key check
            // is pending: hold it (Continue would let it go unchecked).
            Phase::Authorizing => {
                self.body_ended = end_of_stream;
                return Action::Pause;
            }
            Phase::Authorized => {}
            _ => return Action::Continue,
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.route_body(body_size)
    }

    /// A request that ends in trailers (HTTP/2, gRPC-style clients): the
    /// body callbacks never saw `end_of_stream`, so it is routed here.
    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        self.callback_ns = self.host.now_ns();
        match self.phase {
            Phase::Draining => {
                let error = GatewayError::TooLarge(self.shared.config.max_request_bytes);
                self.reject(&error)
            }
            Phase::Authorizing => {
                self.body_ended = true;
                Action::Pause
            }
            Phase::Authorized => {
                let size = self.host.request_body_size();
                self.route_body(size)
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.phase == Phase::Forwarded {
            let headers = self.host.response_headers();
            let on_chain = self.fallback.is_some();
            if on_chain {
                self.follow_served_target(&headers);
            }
            self.cache_on_response();
            self.response.on_headers(&self.host, &headers, on_chain);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase == Phase::Forwarded {
            let action = self.response.on_body(
                &self.host,
                body_size,
                end_of_stream,
                self.shared.guardrails.as_ref(),
            );
            let new_events = std::mem::take(&mut self.response.new_guard_events);
            if !new_events.is_empty() {
                self.record_guard_events(&new_events);
            }
            return action;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(forwarded) = self.forwarded.take() {
            self.record(forwarded, true);
        } else if let Some(answered) = self.answered.take() {
            self.record(answered, false);
        } else if let Some(refusal) = self.refused.take() {
            self.record_refusal(refusal);
        }
    }
}
