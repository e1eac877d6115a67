//! Route stage: runs after the buffer filter, when the body is complete, and
//! applies the request stage's decision to the headers: `:path`, the cluster
//! header the Envoy route selects on, and (for `env` auth) the provider key.

use super::host;
use crate::core::api::ClientFormat;
use crate::core::decision::RouteDecision;
use crate::core::error::GatewayError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Header the Envoy route's `cluster_header` reads.
pub const CLUSTER_HEADER: &str = "x-tollgate-cluster";

/// Provider secrets read from the VM environment once per worker.
pub type SecretCache = HashMap<String, Option<String>>;

pub struct RouteStage {
    secrets: Rc<RefCell<SecretCache>>,
}

impl RouteStage {
    pub fn new(secrets: Rc<RefCell<SecretCache>>) -> RouteStage {
        RouteStage { secrets }
    }

    fn secret(&self, var: &str) -> Option<String> {
        let mut secrets = self.secrets.borrow_mut();
        secrets
            .entry(var.to_string())
            .or_insert_with(|| std::env::var(var).ok())
            .clone()
    }

    fn apply(&self, decision: &RouteDecision) -> Result<(), GatewayError> {
        if let Some(path) = &decision.path {
            if !host::set_request_header(":path", Some(path)) {
                return Err(GatewayError::Internal("could not set the upstream path"));
            }
        }
        if let Some(auth) = &decision.auth {
            let Some(secret) = self.secret(&auth.var) else {
                log::error!(
                    "tollgate: environment variable {} (provider key) is not visible to the VM; list it in vm_config.environment_variables.host_env_keys",
                    auth.var
                );
                return Err(GatewayError::Internal(
                    "provider credential is not configured",
                ));
            };
            let value = format!("{}{secret}", auth.prefix);
            if !host::set_request_header(&auth.header, Some(&value)) {
                return Err(GatewayError::Internal(
                    "could not set the provider credential",
                ));
            }
        }
        for name in &decision.remove {
            host::set_request_header(name, None);
        }
        for (name, value) in &decision.defaults {
            if host::request_header(name).is_none() {
                host::set_request_header(name, Some(value));
            }
        }
        if let Some(traceparent) = &decision.traceparent {
            host::set_request_header("traceparent", Some(traceparent));
        }
        // Set last: changing headers makes Envoy pick the route again, now
        // with the provider's cluster.
        if !host::set_request_header(CLUSTER_HEADER, Some(&decision.cluster)) {
            return Err(GatewayError::Internal(
                "could not select the provider cluster",
            ));
        }
        Ok(())
    }
}

impl Context for RouteStage {}

impl HttpContext for RouteStage {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let decision =
            host::property(&["tollgate.route"]).and_then(|bytes| RouteDecision::decode(&bytes));
        let result = match decision {
            Some(decision) => self.apply(&decision),
            None => Err(GatewayError::Internal(
                "no routing decision (is the tollgate request stage first in the chain?)",
            )),
        };
        match result {
            Ok(()) => Action::Continue,
            Err(error) => {
                let format = if host::request_header("anthropic-version").is_some() {
                    ClientFormat::Anthropic
                } else {
                    ClientFormat::OpenAi
                };
                host::send_json(error.status(), &error.body(format), error.retry_after_s());
                Action::Pause
            }
        }
    }
}
