//! `env::Host` over the dynamic-modules ABI. `Stream` serves one HTTP
//! stream's stage on its worker thread; `Main` serves the background work
//! (report, span and lease batches), which runs on Envoy's main thread
//! because callouts not tied to a stream can only start there.

use super::abi::{self, Buffer, ConfigPtr, FilterPtr, Header};
use super::metrics::{Metrics, Target};
use crate::core::header_map::Headers;
use crate::filter::env::{json_reply_headers, Host, SharedWrite};
use crate::filter::shared_data::SharedData;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A callout's answer while its hook runs.
#[derive(Default)]
pub struct Answer {
    pub status: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// Copies what Envoy passed to a callout-done hook.
    ///
    /// # Safety
    /// `headers` and `chunks` point to `headers_size` and `chunks_size`
    /// entries valid for this call, or are null.
    pub unsafe fn read(
        answered: bool,
        headers: *const Header,
        headers_size: usize,
        chunks: *const Buffer,
        chunks_size: usize,
    ) -> Answer {
        if !answered {
            return Answer::default();
        }
        // SAFETY: per this function's contract.
        let (headers, chunks) =
            unsafe { (slice(headers, headers_size), slice(chunks, chunks_size)) };
        let status = headers.iter().find_map(|h| {
            // SAFETY: views Envoy keeps for the hook.
            let (key, value) = unsafe { (h.key.bytes(), h.value.bytes()) };
            (key == b":status").then(|| String::from_utf8_lossy(value).into_owned())
        });
        let mut body = Vec::new();
        for chunk in chunks {
            // SAFETY: as above.
            body.extend_from_slice(unsafe { chunk.bytes() });
        }
        Answer { status, body }
    }

    /// The first `size` bytes of the body.
    fn first_bytes(&self, size: usize) -> Vec<u8> {
        self.body.get(..size).unwrap_or(&self.body).to_vec()
    }
}

