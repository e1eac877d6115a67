//! Plugin configuration: the JSON in the Envoy YAML, parsed and validated once
//! at start-up so that mistakes fail loudly instead of on the first request.

use super::budget::BudgetConfig;
use super::cache::CacheConfig;
use super::fallback;
use super::glob;
use super::guard::{GuardrailConfig, Guardrails};
use super::provider::unused_settings;
pub use super::provider::ProviderKind;
use super::residency::{self, ResidencyConfig};
use super::telemetry::TracingConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the request stage does when the sidecar cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Refuse with 503: no request passes unchecked (default).
    #[default]
    Closed,
    /// Let the request through without key checks, and log it.
    Open,
}

/// How the filter sits in Envoy's HTTP filter chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// `[tollgate, router]` with `allow_on_headers_stop_iteration: true`
    /// (Envoy >= 1.35): the filter holds the headers while it reads the
    /// body, then sets the routing headers itself (default).
    #[default]
    SingleStage,
    /// `[tollgate, buffer, tollgate (root_id "route"), router]`, for proxies
    /// without the flag (Envoy < 1.35, Istio's WasmPlugin): the route stage
    /// applies the decision once the buffer filter has the whole body.
    TwoStage,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// Envoy cluster that reaches tollgate-sidecar.
    #[serde(default = "default_sidecar_cluster")]
    pub cluster: String,
    /// `:authority` sent on callouts.
    #[serde(default = "default_sidecar_authority")]
    pub authority: String,
    #[serde(default = "default_sidecar_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Environment variable (listed in `host_env_keys`) holding the service
    /// token the sidecar requires on every call.
    #[serde(default = "default_sidecar_token_env")]
    pub token_env: String,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            cluster: default_sidecar_cluster(),
            authority: default_sidecar_authority(),
            timeout_ms: default_sidecar_timeout_ms(),
            failure_mode: FailureMode::Closed,
            token_env: default_sidecar_token_env(),
        }
    }
}

fn default_sidecar_token_env() -> String {
    "TOLLGATE_SERVICE_TOKEN".into()
}

fn default_sidecar_cluster() -> String {
    "tollgate_sidecar".into()
}
fn default_sidecar_authority() -> String {
    "tollgate-sidecar".into()
}
fn default_sidecar_timeout_ms() -> u64 {
    1000
}

/// How the provider credential is added to upstream requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderAuth {
    /// Envoy adds it (the credential_injector upstream filter on the provider
    /// cluster, reading an SDS secret): the key never enters the wasm VM.
    #[default]
    Envoy,
    /// The route stage sets the provider's auth header from an environment
    /// variable of the Envoy process, exposed to the VM with
    /// `vm_config.environment_variables.host_env_keys`.
    Env { var: String },
}

/// The Chat Completions field for a request's output limit: OpenAI reads
/// `max_completion_tokens`, older servers only `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// The Envoy cluster requests to this provider go to.
    pub cluster: String,
    #[serde(default)]
    pub auth: ProviderAuth,
    /// Azure OpenAI `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Azure: sends Responses clients to Azure's Responses API, `v1`
    /// (`/openai/v1/responses`) or a dated version from 2025-03-01-preview
    /// on; absent, they are translated to Chat on the deployment path.
    #[serde(default)]
    pub responses_api_version: Option<String>,
    /// openai-compatible: the field translated requests carry their output
    /// limit in; default `max_tokens`.
    #[serde(default)]
    pub max_tokens_field: Option<MaxTokensField>,
    /// Path prefix of the API on the upstream, e.g. `/openai/v1` for an
    /// OpenAI-compatible server; default `/v1` (unused for azure).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Client headers naming a provider account (`openai-organization`,
    /// `openai-project`) are removed, since the gateway's key is used;
    /// those listed here pass to this provider.
    #[serde(default)]
    pub pass_headers: Vec<String>,
    /// Where the provider serves from (e.g. `eu`), for residency pins.
    #[serde(default)]
    pub region: Option<String>,
}

