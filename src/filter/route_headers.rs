//! Applies a routing decision to the request headers: `:path`, the provider
//! credential (for `env` auth), headers to drop and defaults, and last the
//! cluster header the Envoy route selects on. The single-stage chain does
//! this from the body callback while the headers are held; the two-stage
//! chain from the route stage.

use super::env::Host;
use super::sync::Lock;
use crate::core::decision::{Retries, RouteDecision};
use crate::core::error::GatewayError;
use std::collections::HashMap;

/// Header the Envoy route's `cluster_header` reads.
pub const CLUSTER_HEADER: &str = "x-tollgate-cluster";

/// Header that selects the relay route and names its cluster (a model's
/// `direct_cluster`) in `CLUSTER_HEADER`'s place; the route removes it.
pub const RELAY_HEADER: &str = "x-tollgate-relay";

/// Provider secrets read from the VM environment, once per worker.
#[derive(Default)]
pub struct Secrets(Lock<HashMap<String, Option<String>>>);

impl Secrets {
    /// `prefix` and the secret in `var`: a credential header's value.
    fn header_value(&self, prefix: &str, var: &str) -> Option<String> {
        let mut secrets = self.0.borrow_mut();
        if !secrets.contains_key(var) {
            secrets.insert(var.to_string(), std::env::var(var).ok());
        }
        let secret = secrets.get(var)?.as_deref()?;
        let mut value = String::with_capacity(prefix.len() + secret.len());
        value.push_str(prefix);
        value.push_str(secret);
        Some(value)
    }
}

pub fn apply(
    host: &impl Host,
    decision: &RouteDecision,
    secrets: &Secrets,
) -> Result<(), GatewayError> {
    apply_provider(host, decision, secrets)?;
    if let Some(r) = &decision.retries {
        apply_retries(host, r);
    }
    // Set last: changing headers makes Envoy pick the route again, now
    // with the provider's cluster. One header on the direct cluster, which
    // both selects the relay route and names the cluster.
    let relay = decision.retries.is_some_and(|r| r.relay);
    let header = if relay { RELAY_HEADER } else { CLUSTER_HEADER };
    if !host.set_request_header(header, Some(&decision.cluster)) {
        return Err(GatewayError::Internal(
            "could not select the provider cluster",
        ));
    }
    Ok(())
}

/// Envoy's attempt cap and per-attempt timeout (x-envoy-* headers, which
/// Envoy strips from clients: only the gateway sets them). The cap selects
/// the retry route; the relay route (`RELAY_HEADER`) retries once, into
/// the relay, and takes none.
pub fn apply_retries(host: &impl Host, r: &Retries) {
    if !r.relay {
        host.set_request_header("x-envoy-max-retries", Some(&r.max_retries.to_string()));
    }
    if let Some(ms) = r.per_try_timeout_ms {
        host.set_request_header(
            "x-envoy-upstream-rq-per-try-timeout-ms",
            Some(&ms.to_string()),
        );
    }
}

/// Everything but the cluster: what the attempt stage sets per attempt,
/// once Envoy has picked the cluster.
pub fn apply_provider(
    host: &impl Host,
    decision: &RouteDecision,
    secrets: &Secrets,
) -> Result<(), GatewayError> {
    if let Some(path) = &decision.path {
        if !host.set_request_header(":path", Some(path)) {
            return Err(GatewayError::Internal("could not set the upstream path"));
        }
    }
    if let Some(auth) = &decision.auth {
        let Some(value) = secrets.header_value(&auth.prefix, &auth.var) else {
            log::error!(
                "tollgate: environment variable {} (provider key) is not visible to the VM; list it in vm_config.environment_variables.host_env_keys",
                auth.var
            );
            return Err(GatewayError::Internal(
                "provider credential is not configured",
            ));
        };
        if !host.set_request_header(&auth.header, Some(&value)) {
            return Err(GatewayError::Internal(
                "could not set the provider credential",
            ));
        }
    }
    for name in &decision.remove {
        host.set_request_header(name, None);
    }
    for (name, value) in &decision.defaults {
        if host.request_header(name).is_none() {
            host.set_request_header(name, Some(value));
        }
    }
    if let Some(traceparent) = &decision.traceparent {
        host.set_request_header("traceparent", Some(traceparent));
    }
    Ok(())
}
