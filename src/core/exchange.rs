//! The exchange plan: for a request whose key, model and input guardrails
//! have passed, what to forward (body and the route stage's headers), what
//! to bill (the budget lease it needs) and what to trace. The request stage
//! only carries it out, so every decision here is tested without Envoy.

use super::api::Api;
use super::auth::KeyInfo;
use super::budget::{self, LeaseAmount, LeaseRequest};
use super::config::{Config, ProviderAuth, ProviderKind};
use super::content;
use super::decision::{EnvAuth, Retries, RouteDecision};
use super::error::GatewayError;
use super::fallback::Handoff;
use super::request::{LlmRequest, RequestParams};
use super::routing::{Chain, Route};
use super::wire::{self, Translation, Wire};

/// What was decided about a request that goes upstream; kept for the usage
/// report and the trace (also for a request a guardrail then refused).
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The client's model name.
    pub model: String,
    pub upstream_model: String,
    /// Input tokens estimated from the body, for the budget lease and as a fallback.
    pub estimated_input: u64,
    /// The lease the request was admitted from, and what it took.
    pub lease_id: Option<String>,
    pub lease_debits: Vec<LeaseAmount>,
    pub provider: String,
    pub provider_kind: ProviderKind,
    pub upstream_api: Wire,
    pub params: RequestParams,
    pub upstream_start_ns: u64,
    /// Request messages for traces, when content capture is on.
    pub input_messages: Option<String>,
    /// Where the target serves from, when configured.
    pub region: Option<String>,
}

impl Exchange {
    pub fn new(api: Api, request: &LlmRequest, route: &Route) -> Exchange {
        Exchange {
            model: request.model.clone(),
            upstream_model: route.upstream_model.clone(),
            estimated_input: 0,
            lease_id: None,
            lease_debits: Vec::new(),
            provider: route.provider.name.clone(),
            provider_kind: route.provider.kind,
            upstream_api: route.upstream_api,
            params: request.params(api),
            upstream_start_ns: 0,
            input_messages: None,
            region: route.region.map(Into::into),
        }
    }
}

/// What the plan is made from besides the request, its route and its record.
pub struct Context<'a> {
    pub config: &'a Config,
    pub api: Api,
    /// The valid key; `None` when the key check failed open (nothing to bill).
    pub key: Option<&'a KeyInfo>,
    /// `:path` as the client sent it.
    pub client_path: &'a str,
    /// Provider-account headers the client sent.
    pub account_headers: &'a [&'static str],
    /// The provider's `traceparent`, when the request is traced.
    pub traceparent: Option<String>,
    /// Whether the trace captures prompt and answer text.
    pub capture_content: bool,
}

#[derive(Debug)]
pub struct Plan {
    /// The body to forward, when it differs from the client's bytes.
    pub body: Option<Vec<u8>>,
    /// How the answer is translated back, when it must be rewritten.
    pub translation: Option<Translation>,
    /// The headers the route stage sets (filter state `tollgate.route`).
    pub decision: RouteDecision,
    /// What the request needs from a budget lease (a `/v1/lease` request
    /// with no releases), when budgets are enforced for a known key.
    pub lease: Option<LeaseRequest>,
    pub estimated_input: u64,
    /// Request messages for the trace, when content is captured.
    pub input_messages: Option<String>,
    /// Whether the answer's text is captured for the trace.
    pub capture_output: bool,
    /// For a model with fallbacks, what the attempt stage needs.
    pub handoff: Option<Handoff>,
}