/// Client headers that select an account at the provider: they would spend
/// on an organization or project of the client's choosing under the
/// gateway's provider key.
pub const ACCOUNT_HEADERS: [&str; 2] = ["openai-organization", "openai-project"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// Client-facing model name, alias or pattern (`claude-*`).
    pub name: String,
    /// Name of an entry in `providers`.
    pub provider: String,
    /// Model name sent upstream; default: the client's name unchanged.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Azure deployment name; default: the upstream model name.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Exact names of other entries tried in order when this one fails
    /// (each followed by its own fallbacks).
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// The Envoy cluster whose attempt stage sends this model's attempts:
    /// an aggregate cluster over the targets' provider clusters in the same
    /// order (required with `fallbacks`), or one provider's cluster with
    /// several keys or deployments.
    #[serde(default)]
    pub cluster: Option<String>,
    /// For a chain whose first target the request stage can prepare the
    /// request for: an Envoy aggregate cluster over that target's provider
    /// cluster and a relay cluster into the `tollgate_relay` internal
    /// listener, which tries the other targets. The first attempt then
    /// runs no upstream filter; a failed one is retried once, into the
    /// relay. Requests the stage cannot prepare (another API than the
    /// first target's, a residency pin) go to `cluster`.
    #[serde(default)]
    pub direct_cluster: Option<String>,
    /// With `direct_cluster`: the aggregate cluster over the other targets'
    /// provider clusters that the relay tries, which the relay endpoint's
    /// `hostname` names. The relay stage tells the model by it.
    #[serde(default)]
    pub relay_cluster: Option<String>,
    /// Attempts Envoy makes for one request on `cluster`, the first
    /// included; default one per target, and at least two (a pool's single
    /// target is retried on another key).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long an attempt may wait for the response headers before the
    /// next is made; default the route's `per_try_timeout`.
    #[serde(default)]
    pub attempt_timeout_ms: Option<u64>,
    /// Indices in `models` of this entry's targets, itself first; filled
    /// in by `Config::load`.
    #[serde(skip)]
    pub targets: Vec<usize>,
    /// Where this entry is served from when not its provider's region
    /// (an Azure deployment in another region).
    #[serde(default)]
    pub region: Option<String>,
    /// For a chain with targets in several regions: per set of regions
    /// (`eu`, or `eu+uk`, sorted), an Envoy aggregate cluster over the
    /// chain's targets there, in chain order. A request pinned to those
    /// regions falls back among them on it.
    #[serde(default)]
    pub region_clusters: BTreeMap<String, String>,
}

impl ModelRoute {
    /// Where this entry serves from: its own region, else its provider's.
    pub fn region_in<'a>(&'a self, provider: &'a Provider) -> Option<&'a str> {
        self.region.as_deref().or(provider.region.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The filter chain shape this configuration is loaded into.
    #[serde(default)]
    pub chain: Chain,
    #[serde(default)]
    pub sidecar: SidecarConfig,
    /// How long a key check answer is reused; bounds how late a revocation bites.
    #[serde(default = "default_key_cache_ttl_ms")]
    pub key_cache_ttl_ms: u64,
    /// Bodies above this size get 413 before reaching a provider.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    pub providers: Vec<Provider>,
    pub models: Vec<ModelRoute>,
    /// OTLP trace export; absent = off.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// Budget reservations and usage reports to the sidecar; absent = off.
    #[serde(default)]
    pub budgets: Option<BudgetConfig>,
    /// PII, secrets and prompt injection checks; absent = off.
    #[serde(default)]
    pub guardrails: Option<GuardrailConfig>,
    /// The response cache (entries behind the sidecar); absent = off.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// What usage reports carry for the sidecar's audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Teams and keys pinned to regions; absent = no pins.
    #[serde(default)]
    pub residency: Option<ResidencyConfig>,
}

/// `audit` in the filter configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Send the SHA-256 of each request and answer body with its usage
    /// report, so the audit log can keep HMACs of them (a few microseconds
    /// per KB of body; off by default).
    #[serde(default)]
    pub body_digests: bool,
}

fn default_key_cache_ttl_ms() -> u64 {
    10_000
}
fn default_max_request_bytes() -> usize {
    4 * 1024 * 1024
}

/// Longest cache TTL accepted: a revoked key must stop working promptly.
const MAX_KEY_CACHE_TTL_MS: u64 = 300_000;

impl Config {
    /// Parses and validates; the error lists every problem found, one per line.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        Config::load(bytes).map(|(config, _)| config)
    }

