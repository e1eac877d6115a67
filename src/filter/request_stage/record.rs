//! The end of a request (`on_log`): Envoy counters, the usage report for
//! the sidecar and the trace, for a request that was forwarded or refused
//! by a guardrail (no upstream span, no cost); for any other refusal, a
//! report for the audit log only.

use super::RequestStage;
use crate::core::auth::{KeyCheck, KeyInfo};
use crate::core::budget::{self, UsageReport};
use crate::core::content;
use crate::core::digest;
use crate::core::exchange::Exchange;
use crate::core::guard::GuardEvent;
use crate::core::telemetry::RequestRecord;
use crate::core::usage::Usage;
use crate::filter::env::Host;
use crate::filter::stats;
use crate::filter::trace::RequestTrace;
use std::sync::Arc;

/// A request the gateway refused before routing it (or, for a budget,
/// right after): what the audit log gets.
#[derive(Debug)]
pub(super) struct Refusal {
    /// The error code the client got.
    pub code: &'static str,
    /// The model asked for, when the refusal names it.
    pub model: String,
    /// The route, when one was decided.
    pub routed: Option<Exchange>,
}

/// Where a reported request went: the model asked for, the upstream
/// model, the provider and its region (empty when refused before routing).
type Target = (String, String, String, Option<String>);

impl<H: Host> RequestStage<H> {
    /// Reports a refusal for the audit log (no ledger row: `refused` says
    /// so to the sidecar). Bad keys are reported too, without a key id.
    pub(super) fn record_refusal(&mut self, refusal: Refusal) {
        let shared = Arc::clone(&self.shared);
        let Some(reporter) = &shared.reporter else {
            return;
        };
        let key_check = self.key.clone();
        let key = key_check.as_deref().and_then(KeyCheck::info);
        let target = match refusal.routed {
            Some(f) => (f.model, f.upstream_model, f.provider, f.region),
            None => (refusal.model, String::new(), String::new(), None),
        };
        let now = self.host.now_ns();
        let report = UsageReport {
            refused: Some(refusal.code.into()),
            ..self.report(key, now, target)
        };
        reporter.borrow_mut().push(&self.host, report);
    }

    /// What every report carries: the request's ids (the request is over,
    /// so they move into it), who sent it, where it went (`target`: model
    /// asked for, upstream model, provider, region), the client's API, the
    /// status the client got, the time and the body digests; no tokens,
    /// nothing forwarded or billed.
    fn report(&mut self, key: Option<&KeyInfo>, now_ns: u64, target: Target) -> UsageReport {
        let (model, upstream_model, provider, region) = target;
        UsageReport {
            request_id: std::mem::take(&mut self.request_id),
            reservation_id: None,
            lease_id: None,
            lease_debits: Vec::new(),
            key_id: key.map(|k| k.key_id.clone()),
            team: key.and_then(|k| k.team.clone()),
            user: key.and_then(|k| k.user.clone()),
            model,
            upstream_model,
            provider,
            api: self.api_name().into(),
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            status: self.response.status,
            latency_ms: now_ns.saturating_sub(self.started_ns) / 1_000_000,
            estimated: false,
            stream: false,
            guardrail_events: Vec::new(),
            forwarded: false,
            ts: budget::unix_secs(now_ns),
            cache_hit: false,
            request_digest: self.request_digest.take(),
            response_digest: self.response.digest.take().map(digest::hex_of),
            region,
            refused: None,
        }
    }

