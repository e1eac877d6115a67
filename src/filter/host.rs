//! The host calls the stages use, declared here rather than taken from
//! `proxy_wasm::hostcalls`: those return `Result` but panic on any status they
//! did not expect (e.g. BadArgument when a header map is gone, or a non-UTF-8
//! header value), and a panic kills the VM for the whole worker. Here every
//! status is a value. The one exception is `dispatch_http_call`, which must
//! go through the SDK so it can route the answer to the calling context.

use super::env::{json_reply_headers, SharedWrite};
use crate::core::header_map::{self, Headers};
use std::ptr::null_mut;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

// Map and buffer kinds and stream types of the proxy-wasm ABI 0.2.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const REQUEST_BODY: u32 = 0;
pub const RESPONSE_BODY: u32 = 1;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_HTTP_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;
const METRIC_HISTOGRAM: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_status(kind: u32, length: *mut usize, flags: *mut u32) -> u32;
    fn proxy_set_buffer_bytes(
        kind: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// Takes ownership of bytes the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    match status {
        STATUS_OK if data.is_null() => Some(Vec::new()),
        // SAFETY: on Ok the host returned a buffer of `size` bytes allocated
        // by this module's allocator, which we now own.
        STATUS_OK => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
        STATUS_NOT_FOUND => None,
        other => {
            log::debug!("tollgate: host call refused with status {other}");
            None
        }
    }
}

pub fn header(map: u32, name: &str) -> Option<String> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointers to live locals and a borrowed str.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    owned(status, data, size).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// All headers of a map in one host call.
pub fn headers(map: u32) -> Headers {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointers to live locals.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    owned(status, data, size)
        .and_then(Headers::decode)
        .unwrap_or_default()
}

pub fn request_header(name: &str) -> Option<String> {
    header(REQUEST_HEADERS, name)
}

/// Sets (or with `None` removes) a request header; false if the host refused.
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    // SAFETY: borrowed slices valid for the call.
    let status = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()),
        }
    };
    status == STATUS_OK
}

/// Sets (or with `None` removes) a response header; false if the host refused.
pub fn set_response_header(name: &str, value: Option<&str>) -> bool {
    // SAFETY: borrowed slices valid for the call.
    let status = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                RESPONSE_HEADERS,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len()),
        }
    };
    status == STATUS_OK
}

pub fn buffer(kind: u32, size: usize) -> Vec<u8> {
    let (mut data, mut len) = (null_mut(), 0);
    // SAFETY: pointers to live locals.
    let status = unsafe { proxy_get_buffer_bytes(kind, 0, size, &mut data, &mut len) };
    owned(status, data, len).unwrap_or_default()
}

/// Replaces the first `size` bytes of a body buffer with `value`.
/// Bytes held in a buffer (0 when the host has none).
pub fn buffer_size(kind: u32) -> usize {
    let (mut length, mut flags) = (0usize, 0u32);
    // SAFETY: pointers to live locals.
    match unsafe { proxy_get_buffer_status(kind, &mut length, &mut flags) } {
        STATUS_OK => length,
        _ => 0,
    }
}

pub fn set_buffer(kind: u32, size: usize, value: &[u8]) -> bool {
    // SAFETY: borrowed slice valid for the call.
    unsafe { proxy_set_buffer_bytes(kind, 0, size, value.as_ptr(), value.len()) == STATUS_OK }
}

/// Reads a property; `path` segments as in `["node", "id"]`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let joined = path.join("\0");
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointers to live locals and a borrowed str.
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    owned(status, data, size)
}

/// Sets a filter state value (one path segment, e.g. `tollgate.route`).
pub fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: borrowed slices valid for the call.
    unsafe {
        proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == STATUS_OK
    }
}

pub fn resume_request() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) == STATUS_OK }
}

pub fn now_ns() -> u64 {
    let mut nanos = 0u64;
    // SAFETY: pointer to a live local.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        STATUS_OK => nanos,
        _ => 0,
    }
}

