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

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

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
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.single_stage = contains(&config, b"single_stage");
        // The two-stage chain's route stage is configured with root_id "route".
        self.route_stage = self
            .get_property(vec!["plugin_root_id"])
            .is_some_and(|id| id == b"route");
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(if self.single_stage {
            Box::new(SingleStage)
        } else if self.route_stage {
            Box::new(RouteStage)
        } else {
            Box::new(RequestStage)
        })
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
