//! Traces: configuration, and one request turned into OTLP spans with the
//! OpenTelemetry GenAI semantic conventions (a `gateway` server span and,
//! when the request went to a provider, an `upstream` client span under it).

use super::api::Api;
use super::config::ProviderKind;
use super::otlp::{AttrValue, Attributes, Span, SpanKind};
use super::request::RequestParams;
use super::usage::ResponseSummary;
use super::wire::Wire;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Envoy cluster of the OTLP/HTTP collector.
    pub cluster: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Extra headers, e.g. a hosted collector's API key.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Share of new traces recorded; a client's `traceparent` decides for its own.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// `service.instance.id`; default: the Envoy node id.
    #[serde(default)]
    pub instance: Option<String>,
    /// Adds `gen_ai.input.messages` / `gen_ai.output.messages` (off by default).
    #[serde(default)]
    pub capture_content: bool,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Spans waiting for export per worker; beyond it new spans are dropped (and counted).
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Exports in flight per worker; a hung collector cannot make more.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_authority() -> String {
    "otel-collector".into()
}
fn default_path() -> String {
    "/v1/traces".into()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "tollgate".into()
}
fn default_flush_interval_ms() -> u64 {
    500
}
/// With 4 exports in flight per 100 ms tick, 512 spans a batch carry 20k
/// spans a second per worker (10k requests); at 256, `make bench` dropped
/// spans at 6k requests a second.
fn default_max_batch() -> usize {
    512
}
fn default_max_queue() -> usize {
    4096
}
fn default_max_in_flight() -> usize {
    4
}

impl TracingConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster.trim().is_empty() {
            out.push("tracing.cluster must name the Envoy cluster of the OTLP collector".into());
        }
        if !self.path.starts_with('/') {
            out.push(format!("tracing.path `{}` must start with `/`", self.path));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            out.push(format!(
                "tracing.sample_ratio {} must be between 0 and 1",
                self.sample_ratio
            ));
        }
        for (name, value) in [
            ("timeout_ms", self.timeout_ms),
            ("flush_interval_ms", self.flush_interval_ms),
            ("max_batch", self.max_batch as u64),
            ("max_queue", self.max_queue as u64),
            ("max_in_flight", self.max_in_flight as u64),
        ] {
            if value == 0 {
                out.push(format!("tracing.{name} must be greater than 0"));
            }
        }
        out
    }

    /// Head sampling of a new trace, from its id so every worker agrees.
    pub fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut high = [0u8; 8];
        if let Some(bytes) = trace_id.get(8..16) {
            high.copy_from_slice(bytes);
        }
        let threshold = (self.sample_ratio * u64::MAX as f64) as u64;
        self.sample_ratio >= 1.0 || u64::from_be_bytes(high) < threshold
    }
}

/// Ids of one request's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub upstream_span_id: [u8; 8],
    /// The client's span, when it sent `traceparent`.
    pub parent: Option<[u8; 8]>,
}

/// Everything the filter learned about one request it forwarded, or
/// refused with a guardrail (`forwarded: false`), borrowed from the
/// request's state for as long as its spans take to encode.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub ids: TraceIds,
    pub forwarded: bool,
    /// The gateway's id (as in the usage ledger).
    pub request_id: &'a str,
    /// The client's `x-request-id`, for correlation only.
    pub client_request_id: Option<&'a String>,
    pub client_api: Api,
    pub upstream_api: Wire,
    pub provider: &'a str,
    pub provider_kind: ProviderKind,
    pub request_model: &'a str,
    pub params: &'a RequestParams,
    pub summary: &'a ResponseSummary,
    pub status: u32,
    pub key_id: Option<&'a str>,
    pub team: Option<&'a str>,
    pub start_ns: u64,
    pub upstream_start_ns: u64,
    pub first_chunk_ns: Option<u64>,
    pub end_ns: u64,
    pub input_messages: Option<&'a str>,
    pub output_messages: Option<&'a str>,
    /// `guardrail/kind/direction/action[*count]` per kind of guardrail event.
    pub guard_events: &'a [String],
    /// Attempts of a fallback chain or key pool that failed before the
    /// one that answered, oldest first.
    pub failed_attempts: &'a [FailedAttempt<'a>],
    /// What the response cache did (`hit`, `miss`, `bypass`), when a rule covers the request.
    pub cache: Option<&'static str>,
}

/// An attempt Envoy made and gave up on: a span of its own.
#[derive(Debug, Clone)]
pub struct FailedAttempt<'a> {
    pub provider: &'a str,
    pub provider_kind: ProviderKind,
    pub upstream_api: Wire,
    /// 0 when no response came (reset, timeout).
    pub status: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// `error.type`: the status as text, or what stood for one.