/// Starts a callout with one of the ABI's two callout calls (a stream's or
/// the configuration's, which share their signature); its token.
fn callout(
    start: unsafe extern "C" fn(
        *mut std::ffi::c_void,
        *mut u64,
        Buffer,
        *const Header,
        usize,
        Buffer,
        u64,
    ) -> u32,
    owner: *mut std::ffi::c_void,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, String> {
    let headers = views(headers);
    let mut id = 0u64;
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    // SAFETY: `owner` is the pointer Envoy gave the running hook (a stream's
    // filter or, on the main thread, the configuration); the views live
    // through the call, and Envoy copies them.
    let started = unsafe {
        start(
            owner,
            &mut id,
            Buffer::of(cluster.as_bytes()),
            headers.as_ptr(),
            headers.len(),
            Buffer::of(body),
            timeout_ms,
        )
    };
    match started {
        abi::CALLOUT_STARTED => Ok(token(id)),
        code => Err(format!("callout to {cluster} not started (code {code})")),
    }
}

/// # Safety
/// `ptr` is null or points to `len` values valid for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// One stream's host: Envoy's filter pointer, valid until the stream's
/// filter is destroyed (the stage, which owns this, goes with it).
pub struct Stream {
    filter: FilterPtr,
    /// The callout answer `call_status`/`call_body` read.
    pub answer: RefCell<Answer>,
    /// A routing header changed: the route must be picked again before the
    /// request goes on (wasm header changes clear Envoy's route cache; the
    /// dynamic-modules ABI leaves it to the module).
    route_changed: Cell<bool>,
    /// A local reply the stage asked for, sent when its callback returns:
    /// Envoy sends a dynamic module's reply at once, running this filter's
    /// response hooks inside the stage's callback (proxy-wasm defers it).
    reply: RefCell<Option<Reply>>,
    metrics: Option<Arc<Metrics>>,
}

/// A local reply's status, headers and body.
pub struct Reply {
    status: u32,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Stream {
    pub fn new(filter: FilterPtr, metrics: Option<Arc<Metrics>>) -> Stream {
        Stream {
            filter,
            answer: RefCell::default(),
            route_changed: Cell::new(false),
            reply: RefCell::default(),
            metrics,
        }
    }

    fn define(&self, name: &str) -> Option<u32> {
        self.metrics.as_ref()?.define(name)
    }

    fn change(&self, id: Option<u32>, value: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.change(Target::Filter(self.filter), id, value);
        }
    }

    /// Clears the route cache when a routing header changed since the last call.
    pub fn settle_route(&self) {
        if self.route_changed.replace(false) {
            // SAFETY: the filter pointer of the running hook.
            unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.filter) };
        }
    }

    fn headers(&self, header_type: u32) -> Headers {
        // SAFETY: the filter pointer of the running hook; `views` has room
        // for the count Envoy reported, and is read before any header is set.
        unsafe {
            let count =
                abi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, header_type);
            let mut views = vec![Header::EMPTY; count];
            if count == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    header_type,
                    views.as_mut_ptr(),
                )
            {
                return Headers::default();
            }
            Headers::from_pairs(views.iter().map(|h| (h.key.bytes(), h.value.bytes())))
        }
    }

    fn set_header(&self, header_type: u32, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or(Buffer::EMPTY, |v| Buffer::of(v.as_bytes()));
        if header_type == abi::REQUEST_HEADERS && routes(name) {
            self.route_changed.set(true);
        }
        // SAFETY: the filter pointer of the running hook; Envoy copies the bytes.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type,
                Buffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// The body so far: what Envoy buffered, then this hook's chunk unless
    /// that chunk is the buffered body itself.
    fn body(&self, buffered: u32, received: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.chunks(buffered, &mut out);
        if !self.received_is_buffered(buffered) {
            self.chunks(received, &mut out);
        }
        out
    }

    /// The size of `body`, without copying it.
    fn body_size(&self, buffered: u32, received: u32) -> usize {
        let mut total = self.size(buffered);
        if !self.received_is_buffered(buffered) {
            total = total.saturating_add(self.size(received));
        }
        total
    }

    /// Bytes Envoy holds of one body type.
    fn size(&self, body_type: u32) -> usize {
        // SAFETY: the filter pointer of the running hook.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.filter, body_type) }
    }

    /// Bytes of response body so far (the stage is told the size, as
    /// proxy-wasm does, and reads what it needs).
    pub fn response_body_size(&self) -> usize {
        self.body_size(abi::BUFFERED_RESPONSE_BODY, abi::RECEIVED_RESPONSE_BODY)
    }

    fn received_is_buffered(&self, buffered: u32) -> bool {
        // SAFETY: the filter pointer of the running hook.
        unsafe {
            if buffered == abi::BUFFERED_REQUEST_BODY {
                abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.filter)
            } else {
                abi::envoy_dynamic_module_callback_http_received_buffered_response_body(self.filter)
            }
        }
    }

    fn chunks(&self, body_type: u32, out: &mut Vec<u8>) {
        // SAFETY: the filter pointer of the running hook; `chunks` has room
        // for the count Envoy reported; the views are copied at once.
        unsafe {
            let count = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(
                self.filter,
                body_type,
            );
            if count == 0 {
                return;
            }
            let mut chunks = vec![Buffer::EMPTY; count];
            if abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.filter,
                body_type,
                chunks.as_mut_ptr(),
            ) {
                for chunk in &chunks {
                    out.extend_from_slice(chunk.bytes());
                }
            }
        }
    }

    /// Replaces the body so far with `body`: it goes where Envoy holds the
    /// body (the buffer once one was started, else this hook's chunk).
    fn replace_body(&self, buffered: u32, received: u32, body: &[u8]) -> bool {
        let target = if self.size(buffered) == 0 {
            received
        } else {
            buffered
        };
        // SAFETY: the filter pointer of the running hook; Envoy copies the bytes.
        unsafe {
            abi::envoy_dynamic_module_callback_http_drain_body(self.filter, buffered, usize::MAX);
            if !self.received_is_buffered(buffered) {
                abi::envoy_dynamic_module_callback_http_drain_body(
                    self.filter,
                    received,
                    usize::MAX,
                );
            }
            abi::envoy_dynamic_module_callback_http_append_body(
                self.filter,
                target,
                Buffer::of(body),
            )
        }
    }

    /// A string under `tollgate` in the metadata of `source`.
    fn metadata(&self, source: u32, key: &str) -> Option<String> {
        let mut value = Buffer::EMPTY;
        // SAFETY: the filter pointer of the running hook; the view Envoy
        // fills is copied at once.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_metadata_string(
                self.filter,
                source,
                Buffer::of(METADATA_NAMESPACE.as_bytes()),
                Buffer::of(key.as_bytes()),
                &mut value,
            )
            .then(|| String::from_utf8_lossy(value.bytes()).into_owned())
        }
    }

    fn send(&self, status: u32, pairs: &[(&str, &str)], body: &[u8]) {
        let headers = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        *self.reply.borrow_mut() = Some(Reply {
            status,
            headers,
            body: body.to_vec(),
        });
    }

    /// After a stage callback: the local reply it asked for, to send once
    /// nothing borrows the stage (Envoy runs this filter's response hooks
    /// inside the send); else the route is picked again if it changed.
    pub fn finish(&self) -> Option<(FilterPtr, Reply)> {
        let reply = self.reply.borrow_mut().take();
        match reply {
            Some(reply) => Some((self.filter, reply)),
            None => {
                self.settle_route();
                None
            }
        }
    }
}

