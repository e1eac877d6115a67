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
    /// The attempt counters' ids by provider and status class (the
    /// configuration's providers bound them), so an attempt's count needs
    /// no name formatting.
    attempts: Lock<Vec<(String, &'static str, Option<u32>)>>,
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

    /// Counts an attempt on `provider` that ended with `status`.
    pub fn count_attempt(&self, host: &impl Host, provider: &str, status: u32) {
        let class = status_class(status);
        let known = self
            .attempts
            .borrow()
            .iter()
            .find(|(p, c, _)| *c == class && p == provider)
            .map(|(_, _, id)| *id);
        let id = known.unwrap_or_else(|| {
            let id = self.id(host, Kind::Counter, &attempt(provider, status));
            self.attempts
                .borrow_mut()
                .push((provider.to_string(), class, id));
            id
        });
        self.add(id, 1);
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

/// What a metric is to Envoy.
#[cfg(any(test, feature = "dynamic-module"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family the filter has: its name, kind, and the labels its
/// names carry as `.label.value` pairs, in this order (`gateway.yaml`'s
/// `stats_tags` read them back as tags). The wasm build defines each full
/// name on first use; Envoy takes a dynamic module's metrics only while its
/// configuration loads, so the native module defines these families then,
/// and its names come out the same. A name outside them is a bug the test
/// hosts catch (`mock.rs`).
#[cfg(any(test, feature = "dynamic-module"))]
pub const FAMILIES: &[(MetricKind, &str, &[&str])] = &[
    (
        MetricKind::Counter,
        "tollgate.requests",
        &["api", "provider", "model", "status"],
    ),
    (
        MetricKind::Counter,
        "tollgate.tokens",
        &["direction", "provider", "model"],
    ),
    (MetricKind::Counter, "tollgate.rejected", &["api", "reason"]),
    (MetricKind::Counter, "tollgate.budget_denials", &["reason"]),
    (
        MetricKind::Counter,
        "tollgate.guardrail_events",
        &["guardrail", "kind", "direction", "action"],
    ),
    (
        MetricKind::Counter,
        "tollgate.attempts",
        &["provider", "status"],
    ),
    (MetricKind::Counter, "tollgate.fallbacks", &["provider"]),
    (MetricKind::Counter, "tollgate.cache.hits", &[]),
    (MetricKind::Counter, "tollgate.cache.misses", &[]),
    (MetricKind::Counter, "tollgate.cache.stores", &[]),
    (MetricKind::Counter, "tollgate.cache.bypassed", &[]),
    (MetricKind::Counter, "tollgate.cache.lookup_failures", &[]),
    (MetricKind::Counter, "tollgate.key_cache.shared_hits", &[]),
    (
        MetricKind::Counter,
        "tollgate.leases.admitted_from_slot",
        &[],
    ),
    (MetricKind::Counter, "tollgate.leases.callouts", &[]),
    (MetricKind::Counter, "tollgate.leases.refills", &[]),
    (MetricKind::Counter, "tollgate.sidecar_failures", &[]),
    (MetricKind::Counter, "tollgate.trace.spans_exported", &[]),
    (MetricKind::Counter, "tollgate.trace.spans_dropped", &[]),
    (MetricKind::Counter, "tollgate.trace.export_failures", &[]),
    (MetricKind::Counter, "tollgate.usage.reports_sent", &[]),
    (MetricKind::Counter, "tollgate.usage.reports_dropped", &[]),
    (MetricKind::Counter, "tollgate.usage.report_failures", &[]),
    (MetricKind::Gauge, "tollgate.trace.spans_queued", &[]),
    (MetricKind::Gauge, "tollgate.usage.reports_queued", &[]),
    (MetricKind::Gauge, "tollgate.vm.memory_bytes", &[]),
    (MetricKind::Histogram, "tollgate.upstream_ms", &["provider"]),
    (
        MetricKind::Histogram,
        "tollgate.time_to_first_chunk_ms",
        &["provider"],
    ),
];

/// The family of a full metric name (its index in `FAMILIES`) and its
/// label values, in the family's order.
#[cfg(any(test, feature = "dynamic-module"))]
pub fn family_of(name: &str) -> Option<(usize, Vec<&str>)> {
    FAMILIES
        .iter()
        .enumerate()
        .find_map(|(i, (_, base, labels))| {
            let rest = name.strip_prefix(base)?;
            if rest.is_empty() {
                return labels.is_empty().then(|| (i, Vec::new()));
            }
            let mut parts = rest.strip_prefix('.')?.split('.');
            let mut values = Vec::with_capacity(labels.len());
            for label in labels.iter() {
                if parts.next()? != *label {
                    return None;
                }
                values.push(parts.next()?);
            }
            parts.next().is_none().then_some((i, values))
        })
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

/// The counter of attempts on `provider` that ended with `status`.
fn attempt(provider: &str, status: u32) -> String {
    format!(
        "tollgate.attempts.provider.{}.status.{}",
        tag(provider),
        status_class(status)
    )
}

pub fn status_class(status: u32) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        // No status seen: a reset, a timeout, or a first attempt on a
        // direct cluster that failed and was retried into the relay.
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::MockHost;

    #[test]
    fn a_name_is_found_in_its_family_with_its_label_values() {
        let (i, values) =
            family_of("tollgate.requests.api.chat.provider.openai.model.gpt-4o.status.2xx")
                .unwrap();
        assert_eq!(FAMILIES[i].1, "tollgate.requests");
        assert_eq!(values, ["chat", "openai", "gpt-4o", "2xx"]);
        assert_eq!(family_of("tollgate.cache.hits"), Some((7, vec![])));
        // Labels out of order, missing, extra, or a name of no family.
        assert_eq!(
            family_of("tollgate.requests.provider.openai.api.chat.model.m.status.2xx"),
            None
        );
        assert_eq!(family_of("tollgate.fallbacks"), None);
        assert_eq!(family_of("tollgate.fallbacks.provider.a.extra.b"), None);
        assert_eq!(family_of("tollgate.cache.hitsx"), None);
        assert_eq!(family_of("tollgate.unknown"), None);
    }

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
