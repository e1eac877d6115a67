//! The request stage driven natively through `MockHost`: Envoy's callbacks
//! in the order Envoy makes them, canned sidecar answers, and what reached
//! the client, the route stage and the sidecar.

use super::RequestStage;
use crate::core::config::Config;
use crate::core::decision::RouteDecision;
use crate::core::guard::Guardrails;
use crate::filter::env::Host;
use crate::filter::exporter::Exporter;
use crate::filter::mock::MockHost;
use crate::filter::reporter::Reporter;
use crate::filter::shared::Shared;
use crate::filter::sidecar::SidecarClient;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::sync::Arc;

const TOKEN_ENV: &str = "TOLLGATE_STAGE_TEST_TOKEN";
const VALID: &str = r#"{"valid": true, "key_id": "k1", "team": "research"}"#;
const SECRET: &str = "the key is AKIAIOSFODNN7EXAMPLE";

fn shared(extra: Value) -> Arc<Shared> {
    let mut config = json!({
        "providers": [
            {"name": "openai", "kind": "openai", "cluster": "c_openai"},
            {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic"}
        ],
        "models": [
            {"name": "gpt-4o*", "provider": "openai"},
            {"name": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini"},
            {"name": "claude-*", "provider": "anthropic"}
        ],
        "sidecar": {"token_env": TOKEN_ENV},
        "guardrails": {"secrets": {"input": "block"}}
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let config = Config::parse(config.to_string().as_bytes()).unwrap();
    std::env::set_var(TOKEN_ENV, "service-token");
    let sidecar = Arc::new(SidecarClient::from_env(config.sidecar.clone()).unwrap());
    let guardrails = config
        .guardrails
        .as_ref()
        .map(|g| Guardrails::new(g).unwrap());
    let shared = Shared::new(&MockHost::default(), config, guardrails, sidecar, None, 7);
    shared.count_request();
    Arc::new(shared)
}

fn openai(model: &str, content: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
        .to_string()
        .into_bytes()
}

fn chat(key: &str, body: &[u8]) -> MockHost {
    let length = body.len().to_string();
    MockHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-length", &length),
            ("openai-organization", "org-1"),
        ],
        body,
    )
}

/// Headers, then the key check answered with `answer`.
fn authorized(shared: &Arc<Shared>, host: MockHost, answer: &str) -> RequestStage<MockHost> {
    let mut stage = RequestStage::new(Arc::clone(shared), host);
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    stage.host.answer_call("200", answer);
    stage.on_http_call_response(1, 0, answer.len(), 0);
    stage
}

impl RequestStage<MockHost> {
    /// A counter as Envoy would show it after the root's next tick, which
    /// flushes what the worker's requests counted.
    fn counter(&self, name: &str) -> u64 {
        self.shared.stats.flush(&self.host);
        self.host.counter(name)
    }
}

fn body_end(stage: &mut RequestStage<MockHost>) -> Action {
    let size = stage.host.request_body.borrow().len();
    stage.on_http_request_body(size, true)
}

fn decision(host: &MockHost) -> Option<RouteDecision> {
    let properties = host.properties.borrow();
    RouteDecision::decode(properties.get("tollgate.route")?)
}

fn paths(host: &MockHost) -> Vec<String> {
    host.callouts
        .borrow()
        .iter()
        .map(|c| c.path.clone())
        .collect()
}

#[test]
fn pending_key_check_pauses_the_request() {
    let shared = shared(json!({}));
    let mut stage = RequestStage::new(Arc::clone(&shared), chat("sk-a", &openai("gpt-4o", "hi")));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    let callouts = stage.host.callouts.borrow().clone();
    assert_eq!(callouts.len(), 1);
    assert_eq!(callouts[0].cluster, "tollgate_sidecar");
    assert_eq!(callouts[0].path, "/v1/authorize");
    let sent: Value = serde_json::from_slice(&callouts[0].body).unwrap();
    assert_eq!(sent["key_hash"], crate::core::key::hash("sk-a"));
    // Held: not resumed, not answered, nothing decided, and the gateway
    // key already gone from the headers.
    assert_eq!(stage.host.resumed.get(), 0);
    assert!(stage.host.replies.borrow().is_empty());
    assert!(decision(&stage.host).is_none());
    assert_eq!(stage.host.request_header("authorization"), None);
}

#[test]
fn valid_key_is_forwarded_with_the_right_headers_and_body() {
    let shared = shared(json!({"chain": "two_stage"}));
    let mut stage = authorized(&shared, chat("sk-a", &openai("fast", "hi")), VALID);
    assert_eq!(stage.host.resumed.get(), 1);
    assert_eq!(body_end(&mut stage), Action::Continue);
    let host = &stage.host;
    assert!(host.replies.borrow().is_empty());
    for gone in ["authorization", "content-length"] {
        assert_eq!(host.request_header(gone), None, "{gone}");
    }
    // The alias's upstream model, the client's messages untouched.
    let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["messages"][0]["content"], "hi");
    let d = decision(host).unwrap();
    assert_eq!(d.cluster, "c_openai");
    assert_eq!(d.path, None);
    assert_eq!(d.remove, ["openai-organization"]);
    // The verdict is cached: the next request with the key makes no callout.
    let mut next = RequestStage::new(Arc::clone(&shared), chat("sk-a", &openai("gpt-4o", "x")));
    assert_eq!(next.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(body_end(&mut next), Action::Continue);
    assert!(next.host.callouts.borrow().is_empty());
    // An unchanged body goes as the client sent it.
    assert_eq!(*next.host.request_body.borrow(), openai("gpt-4o", "x"));
}

#[test]
fn unknown_key_is_refused_in_the_openai_format() {
    let shared = shared(json!({}));
    let stage = authorized(
        &shared,
        chat("sk-bad", &openai("gpt-4o", "hi")),
        r#"{"valid": false}"#,
    );
    let reply = stage.host.reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["code"], "invalid_api_key");
    assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    assert_eq!(stage.host.resumed.get(), 0);
    assert_eq!(
        stage.counter("tollgate.rejected.api.chat_completions.reason.invalid_api_key"),
        1
    );
}

#[test]
fn unknown_key_is_refused_in_the_anthropic_format() {
    let shared = shared(json!({}));
    let body = br#"{"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#;
    let host = MockHost::request(
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-bad"), ("anthropic-version", "2023-06-01")],
        body,
    );
    let stage = authorized(&shared, host, r#"{"valid": false, "reason": "revoked"}"#);
    let reply = stage.host.reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["type"], "error");
    assert_eq!(reply.body["error"]["type"], "authentication_error");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}

#[test]
fn guardrail_block_is_answered_locally_and_nothing_goes_upstream() {
    let shared = shared(json!({"budgets": {}}));
    let sent = openai("gpt-4o", SECRET);
    let mut stage = authorized(&shared, chat("sk-a", &sent), VALID);
    assert_eq!(body_end(&mut stage), Action::Pause);
    let reply = stage.host.reply().unwrap();
    assert_eq!(reply.status, 400);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("secrets") && !message.contains("AKIA"));
    // No decision for the route stage, no reservation, the body untouched.
    assert!(decision(&stage.host).is_none());
    assert_eq!(paths(&stage.host), ["/v1/authorize"]);
    assert_eq!(*stage.host.request_body.borrow(), sent);
    // Recorded (unbilled) with its event.
    assert!(stage.forwarded.is_none() && stage.answered.is_some());
    assert_eq!(stage.guard_events.len(), 1);
}