impl Plan {
    /// The plan for `request` (after the input guardrails) along `route`,
    /// the first target of `chain` when the model has fallbacks.
    pub fn new(
        cx: &Context,
        request: &mut LlmRequest,
        route: &Route,
        chain: Option<&Chain>,
        exchange: &Exchange,
    ) -> Result<Plan, GatewayError> {
        let api = cx.api;
        // A chain whose first target speaks another API gets the client's
        // body: each attempt translates it for its own target.
        let neutral = chain.is_some() && route.upstream_api != api.wire();
        let (body, translation, mut decision) = if neutral {
            let model = request.model.clone();
            (
                request.rewritten_for(&model),
                None,
                RouteDecision::default(),
            )
        } else {
            let (body, translation) = upstream_body(api, request, route)?;
            let decision = provider_headers(api, route, cx.client_path);
            (body, translation, decision)
        };
        decision.traceparent = cx.traceparent.clone();
        // Headers set here reach every attempt of a chain, so account
        // headers pass only to a provider without fallbacks.
        decision.remove = cx
            .account_headers
            .iter()
            .filter(|h| chain.is_some() || !route.provider.pass_headers.iter().any(|p| p == *h))
            .map(|h| h.to_string())
            .collect();
        // Prepared for the first target: the first attempt may go without
        // an attempt stage, through the model's direct cluster.
        let direct = chain
            .filter(|c| !neutral && c.max_attempts > 1)
            .and_then(|c| c.direct_cluster);
        decision.cluster = chain
            .map_or(route.provider.cluster.as_str(), |c| {
                direct.unwrap_or(c.cluster)
            })
            .to_string();
        if let Some(chain) = chain {
            // The key of the target the request is prepared for: a first
            // attempt on the direct cluster goes with it; every attempt
            // stage clears it and sets its own target's.
            if neutral {
                decision.auth = None;
            }
            decision.retries = Some(Retries {
                max_retries: chain.max_attempts.saturating_sub(1),
                per_try_timeout_ms: chain.attempt_timeout_ms,
                relay: direct.is_some(),
            });
        }
        let estimated_input = budget::estimate_input_tokens(api, &request.body);
        let input_messages = cx
            .capture_content
            .then(|| content::input_messages(api, &request.body));
        Ok(Plan {
            body,
            translation,
            decision,
            lease: lease_need(cx, exchange, estimated_input),
            estimated_input,
            input_messages,
            capture_output: cx.capture_content,
            handoff: chain.map(|c| Handoff {
                entry: c.entry,
                api,
                stream: request.stream,
                prepared: (!neutral).then_some(c.first),
                model: exchange.model.clone(),
            }),
        })
    }
}

/// What one attempt of a fallback chain sends to its target: the body
/// (`None` when the forwarded one serves) and the provider's headers, for
/// the checked request in the client's API.
pub fn attempt(
    api: Api,
    request: &mut LlmRequest,
    route: &Route,
) -> Result<(Option<Vec<u8>>, RouteDecision), GatewayError> {
    let (body, _) = upstream_body(api, request, route)?;
    Ok((body, attempt_headers(api, route)))
}

/// The provider's headers for an attempt whose body is already right.
pub fn attempt_headers(api: Api, route: &Route) -> RouteDecision {
    provider_headers(api, route, "")
}

/// The body to send along `route`, when it differs from the client's
/// bytes, and how the answer is translated back, when it must be.
fn upstream_body(
    api: Api,
    request: &mut LlmRequest,
    route: &Route,
) -> Result<(Option<Vec<u8>>, Option<Translation>), GatewayError> {
    let upstream = route.upstream_api;
    // Another wire upstream, or a stream whose usage must be asked for:
    // translate; otherwise at most the model name changes.
    let translated = upstream != api.wire();
    if translated || (request.stream && upstream.upstream().stream_usage_on_request()) {
        let (mut body, translation) = wire::request::translate(
            api,
            upstream,
            &request.body,
            request.stream,
            &route.body_model,
        )?;
        if let (true, Some(o)) = (translated, body.as_object_mut()) {
            route.provider.kind.spec().adapt_request(route.provider, o);
        }
        Ok((
            serde_json::to_vec(&body).ok(),
            translation.rewrites().then_some(translation),
        ))
    } else {
        // Thinking the gateway wrote for another provider is unsigned,
        // and Anthropic refuses it in a history.
        if upstream == Wire::Messages {
            request.modified |= wire::messages::drop_unsigned_thinking(&mut request.body);
        }
        Ok((request.rewritten_for(&route.body_model), None))
    }
}

/// The provider's headers for `route`: its path (when not the client's),
/// its credential (`env` auth) and, for a translated request, the headers
/// its API needs. The cluster is left to the caller.
fn provider_headers(api: Api, route: &Route, client_path: &str) -> RouteDecision {
    let upstream = route.upstream_api;
    RouteDecision {
        path: (route.path != client_path).then(|| route.path.clone()),
        auth: env_auth(route.provider.kind, &route.provider.auth),
        defaults: if upstream != api.wire() {
            upstream
                .upstream()
                .default_headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        } else {
            Vec::new()
        },
        ..RouteDecision::default()
    }
}

