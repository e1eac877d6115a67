//! Tollgate's metrics in the dynamic module. Envoy takes a dynamic
//! module's metrics only while its configuration loads, so the families of
//! `stats::FAMILIES` are defined then, with their labels; each full name the
//! stages define later (`tollgate.requests.api.chat...`) is mapped to its
//! family and label values. Envoy joins a family's name and its labels the
//! way the wasm names are written, so with the module's `metrics_namespace`
//! set to `wasmcustom` the stats read the same in either build.
//!
//! Envoy resolves a labelled metric's label values on every change (a
//! symbol table lookup: about 3k instructions), so the histograms every
//! request records, whose only label is the provider, are defined whole per
//! configured provider instead (`tollgate.upstream_ms.provider.openai`):
//! gateway.yaml's `stats_tags` give them the same tags.

use super::abi::{self, Buffer, ConfigPtr, FilterPtr};
use crate::filter::stats::{family_of, tag, MetricKind, FAMILIES};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Metrics {
    /// Envoy's id of each family, by index in `FAMILIES` (`None`: refused).
    families: Vec<Option<usize>>,
    /// Envoy's id of each histogram defined whole, by full name.
    whole: HashMap<String, usize>,
    names: Mutex<Names>,
}

/// The full names defined so far; a name's id is its index plus one.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    defined: Vec<Defined>,
}

/// What a full name is in Envoy.
enum Defined {
    /// A family (index in `FAMILIES`) and its label values.
    Labelled(usize, Vec<String>),
    /// A histogram defined whole: Envoy's id.
    Whole(usize),
}

/// Defines one metric (with no labels: a whole name); Envoy's id.
fn define_one(config: ConfigPtr, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
    let labels: Vec<Buffer> = labels.iter().map(|l| Buffer::of(l.as_bytes())).collect();
    let define = match kind {
        MetricKind::Counter => abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
        MetricKind::Gauge => abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
        MetricKind::Histogram => {
            abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
        }
    };
    let mut id = 0usize;
    // SAFETY: the configuration pointer of the running hook; the name and
    // label views live through the call.
    let result = unsafe {
        define(
            config,
            Buffer::of(name.as_bytes()),
            labels.as_ptr(),
            labels.len(),
            &mut id,
        )
    };
    if result != abi::METRICS_OK {
        log::warn!("tollgate: Envoy refused metric {name} (code {result})");
    }
    (result == abi::METRICS_OK).then_some(id)
}

/// Where a metric changes: in a stream's hook (its filter) or on the main
/// thread (the configuration).
#[derive(Clone, Copy)]
pub enum Target {
    Filter(FilterPtr),
    Config(ConfigPtr),
}

impl Metrics {
    /// Defines every family, and the provider histograms of `providers`
    /// whole; called in the configuration's hook.
    pub fn define_all(config: ConfigPtr, providers: &[&str]) -> Metrics {
        let families = FAMILIES
            .iter()
            .map(|&(kind, name, labels)| define_one(config, kind, name, labels))
            .collect();
        let mut whole = HashMap::new();
        for &(kind, family, labels) in FAMILIES {
            if kind != MetricKind::Histogram || labels != ["provider"] {
                continue;
            }
            for provider in providers {
                let name = format!("{family}.provider.{}", tag(provider));
                if let Some(id) = define_one(config, kind, &name, &[]) {
                    whole.insert(name, id);
                }
            }
        }
        Metrics {
            families,
            whole,
            names: Mutex::default(),
        }
    }

    /// The id of a full metric name, or `None` for a name of no family.
    pub fn define(&self, name: &str) -> Option<u32> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = names.ids.get(name) {
            return Some(*id);
        }
        let defined = match self.whole.get(name) {
            Some(&id) => Defined::Whole(id),
            None => {
                let (family, values) = family_of(name)?;
                Defined::Labelled(family, values.into_iter().map(str::to_string).collect())
            }
        };
        names.defined.push(defined);
        let id = u32::try_from(names.defined.len()).ok()?;
        names.ids.insert(name.to_string(), id);
        Some(id)
    }

    /// Adds to a counter, records into a histogram or sets a gauge, by the
    /// kind of the name's family.
    pub fn change(&self, target: Target, id: Option<u32>, value: u64) {
        let Some(index) = id.and_then(|id| usize::try_from(id).ok()?.checked_sub(1)) else {
            return;
        };
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let (envoy_id, kind, labels): (_, _, Vec<Buffer>) = match names.defined.get(index) {
            Some(Defined::Whole(id)) => (id, &MetricKind::Histogram, Vec::new()),
            Some(Defined::Labelled(family, values)) => {
                let (Some(Some(id)), Some((kind, _, _))) =
                    (self.families.get(*family), FAMILIES.get(*family))
                else {
                    return;
                };
                let labels = values.iter().map(|v| Buffer::of(v.as_bytes())).collect();
                (id, kind, labels)
            }
            None => return,
        };
        let (ptr, labels_len) = (labels.as_ptr(), labels.len());
        // SAFETY: the pointer of the running hook (a stream's filter, or the
        // configuration on the main thread); the label views live through
        // the call (the lock is held); ids are Envoy's, from `define_all`.
        unsafe {
            match (target, kind) {
                (Target::Filter(f), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                        f, *envoy_id, ptr, labels_len, value,
                    )
                }
                (Target::Filter(f), MetricKind::Gauge) => {
                    abi::envoy_dynamic_module_callback_http_filter_set_gauge(
                        f, *envoy_id, ptr, labels_len, value,
                    )
                }
                (Target::Filter(f), MetricKind::Histogram) => {
                    abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                        f, *envoy_id, ptr, labels_len, value,
                    )
                }
                (Target::Config(c), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        c, *envoy_id, ptr, labels_len, value,
                    )
                }
                (Target::Config(c), MetricKind::Gauge) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                        c, *envoy_id, ptr, labels_len, value,
                    )
                }
                (Target::Config(c), MetricKind::Histogram) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                        c, *envoy_id, ptr, labels_len, value,
                    )
                }
            };
        }
    }
}
