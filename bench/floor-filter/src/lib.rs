//! The floor for `make bench`: a filter with Tollgate's chain shape that does
//! no other work. Tollgate's throughput next to this one is the cost of what
//! Tollgate does; this one next to bare Envoy is the cost of the shape.
//!
//! Two shapes, chosen by the plugin configuration (`scripts/stack.py` renders
//! `{"chain": "single_stage"}` or `{"chain": "two_stage"}`, as for Tollgate):
//!
//! - single stage, chain [floor, router] with `allow_on_headers_stop_iteration`:
//!   the headers callback holds the headers (`Pause`), the body callback
//!   buffers by returning `Pause` per chunk until the end of the stream, then
//!   reads the body, sets `:path` and the cluster header and continues;
//! - two stages, chain [request stage, buffer, route stage (root_id "route"),
//!   router]: the request stage reads the whole body and records a decision
//!   in filter state, the route stage sets `:path` and the cluster header
//!   from it.
//!
//! Both read the body once and set the same two headers.
//!
//! With `"calls": "shipped"` the single stage also makes every other host
//! call envoy/gateway.yaml's Tollgate makes on a steady request (key and
//! lease cached; see `a_steady_request_makes_only_the_host_calls_it_needs`)
//! and does nothing with what they return: the bound on any wasm filter
//! with those features, whatever its code costs. `"calls": "reads"` makes
//! only the four that return data (headers and bodies both ways), which no
//! filter that checks keys, bodies and usage can do without.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::time::SystemTime;

const DECISION: &str = "floor.route";
const CLUSTER_HEADER: &str = "x-tollgate-cluster";
const CLUSTER: &[u8] = b"provider_openai";
const PATH: &str = "/v1/chat/completions";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    single_stage: bool,
    route_stage: bool,
    /// The host calls beyond the floor's, when configured.
    calls: Option<Calls>,
}

#[derive(Clone, Copy)]
enum Calls {
    /// The four reads.
    Reads,
    /// Every call of a steady request, with the two histograms' ids.
    Shipped([u32; 2]),
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.single_stage = contains(&config, b"single_stage");
        if contains(&config, b"\"shipped\"") {
            let define = |name| hostcalls::define_metric(MetricType::Histogram, name).unwrap_or(0);
            self.calls = Some(Calls::Shipped([
                define("tollgate_floor.upstream_ms"),
                define("tollgate_floor.time_to_first_chunk_ms"),
            ]));
        } else if contains(&config, b"\"reads\"") {
            self.calls = Some(Calls::Reads);
        }
        // The two-stage chain's route stage is configured with root_id "route".
        self.route_stage = self
            .get_property(vec!["plugin_root_id"])
            .is_some_and(|id| id == b"route");
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(
            if let (true, Some(calls)) = (self.single_stage, self.calls) {
                Box::new(WithCalls { calls })
            } else if self.single_stage {
                Box::new(SingleStage)
            } else if self.route_stage {
                Box::new(RouteStage)
            } else {
                Box::new(RequestStage)
            },
        )
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The decision both shapes take: where the body goes.
fn decide(body: &[u8]) -> &'static [u8] {
    if body.is_empty() {
        b"none"
    } else {
        CLUSTER
    }
}

struct SingleStage;

impl SingleStage {
    fn route(&self, decision: &[u8]) {
        self.set_http_request_header(":path", Some(PATH));
        let cluster = String::from_utf8_lossy(decision);
        self.set_http_request_header(CLUSTER_HEADER, Some(&cluster));
    }
}

impl Context for SingleStage {}

impl HttpContext for SingleStage {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            // No body: decide now.
            self.route(decide(b""));
            return Action::Continue;
        }
        // With allow_on_headers_stop_iteration the headers are held and the
        // body callbacks still run.
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause; // Envoy buffers the chunk
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.route(decide(&body));
        Action::Continue
    }
}

/// The single stage plus more host calls, in the shipped config's order:
/// request headers; the body; the clock at start and upstream start; four
/// request headers; response headers; one response header; the response
/// body (held to its end, as for output guardrails); the clock at the end;
/// two histograms. `Calls::Reads` makes the reads and the floor's two
/// header changes only.
struct WithCalls {
    calls: Calls,
}

impl WithCalls {
    fn shipped(&self) -> bool {
        matches!(self.calls, Calls::Shipped(_))
    }

    fn now(&self) {
        if self.shipped() {
            self.get_current_time()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok();
        }
    }
}

impl Context for WithCalls {}

extern "C" {
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
}

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;

/// A header map as the host encodes it, undecoded, as Tollgate reads it
/// (the SDK's reader would add the cost of decoding every pair).
fn header_pairs(map: u32) -> Vec<u8> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: pointers to live locals; on success the host put `size` bytes
    // at `data`, allocated by the SDK's proxy_on_memory_allocate as a Vec's.
    unsafe {
        if proxy_get_header_map_pairs(map, &mut data, &mut size) != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

impl HttpContext for WithCalls {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let headers = header_pairs(REQUEST_HEADERS);
        if end_of_stream || headers.is_empty() {
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        self.now();
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.now();
        self.set_http_request_header(":path", Some(PATH));
        let cluster = String::from_utf8_lossy(decide(&body)).into_owned();
        self.set_http_request_header(CLUSTER_HEADER, Some(&cluster));
        if self.shipped() {
            self.set_http_request_header("authorization", None);
            self.set_http_request_header("traceparent", Some(TRACEPARENT));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        header_pairs(RESPONSE_HEADERS);
        if self.shipped() {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        self.now();
        self.get_http_response_body(0, size);
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Calls::Shipped(histograms) = self.calls {
            for id in histograms {
                hostcalls::record_metric(id, 1).ok();
            }
        }
    }
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

struct RequestStage;

impl Context for RequestStage {}

impl HttpContext for RequestStage {
    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.set_property(vec![DECISION], Some(decide(&body)));
        Action::Continue
    }
}

struct RouteStage;

impl Context for RouteStage {}

impl HttpContext for RouteStage {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(cluster) = self.get_property(vec![DECISION]) {
            let cluster = String::from_utf8_lossy(&cluster).into_owned();
            self.set_http_request_header(":path", Some(PATH));
            self.set_http_request_header(CLUSTER_HEADER, Some(&cluster));
        }
        Action::Continue
    }
}