/// What the request needs from the key's, team's and user's budgets; none
/// when budgets are not enforced or the key check failed open.
fn lease_need(cx: &Context, exchange: &Exchange, estimated_input: u64) -> Option<LeaseRequest> {
    let budgets = cx.config.budgets.as_ref().filter(|b| b.enforce)?;
    let info = cx.key?;
    Some(LeaseRequest {
        key_id: info.key_id.clone(),
        team: info.team.clone(),
        user: info.user.clone(),
        model: exchange.model.clone(),
        upstream_model: exchange.upstream_model.clone(),
        provider: exchange.provider.clone(),
        estimated_input_tokens: estimated_input,
        max_output_tokens: exchange
            .params
            .max_tokens
            .unwrap_or(budgets.default_max_output_tokens),
        release: Vec::new(),
    })
}

/// How the route stage adds the provider key when Envoy does not.
fn env_auth(kind: ProviderKind, auth: &ProviderAuth) -> Option<EnvAuth> {
    let ProviderAuth::Env { var } = auth else {
        return None;
    };
    let (header, prefix) = kind.spec().auth_header();
    Some(EnvAuth {
        header: header.into(),
        prefix: prefix.into(),
        var: var.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::routing;
    use serde_json::{json, Value};

    fn config(budgets: &str) -> Config {
        let text = format!(
            r#"{{
            "providers": [
                {{"name": "openai", "kind": "openai", "cluster": "c_openai", "pass_headers": ["openai-project"]}},
                {{"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic",
                  "auth": {{"type": "env", "var": "ANTHROPIC_KEY"}}}}
            ],
            "models": [
                {{"name": "gpt-4o*", "provider": "openai"}},
                {{"name": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini"}},
                {{"name": "claude-*", "provider": "anthropic"}}
            ]{budgets}}}"#
        );
        Config::parse(text.as_bytes()).unwrap()
    }

    fn key() -> KeyInfo {
        KeyInfo {
            key_id: "k1".into(),
            team: None,
            user: Some("ann".into()),
            models: vec![],
            team_models: vec![],
            expires_at: None,
        }
    }

    /// The plan for an OpenAI Chat request with `body`.
    fn plan(config: &Config, key: Option<&KeyInfo>, capture: bool, body: Value) -> Plan {
        plan_in(Api::ChatCompletions, config, key, capture, body)
    }

    /// The body sent upstream for an `api` request with `body`.
    fn sent(api: Api, config: &Config, body: Value) -> Value {
        let plan = plan_in(api, config, None, false, body);
        serde_json::from_slice(&plan.body.unwrap()).unwrap()
    }

    fn plan_in(
        api: Api,
        config: &Config,
        key: Option<&KeyInfo>,
        capture: bool,
        body: Value,
    ) -> Plan {
        let mut request = LlmRequest::parse(body.to_string().as_bytes(), None).unwrap();
        let route = routing::resolve(config, api, &request.model, request.stream)
            .unwrap()
            .0;
        let exchange = Exchange::new(api, &request, &route);
        let cx = Context {
            config,
            api,
            key,
            client_path: api.inbound().path(),
            account_headers: &["openai-organization", "openai-project"],
            traceparent: None,
            capture_content: capture,
        };
        Plan::new(&cx, &mut request, &route, None, &exchange).unwrap()
    }

    fn hi(model: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn same_wire_forwards_the_clients_bytes_unless_the_model_changes() {
        let c = config("");
        let p = plan(&c, None, false, hi("gpt-4o"));
        assert!(p.body.is_none() && p.translation.is_none());
        assert_eq!(p.decision.cluster, "c_openai");
        assert_eq!(p.decision.path, None);
        assert!(p.decision.auth.is_none() && p.decision.defaults.is_empty());
        // Account headers go, unless the provider lets them pass.
        assert_eq!(p.decision.remove, ["openai-organization"]);
        let p = plan(&c, None, false, hi("fast"));
        let sent: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(sent["model"], "gpt-4o-mini");
    }

    #[test]
    fn unsigned_thinking_is_not_sent_to_anthropic() {
        let history = |signature: &str| {
            json!({"model": "claude-x", "max_tokens": 9, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": signature},
                    {"type": "text", "text": "a"}]},
                {"role": "user", "content": "y"}]})
        };
        let c = config("");
        let sent = sent(Api::Messages, &c, history(""));
        assert_eq!(
            sent["messages"][1]["content"],
            json!([{"type": "text", "text": "a"}]),
            "the gateway's own (from Gemini) is dropped"
        );
        let signed = plan_in(Api::Messages, &c, None, false, history("sig"));
        assert!(signed.body.is_none(), "Anthropic's own passes as it came");
    }

    #[test]
    fn another_wire_is_translated_with_its_headers() {
        let p = plan(&config(""), None, false, hi("claude-x"));
        let sent: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(sent["messages"][0]["content"][0]["text"], "hi");
        assert!(sent.get("max_tokens").is_some());
        assert!(p.translation.is_some());
        assert_eq!(p.decision.cluster, "c_anthropic");
        assert_eq!(p.decision.path.as_deref(), Some("/v1/messages"));
        assert!(p
            .decision
            .defaults
            .iter()
            .any(|(n, _)| n == "anthropic-version"));
        let auth = p.decision.auth.unwrap();
        assert_eq!(
            (auth.header.as_str(), auth.var.as_str()),
            ("x-api-key", "ANTHROPIC_KEY")
        );
        assert_eq!(p.decision.remove, ["openai-organization", "openai-project"]);
    }

    #[test]
    fn openai_compatible_servers_get_their_max_tokens_field() {
        let c = Config::parse(
            br#"{"providers": [
                {"name": "old", "kind": "openai-compatible", "cluster": "c_old"},
                {"name": "new", "kind": "openai-compatible", "cluster": "c_new",
                 "max_tokens_field": "max_completion_tokens"}],
              "models": [{"name": "old-*", "provider": "old"}, {"name": "new-*", "provider": "new"}]}"#,
        )
        .unwrap();
        let ask = |model: &str| json!({"model": model, "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
        let old = sent(Api::Messages, &c, ask("old-llama"));
        assert_eq!(old["max_tokens"], 9, "the default");
        assert!(old.get("max_completion_tokens").is_none());
        let new = sent(Api::Messages, &c, ask("new-llama"));
        assert_eq!(new["max_completion_tokens"], 9);
        assert!(new.get("max_tokens").is_none());
        let responses = json!({"model": "old-llama", "input": "hi", "max_output_tokens": 5});
        assert_eq!(sent(Api::Responses, &c, responses)["max_tokens"], 5);
        // A Chat client's own field is its choice: its bytes go as sent.
        let chat = json!({"model": "old-llama", "max_completion_tokens": 9, "messages": []});
        assert!(plan(&c, None, false, chat).body.is_none());
    }

    #[test]
    fn azure_responses_bodies_name_the_deployment() {
        let c = Config::parse(
            br#"{"providers": [{"name": "az", "kind": "azure", "cluster": "c_az",
                  "api_version": "2024-10-21", "responses_api_version": "v1"}],
              "models": [{"name": "gpt-4o", "provider": "az", "deployment": "prod-4o"}]}"#,
        )
        .unwrap();
        let p = plan_in(
            Api::Responses,
            &c,
            None,
            false,
            json!({"model": "gpt-4o", "input": "hi"}),
        );
        assert!(p.translation.is_none(), "spoken to in Responses");
        assert_eq!(p.decision.path.as_deref(), Some("/openai/v1/responses"));
        let sent: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(sent["model"], "prod-4o");
    }

    #[test]
    fn bills_only_a_known_key_when_budgets_are_enforced() {
        let key = key();
        assert!(plan(&config(""), Some(&key), false, hi("gpt-4o"))
            .lease
            .is_none());
        let off = config(r#", "budgets": {"enforce": false}"#);
        assert!(plan(&off, Some(&key), false, hi("gpt-4o")).lease.is_none());
        let on = config(r#", "budgets": {"default_max_output_tokens": 100}"#);
        assert!(plan(&on, None, false, hi("gpt-4o")).lease.is_none());
        let p = plan(&on, Some(&key), false, hi("fast"));
        let need = p.lease.unwrap();
        assert_eq!(need.key_id, "k1");
        assert_eq!((need.team, need.user.as_deref()), (None, Some("ann")));
        assert_eq!(need.model, "fast");
        assert_eq!(need.upstream_model, "gpt-4o-mini");
        assert_eq!(need.provider, "openai");
        assert_eq!(need.max_output_tokens, 100);
        assert_eq!(need.estimated_input_tokens, p.estimated_input);
        assert!(p.estimated_input > 0 && need.release.is_empty());
        let mut asks = hi("gpt-4o");
        asks["max_tokens"] = json!(7);
        let p = plan(&on, Some(&key), false, asks);
        assert_eq!(p.lease.unwrap().max_output_tokens, 7);
    }

    #[test]
    fn traces_content_only_when_captured() {
        let c = config("");
        let p = plan(&c, None, false, hi("gpt-4o"));
        assert!(p.input_messages.is_none() && !p.capture_output);
        let p = plan(&c, None, true, hi("gpt-4o"));
        assert!(p.input_messages.unwrap().contains("hi") && p.capture_output);
    }
}