#[test]
fn duplicate_json_keys_are_refused_with_400() {
    let shared = shared(json!({}));
    let body = br#"{"model": "gpt-4o", "model": "gpt-4o-mini", "messages": []}"#;
    let mut stage = authorized(&shared, chat("sk-a", body), VALID);
    assert_eq!(body_end(&mut stage), Action::Pause);
    let reply = stage.host.reply().unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("duplicate key `model`"), "{message}");
    assert!(decision(&stage.host).is_none());
}

#[test]
fn usage_is_read_from_the_answer() {
    let shared = shared(json!({}));
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut stage), Action::Continue);
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    let answer = json!({
        "id": "c1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    })
    .to_string();
    *stage.host.response_body.borrow_mut() = answer.clone().into_bytes();
    assert_eq!(stage.on_http_response_headers(0, false), Action::Continue);
    assert_eq!(
        stage.on_http_response_body(answer.len(), true),
        Action::Continue
    );
    let usage = stage.response.summary.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (5, 3));
    assert_eq!(stage.response.status, 200);
    let host = &stage.host;
    // The answer went to the client as the provider sent it.
    assert_eq!(*host.response_body.borrow(), answer.into_bytes());
}

#[test]
fn an_answer_with_a_key_twice_is_not_forwarded_under_output_guardrails() {
    let shared = shared(json!({}));
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut stage), Action::Continue);
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    // The guard reads the last `content`; a client may read the first.
    let answer = concat!(
        r#"{"model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "#,
        r#""content": "mail jane.doe@example.com", "content": "hello"}, "finish_reason": "stop"}], "#,
        r#""usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}"#
    );
    *stage.host.response_body.borrow_mut() = answer.as_bytes().to_vec();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(answer.len(), true);
    let body = String::from_utf8(stage.host.response_body.borrow().clone()).unwrap();
    assert!(!body.contains("jane"), "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    // The provider billed it all the same.
    let usage = stage.response.summary.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (5, 3));
}

