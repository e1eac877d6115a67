//! Per-request trace state: ids (continuing the client's `traceparent`),
//! the sampling decision, and the spans handed to the worker's exporter.

use super::env::Host;
use super::shared::Shared;
use crate::core::header_map::Headers;
use crate::core::telemetry::{self, RequestRecord, TraceIds};
use crate::core::tracecontext;

pub struct RequestTrace {
    pub ids: TraceIds,
    pub sampled: bool,
}

impl RequestTrace {
    /// `None` when tracing is off. Ids derive from what makes the gateway's
    /// request id (random per VM, never the client's).
    pub fn start(shared: &Shared, headers: &Headers) -> Option<RequestTrace> {
        let exporter = shared.exporter.as_ref()?;
        let (minted_trace, span_id, upstream_span_id) =
            tracecontext::mint_ids(shared.id_seed, shared.requests());
        let parent = headers.get("traceparent").and_then(tracecontext::parse);
        let (trace_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.sampled),
            None => (
                minted_trace,
                exporter.borrow().config.samples(&minted_trace),
            ),
        };
        Some(RequestTrace {
            ids: TraceIds {
                trace_id,
                span_id,
                upstream_span_id,
                parent: parent.map(|p| p.parent_id),
            },
            sampled,
        })
    }

    /// The `traceparent` the provider receives: its parent is our upstream span.
    pub fn upstream_traceparent(&self) -> String {
        tracecontext::format(&self.ids.trace_id, &self.ids.upstream_span_id, self.sampled)
    }

    /// Hands a sampled request's spans to the worker's exporter. The caller
    /// checks `sampled` first, before it builds the record.
    pub fn export(shared: &Shared, host: &impl Host, record: &RequestRecord) {
        if let Some(exporter) = &shared.exporter {
            telemetry::with_spans(record, |spans| exporter.borrow_mut().push(host, spans));
        }
    }

    pub fn captures_content(shared: &Shared) -> bool {
        shared
            .exporter
            .as_ref()
            .is_some_and(|e| e.borrow().config.capture_content)
    }
}
