//! The end of a request (`on_log`): Envoy counters, the usage report for
//! the sidecar and the trace, for a request that was forwarded or refused
//! by a guardrail (no upstream span, no cost).

use super::RequestStage;
use crate::core::auth::{KeyCheck, KeyInfo};
use crate::core::budget::{self, UsageReport};
use crate::core::content;
use crate::core::exchange::Exchange;
use crate::core::guard::GuardEvent;
use crate::core::telemetry::RequestRecord;
use crate::core::usage::Usage;
use crate::filter::env::Host;
use crate::filter::stats;

impl<H: Host> RequestStage<H> {
    /// The usage report for the sidecar; tokens are estimated when the
    /// provider sent no usage (or the response was cut short). A request
    /// that was not forwarded has none.
    pub(super) fn usage_report(
        &self,
        f: &Exchange,
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
            reservation_id: None,
            lease_id: f.lease_id.clone(),
            lease_debits: f.lease_debits.clone(),
            key_id: key.map(|k| k.key_id.clone()),
            team: key.and_then(|k| k.team.clone()),
            user: key.and_then(|k| k.user.clone()),
            model: f.model.clone(),
            upstream_model: f.upstream_model.clone(),
            provider: f.provider.clone(),
            api: self.api_name().into(),
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

    /// Envoy counters: requests, tokens, upstream time and time to first chunk.
    fn count_request(&self, forwarded: &Exchange, usage: &Usage, now_ns: u64) {
        let metrics = self.shared.stats.request_metrics(
            &self.host,
            self.api_name(),
            &forwarded.provider,
            &forwarded.model,
            stats::status_class(self.response.status),
        );
        self.host.add_to_counter(metrics.requests, 1);
        self.host
            .add_to_counter(metrics.input_tokens, usage.input_tokens);
        self.host
            .add_to_counter(metrics.output_tokens, usage.output_tokens);
        let upstream_ms = now_ns.saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
        self.host.record_value(metrics.upstream_ms, upstream_ms);
        if let Some(first) = self.response.first_chunk_ns {
            let ttft = first.saturating_sub(forwarded.upstream_start_ns) / 1_000_000;
            self.host.record_value(metrics.time_to_first_chunk_ms, ttft);
        }
    }

    /// Usage report, a debug line and the trace of a request that was
    /// forwarded, or refused by a guardrail (no upstream span, no cost).
    pub(super) fn record(&self, routed: &Exchange, forwarded: bool) {
        let usage = self.response.summary.usage.unwrap_or_default();
        let now = self.host.now_ns();
        if forwarded {
            self.count_request(routed, &usage, now);
        }
        let key = match self.key.as_deref() {
            Some(KeyCheck::Valid(info)) => Some(info),
            _ => None,
        };
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
        if let Some(reporter) = &self.shared.reporter {
            reporter
                .borrow_mut()
                .push(&self.host, self.usage_report(routed, forwarded, key, now));
        }
        let (Some(trace), Some(client_api)) = (&self.trace, self.api()) else {
            return;
        };
        trace.finish(
            &self.shared,
            &self.host,
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
