//! The part of Envoy's dynamic-modules ABI this module uses, declared by
//! hand (there is no SDK on crates.io). Source: Envoy's C header
//! `source/extensions/dynamic_modules/abi/abi.h`, as built
//! into Envoy 1.40.0; each callback is exported by that binary, and the
//! argument layout of the callouts, `send_response`, `set_header`, the body
//! calls and `log` was checked in its machine code (16-byte buffers passed
//! by value in two registers).

use std::ffi::c_void;

/// What `envoy_dynamic_module_on_program_init` returns: the ABI version
/// string Envoy 1.40's loader compares with (it warns on a mismatch and
/// loads the module anyway).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_{envoy,module}_buffer`: a pointer and a
/// length, the same layout either way.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    pub fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The bytes of a buffer Envoy filled in.
    ///
    /// # Safety
    /// `ptr` is null or points to `length` bytes valid for `'a`.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: per this function's contract.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_{envoy,module}_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    pub key: Buffer,
    pub value: Buffer,
}

impl Header {
    pub const EMPTY: Header = Header {
        key: Buffer::EMPTY,
        value: Buffer::EMPTY,
    };
}

/// Envoy's filter object for one stream.
pub type FilterPtr = *mut c_void;
/// The module's per-stream filter.
pub type FilterModulePtr = *mut c_void;
/// Envoy's filter configuration object.
pub type ConfigPtr = *mut c_void;
/// The module's configuration.
pub type ConfigModulePtr = *const c_void;
/// A scheduler posting to the main thread.
pub type SchedulerPtr = *mut c_void;

// envoy_dynamic_module_type_http_header_type
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;

// envoy_dynamic_module_type_http_body_type
pub const RECEIVED_REQUEST_BODY: u32 = 0;
pub const BUFFERED_REQUEST_BODY: u32 = 1;
pub const RECEIVED_RESPONSE_BODY: u32 = 2;
pub const BUFFERED_RESPONSE_BODY: u32 = 3;

// ..._headers_status / ..._body_status / ..._trailers_status: Envoy's
// FilterHeadersStatus, FilterDataStatus and FilterTrailersStatus.
pub const HEADERS_CONTINUE: u32 = 0;
/// Holds the headers while this filter's body hooks still run.
pub const HEADERS_STOP_ITERATION: u32 = 1;
pub const BODY_CONTINUE: u32 = 0;
/// Envoy keeps the chunk and calls again with the next one.
pub const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
pub const TRAILERS_CONTINUE: u32 = 0;
pub const TRAILERS_STOP_ITERATION: u32 = 1;

// envoy_dynamic_module_type_metadata_source
pub const METADATA_DYNAMIC: u32 = 0;
/// The endpoint Envoy picked for the current attempt (its LbEndpoint metadata).
pub const METADATA_HOST: u32 = 3;

/// envoy_dynamic_module_type_metrics_result_Success.
pub const METRICS_OK: u32 = 0;

/// envoy_dynamic_module_type_http_callout_init_result_Success.
pub const CALLOUT_STARTED: u32 = 0;
/// envoy_dynamic_module_type_http_callout_result_Success.
pub const CALLOUT_ANSWERED: u32 = 0;

/// envoy_dynamic_module_type_log_level: Trace = 0 up to Critical = 5.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

extern "C" {
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterPtr,
        header_type: u32,
    ) -> usize;
    /// Fills `result` (room for `get_headers_size` entries) with views into
    /// Envoy's map, valid until the hook returns or a header is set.
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterPtr,
        header_type: u32,
        result: *mut Header,
    ) -> bool;
    /// Sets a header, replacing its values; a null value removes it.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterPtr,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    /// The route was picked from the headers as they came: pick it again.
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterPtr);

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterPtr,
        body_type: u32,
        result: *mut Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterPtr,
        body_type: u32,
        bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterPtr,
        body_type: u32,
        data: Buffer,
    ) -> bool;
    /// Whether this hook's received body is the buffered body itself.
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterPtr,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: FilterPtr,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterPtr,
        status: u32,
        headers: *const Header,
        headers_size: usize,
        body: Buffer,
        details: Buffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterPtr);

    /// A callout tied to the stream (cancelled when the stream ends); its
    /// answer arrives in `envoy_dynamic_module_on_http_filter_http_callout_done`.
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterPtr,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *const Header,
        headers_size: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> u32;
    /// A callout from the main thread; its answer arrives in
    /// `envoy_dynamic_module_on_http_filter_config_http_callout_done`.
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigPtr,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *const Header,
        headers_size: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigPtr,
    ) -> SchedulerPtr;
    /// Thread-safe: runs `envoy_dynamic_module_on_http_filter_config_scheduled`
    /// on the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );

    /// Sets a string in the stream's dynamic metadata (overwriting it);
    /// upstream filters share the downstream stream's.
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: FilterPtr,
        namespace: Buffer,
        key: Buffer,
        value: Buffer,
    );
    /// A string from metadata of `source`; the view lives until the hook returns.
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterPtr,
        source: u32,
        namespace: Buffer,
        key: Buffer,
        result: *mut Buffer,
    ) -> bool;

    // Metrics: defined only in the configuration's hook (later Envoy says
    // Frozen), each with its label names; changed with label values in the
    // same order, from a stream's hook (filter) or the main thread (config).
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigPtr,
        name: Buffer,
        labels: *const Buffer,
        labels_size: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigPtr,
        name: Buffer,
        labels: *const Buffer,
        labels_size: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigPtr,
        name: Buffer,
        labels: *const Buffer,
        labels_size: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: ConfigPtr,
        id: usize,
        labels: *const Buffer,
        labels_size: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_log(level: u32, message: Buffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
}
