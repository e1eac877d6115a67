//! A host for native tests: serves canned headers, bodies and callout
//! answers, and records what the stage did with them.

use super::env::{Host, SharedWrite};
use super::shared_data::SharedData;
use crate::core::header_map::{self, Headers};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// A callout the stage made.
#[derive(Debug, Clone)]
pub struct Callout {
    pub cluster: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// A local answer the stage sent.
#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u32,
    pub body: serde_json::Value,
    pub retry_after_s: Option<u64>,
    /// The body as sent, and the headers besides `retry-after`.
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Runs once, just before the next shared-data write: another worker
/// writing between this one's read and its write.
pub type Interleave = Box<dyn FnOnce()>;

/// Where a test puts the picked endpoint's metadata: a property named
/// this prefix and the key.
pub const ENDPOINT_METADATA: &str = "endpoint_metadata.";
/// Property names standing for Envoy's attempt count and its response
/// code details.
pub const ATTEMPT_COUNT: &str = "attempt_count";
/// Where a test puts the answering upstream host's address.
pub const UPSTREAM_ADDRESS: &str = "upstream_address";
pub const CODE_DETAILS: &str = "code_details";

#[derive(Default)]
pub struct MockHost {
    pub request_headers: RefCell<Vec<(String, String)>>,
    pub request_body: RefCell<Vec<u8>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub response_body: RefCell<Vec<u8>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub replies: RefCell<Vec<LocalReply>>,
    pub callouts: RefCell<Vec<Callout>>,
    /// The answer `call_status` / `call_body` serve: status and body.
    pub call_answer: RefCell<(Option<String>, Vec<u8>)>,
    pub resumed: Cell<u32>,
    pub now_ns: Cell<u64>,
    /// Metric names by id: one registry per Envoy, like its stats store
    /// (`sharing` shares it), so ids cached by a worker mean the same
    /// metric in every host of the test. Counts are per host.
    metrics: Rc<RefCell<Vec<String>>>,
    pub counters: RefCell<HashMap<String, u64>>,
    /// Shared with the other MockHosts of one test Envoy (`sharing`).
    pub shared: Rc<RefCell<SharedData>>,
    pub before_write: RefCell<Option<Interleave>>,
    /// Shared-data writes made, and how many found the value changed.
    pub shared_writes: Cell<u32>,
    pub cas_mismatches: Cell<u32>,
    /// Host calls made, by method name.
    pub calls: RefCell<BTreeMap<&'static str, u32>>,
}

impl MockHost {
    pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> MockHost {
        let mut all = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        MockHost {
            request_headers: RefCell::new(all),
            request_body: RefCell::new(body.to_vec()),
            now_ns: Cell::new(1_700_000_000_000_000_000),
            ..MockHost::default()
        }
    }

    /// The same host seeing `other`'s shared data: another worker of its Envoy.
    pub fn sharing(mut self, other: &MockHost) -> MockHost {
        self.shared = Rc::clone(&other.shared);
        self.metrics = Rc::clone(&other.metrics);
        self
    }

    /// A shared-data value.
    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().read(key).0
    }

    pub fn reply(&self) -> Option<LocalReply> {
        self.replies.borrow().last().cloned()
    }

