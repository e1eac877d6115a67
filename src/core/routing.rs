//! Model routing: the client's model name -> provider, upstream model and path.

use super::api::Api;
use super::config::{Config, ModelRoute, Provider};
use super::error::GatewayError;
use super::fallback::MAX_ATTEMPTS;
use super::glob;
use super::provider::Target;
use super::wire::Wire;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub provider: &'a Provider,
    /// The upstream model's name, for the ledger, prices and leases.
    pub upstream_model: String,
    /// The model name put in the upstream body (for Azure's Responses API,
    /// the deployment).
    pub body_model: String,
    /// Upstream `:path` (with query for Azure).
    pub path: String,
    /// The wire the provider is spoken to in (translated when it differs).
    pub upstream_api: Wire,
    /// Where it is served from, when configured.
    pub region: Option<&'a str>,
}

/// A model whose attempts Envoy makes on an attempt-stage cluster (a
/// fallback chain, or a pool of keys), for a route to its first target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain<'a> {
    /// Index of the client's model entry in `models`.
    pub entry: usize,
    /// The Envoy aggregate cluster over the targets' provider clusters.
    pub cluster: &'a str,
    /// The model's `direct_cluster`, when the request may take it.
    pub direct_cluster: Option<&'a str>,
    /// Attempts Envoy may make, the first included.
    pub max_attempts: u32,
    /// Per-attempt wait for the response headers, when configured.
    pub attempt_timeout_ms: Option<u64>,
    /// The target the route points at: 0, or a later one when a residency
    /// pin leaves the chain's first targets out.
    pub first: usize,
}

/// The attempts a model with a chain may make: its own `max_attempts`, else
/// `attempts_for` its targets.
pub fn chain_attempts(m: &ModelRoute) -> u32 {
    m.max_attempts
        .unwrap_or_else(|| attempts_for(m.targets.len()))
}

/// Attempts for a chain of `targets` targets unless the model says: one
/// per target, and at least two (a pool's single target is retried on
/// another key).
pub fn attempts_for(targets: usize) -> u32 {
    u32::try_from(targets)
        .unwrap_or(MAX_ATTEMPTS)
        .clamp(2, MAX_ATTEMPTS)
}

/// Finds the entry for `model`: an exact name wins over patterns, then the
/// first matching pattern in configuration order.
pub fn find_entry<'a>(config: &'a Config, model: &str) -> Option<(usize, &'a ModelRoute)> {
    let mut entries = config.models.iter().enumerate();
    entries
        .clone()
        .find(|(_, m)| !glob::is_pattern(&m.name) && m.name == model)
        .or_else(|| {
            entries.find(|(_, m)| glob::is_pattern(&m.name) && glob::matches(&m.name, model))
        })
}

/// Resolves the route for a client API call to `model`; `stream` is the
/// request's stream flag (some providers take it in the path). A model
/// with fallbacks gets the route to its first target and its chain.
pub fn resolve<'a>(
    config: &'a Config,
    api: Api,
    model: &str,
    stream: bool,
) -> Result<(Route<'a>, Option<Chain<'a>>), GatewayError> {
    let (entry, found) =
        find_entry(config, model).ok_or_else(|| GatewayError::UnknownModel(model.into()))?;
    let route = route_to(config, api, found, model, stream)?;
    let chain = found.cluster.as_deref().map(|cluster| Chain {
        entry,
        cluster,
        direct_cluster: found.direct_cluster.as_deref(),
        max_attempts: chain_attempts(found),
        attempt_timeout_ms: found.attempt_timeout_ms,
        first: 0,
    });
    Ok((route, chain))
}

/// The route to the `k`-th target of entry `entry`'s chain for a client
/// that asked for `model` (the first target is the entry itself, reached
/// as for a model without fallbacks; the others by their own names).
pub fn target<'a>(
    config: &'a Config,
    api: Api,
    entry: usize,
    k: usize,
    model: &str,
    stream: bool,
) -> Result<Route<'a>, GatewayError> {
    let missing = GatewayError::Internal("fallback target out of range");
    let first = config.models.get(entry).ok_or(missing.clone())?;
    let found = first
        .targets
        .get(k)
        .and_then(|&i| config.models.get(i))
        .ok_or(missing)?;
    let model = if k == 0 { model } else { found.name.as_str() };
    route_to(config, api, found, model, stream)
}

