//! Request stage: key check (cached sidecar callout), body parsing, model
//! routing and the routing decision; on the way back, token usage.
//!
//! It pauses in the header phase only while a key callout is in flight
//! (Envoy then holds the body), and buffers the body until it is complete.

use super::host;
use super::response::ResponseState;
use super::root::Shared;
use super::stats;
use super::trace::RequestTrace;
use crate::core::api::{self, Api, ClientFormat, Endpoint};
use crate::core::auth::{self, KeyCheck, KeyInfo};
use crate::core::budget::{self, ReserveAnswer, ReserveRequest, UsageReport};
use crate::core::config::{FailureMode, ProviderAuth, ProviderKind, ACCOUNT_HEADERS};
use crate::core::content;
use crate::core::decision::{EnvAuth, RouteDecision};
use crate::core::error::GatewayError;
use crate::core::guard::{self, GuardEvent};
use crate::core::key;
use crate::core::models;
use crate::core::request::{LlmRequest, RequestParams};
use crate::core::routing;
use crate::core::telemetry::RequestRecord;
use crate::core::wire::{self, Wire};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::Duration;

/// Oversized bodies are read and discarded up to this many bytes before the
/// 413 goes out: answering mid-upload makes Envoy close the connection and
/// the client often sees a reset instead of the error.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

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
    /// Routed; waiting for the sidecar's budget reservation.
    Reserving,
    /// Routed upstream.
    Forwarded,
    /// Answered locally.
    Done,
}

/// How the header phase ended.
enum Start {
    /// The key's verdict is known (cache hit, or failing open).
    KeyKnown,
    /// Waiting for the sidecar.
    Callout,
    /// The declared body is over the limit.
    Drain,
}

/// What was decided about a request that went upstream.
struct Forwarded {
    /// The client's model name.
    model: String,
    upstream_model: String,
    /// Input tokens estimated from the body, for reserving and as a fallback.
    estimated_input: u64,
    reservation_id: Option<String>,
    provider: String,
    provider_kind: ProviderKind,
    upstream_api: Wire,
    params: RequestParams,
    upstream_start_ns: u64,
    /// Request messages for traces, when content capture is on.
    input_messages: Option<String>,
}

pub struct RequestStage {
    shared: Rc<Shared>,
    phase: Phase,
    endpoint: Option<Endpoint>,
    format: ClientFormat,
    key_hash: String,
    key: Option<Rc<KeyCheck>>,
    /// `:path` as the client sent it (header maps are gone after the header phase).
    client_path: String,
    /// Bytes of an oversized body discarded so far.
    drained: usize,
    /// The request body ended with the headers (no body callbacks follow).
    headers_ended: bool,
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
    /// What was decided about a request a guardrail then refused: recorded
    /// (with its events), never billed.
    blocked: Option<Forwarded>,
    trace: Option<RequestTrace>,
    forwarded: Option<Forwarded>,
    response: ResponseState,
}

impl RequestStage {
    pub fn new(shared: Rc<Shared>) -> RequestStage {
        RequestStage {
            shared,
            phase: Phase::Headers,
            endpoint: None,
            format: ClientFormat::OpenAi,
            key_hash: String::new(),
            key: None,
            client_path: String::new(),
            drained: 0,
            headers_ended: false,
            started_ns: 0,
            callback_ns: 0,
            request_id: String::new(),
            client_request_id: None,
            account_headers: Vec::new(),
            guard_events: Vec::new(),
            blocked: None,
            trace: None,
            forwarded: None,
            response: ResponseState::default(),
        }
    }

    /// The client API of a model call.
    fn api(&self) -> Option<Api> {
        match self.endpoint {
            Some(Endpoint::Llm(api)) => Some(api),
            Some(Endpoint::Models) | None => None,
        }
    }

    fn reject(&mut self, error: &GatewayError) -> Action {
        log::debug!(
            "tollgate: rejected {} with {}",
            self.endpoint.map_or("unknown", Endpoint::name),
            error.status()
        );
        let api = self.endpoint.map_or("unknown", Endpoint::name);
        self.shared.stats.count(
            format!("tollgate.rejected.api.{api}.reason.{}", error.code()),
            1,
        );
        host::send_json(
            error.status(),
            &error.body(self.format),
            error.retry_after_s(),
        );
        // Nothing went upstream: no bill, no upstream span. A guardrail
        // block is still recorded (with its events, at no cost).
        let forwarded = self.forwarded.take();
        if let GatewayError::GuardrailBlocked { .. } = error {
            self.blocked = forwarded;
            // What the client got, for the record.
            self.response.status = error.status();
        }
        self.phase = Phase::Done;
        Action::Pause
    }