impl Reply {
    /// Sends the reply on `filter`'s stream.
    pub fn send(self, filter: FilterPtr) {
        let reply = self;
        let headers = views(&reply.headers);
        // SAFETY: the filter pointer of the running hook; the views live
        // through the call, and Envoy copies them; no stage is borrowed.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                filter,
                reply.status,
                headers.as_ptr(),
                headers.len(),
                Buffer::of(&reply.body),
                Buffer::of(b"tollgate"),
            );
        }
    }
}

/// The metadata namespace of Tollgate's endpoint metadata and stage handoffs.
const METADATA_NAMESPACE: &str = "tollgate";

/// Headers the route depends on (`cluster_header` and the path).
fn routes(name: &str) -> bool {
    name == crate::filter::route_headers::CLUSTER_HEADER || name == ":path"
}

/// Headers as the ABI takes them: views of the pairs, which must outlive
/// the call they are passed to.
fn views<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| Header {
            key: Buffer::of(k.as_ref().as_bytes()),
            value: Buffer::of(v.as_ref().as_bytes()),
        })
        .collect()
}

/// Callout ids are Envoy's (a counter per filter or configuration); the
/// stages keep u32 tokens.
pub fn token(id: u64) -> u32 {
    (id & u64::from(u32::MAX)) as u32
}

impl Host for Stream {
    fn request_headers(&self) -> Headers {
        self.headers(abi::REQUEST_HEADERS)
    }
    fn request_header(&self, name: &str) -> Option<String> {
        self.request_headers().get(name).map(str::to_string)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        self.set_header(abi::REQUEST_HEADERS, name, value)
    }
    fn response_headers(&self) -> Headers {
        self.headers(abi::RESPONSE_HEADERS)
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) -> bool {
        self.set_header(abi::RESPONSE_HEADERS, name, value)
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        let mut body = self.body(abi::BUFFERED_REQUEST_BODY, abi::RECEIVED_REQUEST_BODY);
        body.truncate(size);
        body
    }
    fn request_body_size(&self) -> usize {
        self.body_size(abi::BUFFERED_REQUEST_BODY, abi::RECEIVED_REQUEST_BODY)
    }
    fn set_request_body(&self, _size: usize, body: &[u8]) -> bool {
        self.replace_body(abi::BUFFERED_REQUEST_BODY, abi::RECEIVED_REQUEST_BODY, body)
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        let mut body = self.body(abi::BUFFERED_RESPONSE_BODY, abi::RECEIVED_RESPONSE_BODY);
        body.truncate(size);
        body
    }
    fn set_response_body(&self, _size: usize, body: &[u8]) -> bool {
        self.replace_body(
            abi::BUFFERED_RESPONSE_BODY,
            abi::RECEIVED_RESPONSE_BODY,
            body,
        )
    }
    /// What the request and attempt stages hand each other (`tollgate.*`
    /// names): kept in the stream's dynamic metadata, which upstream
    /// filters share and which, unlike a dynamic module's filter state
    /// (read-only once set), an attempt may overwrite.
    fn property(&self, name: &str) -> Option<Vec<u8>> {
        self.metadata(abi::METADATA_DYNAMIC, name)
            .map(String::into_bytes)
    }
    fn set_property(&self, name: &str, value: &[u8]) -> bool {
        let Ok(value) = std::str::from_utf8(value) else {
            return false;
        };
        // SAFETY: the filter pointer of the running hook; Envoy copies the bytes.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.filter,
                Buffer::of(METADATA_NAMESPACE.as_bytes()),
                Buffer::of(name.as_bytes()),
                Buffer::of(value.as_bytes()),
            )
        };
        true
    }
    fn endpoint_metadata(&self, key: &str) -> Option<String> {
        self.metadata(abi::METADATA_HOST, key)
    }
    // The relay is the wasm filter's (`Host::can_relay`).
    fn upstream_address(&self) -> Option<String> {
        None
    }
    fn can_relay(&self) -> bool {
        false
    }
    // The native attempt stage runs on every attempt and records each
    // (Envoy skips no attempt of it), so these are never needed.
    fn attempt_count(&self) -> Option<u32> {
        None
    }
    fn response_code_details(&self) -> Option<String> {
        None
    }
    fn send_json(&self, status: u32, body: &[u8], retry_after_s: Option<u64>) {
        let retry = retry_after_s.map(|s| s.to_string());
        self.send(status, &json_reply_headers(retry.as_deref()), body);
    }
    fn send_answer(&self, content_type: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut pairs = vec![("content-type", content_type)];
        pairs.extend_from_slice(headers);
        self.send(200, &pairs, body);
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, String> {
        // A stream's callout: from its worker, ended with the stream.
        callout(
            abi::envoy_dynamic_module_callback_http_filter_http_callout,
            self.filter,
            cluster,
            &headers,
            body,
            timeout,
        )
    }
    fn call_status(&self) -> Option<String> {
        self.answer.borrow().status.clone()
    }
    fn call_body(&self, size: usize) -> Vec<u8> {
        self.answer.borrow().first_bytes(size)
    }
    fn resume_request(&self) -> bool {
        self.settle_route();
        // SAFETY: the filter pointer of the running hook.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.filter) };
        true
    }
    fn now_ns(&self) -> u64 {
        now_ns()
    }
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_read(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        shared_write(key, value, cas)
    }
    // The families were defined when the configuration loaded (`Metrics`).
    fn define_counter(&self, name: &str) -> Option<u32> {
        self.define(name)
    }
    fn define_histogram(&self, name: &str) -> Option<u32> {
        self.define(name)
    }
    fn define_gauge(&self, name: &str) -> Option<u32> {
        self.define(name)
    }
    fn add_to_counter(&self, id: Option<u32>, n: u64) {
        self.change(id, n);
    }
    fn record_value(&self, id: Option<u32>, value: u64) {
        self.change(id, value);
    }
    fn set_gauge(&self, id: Option<u32>, value: u64) {
        self.change(id, value);
    }
}