/// A shared-data value and its CAS token; `(None, None)` when absent or
/// refused (the SDK's version panics on an unexpected status).
pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0u32);
    // SAFETY: pointers to live locals and a borrowed str.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match owned(status, data, size) {
        Some(value) => (Some(value), (cas != 0).then_some(cas)),
        None => (None, None),
    }
}

/// Writes a shared-data value, with compare-and-swap when `cas` is given.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
    // SAFETY: borrowed slices valid for the call.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        STATUS_OK => SharedWrite::Ok,
        STATUS_CAS_MISMATCH => SharedWrite::CasMismatch,
        other => {
            log::debug!("tollgate: shared data write refused with status {other}");
            SharedWrite::Failed
        }
    }
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> i32;
}

/// Eight random bytes from the host (WASI `random_get`); the clock if it fails.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: pointer to a live local of the given length.
    match unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) } {
        0 => u64::from_le_bytes(bytes),
        _ => now_ns(),
    }
}

/// Lets through only the log records Envoy will print (its `wasm` log
/// level), so filtered-out debug lines cost no formatting or host call.
pub fn follow_envoy_log_level() {
    use proxy_wasm::types::LogLevel;
    let mut raw = 0u32;
    // SAFETY: pointer to a live local.
    if unsafe { proxy_get_log_level(&mut raw) } != STATUS_OK {
        return;
    }
    let level = match raw {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        _ => LogLevel::Error,
    };
    proxy_wasm::set_log_level(level);
}

/// Asks for `on_tick` every `ms` milliseconds on this root context.
pub fn set_tick_period_ms(ms: u64) -> bool {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(ms) == STATUS_OK }
}

/// Tells Envoy that the root context whose callback is running, which
/// answered `false` to `on_done`, has finished; false if it was not waiting.
pub fn done() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_done() == STATUS_OK }
}

fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a live local and a borrowed str.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

pub fn define_counter(name: &str) -> Option<u32> {
    define_metric(METRIC_COUNTER, name)
}

pub fn define_gauge(name: &str) -> Option<u32> {
    define_metric(METRIC_GAUGE, name)
}

pub fn define_histogram(name: &str) -> Option<u32> {
    define_metric(METRIC_HISTOGRAM, name)
}

/// Sets a gauge or records a histogram sample.
pub fn record_value(id: Option<u32>, value: u64) {
    set_gauge(id, value);
}

pub fn set_gauge(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        // SAFETY: no pointers.
        unsafe { proxy_record_metric(id, value) };
    }
}

/// Adds to a counter; a missing metric or a host error only loses a count.
pub fn add_to_counter(id: Option<u32>, n: u64) {
    if let (Some(id), Ok(n)) = (id, i64::try_from(n)) {
        if n > 0 {
            // SAFETY: no pointers.
            unsafe { proxy_increment_metric(id, n) };
        }
    }
}

/// Answers the client locally with a JSON body (and `retry-after` for 429s).
pub fn send_json(status: u32, body: &[u8], retry_after_s: Option<u64>) {
    let retry = retry_after_s.map(|s| s.to_string());
    send_local(status, &json_reply_headers(retry.as_deref()), body);
}

/// Answers the client locally with a 200 of `content_type` (an answer the
/// gateway kept), with `extra` headers.
pub fn send_answer(content_type: &str, extra: &[(&str, &str)], body: &[u8]) {
    let mut pairs = vec![("content-type", content_type)];
    pairs.extend_from_slice(extra);
    send_local(200, &pairs, body);
}

fn send_local(status: u32, pairs: &[(&str, &str)], body: &[u8]) {
    let headers = header_map::encode(pairs);
    // SAFETY: borrowed slices valid for the call; no details string.
    let result = unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    if result != STATUS_OK {
        log::error!("tollgate: could not send local reply {status}: host status {result}");
    }
}
