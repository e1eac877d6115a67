//! The floor for `make bench`: a filter with Tollgate's chain shape (request
//! stage reading the whole body and recording a decision in filter state,
//! buffer, route stage setting the cluster header from it) that does no
//! other work. Tollgate's throughput next to this one is the cost of what
//! Tollgate does; this one next to bare Envoy is the cost of the shape.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const DECISION: &str = "floor.route";
const CLUSTER_HEADER: &str = "x-tollgate-cluster";
const CLUSTER: &[u8] = b"provider_openai";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        // The route stage is configured with root_id "route".
        let route = self
            .get_property(vec!["plugin_root_id"])
            .is_some_and(|id| id == b"route");
        Some(if route {
            Box::new(RouteStage)
        } else {
            Box::new(RequestStage)
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
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
        let decision = if body.is_empty() {
            b"none".as_slice()
        } else {
            CLUSTER
        };
        self.set_property(vec![DECISION], Some(decision));
        Action::Continue
    }
}

struct RouteStage;

impl Context for RouteStage {}

impl HttpContext for RouteStage {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(cluster) = self.get_property(vec![DECISION]) {
            let cluster = String::from_utf8_lossy(&cluster).into_owned();
            self.set_http_request_header(CLUSTER_HEADER, Some(&cluster));
        }
        Action::Continue
    }
}
