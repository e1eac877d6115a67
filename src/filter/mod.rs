//! The proxy-wasm adapter: the only code that talks to Envoy. Host calls go
//! through `host`, where every failure is a value, because a panic kills the
//! VM for the worker; the stages reach them through `env::Host`, so they run
//! natively in tests against `mock::MockHost`.

mod attempt_stage;
mod background;
mod cache_index;
mod context;
mod env;
mod exporter;
#[cfg(feature = "wasm")]
mod host;
mod key_cache;
mod leases;
#[cfg(test)]
mod mock;
#[cfg(feature = "dynamic-module")]
mod native;
#[cfg(feature = "wasm")]
mod relay_stage;
mod reporter;
mod request_stage;
mod response;
#[cfg(feature = "wasm")]
mod root;
mod route_headers;
#[cfg(feature = "wasm")]
mod route_stage;
mod shared;
mod shared_data;
mod sidecar;
mod size_classes;
mod stats;
mod sync;
mod trace;

/// Whether the two-stage chain's route stage runs beside the request stage
/// (it shares the wasm VM); the native module is always the single stage.
#[cfg(feature = "wasm")]
use root::route_stage_present;
#[cfg(not(feature = "wasm"))]
fn route_stage_present() -> bool {
    false
}

#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: size_classes::vm::SizeClasses = size_classes::vm::SizeClasses::new();

#[cfg(feature = "wasm")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
