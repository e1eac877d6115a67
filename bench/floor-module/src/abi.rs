//! The subset of Envoy's dynamic-modules ABI the floor uses, declared by hand.
//!
//! Source: Envoy's C header `source/extensions/dynamic_modules/abi/abi.h`
//! (read at ENVOY_DYNAMIC_MODULES_ABI_VERSION "v0.1.0"), checked against
//! Envoy 1.40.0 (build 9e5580933739775e8bce696a57a2e1bc99368f23), whose ABI
//! version is "v0.2.0" (the string its loader compares with). Every callback
//! below is exported by that binary (`nm -D envoy`), and their argument
//! registers were checked in its code: the body callbacks take (filter,
//! body type) and return the chunk count or a bool, `set_header` takes two
//! `{ptr, length}` buffers by value, `clear_route_cache` only the filter.
//!
//! Only what the floor needs is here: the event hooks Envoy requires of an
//! HTTP filter module (lib.rs defines them) and five callbacks into Envoy.

use std::ffi::{c_char, c_void};

/// What `envoy_dynamic_module_on_program_init` returns: the ABI version the
/// module was written against, Envoy 1.40's (Envoy logs a warning when it
/// differs from its own, and loads the module anyway).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer` and
/// `envoy_dynamic_module_type_module_buffer`: the same layout, a pointer
/// and a length, passed by value or in arrays.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    pub fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The bytes of a buffer Envoy filled in.
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes that outlive `'a`, or be null.
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: per this function's contract.
            unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's filter object,
/// the first argument of every per-stream callback.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: the module's
/// per-stream filter, as returned by `on_http_filter_new`.
pub type FilterModulePtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
pub type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`.
pub type ConfigModulePtr = *const c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;

/// `envoy_dynamic_module_type_http_body_type`. At the end of a buffered
/// stream Envoy adds the last chunk to the buffered body (filter.cc:
/// decodeData calls addDecodedData), so the buffered body is the whole
/// body; a body that came in one chunk is only the received body.
pub const RECEIVED_REQUEST_BODY: u32 = 0;
pub const BUFFERED_REQUEST_BODY: u32 = 1;

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_headers_status`,
/// Envoy's FilterHeadersStatus (filter.cc casts one to the other).
pub const HEADERS_CONTINUE: u32 = 0;
/// Holds the headers; this filter's body callbacks still run.
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status`,
/// Envoy's FilterDataStatus.
pub const BODY_CONTINUE: u32 = 0;
/// Envoy keeps the chunk in its buffer and calls again with the next one.
pub const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
/// `..._trailers_status`, Envoy's FilterTrailersStatus.
pub const TRAILERS_CONTINUE: u32 = 0;

extern "C" {
    /// Sets (replaces) a header; false when that header map is not available.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;

    /// How many chunks a body has (0 when there is no such body).
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;

    /// Fills `result` (room for `get_body_chunks_size` entries) with the
    /// body's chunks, pointing into Envoy's buffer; false when there is no
    /// such body.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result: *mut Buffer,
    ) -> bool;

    /// Whether the received body of this callback is the buffered body
    /// itself (then reading both would read it twice).
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    /// Clears the stream's cached route, so the router picks it again from
    /// the headers as they are now.
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);
}
