//! Fallback chains through MockHost: what the request stage hands over and
//! asks of Envoy, the attempt stage's work per attempt, and the response
//! side following the target that answered.

use super::*;
use crate::core::fallback::{self, Attempt, Handoff};
use crate::core::fallback::{ATTEMPTS, ATTEMPTS_HEADER, DIRECT, HANDOFF};
use crate::filter::attempt_stage::AttemptStage;
use crate::filter::mock::{ATTEMPT_COUNT, CODE_DETAILS, ENDPOINT_METADATA, UPSTREAM_ADDRESS};
use crate::filter::relay_stage::RelayStage;

const OPENAI_ENV: &str = "TOLLGATE_CHAIN_TEST_OPENAI";
const OPENAI_2_ENV: &str = "TOLLGATE_CHAIN_TEST_OPENAI_2";
const ANTHROPIC_ENV: &str = "TOLLGATE_CHAIN_TEST_ANTHROPIC";

/// `chain` falls back from OpenAI to Anthropic on cluster `fb`.
fn chain() -> Arc<Shared> {
    chain_with(json!({}))
}

/// `chain`, with direct cluster `fb_direct` (its relay tries Anthropic on
/// `fb_rest`).
fn direct_chain() -> Arc<Shared> {
    chain_with(json!({"direct_cluster": "fb_direct", "relay_cluster": "fb_rest"}))
}

fn chain_with(fields: Value) -> Arc<Shared> {
    std::env::set_var(OPENAI_ENV, "sk-openai");
    std::env::set_var(OPENAI_2_ENV, "sk-openai-2");
    std::env::set_var(ANTHROPIC_ENV, "sk-ant");
    let mut entry = json!({"name": "chain", "provider": "openai", "upstream_model": "gpt-4o",
                           "fallbacks": ["claude-x"], "cluster": "fb", "attempt_timeout_ms": 1500});
    entry
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    shared(json!({
        "providers": [
            {"name": "openai", "kind": "openai", "cluster": "c_openai",
             "auth": {"type": "env", "var": OPENAI_ENV}},
            {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic",
             "auth": {"type": "env", "var": ANTHROPIC_ENV}}
        ],
        "models": [entry, {"name": "claude-x", "provider": "anthropic"}]
    }))
}

fn header(host: &MockHost, name: &str) -> Option<String> {
    host.request_header(name)
}

/// A request for `chain` routed by the request stage (key valid).
fn routed(shared: &Arc<Shared>, host: MockHost) -> RequestStage<MockHost> {
    let mut stage = authorized(shared, host, VALID);
    assert_eq!(body_end(&mut stage), Action::Continue);
    stage
}

fn handoff(stage: &RequestStage<MockHost>) -> Handoff {
    Handoff::decode(&stage.host.property(HANDOFF).unwrap()).unwrap()
}

