//! Fire-and-forget OTLP export, per worker: spans queue up (bounded),
//! already encoded, and the root context sends them on its tick: every full batch at once (up to
//! `max_in_flight`), a partial one when `flush_interval_ms` has passed. A
//! dead, hung or failing collector costs at most `max_in_flight` pending
//! calls and `max_queue` spans; the rest are dropped and counted, never
//! retried without bound. `spans_exported` counts what the collector acknowledged.
//! Host calls go through `env::Host`; nothing here calls the host per
//! request but a dropped span (the queue gauge is set on the tick).

use super::env::Host;
use crate::core::otlp::{self, AttrValue, Span};
use crate::core::telemetry::TracingConfig;
use std::collections::VecDeque;
use std::time::Duration;

pub struct Exporter {
    pub config: TracingConfig,
    /// `service.name` and, when known, `service.instance.id`.
    resource: Vec<(&'static str, String)>,
    /// Spans waiting, as `otlp::encode_span_entry` wrote them, back to back.
    queue: Vec<u8>,
    /// The size in bytes of each span in `queue`, oldest first.
    sizes: VecDeque<usize>,
    /// Export calls in flight: token and spans carried.
    in_flight: Vec<(u32, usize)>,
    last_flush_ms: u64,
    /// Every batch is due at once: the configuration is going away.
    hurried: bool,
    dropped: Option<u32>,
    failures: Option<u32>,
    exported: Option<u32>,
    queued: Option<u32>,
}

impl Exporter {
    /// `node_id` (Envoy's) names the instance when the config does not.
    pub fn new(host: &impl Host, config: TracingConfig, node_id: Option<String>) -> Exporter {
        let instance = config.instance.clone().or(node_id);
        let mut resource = vec![("service.name", config.service_name.clone())];
        if let Some(instance) = instance.filter(|i| !i.is_empty()) {
            resource.push(("service.instance.id", instance));
        }
        Exporter {
            config,
            resource,
            queue: Vec::new(),
            sizes: VecDeque::new(),
            in_flight: Vec::new(),
            last_flush_ms: 0,
            hurried: false,
            dropped: host.define_counter("tollgate.trace.spans_dropped"),
            failures: host.define_counter("tollgate.trace.export_failures"),
            exported: host.define_counter("tollgate.trace.spans_exported"),
            queued: host.define_gauge("tollgate.trace.spans_queued"),
        }
    }

    pub fn push(&mut self, host: &impl Host, spans: &[Span]) {
        for span in spans {
            if self.sizes.len() >= self.config.max_queue {
                host.add_to_counter(self.dropped, 1);
            } else {
                let before = self.queue.len();
                otlp::encode_span_entry(&mut self.queue, span);
                self.sizes.push_back(self.queue.len() - before);
            }
        }
    }

    /// Sends full batches while slots are free, and a partial one when the
    /// flush interval has passed; called on the root context's tick.
    pub fn flush(&mut self, host: &impl Host, now_ms: u64) {
        while self.in_flight.len() < self.config.max_in_flight {
            let full = self.sizes.len() >= self.config.max_batch;
            let due = self.hurried
                || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms;
            if self.sizes.is_empty() || !(full || due) {
                break;
            }
            self.last_flush_ms = now_ms;
            self.send_batch(host);
        }
        host.set_gauge(self.queued, self.sizes.len() as u64);
    }

    fn send_batch(&mut self, host: &impl Host) {
        let take = self.sizes.len().min(self.config.max_batch);
        let bytes: usize = self.sizes.drain(..take).sum();
        let resource: Vec<(&str, AttrValue)> = self
            .resource
            .iter()
            .map(|(k, v)| (*k, AttrValue::Str(v)))
            .collect();
        let body = otlp::encode_export(
            &resource,
            "tollgate",
            self.queue.get(..bytes).unwrap_or_default(),
        );
        self.queue.drain(..bytes.min(self.queue.len()));
        let c = &self.config;
        let mut headers = vec![
            (":method", "POST"),
            (":path", c.path.as_str()),
            (":authority", c.authority.as_str()),
            ("content-type", "application/x-protobuf"),
        ];
        headers.extend(c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_millis(c.timeout_ms);
        match host.dispatch(&c.cluster, headers, &body, timeout) {
            Ok(token) => self.in_flight.push((token, take)),
            Err(e) => {
                host.add_to_counter(self.failures, 1);
                host.add_to_counter(self.dropped, take as u64);
                log::debug!("tollgate: trace export not sent: {e}");
            }
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.iter().any(|(t, _)| *t == token)
    }

    /// From now on spans leave without waiting for the flush interval.
    #[cfg(feature = "wasm")]
    pub fn hurry(&mut self) {
        self.hurried = true;
    }

    /// No span waits to be sent (those in flight are the collector's:
    /// never resent, so nothing to hand over or wait for).
    pub fn idle(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Takes the queued spans of `other`, whose configuration is going away
    /// (its exports in flight are the collector's: never sent twice).
    pub fn adopt(&mut self, other: &mut Exporter) {
        let room = self.config.max_queue.saturating_sub(self.sizes.len());
        let take = other.sizes.len().min(room);
        let bytes: usize = other.sizes.iter().take(take).sum();
        self.queue
            .extend(other.queue.drain(..bytes.min(other.queue.len())));
        self.sizes.extend(other.sizes.drain(..take));
        let dropped = other.sizes.len();
        other.sizes.clear();
        other.queue.clear();
        if dropped > 0 {
            log::warn!(
                "tollgate: span queue full, dropped {dropped} spans of a replaced configuration"
            );
        }
    }

    /// The collector answered (or the call failed or timed out).
    pub fn on_response(&mut self, host: &impl Host, token: u32, status: Option<String>) {
        let Some(at) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, spans) = self.in_flight.swap_remove(at);
        if status.as_deref().is_some_and(|s| s.starts_with('2')) {
            host.add_to_counter(self.exported, spans as u64);
        } else {
            host.add_to_counter(self.failures, 1);
            host.add_to_counter(self.dropped, spans as u64);
            log::debug!(
                "tollgate: trace export failed: {}",
                status.as_deref().unwrap_or("no answer")
            );
        }
    }
}
