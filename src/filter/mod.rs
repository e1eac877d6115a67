//! The proxy-wasm adapter: the only code that talks to Envoy. Host calls go
//! through `host`, where every failure is a value, because a panic kills the
//! VM for the worker; the stages reach them through `env::Host`, so they run
//! natively in tests against `mock::MockHost`.

#[cfg(any(target_arch = "wasm32", test))]
mod attempt_stage;
mod background;
mod cache_index;
mod env;
mod exporter;
#[cfg(any(target_arch = "wasm32", test))]
mod host;
mod key_cache;
mod leases;
#[cfg(test)]
mod mock;
#[cfg(all(feature = "dynamic-module", not(target_arch = "wasm32")))]
mod native;
mod reporter;
mod request_stage;
mod response;
#[cfg(any(target_arch = "wasm32", test))]
mod root;
mod route_headers;
#[cfg(any(target_arch = "wasm32", test))]
mod route_stage;
mod shared;
mod shared_data;
mod sidecar;
#[cfg(any(target_arch = "wasm32", test))]
mod size_classes;
mod stats;
mod sync;
mod trace;

/// Whether the two-stage chain's route stage runs beside the request stage
/// (it shares the wasm VM); the native module is always the single stage.
#[cfg(any(target_arch = "wasm32", test))]
use root::route_stage_present;
#[cfg(not(any(target_arch = "wasm32", test)))]
fn route_stage_present() -> bool {
    false
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: size_classes::SizeClasses = size_classes::SizeClasses::new();

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
