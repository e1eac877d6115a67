//! Route stage of the two-stage chain (`"chain": "two_stage"`): runs after
//! the buffer filter, when the body is complete, and applies the request
//! stage's decision from filter state to the headers (`route_headers`).

use super::env::Host;
use super::route_headers::{self, Secrets};
use crate::core::api::ClientFormat;
use crate::core::decision::RouteDecision;
use crate::core::error::GatewayError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::sync::Arc;

pub struct RouteStage<H: Host> {
    host: H,
    secrets: Arc<Secrets>,
}

impl<H: Host> RouteStage<H> {
    pub fn new(secrets: Arc<Secrets>, host: H) -> RouteStage<H> {
        RouteStage { host, secrets }
    }
}

impl<H: Host> Context for RouteStage<H> {}

impl<H: Host> HttpContext for RouteStage<H> {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let decision = self
            .host
            .property("tollgate.route")
            .and_then(|bytes| RouteDecision::decode(&bytes));
        let result = match decision {
            Some(decision) => route_headers::apply(&self.host, &decision, &self.secrets),
            None => Err(GatewayError::Internal(
                "no routing decision (is the tollgate request stage first in the chain?)",
            )),
        };
        match result {
            Ok(()) => Action::Continue,
            Err(error) => {
                let format = if self.host.request_header("anthropic-version").is_some() {
                    ClientFormat::Anthropic
                } else {
                    ClientFormat::OpenAi
                };
                self.host
                    .send_json(error.status(), &error.body(format), error.retry_after_s());
                Action::Pause
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decision::EnvAuth;
    use crate::filter::mock::MockHost;
    use crate::filter::route_headers::CLUSTER_HEADER;

    fn stage(host: MockHost, decision: Option<&RouteDecision>) -> RouteStage<MockHost> {
        if let Some(d) = decision {
            host.set_property("tollgate.route", d.encode().as_bytes());
        }
        RouteStage::new(Arc::default(), host)
    }

    #[test]
    fn applies_the_decision_with_the_cluster_last() {
        std::env::set_var("TOLLGATE_ROUTE_TEST_KEY", "pk");
        let decision = RouteDecision {
            cluster: "c_anthropic".into(),
            path: Some("/v1/messages".into()),
            traceparent: None,
            auth: Some(EnvAuth {
                header: "x-api-key".into(),
                prefix: String::new(),
                var: "TOLLGATE_ROUTE_TEST_KEY".into(),
            }),
            defaults: vec![
                ("anthropic-version".into(), "2023-06-01".into()),
                ("anthropic-beta".into(), "b".into()),
            ],
            remove: vec!["openai-organization".into()],
            retries: None,
        };
        let host = MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[("openai-organization", "o"), ("anthropic-beta", "client")],
            b"",
        );
        let mut stage = stage(host, Some(&decision));
        assert_eq!(stage.on_http_request_headers(0, false), Action::Continue);
        let h = &stage.host;
        assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
        assert_eq!(h.request_header("x-api-key").as_deref(), Some("pk"));
        assert_eq!(h.request_header("openai-organization"), None);
        // Defaults only where the client sent nothing.
        assert_eq!(
            h.request_header("anthropic-beta").as_deref(),
            Some("client")
        );
        assert_eq!(
            h.request_header("anthropic-version").as_deref(),
            Some("2023-06-01")
        );
        let last = h.request_headers.borrow().last().cloned();
        assert_eq!(last, Some((CLUSTER_HEADER.into(), "c_anthropic".into())));
    }

    #[test]
    fn without_a_decision_it_answers_500_in_the_clients_format() {
        let host = MockHost::request("POST", "/v1/messages", &[("anthropic-version", "1")], b"");
        let mut stage = stage(host, None);
        assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
        let reply = stage.host.reply().unwrap();
        assert_eq!(reply.status, 500);
        assert_eq!(reply.body["type"], "error");
        assert_eq!(stage.host.request_header(CLUSTER_HEADER), None);
    }
}
