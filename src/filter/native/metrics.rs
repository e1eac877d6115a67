//! Tollgate's metrics in the dynamic module. Envoy takes a dynamic
//! module's metrics only while its configuration loads, so the families of
//! `stats::FAMILIES` are defined then, with their labels; each full name the
//! stages define later (`tollgate.requests.api.chat...`) is mapped to its
//! family and label values. Envoy joins a family's name and its labels the
//! way the wasm names are written, so with the module's `metrics_namespace`
//! set to `wasmcustom` the stats read the same in either build.

use super::abi::{self, Buffer, ConfigPtr, FilterPtr};
use crate::filter::stats::{family_of, MetricKind, FAMILIES};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Metrics {
    /// Envoy's id of each family, by index in `FAMILIES` (`None`: refused).
    families: Vec<Option<usize>>,
    names: Mutex<Names>,
}

/// The full names defined so far; a name's id is its index plus one.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    defined: Vec<(usize, Vec<String>)>,
}

/// Where a metric changes: in a stream's hook (its filter) or on the main
/// thread (the configuration).
#[derive(Clone, Copy)]
pub enum Target {
    Filter(FilterPtr),
    Config(ConfigPtr),
}

impl Metrics {
    /// Defines every family; called in the configuration's hook.
    pub fn define_all(config: ConfigPtr) -> Metrics {
        let families = FAMILIES
            .iter()
            .map(|(kind, name, labels)| {
                let labels: Vec<Buffer> = labels.iter().map(|l| Buffer::of(l.as_bytes())).collect();
                let define = match kind {
                    MetricKind::Counter => {
                        abi::envoy_dynamic_module_callback_http_filter_config_define_counter
                    }
                    MetricKind::Gauge => {
                        abi::envoy_dynamic_module_callback_http_filter_config_define_gauge
                    }
                    MetricKind::Histogram => {
                        abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
                    }
                };
                let mut id = 0usize;
                // SAFETY: the configuration pointer of the running hook; the
                // name and label views live through the call.
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
            })
            .collect();
        Metrics {
            families,
            names: Mutex::default(),
        }
    }

    /// The id of a full metric name, or `None` for a name of no family.
    pub fn define(&self, name: &str) -> Option<u32> {
        let (family, values) = family_of(name)?;
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = names.ids.get(name) {
            return Some(*id);
        }
        names
            .defined
            .push((family, values.into_iter().map(str::to_string).collect()));
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
        let Some((family, values)) = names.defined.get(index) else {
            return;
        };
        let (Some(Some(envoy_id)), Some((kind, _, _))) =
            (self.families.get(*family), FAMILIES.get(*family))
        else {
            return;
        };
        let labels: Vec<Buffer> = values.iter().map(|v| Buffer::of(v.as_bytes())).collect();
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
