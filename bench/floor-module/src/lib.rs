//! The single-stage floor as a native Envoy dynamic module
//! (`envoy.filters.http.dynamic_modules`): bench/floor-filter's single-stage
//! shape in a shared object instead of a wasm VM, for `make bench`'s (fln)
//! variant. (fln) next to (fl1) is what the wasm VM costs the shape; next to
//! bare Envoy, what the shape costs natively.
//!
//! The same work as the wasm floor: the request-headers hook holds the
//! headers (StopIteration), the body hook has Envoy buffer each chunk
//! (StopIterationAndBuffer) until the end of the stream, then reads the body
//! once, sets `:path` and `x-tollgate-cluster` and continues. The response
//! side continues untouched, as the wasm floor's does.
//!
//! One difference the ABI makes: the body is read in place, as slices of
//! Envoy's buffer, where the wasm floor must copy it into the VM.
//!
//! Nothing here may panic across the FFI boundary: no unwrap, expect or
//! indexing (the crate denies them).

mod abi;

use abi::{Buffer, ConfigEnvoyPtr, ConfigModulePtr, FilterEnvoyPtr, FilterModulePtr};
use std::ffi::{c_char, c_void};

const CLUSTER_HEADER: &[u8] = b"x-tollgate-cluster";
const CLUSTER: &[u8] = b"provider_openai";
const PATH: &[u8] = b"/v1/chat/completions";

/// The decision the wasm floor takes: where the body goes.
fn decide(body_len: usize) -> &'static [u8] {
    if body_len == 0 {
        b"none"
    } else {
        CLUSTER
    }
}

/// Per stream, as an SDK would keep it: whether the request was routed.
struct Filter {
    routed: bool,
}

impl Filter {
    fn route(&mut self, envoy: FilterEnvoyPtr, decision: &[u8]) {
        // SAFETY: `envoy` is the filter pointer Envoy passed to the running
        // hook; the buffers point to bytes that live through the call (Envoy
        // copies them into the header map).
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                envoy,
                abi::REQUEST_HEADER,
                Buffer::of(b":path"),
                Buffer::of(PATH),
            );
            abi::envoy_dynamic_module_callback_http_set_header(
                envoy,
                abi::REQUEST_HEADER,
                Buffer::of(CLUSTER_HEADER),
                Buffer::of(decision),
            );
            // The route was picked from the headers as they came; the
            // router must pick it again from x-tollgate-cluster.
            abi::envoy_dynamic_module_callback_http_clear_route_cache(envoy);
        }
        self.routed = true;
    }
}

/// The request body's length, read once from Envoy's chunks: the buffered
/// body (which holds the last chunk too at the end of the stream) and the
/// received chunk unless that is the buffered body itself.
fn request_body_len(envoy: FilterEnvoyPtr) -> usize {
    // SAFETY: `envoy` is the filter pointer of the running body hook.
    let received_is_buffered =
        unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(envoy) };
    let mut len = body_len(envoy, abi::BUFFERED_REQUEST_BODY);
    if !received_is_buffered {
        len = len.saturating_add(body_len(envoy, abi::RECEIVED_REQUEST_BODY));
    }
    len
}

fn body_len(envoy: FilterEnvoyPtr, body_type: u32) -> usize {
    // SAFETY: as above; `chunks` has room for the `count` entries Envoy
    // writes, and the slices are only read during this hook.
    unsafe {
        let count = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(envoy, body_type);
        if count == 0 {
            return 0;
        }
        let mut chunks = vec![Buffer::EMPTY; count];
        if !abi::envoy_dynamic_module_callback_http_get_body_chunks(
            envoy,
            body_type,
            chunks.as_mut_ptr(),
        ) {
            return 0;
        }
        chunks.iter().map(|c| c.as_slice().len()).sum()
    }
}

/// # Safety
/// `module` is a pointer `on_http_filter_new` returned and
/// `on_http_filter_destroy` has not freed.
unsafe fn filter<'a>(module: FilterModulePtr) -> Option<&'a mut Filter> {
    // SAFETY: per the contract above.
    unsafe { module.cast::<Filter>().as_mut() }
}

// ---- event hooks Envoy requires (filter_config.cc resolves each one and
// refuses the module when one is missing)

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr().cast()
}

/// The floor has no configuration; any non-null pointer accepts the filter.
static CONFIG: u8 = 0;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: ConfigEnvoyPtr,
    _name: Buffer,
    _config: Buffer,
) -> ConfigModulePtr {
    std::ptr::addr_of!(CONFIG).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: ConfigModulePtr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: ConfigModulePtr,
    _envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    Box::into_raw(Box::new(Filter { routed: false })).cast()
}

/// # Safety
/// `module` is null or what `on_http_filter_new` returned, destroyed once
/// (Envoy's contract).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    if !module.is_null() {
        // SAFETY: made by Box::into_raw in on_http_filter_new; Envoy destroys once.
        drop(unsafe { Box::from_raw(module.cast::<Filter>()) });
    }
}

/// # Safety
/// `envoy` is Envoy's filter and `module` what `on_http_filter_new` returned
/// for it, not yet destroyed (Envoy's contract, for every per-stream hook).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    if !end_of_stream {
        // Held; the body hook still runs.
        return abi::HEADERS_STOP_ITERATION;
    }
    // No body: decide now.
    // SAFETY: per this function's contract.
    if let Some(f) = unsafe { filter(module) } {
        f.route(envoy, decide(0));
    }
    abi::HEADERS_CONTINUE
}

/// # Safety
/// As for `on_http_filter_request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    if !end_of_stream {
        return abi::BODY_STOP_ITERATION_AND_BUFFER;
    }
    // SAFETY: per this function's contract.
    if let Some(f) = unsafe { filter(module) } {
        if !f.routed {
            f.route(envoy, decide(request_body_len(envoy)));
        }
    }
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

// ---- required hooks for features the floor does not use: callouts,
// callout streams, scheduled events, downstream watermarks

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const Buffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _data: *const Buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}