/// The main thread's host for the background work. It has no stream: the
/// stream calls answer as a finished stream's host would.
pub struct Main {
    config: ConfigPtr,
    pub answer: RefCell<Answer>,
    metrics: Arc<Metrics>,
}

impl Main {
    pub fn new(config: ConfigPtr, metrics: Arc<Metrics>) -> Main {
        Main {
            config,
            answer: RefCell::default(),
            metrics,
        }
    }
}

impl Host for Main {
    fn request_headers(&self) -> Headers {
        Headers::default()
    }
    fn request_header(&self, _name: &str) -> Option<String> {
        None
    }
    fn set_request_header(&self, _name: &str, _value: Option<&str>) -> bool {
        false
    }
    fn response_headers(&self) -> Headers {
        Headers::default()
    }
    fn set_response_header(&self, _name: &str, _value: Option<&str>) -> bool {
        false
    }
    fn request_body(&self, _size: usize) -> Vec<u8> {
        Vec::new()
    }
    fn request_body_size(&self) -> usize {
        0
    }
    fn set_request_body(&self, _size: usize, _body: &[u8]) -> bool {
        false
    }
    fn response_body(&self, _size: usize) -> Vec<u8> {
        Vec::new()
    }
    fn set_response_body(&self, _size: usize, _body: &[u8]) -> bool {
        false
    }
    fn property(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    fn set_property(&self, _name: &str, _value: &[u8]) -> bool {
        false
    }
    fn endpoint_metadata(&self, _key: &str) -> Option<String> {
        None
    }
    fn upstream_address(&self) -> Option<String> {
        None
    }
    fn attempt_count(&self) -> Option<u32> {
        None
    }
    fn response_code_details(&self) -> Option<String> {
        None
    }
    fn send_json(&self, _status: u32, _body: &[u8], _retry_after_s: Option<u64>) {}
    fn send_answer(&self, _content_type: &str, _headers: &[(&str, &str)], _body: &[u8]) {}
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, String> {
        // The configuration's: on the main thread, where `Main` runs.
        callout(
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout,
            self.config,
            cluster,
            &headers,
            body,
            timeout,
        )
    }
    fn call_status(&self) -> Option<String> {
        self.answer.borrow().status.clone()
    }
    fn call_body(&self, size: usize) -> Vec<u8> {
        self.answer.borrow().first_bytes(size)
    }
    fn resume_request(&self) -> bool {
        false
    }
    fn now_ns(&self) -> u64 {
        now_ns()
    }
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_read(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        shared_write(key, value, cas)
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        self.metrics.define(name)
    }
    fn define_histogram(&self, name: &str) -> Option<u32> {
        self.metrics.define(name)
    }
    fn define_gauge(&self, name: &str) -> Option<u32> {
        self.metrics.define(name)
    }
    fn add_to_counter(&self, id: Option<u32>, n: u64) {
        self.metrics.change(Target::Config(self.config), id, n);
    }
    fn record_value(&self, id: Option<u32>, value: u64) {
        self.metrics.change(Target::Config(self.config), id, value);
    }
    fn set_gauge(&self, id: Option<u32>, value: u64) {
        self.metrics.change(Target::Config(self.config), id, value);
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Shared data: one copy per Envoy process.
fn store() -> &'static Mutex<SharedData> {
    static STORE: OnceLock<Mutex<SharedData>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

fn shared_read(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    store().lock().unwrap_or_else(|p| p.into_inner()).read(key)
}

fn shared_write(key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
    store()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write(key, value, cas)
}