#[test]
fn a_chain_goes_to_its_cluster_with_envoys_attempt_settings_and_its_first_targets_key() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let host = &stage.host;
    assert_eq!(header(host, "x-tollgate-cluster").as_deref(), Some("fb"));
    assert_eq!(header(host, "x-envoy-max-retries").as_deref(), Some("1"));
    assert_eq!(
        header(host, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
        Some("1500")
    );
    assert_eq!(header(host, "x-tollgate-relay"), None);
    // Prepared for the first target, key included (its attempt stage
    // lets it go as it is). Account headers reach no target.
    assert_eq!(
        header(host, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(header(host, "openai-organization"), None);
    // The first target speaks the client's API: prepared for it.
    let body: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        handoff(&stage),
        Handoff {
            entry: 0,
            api: crate::core::api::Api::ChatCompletions,
            stream: false,
            prepared: Some(0),
            model: "chain".into()
        }
    );
}

/// An Anthropic client's request for `chain` (another API than its first
/// target's): its body, and the host it arrives on.
fn anthropic_client_request() -> (Value, MockHost) {
    let body =
        json!({"model": "chain", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
    let host = MockHost::request(
        "POST",
        "/v1/messages",
        &[("x-api-key", "tg-key"), ("anthropic-version", "2023-06-01")],
        body.to_string().as_bytes(),
    );
    (body, host)
}

#[test]
fn a_prepared_request_takes_the_direct_cluster_on_the_relay_route() {
    let shared = direct_chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let host = &stage.host;
    // One header selects the relay route and names the cluster; the
    // route retries once, into the relay, which makes the rest.
    assert_eq!(
        header(host, "x-tollgate-relay").as_deref(),
        Some("fb_direct")
    );
    assert_eq!(header(host, "x-tollgate-cluster"), None);
    assert_eq!(header(host, "x-envoy-max-retries"), None);
    assert_eq!(
        header(host, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
        Some("1500")
    );
    assert_eq!(
        header(host, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    // Nothing handed over: no attempt stage runs, and the relay rebuilds it.
    assert_eq!(host.property(HANDOFF), None);
    let f = stage.fallback.as_ref().unwrap();
    assert_eq!((f.handoff.prepared, f.relay), (Some(0), true));
    // A request that is not prepared for the first target takes the
    // attempt-stage cluster.
    let (_, host) = anthropic_client_request();
    let stage = routed(&shared, host);
    assert_eq!(
        header(&stage.host, "x-tollgate-cluster").as_deref(),
        Some("fb")
    );
    assert_eq!(header(&stage.host, "x-tollgate-relay"), None);
    assert_eq!(
        header(&stage.host, "x-envoy-max-retries").as_deref(),
        Some("1")
    );
}

#[test]
fn a_client_of_another_api_hands_over_its_own_checked_body() {
    let shared = chain();
    let (body, host) = anthropic_client_request();
    let stage = routed(&shared, host);
    // Prepared for no target: every attempt's stage sets its own key.
    assert_eq!(header(&stage.host, "x-api-key"), None);
    assert_eq!(header(&stage.host, "authorization"), None);
    let sent: Value = serde_json::from_slice(&stage.host.request_body.borrow()).unwrap();
    assert_eq!(sent, body, "each attempt translates it for its own target");
    assert_eq!(
        header(&stage.host, ":path").as_deref(),
        Some("/v1/messages")
    );
    assert_eq!(handoff(&stage).prepared, None);
}

/// An attempt of `stage`'s request landing on `provider`'s endpoint, with
/// the request stage's headers, body and filter state.
fn attempt(
    shared: &Arc<Shared>,
    stage: &RequestStage<MockHost>,
    provider: &str,
) -> AttemptStage<MockHost> {
    let host = MockHost::default().sharing(&stage.host);
    *host.request_headers.borrow_mut() = stage.host.request_headers.borrow().clone();
    *host.request_body.borrow_mut() = stage.host.request_body.borrow().clone();
    host.set_property(HANDOFF, &stage.host.property(HANDOFF).unwrap());
    if let Some(record) = stage.host.property(ATTEMPTS) {
        host.set_property(ATTEMPTS, &record);
    }
    host.set_property(&format!("{ENDPOINT_METADATA}provider"), provider.as_bytes());
    host.now_ns.set(5_000);
    AttemptStage::new(Some(Arc::clone(shared)), host)
}

/// Envoy's request callbacks for one attempt; what the body callback says.
fn send(attempt: &mut AttemptStage<MockHost>) -> Action {
    let held = attempt.on_http_request_headers(0, false);
    let size = attempt.host().request_body.borrow().len();
    let action = attempt.on_http_request_body(size, true);
    if held == Action::Continue {
        assert_eq!(action, Action::Continue);
    }
    action
}

#[test]
fn the_first_attempt_on_the_prepared_target_goes_as_it_is_with_its_key() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let before_body = stage.host.request_body.borrow().clone();
    let mut a = attempt(&shared, &stage, "openai");
    // Not held: nothing to wait for.
    assert_eq!(a.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(
        a.on_http_request_body(before_body.len(), true),
        Action::Continue
    );
    let host = a.host();
    assert_eq!(*host.request_body.borrow(), before_body);
    assert_eq!(
        header(host, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(
        header(host, ":path").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(
        fallback::attempts(&host.property(ATTEMPTS).unwrap()),
        [Attempt {
            target: 0,
            start_ns: 5_000,
            status: 0
        }]
    );
}

/// `stage`'s response as the router passes it on: `status`, with `body`
/// (an OpenAI answer unless given), and what Envoy's side noted of the
/// attempts: the attempt stages' record, the statuses the Lua script
/// listed, the attempt count and the code details.
fn respond(
    stage: &mut RequestStage<MockHost>,
    status: &str,
    extra: &[(&str, &str)],
    facts: &[(&str, &str)],
) {
    let mut headers = vec![
        (":status".to_string(), status.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    *stage.host.response_headers.borrow_mut() = headers;
    for (name, value) in facts {
        stage.host.set_property(name, value.as_bytes());
    }
    stage.on_http_response_headers(0, false);
}

#[test]
fn a_prepared_target_answering_at_once_serves_without_an_attempt_stage() {
    let shared = direct_chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    stage.host.calls.borrow_mut().clear();
    respond(&mut stage, "200", &[], &[]);
    let client = stage.host.response_headers();
    assert_eq!(client.get("x-tollgate-target"), Some("openai/gpt-4o"));
    let attempts = &stage.fallback.as_ref().unwrap().attempts;
    assert_eq!(statuses(attempts), [(0, 200)]);
    assert_eq!(
        stage.counter("tollgate.attempts.provider.openai.status.2xx"),
        1
    );
    assert_eq!(stage.counter("tollgate.fallbacks.provider.openai"), 0);
    // Told without asking Envoy for more.
    let calls = stage.host.calls.borrow();
    for asked in ["attempt_count", "response_code_details"] {
        assert!(!calls.contains_key(asked), "{asked}");
    }
}

fn statuses(attempts: &[Attempt]) -> Vec<(usize, u32)> {
    attempts.iter().map(|a| (a.target, a.status)).collect()
}

#[test]
fn the_direct_attempt_is_counted_before_the_relays() {
    let shared = direct_chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // OpenAI failed (no attempt stage: its status unseen), then the
    // relay: Anthropic 200 (its stage ran, behind the relay).
    respond(
        &mut stage,
        "200",
        &[(ATTEMPTS_HEADER, "1@20=200")],
        &[
            (ATTEMPT_COUNT, "2"),
            (UPSTREAM_ADDRESS, "envoy://tollgate_relay/"),
        ],
    );
    assert_eq!(stage.host.response_headers().get(ATTEMPTS_HEADER), None);
    let f = stage.fallback.as_ref().unwrap();
    assert_eq!(statuses(&f.attempts), [(0, 0), (1, 200)]);
    assert_eq!(
        stage.counter("tollgate.attempts.provider.openai.status.failed"),
        1
    );
    assert_eq!(stage.counter("tollgate.fallbacks.provider.anthropic"), 1);
    assert_eq!(
        stage.host.response_headers().get("x-tollgate-target"),
        Some("anthropic/claude-x")
    );
}

#[test]
fn a_providers_record_of_attempts_is_dropped() {
    let shared = direct_chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // OpenAI answered and claims Anthropic did.
    respond(
        &mut stage,
        "200",
        &[(ATTEMPTS_HEADER, "1@20=200")],
        &[(UPSTREAM_ADDRESS, "10.0.0.1:443")],
    );
    let client = stage.host.response_headers();
    assert_eq!(client.get("x-tollgate-target"), Some("openai/gpt-4o"));
    assert_eq!(client.get(ATTEMPTS_HEADER), None);
    assert_eq!(
        statuses(&stage.fallback.as_ref().unwrap().attempts),
        [(0, 200)]
    );
}

#[test]
fn a_rate_limited_prepared_target_reaches_the_client_as_a_429() {
    let shared = direct_chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // Retries exhausted: the router passes on the provider's 429.
    respond(
        &mut stage,
        "429",
        &[("retry-after", "1")],
        &[(ATTEMPT_COUNT, "1"), (CODE_DETAILS, "via_upstream")],
    );
    let client = stage.host.response_headers();
    assert_eq!(client.get(":status"), Some("429"));
    assert_eq!(client.get("retry-after"), Some("1"));
    assert_eq!(client.get("x-tollgate-target"), Some("openai/gpt-4o"));
    assert_eq!(
        statuses(&stage.fallback.as_ref().unwrap().attempts),
        [(0, 429)]
    );
}

#[test]
fn envoys_own_reply_after_a_direct_attempt_names_no_target() {
    let shared = direct_chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // A reset, and no retry allowed (the retry budget): Envoy's 503.
    respond(
        &mut stage,
        "503",
        &[],
        &[
            (ATTEMPT_COUNT, "1"),
            (CODE_DETAILS, "upstream_reset_before_response_started"),
        ],
    );
    assert_eq!(stage.host.response_headers().get("x-tollgate-target"), None);
    assert_eq!(
        statuses(&stage.fallback.as_ref().unwrap().attempts),
        [(0, 0)]
    );
    assert_eq!(
        stage.counter("tollgate.attempts.provider.openai.status.failed"),
        1
    );
}

#[test]
fn a_later_attempt_on_the_first_target_undoes_what_earlier_ones_set() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let body = stage.host.request_body.borrow().clone();
    let mut a = attempt(&shared, &stage, "openai");
    // An earlier attempt went to Anthropic (a pool retry, or a chain that
    // came round again): its key, path and length are still set.
    a.host().set_property(ATTEMPTS, b"1@1000");
    a.host().set_request_header("x-api-key", Some("sk-ant"));
    a.host().set_request_header(":path", Some("/v1/messages"));
    a.host().set_request_header("content-length", Some("999"));
    assert_eq!(send(&mut a), Action::Continue);
    let host = a.host();
    assert_eq!(*host.request_body.borrow(), body);
    assert_eq!(header(host, "content-length"), Some(body.len().to_string()));
    assert_eq!(
        header(host, "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(header(host, "x-api-key"), None);
    assert_eq!(
        header(host, ":path").as_deref(),
        Some("/v1/chat/completions")
    );
    let targets: Vec<usize> = fallback::attempts(&host.property(ATTEMPTS).unwrap())
        .iter()
        .map(|a| a.target)
        .collect();
    assert_eq!(targets, [1, 0]);
}

#[test]
fn a_fallback_target_gets_the_request_in_its_api_with_its_key() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let mut a = attempt(&shared, &stage, "openai");
    send(&mut a);
    // Envoy keeps one header map for every attempt; the body is the request stage's.
    let mut b = attempt(&shared, &stage, "anthropic");
    *b.host().request_headers.borrow_mut() = a.host().request_headers.borrow().clone();
    b.host()
        .set_property(ATTEMPTS, &a.host().property(ATTEMPTS).unwrap());
    assert_eq!(send(&mut b), Action::Continue);
    let host = b.host();
    let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(sent["model"], "claude-x");
    assert_eq!(sent["messages"][0]["content"][0]["text"], "hi");
    assert!(sent["max_tokens"].as_u64().is_some());
    assert_eq!(
        header(host, "content-length"),
        Some(host.request_body.borrow().len().to_string())
    );
    assert_eq!(header(host, ":path").as_deref(), Some("/v1/messages"));
    assert_eq!(header(host, "x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(
        header(host, "authorization"),
        None,
        "OpenAI's key stays with OpenAI"
    );
    assert_eq!(
        header(host, "anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    let targets: Vec<usize> = fallback::attempts(&host.property(ATTEMPTS).unwrap())
        .iter()
        .map(|a| a.target)
        .collect();
    assert_eq!(targets, [0, 1]);
}

#[test]
fn an_endpoint_of_a_pool_brings_its_own_key() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let mut a = attempt(&shared, &stage, "openai");
    a.host().set_property(
        &format!("{ENDPOINT_METADATA}credential"),
        OPENAI_2_ENV.as_bytes(),
    );
    send(&mut a);
    assert_eq!(
        header(a.host(), "authorization").as_deref(),
        Some("Bearer sk-openai-2")
    );
}

/// `stage`'s request as the relay listener gets it: the headers and body
/// its first attempt went with, on the host the relay endpoint names
/// (the route's `auto_host_rewrite`).
fn relayed(stage: &RequestStage<MockHost>, authority: &str) -> MockHost {
    let host = MockHost::default().sharing(&stage.host);
    let mut headers = stage.host.request_headers.borrow().clone();
    headers.retain(|(n, _)| n != ":authority");
    headers.push((":authority".into(), authority.into()));
    *host.request_headers.borrow_mut() = headers;
    *host.request_body.borrow_mut() = stage.host.request_body.borrow().clone();
    host
}

/// The relay stage's callbacks for a request; what the body callback says.
fn relay(shared: &Arc<Shared>, host: MockHost) -> RelayStage<MockHost> {
    let mut relay = RelayStage::new(Some(Arc::clone(shared)), host);
    assert_eq!(relay.on_http_request_headers(0, false), Action::Pause);
    let size = relay.host().request_body.borrow().len();
    relay.on_http_request_body(size, true);
    relay
}

#[test]
fn the_relay_rebuilds_the_hand_over_and_sets_the_attempts_left_and_their_timeout() {
    let shared = chain_with(
        json!({"direct_cluster": "fb_direct", "relay_cluster": "fb_rest",
                                   "max_attempts": 4}),
    );
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let relay = relay(&shared, relayed(&stage, "fb_rest"));
    let host = relay.host();
    assert!(host.reply().is_none(), "{:?}", host.reply());
    // Four attempts: the direct one, then the relay's first and 2 retries.
    assert_eq!(header(host, "x-envoy-max-retries").as_deref(), Some("2"));
    assert_eq!(
        header(host, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
        Some("1500")
    );
    // What the request stage would have handed over, the client's model
    // name aside (only the first target, never the relay's, reads it).
    let f = stage.fallback.as_ref().unwrap();
    let rebuilt = Handoff::decode(&host.property(HANDOFF).unwrap()).unwrap();
    assert_eq!(rebuilt, f.handoff);
    // A streamed Responses call: the path tells the API, the body the stream.
    let body = json!({"model": "chain", "input": "hi", "stream": true}).to_string();
    let responses = MockHost::request(
        "POST",
        "/v1/responses",
        &[("authorization", "Bearer tg-key")],
        body.as_bytes(),
    );
    let stage = routed(&shared, responses);
    let relay = self::relay(&shared, relayed(&stage, "fb_rest"));
    let rebuilt = Handoff::decode(&relay.host().property(HANDOFF).unwrap()).unwrap();
    assert_eq!(rebuilt, stage.fallback.as_ref().unwrap().handoff);
    assert_eq!(
        (rebuilt.api, rebuilt.stream),
        (crate::core::api::Api::Responses, true)
    );
}

#[test]
fn a_request_no_direct_cluster_sent_is_refused_by_the_relay_saying_why() {
    let shared = direct_chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // A host that names no relay cluster: the chain's own, say.
    let relay = relay(&shared, relayed(&stage, "fb"));
    let reply = relay.host().reply().unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no model's direct cluster sent"));
    assert_eq!(relay.host().property(HANDOFF), None);
    // A path in no API the first target speaks.
    let host = relayed(&stage, "fb_rest");
    for (name, value) in host.request_headers.borrow_mut().iter_mut() {
        if name == ":path" {
            *value = "/v1/embeddings".into();
        }
    }
    assert_eq!(relay_of(&shared, host).status, 500);
    // No body.
    let mut bodiless = RelayStage::new(Some(Arc::clone(&shared)), relayed(&stage, "fb_rest"));
    assert_eq!(bodiless.on_http_request_headers(0, true), Action::Pause);
    assert_eq!(bodiless.host().reply().unwrap().status, 500);
}

fn relay_of(shared: &Arc<Shared>, host: MockHost) -> crate::filter::mock::LocalReply {
    relay(shared, host).host().reply().unwrap()
}

#[test]
fn behind_the_relay_an_attempt_reads_the_relays_hand_over() {
    let shared = direct_chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let relay = relay(&shared, relayed(&stage, "fb_rest"));
    let host = MockHost::default().sharing(relay.host());
    *host.request_headers.borrow_mut() = relay.host().request_headers.borrow().clone();
    *host.request_body.borrow_mut() = relay.host().request_body.borrow().clone();
    host.set_property(HANDOFF, &relay.host().property(HANDOFF).unwrap());
    host.set_property(&format!("{ENDPOINT_METADATA}provider"), b"anthropic");
    let mut a = AttemptStage::new(Some(Arc::clone(&shared)), host);
    assert_eq!(send(&mut a), Action::Continue);
    let host = a.host();
    assert_eq!(header(host, ":path").as_deref(), Some("/v1/messages"));
    assert_eq!(header(host, "x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(header(host, "authorization"), None);
    // Its record, for the relay route to return.
    let record = fallback::attempts(&host.property(ATTEMPTS).unwrap());
    assert_eq!(statuses(&record), [(1, 0)]);
}

#[test]
fn an_attempt_that_cannot_be_placed_is_refused_not_sent() {
    let shared = chain();
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    // An endpoint of a provider outside the chain.
    let mut a = attempt(&shared, &stage, "gemini");
    assert_eq!(a.on_http_request_headers(0, false), Action::Pause);
    assert_eq!(a.host().reply().unwrap().status, 500);
    // No handoff: the request did not pass the request stage.
    let mut b = AttemptStage::new(Some(Arc::clone(&shared)), MockHost::default());
    b.on_http_request_headers(0, false);
    let reply = b.host().reply().unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("without passing the tollgate request stage"));
    // No configuration in the VM.
    let mut c = AttemptStage::new(None, MockHost::default());
    c.on_http_request_headers(0, false);
    assert_eq!(c.host().reply().unwrap().status, 500);
}

/// `chain` with OpenAI in the US and Anthropic in the EU, and team
/// `research` (the test keys' team) pinned to `pins`.
fn pinned_chain(pins: Value) -> Arc<Shared> {
    std::env::set_var(OPENAI_ENV, "sk-openai");
    std::env::set_var(ANTHROPIC_ENV, "sk-ant");
    shared(json!({
        "providers": [
            {"name": "openai", "kind": "openai", "cluster": "c_openai", "region": "us",
             "auth": {"type": "env", "var": OPENAI_ENV}},
            {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic", "region": "eu",
             "auth": {"type": "env", "var": ANTHROPIC_ENV}}
        ],
        "models": [
            {"name": "chain", "provider": "openai", "upstream_model": "gpt-4o",
             "fallbacks": ["claude-x"], "cluster": "fb"},
            {"name": "claude-x", "provider": "anthropic"}
        ],
        "residency": {"teams": {"research": pins}}
    }))
}

#[test]
fn a_pinned_request_goes_only_to_targets_in_its_regions() {
    // Pinned to the EU: the chain's US target is skipped, and the request
    // goes to Anthropic alone, prepared by the request stage.
    let shared = pinned_chain(json!(["eu"]));
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let host = &stage.host;
    assert_eq!(
        header(host, "x-tollgate-cluster").as_deref(),
        Some("c_anthropic")
    );
    assert_eq!(header(host, "x-api-key").as_deref(), Some("sk-ant"));
    assert_eq!(header(host, "x-envoy-max-retries"), None);
    assert!(host.property(HANDOFF).is_none());
    let body: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(body["model"], "claude-x");
    // An attempt stage on that target's cluster lets it go as it is.
    let a = MockHost::default().sharing(host);
    a.set_property(DIRECT, &host.property(DIRECT).unwrap());
    let mut a = AttemptStage::new(Some(Arc::clone(&shared)), a);
    assert_eq!(a.on_http_request_headers(0, false), Action::Continue);
    assert!(a.host().reply().is_none());

    // Pinned where no target serves: refused before anything leaves.
    let shared = pinned_chain(json!(["us"]));
    let mut unpinned = authorized(&shared, chat("tg-key", &openai("claude-x", "hi")), VALID);
    assert_eq!(body_end(&mut unpinned), Action::Pause);
    let reply = unpinned.host.reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body["error"]["code"], "region_not_allowed");
    assert_eq!(header(&unpinned.host, "x-tollgate-cluster"), None);

    // Every target inside the pin: the chain as it is.
    let shared = pinned_chain(json!(["us", "eu"]));
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    assert_eq!(
        header(&stage.host, "x-tollgate-cluster").as_deref(),
        Some("fb")
    );
}

#[test]
fn a_pinned_request_falls_back_among_its_allowed_targets_on_their_cluster() {
    // Anthropic (us), then two OpenAI accounts in the EU: pinned to the
    // EU, the request tries the EU accounts in order on their own cluster.
    std::env::set_var(OPENAI_ENV, "sk-openai");
    std::env::set_var(OPENAI_2_ENV, "sk-openai-2");
    std::env::set_var(ANTHROPIC_ENV, "sk-ant");
    let shared = shared(json!({
        "providers": [
            {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic", "region": "us",
             "auth": {"type": "env", "var": ANTHROPIC_ENV}},
            {"name": "openai", "kind": "openai", "cluster": "c_openai", "region": "eu",
             "auth": {"type": "env", "var": OPENAI_ENV}},
            {"name": "openai-2", "kind": "openai", "cluster": "c_openai_2", "region": "eu",
             "auth": {"type": "env", "var": OPENAI_2_ENV}}
        ],
        "models": [
            {"name": "chain", "provider": "anthropic", "upstream_model": "claude-x",
             "fallbacks": ["eu-1", "eu-2"], "cluster": "fb", "region_clusters": {"eu": "fb_eu"}},
            {"name": "eu-1", "provider": "openai", "upstream_model": "gpt-4o"},
            {"name": "eu-2", "provider": "openai-2", "upstream_model": "gpt-4o"}
        ],
        "residency": {"teams": {"research": ["eu"]}}
    }));
    let stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let host = &stage.host;
    assert_eq!(header(host, "x-tollgate-cluster").as_deref(), Some("fb_eu"));
    assert_eq!(header(host, "x-envoy-max-retries").as_deref(), Some("1"));
    assert!(host.property(DIRECT).is_none());
    // Prepared for the first EU target (it speaks the client's API).
    assert_eq!(handoff(&stage).prepared, Some(1));
    let body: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(body["model"], "gpt-4o");
    // Its first attempt goes as it is, with its key.
    let mut first = attempt(&shared, &stage, "openai");
    assert_eq!(first.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(
        header(first.host(), "authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    // The next one carries the other account's key.
    let mut next = attempt(&shared, &stage, "openai-2");
    next.host()
        .set_property(ATTEMPTS, &first.host().property(ATTEMPTS).unwrap());
    send(&mut next);
    assert_eq!(
        header(next.host(), "authorization").as_deref(),
        Some("Bearer sk-openai-2")
    );
    let sent: Value = serde_json::from_slice(&next.host().request_body.borrow()).unwrap();
    assert_eq!(sent["model"], "gpt-4o");
}

#[test]
fn a_429_is_recorded_and_reaches_the_client_as_it_came() {
    let shared = chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    let mut a = attempt(&shared, &stage, "anthropic");
    send(&mut a);
    *a.host().response_headers.borrow_mut() = vec![
        (":status".into(), "429".into()),
        ("retry-after".into(), "1".into()),
        ("content-type".into(), "application/json".into()),
    ];
    assert_eq!(a.on_http_response_headers(0, false), Action::Continue);
    // Unchanged for the router: the cluster's outlier detection counts a
    // 429 itself (error_matcher in envoy/gateway.yaml).
    let upstream = a.host().response_headers();
    assert_eq!(upstream.get(":status"), Some("429"));
    assert_eq!(
        fallback::attempts(&a.host().property(ATTEMPTS).unwrap())[0].status,
        429
    );
    // The request stage sees what the router passes on: the last attempt's
    // response, and the endpoint it came from.
    *stage.host.response_headers.borrow_mut() = a.host().response_headers.borrow().clone();
    stage
        .host
        .set_property(ATTEMPTS, &a.host().property(ATTEMPTS).unwrap());
    stage
        .host
        .set_property(&format!("{ENDPOINT_METADATA}provider"), b"anthropic");
    let error = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    *stage.host.response_body.borrow_mut() = error.as_bytes().to_vec();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(error.len(), true);
    let client = stage.host.response_headers();
    assert_eq!(client.get(":status"), Some("429"));
    assert_eq!(client.get("x-tollgate-target"), Some("anthropic/claude-x"));
    // Anthropic's error, in the OpenAI client's format.
    let body: Value = serde_json::from_slice(&stage.host.response_body.borrow()).unwrap();
    assert_eq!(body["error"]["message"], "slow down");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[test]
fn the_answer_is_read_and_billed_as_the_serving_targets() {
    let shared = chain();
    let mut stage = routed(&shared, chat("tg-key", &openai("chain", "hi")));
    stage
        .host
        .set_property(&format!("{ENDPOINT_METADATA}provider"), b"anthropic");
    // OpenAI failed with a 500, Anthropic answered.
    stage.host.set_property(ATTEMPTS, b"0@10=500,1@20=200");
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2}
    })
    .to_string();
    *stage.host.response_body.borrow_mut() = answer.clone().into_bytes();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(answer.len(), true);
    let body: Value = serde_json::from_slice(&stage.host.response_body.borrow()).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    let f = stage.forwarded.as_ref().unwrap();
    assert_eq!(
        (f.provider.as_str(), f.upstream_model.as_str()),
        ("anthropic", "claude-x")
    );
    assert_eq!(stage.counter("tollgate.fallbacks.provider.anthropic"), 1);
}

#[test]
fn a_provider_cannot_name_the_target() {
    // Without a chain, a provider's target header is dropped.
    let shared = shared(json!({}));
    let mut stage = authorized(&shared, chat("tg-key", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut stage);
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "503".into()),
        ("x-tollgate-target".into(), "somewhere/else".into()),
    ];
    stage.on_http_response_headers(0, false);
    let client = stage.host.response_headers();
    assert_eq!(client.get(":status"), Some("503"));
    assert_eq!(client.get("x-tollgate-target"), None);
}

#[test]
fn a_clients_retry_headers_never_reach_envoys_router() {
    // Envoy strips x-envoy-* from external clients; one it counts as
    // internal is stripped here.
    let with_retries = |model: &str| {
        let body = openai(model, "hi");
        let length = body.len().to_string();
        MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer tg-key"),
                ("content-length", &length),
                ("x-envoy-max-retries", "50"),
                ("x-envoy-retry-on", "5xx"),
                ("x-envoy-upstream-rq-per-try-timeout-ms", "1"),
                ("x-envoy-upstream-rq-timeout-ms", "0"),
                ("x-envoy-upstream-rq-timeout-alt-response", "204"),
                ("x-tollgate-relay", "1"),
            ],
            &body,
        )
    };
    let stage = routed(&shared(json!({})), with_retries("gpt-4o"));
    for name in [
        "x-envoy-max-retries",
        "x-envoy-retry-on",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response",
        "x-tollgate-relay",
    ] {
        assert_eq!(header(&stage.host, name), None, "{name}");
    }
    // A chain gets the gateway's own.
    let stage = routed(&chain(), with_retries("chain"));
    assert_eq!(
        header(&stage.host, "x-envoy-max-retries").as_deref(),
        Some("1")
    );
    assert_eq!(header(&stage.host, "x-envoy-retry-on"), None);
    assert_eq!(
        header(&stage.host, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
        Some("1500")
    );
}