fn error_type(forwarded: bool, status: u32) -> Option<String> {
    match (forwarded, status) {
        (false, _) => Some("guardrail_blocked".into()),
        (true, 0) => Some("upstream_reset".into()),
        (true, 400..=599) => Some(status.to_string()),
        _ => None,
    }
}

/// Hands `encode` the gateway span, and its upstream child when the
/// request was forwarded. The spans borrow from `r` and from values made
/// here, so they live for the call only (exporters encode them at once).
pub fn with_spans<T>(r: &RequestRecord, encode: impl FnOnce(&[Span]) -> T) -> T {
    let operation = "chat";
    let error = error_type(r.forwarded, r.status);
    let provider_name = r.provider_kind.spec().semconv_name(r.provider);
    let mut attrs: Attributes = Vec::with_capacity(32);
    attrs.extend([
        ("gen_ai.operation.name", AttrValue::Str(operation)),
        ("gen_ai.provider.name", AttrValue::Str(provider_name)),
        ("gen_ai.request.model", AttrValue::Str(r.request_model)),
        ("gen_ai.request.stream", AttrValue::Bool(r.params.stream)),
        (
            "http.response.status_code",
            AttrValue::Int(i64::from(r.status)),
        ),
        ("tollgate.api", AttrValue::Str(r.client_api.name())),
        ("tollgate.provider", AttrValue::Str(r.provider)),
        ("tollgate.request_id", AttrValue::Str(r.request_id)),
    ]);
    let p = r.params;
    let meta = &r.summary.meta;
    let usage = r.summary.usage;
    let optional = [
        (
            "gen_ai.request.max_tokens",
            p.max_tokens.map(|v| AttrValue::Int(v as i64)),
        ),
        (
            "gen_ai.request.temperature",
            p.temperature.map(AttrValue::Double),
        ),
        ("gen_ai.request.top_p", p.top_p.map(AttrValue::Double)),
        (
            "gen_ai.response.model",
            meta.model.as_deref().map(AttrValue::Str),
        ),
        ("gen_ai.response.id", meta.id.as_deref().map(AttrValue::Str)),
        (
            "gen_ai.response.finish_reasons",
            (!meta.finish_reasons.is_empty()).then_some(AttrValue::StrArray(&meta.finish_reasons)),
        ),
        (
            "gen_ai.usage.input_tokens",
            usage.map(|u| AttrValue::Int(u.input_tokens as i64)),
        ),
        (
            "gen_ai.usage.output_tokens",
            usage.map(|u| AttrValue::Int(u.output_tokens as i64)),
        ),
        (
            "gen_ai.usage.cache_read.input_tokens",
            usage.map(|u| AttrValue::Int(u.cached_tokens as i64)),
        ),
        (
            "gen_ai.usage.reasoning.output_tokens",
            usage.map(|u| AttrValue::Int(u.reasoning_tokens as i64)),
        ),
        (
            "gen_ai.response.time_to_first_chunk",
            r.first_chunk_ns.map(|first| {
                AttrValue::Double(first.saturating_sub(r.upstream_start_ns) as f64 / 1e9)
            }),
        ),
        (
            "http.request.header.x-request-id",
            r.client_request_id
                .map(|id| AttrValue::StrArray(std::slice::from_ref(id))),
        ),
        ("error.type", error.as_deref().map(AttrValue::Str)),
        ("tollgate.key_id", r.key_id.map(AttrValue::Str)),
        ("tollgate.team", r.team.map(AttrValue::Str)),
        ("tollgate.cache", r.cache.map(AttrValue::Str)),
    ];
    attrs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    if r.client_api.wire() != r.upstream_api {
        attrs.push((
            "tollgate.translated_from",
            AttrValue::Str(r.client_api.name()),
        ));
        attrs.push((
            "tollgate.translated_to",
            AttrValue::Str(r.upstream_api.name()),
        ));
    }
    if !r.guard_events.is_empty() {
        attrs.push((
            "tollgate.guardrail.events",
            AttrValue::StrArray(r.guard_events),
        ));
    }
    let content = [
        ("gen_ai.input.messages", r.input_messages),
        ("gen_ai.output.messages", r.output_messages),
    ];
    attrs.extend(
        content
            .into_iter()
            .filter_map(|(k, v)| Some((k, AttrValue::Str(v?)))),
    );
    let name = [operation, " ", r.request_model].concat();
    let error_message = error.as_ref().map(|e| ["HTTP ", e].concat());
    let gateway = Span {
        trace_id: r.ids.trace_id,
        span_id: r.ids.span_id,
        parent_span_id: r.ids.parent,
        name: name.clone(),
        kind: SpanKind::Server,
        start_ns: r.start_ns,
        end_ns: r.end_ns,
        attributes: attrs,
        error: error_message.clone(),
    };
    if !r.forwarded {
        return encode(&[gateway]);
    }
    let upstream_name = name + " upstream";
    let mut spans = Vec::with_capacity(2 + r.failed_attempts.len());
    spans.push(gateway);
    for (i, a) in r.failed_attempts.iter().enumerate() {
        // Distinct from the answering attempt's id, which the provider saw
        // in `traceparent`.
        let mut span_id = r.ids.upstream_span_id;
        if let Some(last) = span_id.last_mut() {
            *last ^= (i as u8).wrapping_add(1);
        }
        spans.push(Span {
            trace_id: r.ids.trace_id,
            span_id,
            parent_span_id: Some(r.ids.span_id),
            name: upstream_name.clone(),
            kind: SpanKind::Client,
            start_ns: a.start_ns,
            end_ns: a.end_ns,
            attributes: upstream_attributes(
                a.provider_kind.spec().semconv_name(a.provider),
                a.provider,
                a.upstream_api,
                a.status,
            ),
            // No status seen: a reset, a timeout, or a failed first
            // attempt on a direct cluster (Envoy's stats have its code).
            error: Some(match a.status {
                0 => "attempt failed, no status seen".to_string(),
                s => format!("HTTP {s}"),
            }),
        });
    }
    spans.push(Span {
        trace_id: r.ids.trace_id,
        span_id: r.ids.upstream_span_id,
        parent_span_id: Some(r.ids.span_id),
        name: upstream_name,
        kind: SpanKind::Client,
        start_ns: r
            .failed_attempts
            .last()
            .map_or(r.upstream_start_ns, |a| a.end_ns),
        end_ns: r.end_ns,
        attributes: upstream_attributes(provider_name, r.provider, r.upstream_api, r.status),
        error: error_message,
    });
    encode(&spans)
}

