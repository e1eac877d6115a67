//! The host calls an HTTP stream's stages make, behind a trait so the stages
//! run natively in tests against `mock::MockHost`. `Envoy` forwards to the
//! panic-free ABI calls in `host`.

#[cfg(feature = "wasm")]
use super::host;
use crate::core::header_map::Headers;
use std::time::Duration;

/// What became of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Ok,
    /// Another worker wrote the key since it was read: read it again.
    CasMismatch,
    /// The host refused it (a wasm host; the native store does not refuse).
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    Failed,
}

/// The headers of a local JSON reply; `retry` is the `retry-after` value
/// (seconds) a 429 carries.
pub fn json_reply_headers(retry: Option<&str>) -> Vec<(&str, &str)> {
    let mut pairs = vec![
        ("content-type", "application/json"),
        ("x-tollgate", "gateway"),
    ];
    if let Some(retry) = retry {
        pairs.push(("retry-after", retry));
    }
    pairs
}

pub trait Host {
    /// All request headers, in one call (empty once the map is gone).
    fn request_headers(&self) -> Headers;
    fn request_header(&self, name: &str) -> Option<String>;
    /// Sets (or with `None` removes) a request header; false if refused.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool;
    /// All response headers, in one call: one header read costs as much
    /// as the whole map (the host calls into the VM to allocate either).
    fn response_headers(&self) -> Headers;
    fn set_response_header(&self, name: &str, value: Option<&str>) -> bool;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Bytes of request body Envoy holds.
    fn request_body_size(&self) -> usize;
    /// Replaces the first `size` bytes of the request body.
    fn set_request_body(&self, size: usize, body: &[u8]) -> bool;
    fn response_body(&self, size: usize) -> Vec<u8>;
    fn set_response_body(&self, size: usize, body: &[u8]) -> bool;
    /// A filter state value an earlier stage set.
    fn property(&self, name: &str) -> Option<Vec<u8>>;
    /// Sets a filter state value for the later stages.
    fn set_property(&self, name: &str, value: &[u8]) -> bool;
    /// A string in the `tollgate` metadata of the endpoint Envoy picked
    /// for the current attempt (or the last one, on the response).
    fn endpoint_metadata(&self, key: &str) -> Option<String>;
    /// The address of the upstream host that answered (`envoy://...` for
    /// an internal listener, the relay).
    fn upstream_address(&self) -> Option<String>;
    /// Whether requests may take a model's `direct_cluster`: its relay
    /// listener runs the wasm relay stage, which the native module does
    /// not have, so its requests take `cluster`, where the attempt stage
    /// runs on every attempt.
    fn can_relay(&self) -> bool {
        true
    }
    /// How many attempts Envoy's router made for the request, when the
    /// host tells.
    fn attempt_count(&self) -> Option<u32>;
    /// Why the response is what it is (`via_upstream`: a provider's
    /// answer, not Envoy's own reply), when the host tells.
    fn response_code_details(&self) -> Option<String>;
    /// Answers the client locally with a JSON body.
    fn send_json(&self, status: u32, body: &[u8], retry_after_s: Option<u64>);
    /// Answers the client locally with `body` of `content_type`, and
    /// `headers` besides.
    fn send_answer(&self, content_type: &str, headers: &[(&str, &str)], body: &[u8]);
    /// Starts a callout; its answer arrives in `on_http_call_response`.
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, String>;
    /// The `:status` of the callout being answered.
    fn call_status(&self) -> Option<String>;
    fn call_body(&self, size: usize) -> Vec<u8>;
    /// Lets a paused request go on.
    fn resume_request(&self) -> bool;
    fn now_ns(&self) -> u64;
    /// A value of Envoy's shared data (one copy per Envoy, seen by every
    /// worker) and its compare-and-swap token; `(None, None)` when absent.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value; with `cas`, only if nobody wrote it since
    /// the read that returned `cas` (a key that does not exist yet is
    /// written regardless). Shared data has no delete.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite;
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn define_histogram(&self, name: &str) -> Option<u32>;
    fn define_gauge(&self, name: &str) -> Option<u32>;
    fn add_to_counter(&self, id: Option<u32>, n: u64);
    fn record_value(&self, id: Option<u32>, value: u64);
    fn set_gauge(&self, id: Option<u32>, value: u64);

    fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }
}

/// The real host.
#[cfg(feature = "wasm")]
#[derive(Clone, Copy, Default)]
pub struct Envoy;

#[cfg(feature = "wasm")]
impl Host for Envoy {
    fn request_headers(&self) -> Headers {
        host::headers(host::REQUEST_HEADERS)
    }
    fn request_header(&self, name: &str) -> Option<String> {
        host::request_header(name)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        host::set_request_header(name, value)
    }
    fn response_headers(&self) -> Headers {
        host::headers(host::RESPONSE_HEADERS)
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) -> bool {
        host::set_response_header(name, value)
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        host::buffer(host::REQUEST_BODY, size)
    }
    fn request_body_size(&self) -> usize {
        host::buffer_size(host::REQUEST_BODY)
    }
    fn set_request_body(&self, size: usize, body: &[u8]) -> bool {
        host::set_buffer(host::REQUEST_BODY, size, body)
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        host::buffer(host::RESPONSE_BODY, size)
    }
    fn set_response_body(&self, size: usize, body: &[u8]) -> bool {
        host::set_buffer(host::RESPONSE_BODY, size, body)
    }
    fn property(&self, name: &str) -> Option<Vec<u8>> {
        host::property(&[name])
    }
    fn upstream_address(&self) -> Option<String> {
        host::property(&["upstream", "address"]).and_then(|v| String::from_utf8(v).ok())
    }
    fn set_property(&self, name: &str, value: &[u8]) -> bool {
        host::set_property(name, value)
    }
    fn endpoint_metadata(&self, key: &str) -> Option<String> {
        let path = [
            "xds",
            "upstream_host_metadata",
            "filter_metadata",
            "tollgate",
            key,
        ];
        host::property(&path).and_then(|v| String::from_utf8(v).ok())
    }
    fn attempt_count(&self) -> Option<u32> {
        // An unsigned integer: 8 bytes, little-endian.
        let bytes: [u8; 8] = host::property(&["upstream", "request_attempt_count"])?
            .try_into()
            .ok()?;
        u32::try_from(u64::from_le_bytes(bytes)).ok()
    }
    fn response_code_details(&self) -> Option<String> {
        host::property(&["response", "code_details"]).and_then(|v| String::from_utf8(v).ok())
    }
    fn send_json(&self, status: u32, body: &[u8], retry_after_s: Option<u64>) {
        host::send_json(status, body, retry_after_s);
    }
    fn send_answer(&self, content_type: &str, headers: &[(&str, &str)], body: &[u8]) {
        host::send_answer(content_type, headers, body);
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, String> {
        // Through the SDK: it registers the token so the answer reaches
        // the calling context.
        proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
            .map_err(|status| format!("{status:?}"))
    }
    fn call_status(&self) -> Option<String> {
        host::header(host::CALL_RESPONSE_HEADERS, ":status")
    }
    fn call_body(&self, size: usize) -> Vec<u8> {
        host::buffer(host::CALL_RESPONSE_BODY, size)
    }
    fn resume_request(&self) -> bool {
        host::resume_request()
    }
    fn now_ns(&self) -> u64 {
        host::now_ns()
    }
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        host::shared_data(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        host::set_shared_data(key, value, cas)
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        host::define_counter(name)
    }
    fn define_histogram(&self, name: &str) -> Option<u32> {
        host::define_histogram(name)
    }
    fn define_gauge(&self, name: &str) -> Option<u32> {
        host::define_gauge(name)
    }
    fn add_to_counter(&self, id: Option<u32>, n: u64) {
        host::add_to_counter(id, n);
    }
    fn record_value(&self, id: Option<u32>, value: u64) {
        host::record_value(id, value);
    }
    fn set_gauge(&self, id: Option<u32>, value: u64) {
        host::set_gauge(id, value);
    }
}