fn route_to<'a>(
    config: &'a Config,
    api: Api,
    entry: &'a ModelRoute,
    model: &str,
    stream: bool,
) -> Result<Route<'a>, GatewayError> {
    let provider = config
        .provider(&entry.provider)
        .ok_or(GatewayError::Internal("model mapped to a missing provider"))?;
    let upstream_model = entry
        .upstream_model
        .clone()
        .unwrap_or_else(|| model.to_string());
    let kind = provider.kind.spec();
    let upstream_api = kind.wire(provider, api);
    let target = Target {
        model: &upstream_model,
        deployment: entry.deployment.as_deref().unwrap_or(&upstream_model),
        stream,
    };
    let path = kind.path(provider, upstream_api, &target);
    let body_model = kind.body_model(upstream_api, &target).to_string();
    Ok(Route {
        provider,
        upstream_model,
        body_model,
        path,
        upstream_api,
        region: entry.region_in(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            br#"{
            "providers": [
                {"name": "openai", "kind": "openai", "cluster": "c_openai"},
                {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic"},
                {"name": "azure", "kind": "azure", "cluster": "c_azure", "api_version": "2024-10-21"},
                {"name": "local", "kind": "openai-compatible", "cluster": "c_local", "base_path": "/api/v1"}
            ],
            "models": [
                {"name": "claude-*", "provider": "anthropic"},
                {"name": "gpt-4o*", "provider": "openai"},
                {"name": "gpt-4o-mini", "provider": "azure", "deployment": "mini/prod"},
                {"name": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini"},
                {"name": "llama", "provider": "local", "upstream_model": "llama-3.1-8b"}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_pattern_and_aliases_map() {
        let c = config();
        let r = resolve(&c, Api::ChatCompletions, "gpt-4o-mini", false)
            .unwrap()
            .0;
        assert_eq!(r.provider.name, "azure");
        assert_eq!(
            r.path,
            "/openai/deployments/mini%2Fprod/chat/completions?api-version=2024-10-21"
        );
        let r = resolve(&c, Api::ChatCompletions, "fast", false).unwrap().0;
        assert_eq!(
            (r.provider.name.as_str(), r.upstream_model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!(r.path, "/v1/chat/completions");
        let r = resolve(&c, Api::Messages, "claude-sonnet-4-5", false)
            .unwrap()
            .0;
        assert_eq!(
            (r.path.as_str(), r.upstream_model.as_str()),
            ("/v1/messages", "claude-sonnet-4-5")
        );
        let r = resolve(&c, Api::Responses, "gpt-4o", false).unwrap().0;
        assert_eq!(r.path, "/v1/responses");
        let r = resolve(&c, Api::ChatCompletions, "llama", false).unwrap().0;
        assert_eq!(r.path, "/api/v1/chat/completions");
    }

    #[test]
    fn unknown_model_and_translated_routes() {
        let c = config();
        assert_eq!(
            resolve(&c, Api::ChatCompletions, "gemini-pro", false),
            Err(GatewayError::UnknownModel("gemini-pro".into()))
        );
        let r = resolve(&c, Api::Messages, "gpt-4o", false).unwrap().0;
        assert_eq!(
            (r.upstream_api, r.path.as_str()),
            (Wire::ChatCompletions, "/v1/chat/completions")
        );
        let r = resolve(&c, Api::Responses, "llama", false).unwrap().0;
        assert_eq!(
            (r.upstream_api, r.path.as_str()),
            (Wire::ChatCompletions, "/api/v1/chat/completions")
        );
        let r = resolve(&c, Api::ChatCompletions, "claude-x", false)
            .unwrap()
            .0;
        assert_eq!(
            (r.upstream_api, r.path.as_str()),
            (Wire::Messages, "/v1/messages")
        );
        let r = resolve(&c, Api::Responses, "gpt-4o-mini", false).unwrap().0;
        assert_eq!(
            r.upstream_api,
            Wire::ChatCompletions,
            "azure deployments speak chat"
        );
    }

    #[test]
    fn chains_resolve_to_their_first_target_and_each_target_by_its_own_name() {
        let c = Config::parse(
            br#"{
            "providers": [
                {"name": "openai", "kind": "openai", "cluster": "c_openai", "auth": {"type": "env", "var": "O"}},
                {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic", "auth": {"type": "env", "var": "A"}}
            ],
            "models": [
                {"name": "gpt-*", "provider": "openai", "fallbacks": ["claude-x"], "cluster": "fb"},
                {"name": "claude-x", "provider": "anthropic"},
                {"name": "pool", "provider": "openai", "upstream_model": "gpt-4o", "cluster": "keys"},
                {"name": "pool-5", "provider": "openai", "cluster": "keys", "max_attempts": 5, "attempt_timeout_ms": 900}
            ]}"#,
        )
        .unwrap();
        let (route, chain) = resolve(&c, Api::ChatCompletions, "gpt-4o", false).unwrap();
        assert_eq!(route.upstream_model, "gpt-4o");
        let chain = chain.unwrap();
        assert_eq!(
            (chain.entry, chain.cluster, chain.max_attempts),
            (0, "fb", 2)
        );
        // The first target as the client named it (a pattern); the others by their names.
        let first = target(&c, Api::ChatCompletions, 0, 0, "gpt-4o", false).unwrap();
        assert_eq!(first, route);
        let second = target(&c, Api::ChatCompletions, 0, 1, "gpt-4o", true).unwrap();
        assert_eq!(
            (
                second.provider.name.as_str(),
                second.upstream_model.as_str(),
                second.upstream_api
            ),
            ("anthropic", "claude-x", Wire::Messages)
        );
        assert!(target(&c, Api::ChatCompletions, 0, 2, "gpt-4o", false).is_err());
        // A pool: one target, retried once on another key unless told otherwise.
        let pool = resolve(&c, Api::ChatCompletions, "pool", false)
            .unwrap()
            .1
            .unwrap();
        assert_eq!((pool.max_attempts, pool.attempt_timeout_ms), (2, None));
        let five = resolve(&c, Api::ChatCompletions, "pool-5", false)
            .unwrap()
            .1
            .unwrap();
        assert_eq!((five.max_attempts, five.attempt_timeout_ms), (5, Some(900)));
        assert_eq!(
            resolve(&c, Api::ChatCompletions, "claude-x", false)
                .unwrap()
                .1,
            None
        );
    }
}