    /// The usage report for the sidecar; tokens are estimated when the
    /// provider sent no usage (or the response was cut short). A request
    /// that was not forwarded has none.
    pub(super) fn usage_report(
        &mut self,
        f: Exchange,
        forwarded: bool,
        key: Option<&KeyInfo>,
        now_ns: u64,
    ) -> UsageReport {
        let target = (f.model, f.upstream_model, f.provider, f.region);
        let base = self.report(key, now_ns, target);
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
            lease_id: f.lease_id,
            lease_debits: f.lease_debits,
            input_tokens: input,
            output_tokens: output,
            cached_tokens: usage.cached_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            estimated,
            stream: response.stream,
            guardrail_events: self.guard_events.iter().map(Into::into).collect(),
            forwarded,
            cache_hit: self
                .cache
                .as_ref()
                .is_some_and(|c| c.outcome == super::cache::Outcome::Hit),
            ..base
        }
    }

    /// Envoy counters: requests, tokens, upstream time and time to first chunk.
    fn count_request(&self, forwarded: &Exchange, usage: &Usage, now_ns: u64) {
        let metrics = self.shared.stats.request_metrics(
            &self.host,
            self.api_name(),
            &forwarded.provider,
            &forwarded.model,
            stats::status_class(self.response.status),
        );
        let stats = &self.shared.stats;
        stats.add(metrics.requests, 1);
        stats.add(metrics.input_tokens, usage.input_tokens);
        stats.add(metrics.output_tokens, usage.output_tokens);
        let upstream_ms = now_ns.saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
        self.host.record_value(metrics.upstream_ms, upstream_ms);
        if let Some(first) = self.response.first_chunk_ns {
            let ttft = first.saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
            self.host.record_value(metrics.time_to_first_chunk_ms, ttft);
        }
    }

    /// A debug line, the trace and the usage report of a request that was
    /// forwarded, or refused by a guardrail (no upstream span, no cost).
    pub(super) fn record(&mut self, routed: Exchange, forwarded: bool) {
        let usage = self.response.summary.usage.unwrap_or_default();
        // The end is the upstream body's end when it ended (Envoy logs
        // right after); otherwise now (a reset, a client that left).
        let now = self.response.end_ns.unwrap_or_else(|| self.host.now_ns());
        if forwarded {
            self.count_request(&routed, &usage, now);
        }
        let key_check = self.key.clone();
        let key = key_check.as_deref().and_then(KeyCheck::info);
        log::debug!(
            "tollgate: {} request={} key={} model={} provider={} forwarded={forwarded} status={} stream={} input_tokens={} output_tokens={} ms={}",
            self.api_name(),
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
        self.trace_request(&routed, forwarded, key, now);
        if forwarded {
            self.store_answer(&routed.provider, &routed.upstream_model, &usage);
        }
        let shared = Arc::clone(&self.shared);
        if let Some(reporter) = &shared.reporter {
            let report = self.usage_report(routed, forwarded, key, now);
            reporter.borrow_mut().push(&self.host, report);
        }
    }

    /// Hands the request's spans to the exporter (when it is sampled).
    fn trace_request(&self, routed: &Exchange, forwarded: bool, key: Option<&KeyInfo>, now: u64) {
        let (Some(trace), Some(client_api)) = (&self.trace, self.api()) else {
            return;
        };
        // Unsampled: nothing below is needed.
        if !trace.sampled {
            return;
        }
        let guard_events: Vec<String> = self.guard_events.iter().map(GuardEvent::label).collect();
        let output_messages = self.response.captured.as_deref().map(|text| {
            let finish = self.response.summary.meta.finish_reasons.first();
            content::output_messages(text, finish.map(String::as_str))
        });
        let failed_attempts = self.failed_attempts(now);
        RequestTrace::export(
            &self.shared,
            &self.host,
            &RequestRecord {
                ids: trace.ids,
                forwarded,
                request_id: &self.request_id,
                client_request_id: self.client_request_id.as_ref(),
                client_api,
                upstream_api: routed.upstream_api,
                provider: &routed.provider,
                provider_kind: routed.provider_kind,
                request_model: &routed.model,
                params: &routed.params,
                summary: &self.response.summary,
                status: self.response.status,
                key_id: key.map(|k| k.key_id.as_str()),
                team: key.and_then(|k| k.team.as_deref()),
                start_ns: self.started_ns,
                upstream_start_ns: routed.upstream_start_ns,
                first_chunk_ns: self.response.first_chunk_ns,
                end_ns: now,
                input_messages: routed.input_messages.as_deref(),
                output_messages: output_messages.as_deref(),
                guard_events: &guard_events,
                failed_attempts: &failed_attempts,
                cache: self.cache.as_ref().map(|c| c.outcome.name()),
            },
        );
    }
}