    /// Header phase up to the key check.
    fn start(&mut self, headers: &[(String, String)]) -> Result<Start, GatewayError> {
        let method = header(headers, ":method").unwrap_or_default();
        self.client_path = header(headers, ":path").unwrap_or_default().to_string();
        let path = &self.client_path;
        self.endpoint = Endpoint::detect(method, path);
        self.format = api::client_format(
            self.endpoint,
            header(headers, "anthropic-version").is_some(),
        );
        if self.endpoint.is_none() {
            let path = path.split('?').next().unwrap_or_default().to_string();
            return Err(GatewayError::NotFound(path));
        }
        let client_key = key::extract(
            header(headers, "authorization"),
            header(headers, "x-api-key").or(header(headers, "api-key")),
        )
        .ok_or(GatewayError::MissingKey)?;
        self.key_hash = key::hash(client_key);
        self.account_headers = ACCOUNT_HEADERS
            .into_iter()
            .filter(|h| header(headers, h).is_some())
            .collect();
        // The gateway key never goes upstream (the provider key is added
        // later), and the buffer filter re-sets content-length for a rewritten body.
        for name in ["authorization", "x-api-key", "api-key", "content-length"] {
            if header(headers, name).is_some() {
                host::set_request_header(name, None);
            }
        }
        // Checked after content-length is gone, so the buffer filter cannot
        // answer first with its own plain-text 413.
        let declared = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.shared.config.max_request_bytes) {
            self.phase = Phase::Draining;
            return Ok(Start::Drain);
        }
        let now = self.started_ns / 1_000_000;
        let cached = self.shared.cache.borrow().get(&self.key_hash, now);
        if let Some(check) = cached {
            self.key = Some(check);
            return Ok(Start::KeyKnown);
        }
        self.authorize_callout()?;
        Ok(if self.phase == Phase::Authorizing {
            Start::Callout
        } else {
            Start::KeyKnown
        })
    }

    /// Discards an oversized body, answering 413 once it is all read.
    fn drain(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.phase = Phase::Draining;
        self.drained = self.drained.saturating_add(body_size);
        let limit = self.shared.config.max_request_bytes;
        if end_of_stream
            || self.drained > MAX_DRAIN_BYTES
            || !host::set_buffer(host::REQUEST_BODY, body_size, &[])
        {
            return self.reject(&GatewayError::TooLarge(limit));
        }
        Action::Pause
    }

    fn authorize_callout(&mut self) -> Result<(), GatewayError> {
        let body = auth::authorize_request(&self.key_hash);
        if self.call_sidecar("/v1/authorize", &body) {
            self.phase = Phase::Authorizing;
            Ok(())
        } else {
            self.sidecar_failed()
        }
    }

    /// POSTs JSON to the sidecar; the answer arrives in
    /// `on_http_call_response`. False (logged) when the call cannot start.
    fn call_sidecar(&self, path: &str, body: &[u8]) -> bool {
        let sidecar = &self.shared.sidecar;
        // Envoy starts the timer from when its event loop woke up, so the
        // time this callback spent (a large body's scan) is not the
        // sidecar's: without it the call could time out before it leaves.
        let busy_ms = host::now_ns().saturating_sub(self.callback_ns) / 1_000_000;
        let timeout = Duration::from_millis(sidecar.config.timeout_ms.saturating_add(busy_ms));
        sidecar.post(path, body, timeout).is_some()
    }

    /// Whether to go on without the sidecar (`Ok`, logged) or refuse with 503.
    fn unavailable(&self, mode: FailureMode, passes_without: &str) -> Result<(), GatewayError> {
        self.shared
            .stats
            .count("tollgate.sidecar_failures".into(), 1);
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

    /// The key is known (or failed open): checks it and answers what needs no body.
    fn key_known(&mut self) -> Result<Option<Vec<u8>>, GatewayError> {
        self.phase = Phase::Authorized;
        let info = self.key_info()?;
        if self.endpoint == Some(Endpoint::Models) {
            return Ok(Some(models::list(&self.shared.config, info, self.format)));
        }
        if self.headers_ended {
            self.route(&[])?;
        }
        Ok(None)
    }

    /// The valid key's details; `None` when failing open.
    fn key_info(&self) -> Result<Option<&KeyInfo>, GatewayError> {
        match &self.key {
            Some(check) => check.verdict(host::now_ms() / 1000).map(Some),
            None => Ok(None),
        }
    }

    /// Routes the complete body held in Envoy's buffer.
    fn route_body(&mut self, body_size: usize) -> Action {
        let body = host::buffer(host::REQUEST_BODY, body_size);
        match self.route(&body) {
            Ok(()) if self.phase == Phase::Reserving => Action::Pause,
            Ok(()) => Action::Continue,
            Err(error) => self.reject(&error),
        }
    }

    /// Parses the complete body, picks the provider and records the decision.
    fn route(&mut self, body: &[u8]) -> Result<(), GatewayError> {
        let api = self
            .api()
            .ok_or(GatewayError::Internal("request without API"))?;
        let mut request = LlmRequest::parse(body, api::azure_deployment(&self.client_path))?;
        if let Some(info) = self.key_info()? {
            if !info.allows(&request.model) {
                return Err(GatewayError::ModelNotAllowed(request.model));
            }
        }
        let shared = Rc::clone(&self.shared);
        let config = &shared.config;
        let route = routing::resolve(config, api, &request.model, request.stream)?;
        let budgets = config.budgets.as_ref();
        let params = request.params(api);
        let max_output = params
            .max_tokens
            .unwrap_or(budgets.map_or(0, |b| b.default_max_output_tokens));
        self.forwarded = Some(Forwarded {
            params,
            upstream_model: route.upstream_model.clone(),
            estimated_input: 0,
            reservation_id: None,
            model: request.model.clone(),
            provider: route.provider.name.clone(),
            provider_kind: route.provider.kind,
            upstream_api: route.upstream_api,
            upstream_start_ns: 0,
            input_messages: None,
        });
        self.check_input(api, &mut request)?;
        self.response.apis = Some((api, route.upstream_api));
        // Another wire upstream, or a stream whose usage must be asked for:
        // translate; otherwise at most the model name changes.
        let upstream = route.upstream_api;
        let translated = upstream != api.wire();
        let new_body =
            if translated || (request.stream && upstream.upstream().stream_usage_on_request()) {
                let (body, translation) = wire::request::translate(
                    api,
                    upstream,
                    &request.body,
                    request.stream,
                    &route.upstream_model,
                )?;
                self.response.translation = translation.rewrites().then_some(translation);
                serde_json::to_vec(&body).ok()
            } else {
                request.rewritten_for(&route.upstream_model)
            };
        if let Some(new_body) = new_body {
            if !host::set_buffer(host::REQUEST_BODY, body.len(), &new_body) {
                return Err(GatewayError::Internal("could not rewrite the request body"));
            }
        }
        let decision = RouteDecision {
            cluster: route.provider.cluster.clone(),
            path: (route.path != self.client_path).then(|| route.path.clone()),
            traceparent: self.trace.as_ref().map(RequestTrace::upstream_traceparent),
            auth: env_auth(route.provider.kind, &route.provider.auth),
            defaults: if translated {
                upstream
                    .upstream()
                    .default_headers()
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect()
            } else {
                Vec::new()
            },
            remove: self
                .account_headers
                .iter()
                .filter(|h| !route.provider.pass_headers.iter().any(|p| p == *h))
                .map(|h| h.to_string())
                .collect(),
        };
        if !host::set_property("tollgate.route", decision.encode().as_bytes()) {
            return Err(GatewayError::Internal(
                "could not record the routing decision",
            ));
        }
        let capture = RequestTrace::captures_content(&self.shared)
            && self.trace.as_ref().is_some_and(|t| t.sampled);
        if let Some(f) = &mut self.forwarded {
            f.estimated_input = budget::estimate_input_tokens(api, &request.body);
            f.input_messages = capture.then(|| content::input_messages(api, &request.body));
            f.upstream_start_ns = host::now_ns();
        }
        self.response.captured = capture.then(String::new);
        self.phase = Phase::Forwarded;
        if budgets.is_some_and(|b| b.enforce) {
            self.reserve(max_output)?;
        }
        Ok(())
    }

    /// Input guardrails: blocks, or redacts the body in place; records events
    /// and sets up the output guardrails for the answer.
    fn check_input(&mut self, api: Api, request: &mut LlmRequest) -> Result<(), GatewayError> {
        let shared = Rc::clone(&self.shared);
        let Some(guardrails) = &shared.guardrails else {
            return Ok(());
        };
        let (team, key_id) = match self.key.as_deref() {
            Some(KeyCheck::Valid(info)) => (info.team.clone(), Some(info.key_id.clone())),
            _ => (None, None),
        };
        let policy = guardrails.policy(team.as_deref(), key_id.as_deref());
        let outcome = guardrails.check_request(api, &mut request.body, &policy);
        request.modified |= outcome.changed;
        self.record_guard_events(&outcome.events);
        if let Some(b) = outcome.blocked {
            return Err(GatewayError::GuardrailBlocked {
                guardrail: b.guardrail,
                kind: b.kind,
            });
        }
        if policy.any_output() {
            self.response.output_policy = Some(policy);
        }
        Ok(())
    }

    fn record_guard_events(&mut self, events: &[GuardEvent]) {
        count_guard_events(&self.shared.stats, events);
        guard::merge_events(&mut self.guard_events, events);
    }

    /// Asks the sidecar to reserve this request against the key's, team's
    /// and user's budgets (only for a known key: failing open has none).
    fn reserve(&mut self, max_output_tokens: u64) -> Result<(), GatewayError> {
        let (Some(KeyCheck::Valid(info)), Some(f)) = (self.key.as_deref(), &self.forwarded) else {
            return Ok(());
        };
        let body = serde_json::to_vec(&ReserveRequest {
            request_id: self.request_id.clone(),
            key_id: info.key_id.clone(),
            team: info.team.clone(),
            user: info.user.clone(),
            model: f.model.clone(),
            upstream_model: f.upstream_model.clone(),
            provider: f.provider.clone(),
            estimated_input_tokens: f.estimated_input,
            max_output_tokens,
        })
        .map_err(|_| GatewayError::Internal("could not encode the budget reservation"))?;
        if self.call_sidecar("/v1/reserve", &body) {
            self.phase = Phase::Reserving;
            Ok(())
        } else {
            self.budget_unavailable()
        }
    }

    /// Applies the budget failure mode when a reservation cannot be made.
    fn budget_unavailable(&mut self) -> Result<(), GatewayError> {
        let config = &self.shared.config;
        let mode = config
            .budgets
            .as_ref()
            .and_then(|b| b.failure_mode)
            .unwrap_or(config.sidecar.failure_mode);
        self.unavailable(mode, "a budget reservation")?;
        self.phase = Phase::Forwarded;
        Ok(())
    }

    /// The sidecar answered a reservation: forward, or refuse with 429.
    fn reserved(&mut self, status: Option<String>, body: &[u8]) -> Result<(), GatewayError> {
        let answer = match status.as_deref() {
            Some("200") => budget::parse_reserve_response(body),
            Some(other) => Err(format!("sidecar answered HTTP {other}")),
            None => Err("sidecar unreachable or timed out".to_string()),
        };
        match answer {
            Ok(ReserveAnswer::Allowed { reservation_id }) => {
                if let Some(f) = &mut self.forwarded {
                    f.reservation_id = Some(reservation_id);
                }
                self.phase = Phase::Forwarded;
                Ok(())
            }
            Ok(ReserveAnswer::Denied(error)) => {
                self.forwarded = None;
                self.shared.stats.count(
                    format!("tollgate.budget_denials.reason.{}", error.code()),
                    1,
                );
                Err(error)
            }
            Err(why) => {
                log::warn!("tollgate: budget reservation failed: {why}");
                self.budget_unavailable()
            }
        }
    }

    /// The usage report for the sidecar; tokens are estimated when the
    /// provider sent no usage (or the response was cut short). A request
    /// that was not forwarded has none.
    fn usage_report(
        &self,
        f: &Forwarded,
        forwarded: bool,
        key: Option<&KeyInfo>,
        now_ns: u64,
    ) -> UsageReport {
        let response = &self.response;
        let reported = response.summary.usage;
        let failed_before_output = response.status >= 400 && reported.is_none();
        let estimated = forwarded && reported.is_none() && !failed_before_output;
        let usage = reported.unwrap_or_default();
        let (input, output) = if estimated {
            (f.estimated_input, (response.text_chars as u64).div_ceil(4))
        } else {
            (usage.input_tokens, usage.output_tokens)
        };
        UsageReport {
            request_id: self.request_id.clone(),
            reservation_id: f.reservation_id.clone(),
            key_id: key.map(|k| k.key_id.clone()),
            team: key.and_then(|k| k.team.clone()),
            user: key.and_then(|k| k.user.clone()),
            model: f.model.clone(),
            upstream_model: f.upstream_model.clone(),
            provider: f.provider.clone(),
            api: self.endpoint.map_or("unknown", Endpoint::name).into(),
            input_tokens: input,
            output_tokens: output,
            cached_tokens: usage.cached_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            status: response.status,
            latency_ms: now_ns.saturating_sub(self.started_ns) / 1_000_000,
            estimated,
            stream: response.stream,
            guardrail_events: self.guard_events.iter().map(Into::into).collect(),
            forwarded,
            ts: budget::unix_secs(now_ns),
        }
    }

    fn count(&self, forwarded: &Forwarded, usage: &crate::core::usage::Usage) {
        let stats = &self.shared.stats;
        let api = self.endpoint.map_or("unknown", Endpoint::name);
        let provider = stats::tag(&forwarded.provider);
        let model = stats.model_tag(&forwarded.model);
        let status = stats::status_class(self.response.status);
        stats.count(
            format!(
                "tollgate.requests.api.{api}.provider.{provider}.model.{model}.status.{status}"
            ),
            1,
        );
        for (direction, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            stats.count(
                format!("tollgate.tokens.direction.{direction}.provider.{provider}.model.{model}"),
                n,
            );
        }
        let upstream_ms = host::now_ns().saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
        stats.record(
            format!("tollgate.upstream_ms.provider.{provider}"),
            upstream_ms,
        );
        if let Some(first) = self.response.first_chunk_ns {
            let ttft = first.saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
            stats.record(
                format!("tollgate.time_to_first_chunk_ms.provider.{provider}"),
                ttft,
            );
        }
    }

    /// Usage report, a debug line and the trace of a request that was
    /// forwarded, or refused by a guardrail (no upstream span, no cost).
    fn record(&self, routed: &Forwarded, forwarded: bool) {
        let usage = self.response.summary.usage.unwrap_or_default();
        if forwarded {
            self.count(routed, &usage);
        }
        let key = match self.key.as_deref() {
            Some(KeyCheck::Valid(info)) => Some(info),
            _ => None,
        };
        let now = host::now_ns();
        log::debug!(
            "tollgate: {} request={} key={} model={} provider={} forwarded={forwarded} status={} stream={} input_tokens={} output_tokens={} ms={}",
            self.endpoint.map_or("unknown", Endpoint::name),
            self.request_id,
            key.map_or("-", |k| k.key_id.as_str()),
            routed.model,
            routed.provider,
            self.response.status,
            self.response.stream,
            usage.input_tokens,
            usage.output_tokens,
            now.saturating_sub(self.started_ns) / 1_000_000
        );
        if let Some(reporter) = &self.shared.reporter {
            reporter
                .borrow_mut()
                .push(self.usage_report(routed, forwarded, key, now));
        }
        let (Some(trace), Some(client_api)) = (&self.trace, self.api()) else {
            return;
        };
        trace.finish(
            &self.shared,
            &RequestRecord {
                ids: trace.ids,
                forwarded,
                request_id: self.request_id.clone(),
                client_request_id: self.client_request_id.clone(),
                client_api,
                upstream_api: routed.upstream_api,
                provider: routed.provider.clone(),
                provider_kind: routed.provider_kind,
                request_model: routed.model.clone(),
                params: routed.params.clone(),
                summary: self.response.summary.clone(),
                status: self.response.status,
                key_id: key.map(|k| k.key_id.clone()),
                team: key.and_then(|k| k.team.clone()),
                start_ns: self.started_ns,
                upstream_start_ns: routed.upstream_start_ns,
                first_chunk_ns: self.response.first_chunk_ns,
                end_ns: now,
                input_messages: routed.input_messages.clone(),
                guard_events: self.guard_events.iter().map(GuardEvent::label).collect(),
                output_messages: self.response.captured.as_deref().map(|text| {
                    content::output_messages(
                        text,
                        self.response
                            .summary
                            .meta
                            .finish_reasons
                            .first()
                            .map(String::as_str),
                    )
                }),
            },
        );
    }
}

