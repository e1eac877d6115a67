//! Calls to tollgate-sidecar: every one carries the service token, so no
//! other process on the host can authorize, reserve or settle.

use super::env::Host;
use crate::core::config::SidecarConfig;
use std::time::Duration;

pub struct SidecarClient {
    pub config: SidecarConfig,
    /// `Bearer <service token>`.
    authorization: String,
}

impl SidecarClient {
    /// The client, or why it cannot be made (the token is missing).
    pub fn from_env(config: SidecarConfig) -> Result<SidecarClient, String> {
        let var = &config.token_env;
        match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Ok(SidecarClient {
                authorization: format!("Bearer {}", token.trim()),
                config,
            }),
            _ => Err(format!(
                "sidecar.token_env: the service token variable {var} is not visible to the VM: set it in Envoy's environment (the same value as tollgate-sidecar's) and list it in vm_config.environment_variables.host_env_keys"
            )),
        }
    }

    /// POSTs JSON to `path`; the answer arrives in the calling context's
    /// `on_http_call_response`. `timeout` is from when the call leaves.
    pub fn post(
        &self,
        host: &impl Host,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        let headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", self.config.authority.as_str()),
            ("content-type", "application/json"),
            ("authorization", self.authorization.as_str()),
        ];
        match host.dispatch(&self.config.cluster, headers, body, timeout) {
            Ok(token) => Some(token),
            Err(e) => {
                log::warn!(
                    "tollgate: cannot call sidecar cluster {} ({path}): {e}",
                    self.config.cluster
                );
                None
            }
        }
    }
}

/// The sidecar's answer to a callout, read with `parse` when it is a 200;
/// otherwise why there is none (logged by the caller).
pub fn answer<T>(
    status: Option<&str>,
    body: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    match status {
        Some("200") => parse(body),
        Some(other) => Err(format!("sidecar answered HTTP {other}")),
        None => Err("sidecar unreachable or timed out".to_string()),
    }
}