    /// The configuration, validated, and its guardrails compiled (once: a
    /// bad pattern is reported at start-up with every other problem).
    pub fn load(bytes: &[u8]) -> Result<(Config, Option<Guardrails>), String> {
        let mut config: Config = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid tollgate configuration JSON: {e}"))?;
        let mut problems = config.problems();
        problems.extend(fallback::expand(&mut config.models, &config.providers));
        // These read the expanded chains.
        problems.extend(residency::region_cluster_problems(&config));
        if let Some(residency) = &config.residency {
            problems.extend(residency.problems(&config));
        }
        let guardrails = match config.guardrails.as_ref().map(Guardrails::new) {
            Some(Err(e)) => {
                problems.push(format!("guardrails: {e}"));
                None
            }
            Some(Ok(g)) => Some(g),
            None => None,
        };
        if problems.is_empty() {
            Ok((config, guardrails))
        } else {
            Err(format!(
                "invalid tollgate configuration:\n  - {}",
                problems.join("\n  - ")
            ))
        }
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sidecar.cluster.trim().is_empty() {
            out.push("sidecar.cluster must name the Envoy cluster of tollgate-sidecar".into());
        }
        if self.sidecar.token_env.trim().is_empty() {
            out.push("sidecar.token_env must name the variable holding the service token".into());
        }
        if self.sidecar.timeout_ms == 0 {
            out.push("sidecar.timeout_ms must be greater than 0".into());
        }
        if self.key_cache_ttl_ms > MAX_KEY_CACHE_TTL_MS {
            out.push(format!(
                "key_cache_ttl_ms is {} but at most {MAX_KEY_CACHE_TTL_MS} is allowed, so revoked keys stop working promptly",
                self.key_cache_ttl_ms
            ));
        }
        if self.max_request_bytes == 0 {
            out.push("max_request_bytes must be greater than 0".into());
        }
        if self.providers.is_empty() {
            out.push("providers is empty: configure at least one provider".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            out.extend(provider_problems(i, p));
            if self.providers.iter().take(i).any(|q| q.name == p.name) {
                out.push(format!(
                    "providers[{i}]: duplicate provider name `{}`",
                    p.name
                ));
            }
        }
        if self.models.is_empty() {
            out.push("models is empty: map at least one model name to a provider".into());
        }
        for (i, m) in self.models.iter().enumerate() {
            out.extend(self.model_problems(i, m));
        }
        if let Some(tracing) = &self.tracing {
            out.extend(tracing.problems());
        }
        if let Some(budgets) = &self.budgets {
            out.extend(budgets.problems());
        }
        if let Some(cache) = &self.cache {
            out.extend(cache.problems());
        }
        out
    }

    fn model_problems(&self, i: usize, m: &ModelRoute) -> Vec<String> {
        let mut out = Vec::new();
        if m.name.trim().is_empty() || m.name.chars().any(char::is_whitespace) {
            out.push(format!(
                "models[{i}]: name `{}` must be non-empty without spaces",
                m.name
            ));
        }
        let Some(provider) = self.provider(&m.provider) else {
            let known: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
            out.push(format!(
                "models[{i}] (`{}`): unknown provider `{}`; known providers: {}",
                m.name,
                m.provider,
                known.join(", ")
            ));
            return out;
        };
        if glob::is_pattern(&m.name) && m.upstream_model.is_some() {
            out.push(format!(
                "models[{i}]: `{}` is a pattern, so upstream_model cannot be set (every matching name would map to one model)",
                m.name
            ));
        }
        if !provider.kind.spec().has_deployments() && m.deployment.is_some() {
            out.push(format!(
                "models[{i}]: deployment is only meaningful for azure providers, `{}` is {:?}",
                provider.name, provider.kind
            ));
        }
        out
    }
}

fn provider_problems(i: usize, p: &Provider) -> Vec<String> {
    let mut out = Vec::new();
    if p.name.trim().is_empty() {
        out.push(format!("providers[{i}]: name must not be empty"));
    }
    if p.cluster.trim().is_empty() {
        out.push(format!(
            "providers[{i}] (`{}`): cluster must name an Envoy cluster",
            p.name
        ));
    }
    for h in &p.pass_headers {
        if !ACCOUNT_HEADERS.contains(&h.as_str()) {
            out.push(format!(
                "providers[{i}] (`{}`): pass_headers may list {}, not `{h}`",
                p.name,
                ACCOUNT_HEADERS.join(", ")
            ));
        }
    }
    let problems = p.kind.spec().problems(p).into_iter();
    for problem in problems.chain(unused_settings(p)) {
        out.push(format!("providers[{i}] (`{}`): {problem}", p.name));
    }
    if let Some(base) = &p.base_path {
        if !base.starts_with('/')
            || base.ends_with('/')
            || base
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?')
        {
            out.push(format!(
                "providers[{i}] (`{}`): base_path `{base}` must start with `/`, not end with `/`, and hold no spaces or query",
                p.name
            ));
        }
    }
    if let ProviderAuth::Env { var } = &p.auth {
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(format!(
                "providers[{i}] (`{}`): auth.var `{var}` is not an environment variable name",
                p.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "providers": [
            {"name": "openai", "kind": "openai", "cluster": "openai"},
            {"name": "azure", "kind": "azure", "cluster": "azure", "api_version": "2024-10-21",
             "auth": {"type": "env", "var": "AZURE_OPENAI_API_KEY"}}
        ],
        "models": [
            {"name": "gpt-4o*", "provider": "openai"},
            {"name": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini"},
            {"name": "azure-4o", "provider": "azure", "deployment": "prod-4o"}
        ]
    }"#;

    #[test]
    fn defaults_apply() {
        let c = Config::parse(GOOD.as_bytes()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.sidecar.cluster, "tollgate_sidecar");
        assert_eq!(c.sidecar.failure_mode, FailureMode::Closed);
        assert_eq!(c.key_cache_ttl_ms, 10_000);
        assert_eq!(c.max_request_bytes, 4 * 1024 * 1024);
        assert_eq!(c.providers[0].auth, ProviderAuth::Envoy);
    }

    #[test]
    fn reports_every_problem() {
        let bad = r#"{
            "key_cache_ttl_ms": 999999999,
            "providers": [
                {"name": "a", "kind": "azure", "cluster": ""},
                {"name": "a", "kind": "openai", "cluster": "x", "api_version": "1",
                 "max_tokens_field": "max_tokens", "responses_api_version": "v1"}
            ],
            "models": [{"name": "m", "provider": "nope"}, {"name": "c-*", "provider": "a", "upstream_model": "z"}],
            "guardrails": {"custom_patterns": [{"name": "t", "pattern": "(unclosed"}]}
        }"#;
        let err = Config::parse(bad.as_bytes()).err().unwrap_or_default();
        for needle in [
            "custom pattern `t`",
            "key_cache_ttl_ms",
            "cluster must name",
            "need api_version",
            "api_version is only used by azure",
            "responses_api_version is only used by azure",
            "max_tokens_field is only used by openai-compatible",
            "duplicate provider name",
            "unknown provider `nope`",
            "is a pattern",
        ] {
            assert!(err.contains(needle), "missing `{needle}` in: {err}");
        }
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let err = Config::parse(br#"{"providers": [], "models": [], "sidcar": {}}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("unknown field `sidcar`"), "{err}");
        let err = Config::parse(
            br#"{"providers": [{"name": "x", "kind": "bedrock", "cluster": "c"}], "models": []}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("unknown variant `bedrock`"), "{err}");
        let err = Config::parse(
            br#"{"providers": [{"name": "x", "kind": "openai-compatible", "cluster": "c",
                 "max_tokens_field": "max_new_tokens"}], "models": []}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(
            err.contains(
                "unknown variant `max_new_tokens`, expected `max_tokens` or `max_completion_tokens`"
            ),
            "{err}"
        );
    }
}