/// A header from a map read with `host::headers` (names are lowercase).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Guardrail events by guardrail, kind, direction and action (never text).
fn count_guard_events(stats: &stats::Stats, events: &[GuardEvent]) {
    for e in events {
        let (guardrail, kind, direction, action) = (
            e.guardrail,
            stats::tag(&e.kind),
            e.direction.name(),
            e.action.name(),
        );
        stats.count(
            format!("tollgate.guardrail_events.guardrail.{guardrail}.kind.{kind}.direction.{direction}.action.{action}"),
            e.count,
        );
    }
}

/// How the route stage adds the provider key when Envoy does not.
fn env_auth(kind: ProviderKind, auth: &ProviderAuth) -> Option<EnvAuth> {
    let ProviderAuth::Env { var } = auth else {
        return None;
    };
    let (header, prefix) = kind.spec().auth_header();
    Some(EnvAuth {
        header: header.into(),
        prefix: prefix.into(),
        var: var.clone(),
    })
}

impl Context for RequestStage {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = host::header(host::CALL_RESPONSE_HEADERS, ":status");
        let body = host::buffer(host::CALL_RESPONSE_BODY, body_size);
        if self.phase == Phase::Reserving {
            match self.reserved(status, &body) {
                Ok(()) => {
                    if !host::resume_request() {
                        log::error!("tollgate: could not resume the request after the reservation");
                    }
                }
                Err(error) => {
                    self.reject(&error);
                }
            }
            return;
        }
        let answer = match status.as_deref() {
            Some("200") => auth::parse_authorize_response(&body),
            Some(other) => Err(format!("sidecar answered HTTP {other}")),
            None => Err("sidecar unreachable or timed out".to_string()),
        };
        let outcome = match answer {
            Ok(check) => {
                let check = Rc::new(check);
                let now = host::now_ms();
                self.shared.cache.borrow_mut().insert(
                    self.key_hash.clone(),
                    Rc::clone(&check),
                    now,
                );
                self.key = Some(check);
                Ok(())
            }
            Err(why) => {
                log::warn!("tollgate: key check failed: {why}");
                self.sidecar_failed()
            }
        };
        let result = outcome.and_then(|()| self.key_known());
        match result {
            Ok(Some(listing)) => {
                host::send_json(200, &listing, None);
                self.phase = Phase::Done;
            }
            Ok(None) => {
                if !host::resume_request() {
                    log::error!("tollgate: could not resume the request after the key check");
                }
            }
            Err(error) => {
                self.reject(&error);
            }
        }
    }
}