/// The attributes of an attempt's span.
fn upstream_attributes<'a>(
    semconv_name: &'a str,
    provider: &'a str,
    upstream_api: Wire,
    status: u32,
) -> Attributes<'a> {
    let mut attributes = vec![
        ("gen_ai.provider.name", AttrValue::Str(semconv_name)),
        ("tollgate.provider", AttrValue::Str(provider)),
        ("tollgate.upstream_api", AttrValue::Str(upstream_api.name())),
    ];
    if status != 0 {
        attributes.push((
            "http.response.status_code",
            AttrValue::Int(i64::from(status)),
        ));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::Usage;

    /// What a record borrows.
    struct Parts {
        params: RequestParams,
        summary: ResponseSummary,
        client_request_id: String,
        guard_events: Vec<String>,
    }

    fn parts() -> Parts {
        Parts {
            params: RequestParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                top_p: None,
                stream: true,
            },
            summary: ResponseSummary {
                usage: Some(Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                    cached_tokens: 0,
                    reasoning_tokens: 0,
                }),
                meta: Default::default(),
            },
            client_request_id: "client-1".into(),
            guard_events: vec![],
        }
    }

    fn record(p: &Parts) -> RequestRecord<'_> {
        RequestRecord {
            ids: TraceIds {
                trace_id: [1; 16],
                span_id: [2; 8],
                upstream_span_id: [3; 8],
                parent: None,
            },
            forwarded: true,
            request_id: "00000000000000010000000000000002",
            client_request_id: Some(&p.client_request_id),
            client_api: Api::Messages,
            upstream_api: Wire::ChatCompletions,
            provider: "openai",
            provider_kind: ProviderKind::Openai,
            request_model: "gpt-4o",
            params: &p.params,
            summary: &p.summary,
            status: 200,
            key_id: Some("key_1"),
            team: None,
            start_ns: 10,
            upstream_start_ns: 20,
            first_chunk_ns: Some(1_000_000_020),
            end_ns: 2_000_000_000,
            input_messages: None,
            output_messages: None,
            guard_events: &p.guard_events,
            failed_attempts: &[],
            cache: Some("hit"),
        }
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue<'a>> {
        span.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn gateway_span_carries_conventions() {
        let p = parts();
        with_spans(&record(&p), |spans| {
            let [gateway, upstream] = spans else {
                panic!("{} spans", spans.len())
            };
            assert_eq!(gateway.name, "chat gpt-4o");
            assert_eq!(upstream.name, "chat gpt-4o upstream");
            assert_eq!(
                attr(gateway, "gen_ai.usage.output_tokens"),
                Some(&AttrValue::Int(5))
            );
            assert_eq!(
                attr(gateway, "gen_ai.request.max_tokens"),
                Some(&AttrValue::Int(100))
            );
            assert_eq!(attr(gateway, "gen_ai.request.top_p"), None);
            assert_eq!(
                attr(gateway, "tollgate.translated_to"),
                Some(&AttrValue::Str("chat_completions"))
            );
            assert_eq!(
                attr(gateway, "gen_ai.response.time_to_first_chunk"),
                Some(&AttrValue::Double(1.0))
            );
            assert_eq!(attr(gateway, "error.type"), None);
            assert_eq!(upstream.parent_span_id, Some(gateway.span_id));
        });
        let mut failed = record(&p);
        failed.status = 503;
        with_spans(&failed, |spans| {
            let gateway = &spans[0];
            assert_eq!(attr(gateway, "error.type"), Some(&AttrValue::Str("503")));
            assert_eq!(gateway.error.as_deref(), Some("HTTP 503"));
            assert_eq!(spans[1].error.as_deref(), Some("HTTP 503"));
        });
    }

    #[test]
    fn a_blocked_request_has_no_upstream_span() {
        let mut p = parts();
        p.summary = ResponseSummary::default();
        p.guard_events = vec!["secrets/aws_access_key/input/block".into()];
        let mut blocked = record(&p);
        blocked.forwarded = false;
        blocked.status = 400;
        with_spans(&blocked, |spans| {
            assert_eq!(spans.len(), 1);
            let gateway = &spans[0];
            assert_eq!(gateway.kind, SpanKind::Server);
            assert_eq!(
                attr(gateway, "error.type"),
                Some(&AttrValue::Str("guardrail_blocked"))
            );
            assert_eq!(
                attr(gateway, "tollgate.guardrail.events"),
                Some(&AttrValue::StrArray(&[
                    "secrets/aws_access_key/input/block".into()
                ]))
            );
            assert_eq!(
                attr(gateway, "http.request.header.x-request-id"),
                Some(&AttrValue::StrArray(&["client-1".into()]))
            );
            assert_eq!(attr(gateway, "gen_ai.usage.input_tokens"), None);
        });
    }

    #[test]
    fn each_failed_attempt_gets_a_span_before_the_answering_one() {
        let p = parts();
        let failed = [
            FailedAttempt {
                provider: "openai-ha",
                provider_kind: ProviderKind::Openai,
                upstream_api: Wire::ChatCompletions,
                status: 429,
                start_ns: 20,
                end_ns: 30,
            },
            FailedAttempt {
                provider: "azure",
                provider_kind: ProviderKind::Azure,
                upstream_api: Wire::ChatCompletions,
                status: 0,
                start_ns: 30,
                end_ns: 40,
            },
        ];
        let record = RequestRecord {
            provider: "anthropic",
            provider_kind: ProviderKind::Anthropic,
            upstream_api: Wire::Messages,
            failed_attempts: &failed,
            ..record(&p)
        };
        with_spans(&record, |spans| {
            let [_, first, second, answer] = spans else {
                panic!("expected 4 spans, got {}", spans.len());
            };
            assert_eq!((first.start_ns, first.end_ns), (20, 30));
            assert_eq!((second.start_ns, second.end_ns), (30, 40));
            assert_eq!((answer.start_ns, answer.end_ns), (40, 2_000_000_000));
            assert_eq!(first.error.as_deref(), Some("HTTP 429"));
            assert_eq!(
                second.error.as_deref(),
                Some("attempt failed, no status seen")
            );
            assert_eq!(attr(second, "http.response.status_code"), None);
            assert_eq!(answer.error, None);
            // The answering attempt keeps the id the provider saw in traceparent.
            assert_eq!(answer.span_id, [3; 8]);
            let ids: Vec<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
            assert!(ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id)));
            assert!(spans[1..].iter().all(|s| s.parent_span_id == Some([2; 8])));
            assert_eq!(
                attr(second, "tollgate.provider"),
                Some(&AttrValue::Str("azure"))
            );
            assert_eq!(
                attr(first, "http.response.status_code"),
                Some(&AttrValue::Int(429))
            );
        });
    }

    #[test]
    fn sampling_ratio_is_respected() {
        let mut config: TracingConfig =
            serde_json::from_str(r#"{"cluster":"c","sample_ratio":0.25}"#).unwrap();
        let sampled = (0u8..=255).filter(|i| config.samples(&[*i; 16])).count();
        assert!((40..=90).contains(&sampled), "{sampled} of 256");
        config.sample_ratio = 0.0;
        assert!(!config.samples(&[9; 16]));
        assert!(config.problems().is_empty());
    }
}
