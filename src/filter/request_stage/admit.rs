//! The header phase up to the key check: which endpoint, which key, which
//! headers never go upstream, and oversized bodies (drained, then 413).

use super::{Phase, RequestStage};
use crate::core::api::{self, Endpoint};
use crate::core::config::ACCOUNT_HEADERS;
use crate::core::error::GatewayError;
use crate::core::header_map::Headers;
use crate::core::key;
use crate::filter::context::Action;
use crate::filter::env::Host;
use crate::filter::route_headers::RELAY_HEADER;

/// Oversized bodies are read and discarded up to this many bytes before the
/// 413 goes out: answering mid-upload makes Envoy close the connection and
/// the client often sees a reset instead of the error.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// How the header phase ended.
pub(super) enum Start {
    /// The key's verdict is known (cache hit, or failing open).
    KeyKnown,
    /// Waiting for the sidecar.
    Callout,
    /// The declared body is over the limit.
    Drain,
}

/// Request headers that make Envoy retry, time out or answer for the
/// provider (a timeout of 0 is none at all), and the one that selects the
/// relay route, which retries.
const ENVOY_RETRY_HEADERS: [&str; 9] = [
    RELAY_HEADER,
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
];

impl<H: Host> RequestStage<H> {
    /// Header phase up to the key check.
    pub(super) fn start(&mut self, headers: &Headers) -> Result<Start, GatewayError> {
        let method = headers.get(":method").unwrap_or_default();
        self.client_path = headers.get(":path").unwrap_or_default().to_string();
        let path = &self.client_path;
        self.endpoint = Endpoint::detect(method, path);
        self.format = api::client_format(self.endpoint, headers.get("anthropic-version").is_some());
        if self.endpoint.is_none() {
            let path = path.split('?').next().unwrap_or_default().to_string();
            return Err(GatewayError::NotFound(path));
        }
        let client_key = key::extract(
            headers.get("authorization"),
            headers.get("x-api-key").or(headers.get("api-key")),
        )
        .ok_or(GatewayError::MissingKey)?;
        self.key_hash = self.shared.key_hashes.borrow_mut().hash(client_key);
        self.account_headers = ACCOUNT_HEADERS
            .into_iter()
            .filter(|h| headers.get(h).is_some())
            .collect();
        // The gateway key never goes upstream (the provider key is added
        // later). On two stages the buffer filter re-sets content-length for
        // a rewritten body; one stage sets it itself, only when it rewrites.
        // Envoy's retry headers are the gateway's to set (a chain's): Envoy
        // strips them from external clients, and a client it counts as
        // internal must not multiply provider calls either.
        let length = (!self.holds_headers()).then_some("content-length");
        for name in ["authorization", "x-api-key", "api-key"]
            .into_iter()
            .chain(length)
            .chain(ENVOY_RETRY_HEADERS)
        {
            if headers.get(name).is_some() {
                self.host.set_request_header(name, None);
            }
        }
        // Checked after content-length is gone, so the buffer filter cannot
        // answer first with its own plain-text 413.
        let declared = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.shared.config.max_request_bytes) {
            self.phase = Phase::Draining;
            return Ok(Start::Drain);
        }
        if let Some(check) = self.cached_key(self.started_ns / 1_000_000) {
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
    pub(super) fn drain(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.phase = Phase::Draining;
        self.drained = self.drained.saturating_add(body_size);
        let limit = self.shared.config.max_request_bytes;
        if end_of_stream
            || self.drained > MAX_DRAIN_BYTES
            || !self.host.set_request_body(body_size, &[])
        {
            return self.reject(&GatewayError::TooLarge(limit));
        }
        Action::Pause
    }
}