    pub fn answer_call(&self, status: &str, body: &str) {
        *self.call_answer.borrow_mut() = (Some(status.into()), body.as_bytes().to_vec());
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The map as the host hands it over.
fn encoded(headers: &[(String, String)]) -> Headers {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    Headers::decode(header_map::encode(&pairs)).unwrap_or_default()
}

fn set(headers: &RefCell<Vec<(String, String)>>, name: &str, value: Option<&str>) -> bool {
    let mut headers = headers.borrow_mut();
    headers.retain(|(n, _)| n != name);
    if let Some(v) = value {
        headers.push((name.to_string(), v.to_string()));
    }
    true
}

fn splice(buffer: &RefCell<Vec<u8>>, size: usize, body: &[u8]) -> bool {
    let mut buffer = buffer.borrow_mut();
    let size = size.min(buffer.len());
    buffer.splice(..size, body.iter().copied());
    true
}

impl Host for MockHost {
    fn request_headers(&self) -> Headers {
        self.called("request_headers");
        encoded(&self.request_headers.borrow())
    }
    fn request_header(&self, name: &str) -> Option<String> {
        self.called("request_header");
        header(&self.request_headers.borrow(), name)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) -> bool {
        self.called("set_request_header");
        set(&self.request_headers, name, value)
    }
    fn response_headers(&self) -> Headers {
        self.called("response_headers");
        encoded(&self.response_headers.borrow())
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) -> bool {
        self.called("set_response_header");
        set(&self.response_headers, name, value)
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.called("request_body");
        self.request_body
            .borrow()
            .iter()
            .take(size)
            .copied()
            .collect()
    }
    fn request_body_size(&self) -> usize {
        self.called("request_body_size");
        self.request_body.borrow().len()
    }
    fn set_request_body(&self, size: usize, body: &[u8]) -> bool {
        self.called("set_request_body");
        splice(&self.request_body, size, body)
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        self.called("response_body");
        self.response_body
            .borrow()
            .iter()
            .take(size)
            .copied()
            .collect()
    }
    fn set_response_body(&self, size: usize, body: &[u8]) -> bool {
        self.called("set_response_body");
        splice(&self.response_body, size, body)
    }
    fn property(&self, name: &str) -> Option<Vec<u8>> {
        self.called("property");
        self.properties.borrow().get(name).cloned()
    }
    fn set_property(&self, name: &str, value: &[u8]) -> bool {
        self.called("set_property");
        self.properties
            .borrow_mut()
            .insert(name.to_string(), value.to_vec());
        true
    }
    fn upstream_address(&self) -> Option<String> {
        self.called("upstream_address");
        self.text_property(UPSTREAM_ADDRESS)
    }
    fn attempt_count(&self) -> Option<u32> {
        self.called("attempt_count");
        self.text_property(ATTEMPT_COUNT)?.parse().ok()
    }
    fn response_code_details(&self) -> Option<String> {
        self.called("response_code_details");
        self.text_property(CODE_DETAILS)
    }
    fn endpoint_metadata(&self, key: &str) -> Option<String> {
        self.called("endpoint_metadata");
        self.text_property(&format!("{ENDPOINT_METADATA}{key}"))
    }
    fn send_json(&self, status: u32, body: &[u8], retry_after_s: Option<u64>) {
        self.called("send_json");
        self.replies.borrow_mut().push(LocalReply {
            status,
            body: serde_json::from_slice(body).unwrap_or_default(),
            retry_after_s,
            raw: body.to_vec(),
            headers: vec![("content-type".into(), "application/json".into())],
        });
    }
    fn send_answer(&self, content_type: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.called("send_answer");
        let mut all = vec![("content-type".to_string(), content_type.to_string())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        self.replies.borrow_mut().push(LocalReply {
            status: 200,
            body: serde_json::from_slice(body).unwrap_or_default(),
            retry_after_s: None,
            raw: body.to_vec(),
            headers: all,
        });
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: &[u8],
        _timeout: Duration,
    ) -> Result<u32, String> {
        self.called("dispatch");
        let path = headers
            .iter()
            .find(|(n, _)| *n == ":path")
            .map_or("", |(_, v)| *v);
        let mut callouts = self.callouts.borrow_mut();
        callouts.push(Callout {
            cluster: cluster.to_string(),
            path: path.to_string(),
            body: body.to_vec(),
        });
        Ok(callouts.len() as u32)
    }
    fn call_status(&self) -> Option<String> {
        self.called("call_status");
        self.call_answer.borrow().0.clone()
    }
    fn call_body(&self, size: usize) -> Vec<u8> {
        self.called("call_body");
        self.call_answer
            .borrow()
            .1
            .iter()
            .take(size)
            .copied()
            .collect()
    }
    fn resume_request(&self) -> bool {
        self.called("resume_request");
        self.resumed.set(self.resumed.get() + 1);
        true
    }
    fn now_ns(&self) -> u64 {
        self.called("now_ns");
        self.now_ns.get()
    }
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.called("shared_data");
        self.shared.borrow().read(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        self.called("set_shared_data");
        if let Some(other_worker) = self.before_write.borrow_mut().take() {
            other_worker();
        }
        self.shared_writes.set(self.shared_writes.get() + 1);
        let written = self.shared.borrow_mut().write(key, value, cas);
        if written == SharedWrite::CasMismatch {
            self.cas_mismatches.set(self.cas_mismatches.get() + 1);
        }
        written
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        self.called("define_counter");
        self.define(name)
    }
    fn define_histogram(&self, name: &str) -> Option<u32> {
        self.called("define_histogram");
        self.define(name)
    }
    fn define_gauge(&self, name: &str) -> Option<u32> {
        self.called("define_gauge");
        self.define(name)
    }
    fn set_gauge(&self, id: Option<u32>, value: u64) {
        self.called("set_gauge");
        let name = id.and_then(|id| self.metrics.borrow().get(id as usize).cloned());
        if let Some(name) = name {
            self.counters.borrow_mut().insert(name, value);
        }
    }
    fn add_to_counter(&self, id: Option<u32>, n: u64) {
        self.called("add_to_counter");
        self.add(id, n);
    }
    fn record_value(&self, id: Option<u32>, value: u64) {
        self.called("record_value");
        self.add(id, value);
    }
}

impl MockHost {
    fn add(&self, id: Option<u32>, n: u64) {
        let name = id.and_then(|id| self.metrics.borrow().get(id as usize).cloned());
        if let Some(name) = name {
            *self.counters.borrow_mut().entry(name).or_default() += n;
        }
    }

    /// A property a test set, as text (standing for what Envoy tells).
    fn text_property(&self, name: &str) -> Option<String> {
        let value = self.properties.borrow().get(name).cloned()?;
        String::from_utf8(value).ok()
    }

    /// Counts a host call by name (`calls`).
    fn called(&self, name: &'static str) {
        *self.calls.borrow_mut().entry(name).or_default() += 1;
    }

    fn define(&self, name: &str) -> Option<u32> {
        // Every metric the stages define must be one the native module
        // defines when its configuration loads.
        assert!(
            super::stats::family_of(name).is_some(),
            "metric {name} is in no family of stats::FAMILIES"
        );
        let mut metrics = self.metrics.borrow_mut();
        metrics.push(name.to_string());
        Some(metrics.len() as u32 - 1)
    }
}