impl HttpContext for RequestStage {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        self.started_ns = host::now_ns();
        self.callback_ns = self.started_ns;
        self.headers_ended = end_of_stream;
        self.request_id = self.shared.mint_request_id();
        let headers = host::headers(host::REQUEST_HEADERS);
        self.client_request_id =
            header(&headers, "x-request-id").map(|id| budget::capped(id, MAX_CLIENT_REQUEST_ID));
        self.trace = RequestTrace::start(&self.shared, &self.request_id, &headers);
        match self.start(&headers) {
            Ok(Start::Callout) => Action::Pause,
            Ok(Start::Drain) => Action::Continue,
            Ok(Start::KeyKnown) => match self.key_known() {
                Ok(Some(listing)) => {
                    host::send_json(200, &listing, None);
                    self.phase = Phase::Done;
                    Action::Pause
                }
                Ok(None) => Action::Continue,
                Err(error) => self.reject(&error),
            },
            Err(error) => self.reject(&error),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.callback_ns = host::now_ns();
        let oversized = body_size > self.shared.config.max_request_bytes;
        match self.phase {
            Phase::Draining => return self.drain(body_size, end_of_stream),
            Phase::Authorized if oversized => return self.drain(body_size, end_of_stream),
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
        self.callback_ns = host::now_ns();
        match self.phase {
            Phase::Draining => {
                let error = GatewayError::TooLarge(self.shared.config.max_request_bytes);
                self.reject(&error)
            }
            Phase::Authorized => {
                let size = host::buffer_size(host::REQUEST_BODY);
                self.route_body(size)
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.phase == Phase::Forwarded {
            self.response.on_headers();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase == Phase::Forwarded {
            let action =
                self.response
                    .on_body(body_size, end_of_stream, self.shared.guardrails.as_ref());
            let new_events = std::mem::take(&mut self.response.new_guard_events);
            if !new_events.is_empty() {
                self.record_guard_events(&new_events);
            }
            return action;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(forwarded) = &self.forwarded {
            self.record(forwarded, true);
        } else if let Some(blocked) = &self.blocked {
            self.record(blocked, false);
        }
    }
}
