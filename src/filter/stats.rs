//! Envoy stats with dimensions. proxy-wasm metrics have no labels, so the
//! dimensions go into the name as `.<tag>.<value>` pairs, which the
//! `stats_tags` in gateway.yaml turn back into tags (Prometheus labels).
//! Metrics are defined on first use; a per-worker cap on distinct names keeps
//! arbitrary client model names from growing Envoy's stats without bound.

use super::env::Host;
use super::sync::Lock;
use std::collections::{BTreeMap, HashMap};

/// Distinct metric names per worker; beyond it the model tag becomes `other`.
const MAX_METRICS: usize = 2000;

#[derive(Default)]
pub struct Stats {
    ids: Lock<HashMap<String, Option<u32>>>,
    /// The metrics of each request shape, by model, so a request's counts
    /// need no name formatting (five names a request otherwise).
    shapes: Lock<HashMap<String, Vec<Shape>>>,
    /// Counter increments made while requests run, by metric id, added to
    /// Envoy's counters on the root context's tick: one host call per
    /// counter and tick instead of one per increment. Counters lag by a tick.
    pending: Lock<BTreeMap<u32, u64>>,
}

/// A forwarded request's dimensions and its metrics' ids.
struct Shape {
    api: &'static str,
    provider: String,
    status: &'static str,
    metrics: RequestMetrics,
}

/// The metrics every forwarded request counts into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestMetrics {
    pub requests: Option<u32>,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    pub upstream_ms: Option<u32>,
    pub time_to_first_chunk_ms: Option<u32>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Histogram,
}

impl Stats {
    fn id(&self, host: &impl Host, kind: Kind, name: &str) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return *id;
        }
        if ids.len() >= MAX_METRICS {
            return None;
        }
        let id = match kind {
            Kind::Counter => host.define_counter(name),
            Kind::Histogram => host.define_histogram(name),
        };
        ids.insert(name.to_string(), id);
        id
    }

    /// The metrics of a request to `provider` for `model` through `api`
    /// that ended in `status` (a class, `status_class`).
    pub fn request_metrics(
        &self,
        host: &impl Host,
        api: &'static str,
        provider: &str,
        model: &str,
        status: &'static str,
    ) -> RequestMetrics {
        let known = self.shapes.borrow().get(model).and_then(|shapes| {
            shapes
                .iter()
                .find(|s| s.api == api && s.status == status && s.provider == provider)
                .map(|s| s.metrics)
        });
        if let Some(metrics) = known {
            return metrics;
        }
        let provider_tag = tag(provider);
        let model_tag = self.model_tag(model);
        let metrics = RequestMetrics {
            requests: self.id(
                host,
                Kind::Counter,
                &format!("tollgate.requests.api.{api}.provider.{provider_tag}.model.{model_tag}.status.{status}"),
            ),
            input_tokens: self.id(
                host,
                Kind::Counter,
                &format!("tollgate.tokens.direction.input.provider.{provider_tag}.model.{model_tag}"),
            ),
            output_tokens: self.id(
                host,
                Kind::Counter,
                &format!("tollgate.tokens.direction.output.provider.{provider_tag}.model.{model_tag}"),
            ),
            upstream_ms: self.id(
                host,
                Kind::Histogram,
                &format!("tollgate.upstream_ms.provider.{provider_tag}"),
            ),
            time_to_first_chunk_ms: self.id(
                host,
                Kind::Histogram,
                &format!("tollgate.time_to_first_chunk_ms.provider.{provider_tag}"),
            ),
        };
        // Bounded like the names: a client's stream of new model names
        // stops adding shapes (they are then looked up by name each time).
        let mut shapes = self.shapes.borrow_mut();
        if shapes.len() < MAX_METRICS {
            shapes.entry(model.to_string()).or_default().push(Shape {
                api,
                provider: provider.to_string(),
                status,
                metrics,
            });
        }
        metrics
    }

    pub fn count(&self, host: &impl Host, name: &str, n: u64) {
        self.add(self.id(host, Kind::Counter, name), n);
    }

    /// Adds `n` to counter `id` at the next `flush`.
    pub fn add(&self, id: Option<u32>, n: u64) {
        if let (Some(id), true) = (id, n > 0) {
            let mut pending = self.pending.borrow_mut();
            let sum = pending.entry(id).or_insert(0);
            *sum = sum.saturating_add(n);
        }
    }

    /// Hands Envoy what `add` gathered since the last flush.
    pub fn flush(&self, host: &impl Host) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (id, n) in pending {
            host.add_to_counter(Some(id), n);
        }
    }

    /// The model tag, or `other` once the worker holds many distinct names.
    fn model_tag(&self, model: &str) -> String {
        if self.ids.borrow().len() >= MAX_METRICS / 2 {
            "other".into()
        } else {
            tag(model)
        }
    }
}

/// A tag value safe inside a dotted stat name: dots and anything unusual become `_`.
pub fn tag(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "none".into()
    } else {
        cleaned
    }
}

pub fn status_class(status: u32) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "reset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;

    #[test]
    fn a_request_shape_is_named_once_and_counted_under_its_names() {
        let (stats, host) = (Stats::default(), MockHost::default());
        let first = stats.request_metrics(&host, "chat_completions", "openai", "gpt-4o", "2xx");
        let again = stats.request_metrics(&host, "chat_completions", "openai", "gpt-4o", "2xx");
        assert_eq!(first, again);
        host.add_to_counter(again.requests, 1);
        host.add_to_counter(again.output_tokens, 7);
        assert_eq!(
            host.counter(
                "tollgate.requests.api.chat_completions.provider.openai.model.gpt-4o.status.2xx"
            ),
            1
        );
        assert_eq!(
            host.counter("tollgate.tokens.direction.output.provider.openai.model.gpt-4o"),
            7
        );
        // Every dimension makes its own shape.
        for (api, provider, model, status) in [
            ("messages", "openai", "gpt-4o", "2xx"),
            ("chat_completions", "azure", "gpt-4o", "2xx"),
            ("chat_completions", "openai", "gpt-4o-mini", "2xx"),
            ("chat_completions", "openai", "gpt-4o", "5xx"),
        ] {
            let other = stats.request_metrics(&host, api, provider, model, status);
            assert_ne!(
                other.requests, first.requests,
                "{api} {provider} {model} {status}"
            );
        }
    }

    #[test]
    fn shapes_stay_bounded_under_new_model_names() {
        let (stats, host) = (Stats::default(), MockHost::default());
        for i in 0..MAX_METRICS + 50 {
            stats.request_metrics(&host, "chat_completions", "openai", &format!("m{i}"), "2xx");
        }
        assert!(stats.shapes.borrow().len() <= MAX_METRICS);
        assert!(stats.ids.borrow().len() <= MAX_METRICS);
    }
}