#[test]
fn the_end_of_a_request_queues_its_report_and_spans_for_the_root_tick() {
    let shared = shared(json!({"budgets": {"enforce": false}, "tracing": {"cluster": "otel"}}));
    // The root context's host, where the reporter and exporter define their metrics.
    let root = MockHost::default();
    let (reporter, exporter) = (
        shared.reporter.as_ref().unwrap(),
        shared.exporter.as_ref().unwrap(),
    );
    let budgets = shared.config.budgets.as_ref().unwrap();
    *reporter.borrow_mut() = Reporter::new(&root, budgets, Arc::clone(&shared.sidecar));
    let tracing = shared.config.tracing.clone().unwrap();
    *exporter.borrow_mut() = Exporter::new(&root, tracing, None);
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut stage), Action::Continue);
    *stage.host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    let answer = json!({"id": "c1", "model": "gpt-4o", "choices": [],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    .to_string();
    *stage.host.response_body.borrow_mut() = answer.clone().into_bytes();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(answer.len(), true);
    let calls_before = stage.host.callouts.borrow().len();
    stage.on_log();
    // Nothing leaves the request's context: the root's tick sends it.
    assert_eq!(stage.host.callouts.borrow().len(), calls_before);
    assert!(
        stage.counter(
            "tollgate.requests.api.chat_completions.provider.openai.model.gpt-4o.status.2xx"
        ) == 1
    );

    let later = stage.host.now_ms() + 10_000;
    reporter.borrow_mut().tick(&root, later);
    exporter.borrow_mut().flush(&root, later);
    let calls = root.callouts.borrow().clone();
    assert_eq!(calls.len(), 2, "one settle batch, one span export");
    assert_eq!(calls[0].path, tollgate_protocol::SETTLE_BATCH_PATH);
    let batch: Value = serde_json::from_slice(&calls[0].body).unwrap();
    let report = &batch["reports"][0];
    assert_eq!(
        (
            report["input_tokens"].as_u64(),
            report["output_tokens"].as_u64()
        ),
        (Some(5), Some(3))
    );
    assert_eq!(report["key_id"], "k1");
    assert_eq!(calls[1].cluster, "otel");
    assert_eq!(root.counter("tollgate.usage.reports_queued"), 1);
    assert_eq!(root.counter("tollgate.trace.spans_queued"), 0);

    // Acknowledged: counted; the report is not sent again.
    reporter.borrow_mut().on_response(&root, Some("200".into()));
    exporter
        .borrow_mut()
        .on_response(&root, 2, Some("200".into()));
    assert_eq!(root.counter("tollgate.usage.reports_sent"), 1);
    assert_eq!(root.counter("tollgate.trace.spans_exported"), 2);
    reporter.borrow_mut().tick(&root, later + 10_000);
    assert_eq!(root.callouts.borrow().len(), 2);
}

#[test]
fn refusals_are_reported_for_the_audit_log_only() {
    let shared = shared(json!({"budgets": {"enforce": false}}));
    let root = MockHost::default();
    let reporter = shared.reporter.as_ref().unwrap();
    let budgets = shared.config.budgets.as_ref().unwrap();
    *reporter.borrow_mut() = Reporter::new(&root, budgets, Arc::clone(&shared.sidecar));
    // A bad key, a model the key may not use, and a path the gateway does
    // not serve (no API call: not reported).
    let mut bad = authorized(
        &shared,
        chat("sk-bad", &openai("gpt-4o", "hi")),
        r#"{"valid": false}"#,
    );
    bad.on_log();
    let scoped = r#"{"valid": true, "key_id": "k2", "team": "research", "models": ["claude-*"]}"#;
    let mut denied = authorized(&shared, chat("sk-b", &openai("gpt-4o", "hi")), scoped);
    assert_eq!(body_end(&mut denied), Action::Pause);
    assert_eq!(denied.host.reply().unwrap().status, 403);
    denied.on_log();
    let mut lost = RequestStage::new(
        Arc::clone(&shared),
        MockHost::request(
            "GET",
            "/v2/nothing",
            &[("authorization", "Bearer sk-a")],
            b"",
        ),
    );
    assert_eq!(lost.on_http_request_headers(0, true), Action::Pause);
    lost.on_log();

    reporter
        .borrow_mut()
        .tick(&root, bad.host.now_ms() + 10_000);
    let calls = root.callouts.borrow().clone();
    assert_eq!(calls.len(), 1);
    let batch: Value = serde_json::from_slice(&calls[0].body).unwrap();
    let reports = batch["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{batch}");
    let (bad, denied) = (&reports[0], &reports[1]);
    assert_eq!(bad["refused"], "invalid_api_key");
    assert_eq!(bad["status"], 401);
    assert_eq!(bad["key_id"], Value::Null);
    assert_eq!(bad["forwarded"], false);
    assert_eq!(denied["refused"], "model_not_allowed");
    assert_eq!(denied["status"], 403);
    assert_eq!(
        (&denied["key_id"], &denied["team"]),
        (&json!("k2"), &json!("research"))
    );
    assert_eq!(denied["model"], "gpt-4o");
    assert_eq!(denied["api"], "chat_completions");
}

#[test]
fn a_report_queue_behind_the_requests_sends_the_next_batch_when_one_is_taken() {
    let shared = shared(json!({"chain": "two_stage", "budgets": {"max_batch": 2}}));
    let reporter = shared.reporter.as_ref().unwrap();
    let root = MockHost::default();
    for i in 0..5 {
        let report: crate::core::budget::UsageReport = serde_json::from_value(json!({
            "request_id": format!("r{i}"), "model": "m", "upstream_model": "m",
            "provider": "openai", "api": "chat_completions", "input_tokens": 1,
            "output_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "status": 200,
            "latency_ms": 1, "estimated": false, "stream": false, "ts": 1}))
        .unwrap();
        reporter.borrow_mut().push(&root, report);
    }
    reporter.borrow_mut().tick(&root, 1);
    assert_eq!(root.callouts.borrow().len(), 1);
    // Taken, and a whole batch waits: it goes at once, not on the next tick.
    reporter.borrow_mut().on_response(&root, Some("200".into()));
    assert_eq!(root.callouts.borrow().len(), 2);
    // One report left (less than a batch): it waits for the tick.
    reporter.borrow_mut().on_response(&root, Some("200".into()));
    assert_eq!(root.callouts.borrow().len(), 2);
    reporter.borrow_mut().tick(&root, 10_000);
    let ids: Vec<Vec<String>> = root
        .callouts
        .borrow()
        .iter()
        .map(|c| {
            let batch: Value = serde_json::from_slice(&c.body).unwrap();
            let reports = batch["reports"].as_array().unwrap().iter();
            reports
                .map(|r| r["request_id"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(ids, [vec!["r0", "r1"], vec!["r2", "r3"], vec!["r4"]]);
}

#[test]
fn an_oversized_body_is_drained_then_refused_with_413() {
    let shared = shared(json!({"chain": "two_stage", "max_request_bytes": 16}));
    let body = openai("gpt-4o", "a prompt longer than the limit");
    let mut stage = RequestStage::new(Arc::clone(&shared), chat("sk-a", &body));
    // Declared too large: no key check, the body flows and is discarded.
    assert_eq!(stage.on_http_request_headers(0, false), Action::Continue);
    assert!(stage.host.callouts.borrow().is_empty());
    assert_eq!(stage.on_http_request_body(body.len(), false), Action::Pause);
    assert!(stage.host.request_body.borrow().is_empty());
    assert!(stage.host.replies.borrow().is_empty());
    assert_eq!(stage.on_http_request_body(0, true), Action::Pause);
    assert_eq!(stage.host.reply().unwrap().status, 413);
}

#[test]
fn an_unreachable_sidecar_fails_closed_or_open_as_configured() {
    let closed = shared(json!({"chain": "two_stage"}));
    let mut stage = RequestStage::new(closed, chat("sk-a", &openai("gpt-4o", "hi")));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    stage.on_http_call_response(1, 0, 0, 0);
    assert_eq!(stage.host.reply().unwrap().status, 503);
    assert_eq!(stage.counter("tollgate.sidecar_failures"), 1);

    let open = shared(
        json!({"chain": "two_stage", "sidecar": {"token_env": TOKEN_ENV, "failure_mode": "open"}, "budgets": {}}),
    );
    let mut stage = RequestStage::new(open, chat("sk-a", &openai("gpt-4o", "hi")));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    stage.on_http_call_response(1, 0, 0, 0);
    assert_eq!(stage.host.resumed.get(), 1);
    // Forwarded unchecked, and with no key there is nothing to reserve.
    assert_eq!(body_end(&mut stage), Action::Continue);
    assert_eq!(paths(&stage.host), ["/v1/authorize"]);
    assert_eq!(decision(&stage.host).unwrap().cluster, "c_openai");
}

#[test]
fn the_model_list_is_answered_locally() {
    let shared = shared(json!({}));
    let host = MockHost::request(
        "GET",
        "/v1/models",
        &[("authorization", "Bearer sk-a")],
        b"",
    );
    let mut stage = RequestStage::new(Arc::clone(&shared), host);
    assert_eq!(stage.on_http_request_headers(0, true), Action::Pause);
    stage.host.answer_call("200", VALID);
    stage.on_http_call_response(1, 0, VALID.len(), 0);
    let reply = stage.host.reply().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["object"], "list");
    assert_eq!(stage.host.resumed.get(), 0);
}

// The single-stage chain: the filter holds the headers (Pause, with
// `allow_on_headers_stop_iteration`) while the body arrives, then routes
// them itself.

fn cluster(host: &MockHost) -> Option<String> {
    host.request_header(crate::filter::route_headers::CLUSTER_HEADER)
}

#[test]
fn single_stage_holds_the_headers_and_routes_them_from_the_body() {
    let shared = shared(json!({}));
    let body = openai("fast", "hi");
    let mut stage = authorized(&shared, chat("sk-a", &body), VALID);
    // The key is known but the body is not: nothing resumes yet.
    assert_eq!(stage.host.resumed.get(), 0);
    assert_eq!(cluster(&stage.host), None);
    assert_eq!(stage.on_http_request_body(5, false), Action::Pause);
    assert_eq!(body_end(&mut stage), Action::Continue);
    let host = &stage.host;
    assert!(host.replies.borrow().is_empty());
    assert_eq!(cluster(host).as_deref(), Some("c_openai"));
    assert_eq!(host.request_header("authorization"), None);
    assert_eq!(host.request_header("openai-organization"), None);
    // Envoy does not fix content-length after a body rewrite.
    let sent = host.request_body.borrow().clone();
    assert_ne!(sent, body, "the alias's upstream model is written");
    assert_eq!(
        host.request_header("content-length"),
        Some(sent.len().to_string())
    );
    // No filter state for a route stage.
    assert!(decision(host).is_none());
}

#[test]
fn single_stage_holds_a_body_that_arrives_during_the_key_check() {
    let shared = shared(json!({}));
    let mut stage = RequestStage::new(Arc::clone(&shared), chat("sk-bad", &openai("gpt-4o", "hi")));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    // Continue here would send the request upstream unchecked.
    assert_eq!(body_end(&mut stage), Action::Pause);
    let invalid = r#"{"valid": false, "reason": "revoked"}"#;
    stage.host.answer_call("200", invalid);
    stage.on_http_call_response(1, 0, invalid.len(), 0);
    assert_eq!(stage.host.reply().unwrap().status, 401);
    assert_eq!(stage.host.resumed.get(), 0);
    assert_eq!(cluster(&stage.host), None);

    // A valid key: routed and resumed by the key check's answer.
    let mut stage = RequestStage::new(Arc::clone(&shared), chat("sk-a", &openai("gpt-4o", "hi")));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    assert_eq!(body_end(&mut stage), Action::Pause);
    stage.host.answer_call("200", VALID);
    stage.on_http_call_response(1, 0, VALID.len(), 0);
    assert!(stage.host.replies.borrow().is_empty());
    assert_eq!(cluster(&stage.host).as_deref(), Some("c_openai"));
    assert_eq!(stage.host.resumed.get(), 1);
}

#[test]
fn single_stage_blocks_from_the_body_with_nothing_routed() {
    let shared = shared(json!({}));
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", SECRET)), VALID);
    assert_eq!(body_end(&mut stage), Action::Pause);
    assert_eq!(stage.host.reply().unwrap().status, 400);
    assert_eq!(cluster(&stage.host), None);
    assert_eq!(stage.host.resumed.get(), 0);
}

#[test]
fn single_stage_drains_an_oversized_body_with_the_headers_held() {
    let shared = shared(json!({"max_request_bytes": 16}));
    let body = openai("gpt-4o", "a prompt longer than the limit");
    let mut stage = RequestStage::new(Arc::clone(&shared), chat("sk-a", &body));
    assert_eq!(stage.on_http_request_headers(0, false), Action::Pause);
    assert_eq!(stage.on_http_request_body(body.len(), false), Action::Pause);
    assert_eq!(stage.on_http_request_body(0, true), Action::Pause);
    assert_eq!(stage.host.reply().unwrap().status, 413);
    assert_eq!(cluster(&stage.host), None);
}

mod cache;
mod cost;
mod fallback;
mod leases;
