//! Envoy counters (shown as `wasmcustom.tollgate_*` in /stats).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

#[derive(Debug, Default, Clone, Copy)]
pub struct Metrics {
    pub requests: Option<u32>,
    pub rejected: Option<u32>,
    pub sidecar_failures: Option<u32>,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
}

impl Metrics {
    pub fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            requests: counter("tollgate_requests_total"),
            rejected: counter("tollgate_rejected_total"),
            sidecar_failures: counter("tollgate_sidecar_failures_total"),
            input_tokens: counter("tollgate_input_tokens_total"),
            output_tokens: counter("tollgate_output_tokens_total"),
        }
    }
}

/// Adds to a counter; a missing metric or a host error only loses a count.
pub fn add(metric: Option<u32>, n: u64) {
    if let (Some(id), Ok(n)) = (metric, i64::try_from(n)) {
        if n > 0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}
