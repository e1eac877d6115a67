//! Envoy stats with dimensions. proxy-wasm metrics have no labels, so the
//! dimensions go into the name as `.<tag>.<value>` pairs, which the
//! `stats_tags` in gateway.yaml turn back into tags (Prometheus labels).
//! Metrics are defined on first use; a per-worker cap on distinct names keeps
//! arbitrary client model names from growing Envoy's stats without bound.

use super::env::Host;
use std::cell::RefCell;
use std::collections::HashMap;

/// Distinct metric names per worker; beyond it the model tag becomes `other`.
const MAX_METRICS: usize = 2000;

#[derive(Default)]
pub struct Stats {
    ids: RefCell<HashMap<String, Option<u32>>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Histogram,
}

impl Stats {
    fn id(&self, host: &impl Host, kind: Kind, name: String) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(&name) {
            return *id;
        }
        if ids.len() >= MAX_METRICS {
            return None;
        }
        let id = match kind {
            Kind::Counter => host.define_counter(&name),
            Kind::Histogram => host.define_histogram(&name),
        };
        ids.insert(name, id);
        id
    }

    pub fn count(&self, host: &impl Host, name: String, n: u64) {
        host.add_to_counter(self.id(host, Kind::Counter, name), n);
    }

    pub fn record(&self, host: &impl Host, name: String, value: u64) {
        host.record_value(self.id(host, Kind::Histogram, name), value);
    }

    /// The model tag, or `other` once the worker holds many distinct names.
    pub fn model_tag(&self, model: &str) -> String {
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
