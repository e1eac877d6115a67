//! Small `Result`-aware wrappers over the host calls the stages use.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::UNIX_EPOCH;

pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// Sets (or with `None` removes) a request header; false if the host refused.
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

pub fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Answers the client locally with a JSON body.
pub fn send_json(status: u32, body: &[u8]) {
    let headers = vec![
        ("content-type", "application/json"),
        ("x-tollgate", "gateway"),
    ];
    if let Err(e) = hostcalls::send_http_response(status, headers, Some(body)) {
        log::error!("tollgate: could not send local reply {status}: {e:?}");
    }
}
