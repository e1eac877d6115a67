//! The proxy-wasm adapter: the only code that talks to Envoy. Host calls go
//! through `host`, where every failure is a value, because a panic kills the
//! VM for the worker; the stages reach them through `env::Host`, so they run
//! natively in tests against `mock::MockHost`.

mod attempt_stage;
mod background;
mod cache_index;
mod env;
mod exporter;
mod host;
mod key_cache;
mod leases;
#[cfg(test)]
mod mock;
mod reporter;
mod request_stage;
mod response;
mod root;
mod route_headers;
mod route_stage;
mod shared_data;
mod sidecar;
mod size_classes;
mod stats;
mod sync;
mod trace;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: size_classes::SizeClasses = size_classes::SizeClasses::new();

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
