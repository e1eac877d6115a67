//! Budget leases and the shared key cache through MockHost: workers of one
//! Envoy are RequestStages with their own `Shared` (per-worker state) whose
//! MockHosts share one shared-data map. On the two-stage chain (the stage
//! resumes after each callout), but for the last two tests.

use super::*;
use crate::core::auth::KeyCheck;
use crate::core::budget::LeaseRequest;
use crate::core::lease::Slot;
use crate::filter::background::Job;
use crate::filter::request_stage::Phase;
use crate::filter::{key_cache, leases};
use std::rc::Rc;
use tollgate_protocol::LeaseAmount;

const BUDGETS: &str = r#"{"chain": "two_stage", "budgets": {}}"#;

fn budgets() -> Arc<Shared> {
    shared(serde_json::from_str(BUDGETS).unwrap())
}

/// A grant of `requests` requests (and no other hard budget).
fn grant(id: &str, requests: u32) -> String {
    json!({"allowed": true, "lease_id": id, "ttl_ms": 10_000,
           "budgets": [{"budget_id": "bud_key", "kind": "requests", "granted": requests}]})
    .to_string()
}

/// Answers the stage's callout in flight.
fn answer(stage: &mut RequestStage<MockHost>, status: &str, body: &str) {
    let token = stage.host.callouts.borrow().len() as u32;
    stage.host.answer_call(status, body);
    stage.on_http_call_response(token, 0, body.len(), 0);
}

/// A chat request of worker `shared` on a host sharing `other`'s data, run
/// to the end of its body (the key check answered when one is made).
fn request(shared: &Arc<Shared>, other: &MockHost) -> RequestStage<MockHost> {
    let host = chat("sk-a", &openai("gpt-4o", "hi")).sharing(other);
    host.now_ns.set(other.now_ns.get());
    let mut stage = RequestStage::new(Arc::clone(shared), host);
    if stage.on_http_request_headers(0, false) == Action::Pause {
        answer(&mut stage, "200", VALID);
    }
    body_end(&mut stage);
    stage
}

fn slot(host: &MockHost) -> Slot {
    let need = LeaseRequest {
        key_id: "k1".into(),
        team: None,
        user: None,
        model: "gpt-4o".into(),
        upstream_model: "gpt-4o".into(),
        provider: "openai".into(),
        estimated_input_tokens: 0,
        max_output_tokens: 0,
        release: vec![],
    };
    Slot::decode(&host.shared_value(&leases::slot_key(&need)).unwrap()).unwrap()
}

fn remaining(host: &MockHost) -> f64 {
    slot(host).leases[0].budgets[0].remaining
}

fn lease_of(stage: &RequestStage<MockHost>) -> Option<(String, Vec<LeaseAmount>)> {
    let f = stage.forwarded.as_ref()?;
    Some((f.lease_id.clone()?, f.lease_debits.clone()))
}

fn debit(id: &str, amount: f64) -> Option<(String, Vec<LeaseAmount>)> {
    Some((
        id.into(),
        vec![LeaseAmount {
            budget_id: "bud_key".into(),
            amount,
        }],
    ))
}

fn later(host: &MockHost, ms: u64) {
    host.now_ns.set(host.now_ns.get() + ms * 1_000_000);
}

#[test]
fn an_empty_slot_makes_one_lease_callout_then_requests_need_none() {
    let shared = budgets();
    let mut first = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut first), Action::Pause);
    assert_eq!(paths(&first.host), ["/v1/authorize", "/v1/lease"]);
    let sent: LeaseRequest = serde_json::from_slice(&first.host.callouts.borrow()[1].body).unwrap();
    assert_eq!(sent.key_id, "k1");
    assert_eq!(sent.team.as_deref(), Some("research"));
    assert_eq!(
        (sent.model.as_str(), sent.upstream_model.as_str()),
        ("gpt-4o", "gpt-4o")
    );
    assert_eq!(sent.max_output_tokens, 4096);
    assert!(sent.estimated_input_tokens > 0 && sent.release.is_empty());
    answer(&mut first, "200", &grant("l1", 10));
    // Resumed, the request debited, the rest in the slot.
    assert_eq!(first.host.resumed.get(), 2);
    assert!(first.host.replies.borrow().is_empty());
    assert_eq!(lease_of(&first), debit("l1", 1.0));
    assert_eq!(remaining(&first.host), 9.0);
    assert_eq!(first.counter("tollgate.leases.callouts"), 1);

    // The next request (same worker, cached key) goes with no callout at all.
    let next = request(&shared, &first.host);
    assert!(next.host.callouts.borrow().is_empty());
    assert_eq!(next.phase, Phase::Forwarded);
    assert_eq!(next.host.resumed.get(), 0, "never paused");
    assert_eq!(lease_of(&next), debit("l1", 1.0));
    // It drew 2 of the 9 for this worker (a quarter, in whole requests).
    assert_eq!(remaining(&next.host), 7.0);
    assert_eq!(next.counter("tollgate.leases.admitted_from_slot"), 1);

    // The one after takes the rest of the share: no shared-data access.
    assert_eq!(next.host.shared_writes.get(), 1, "the draw");
    let third = request(&shared, &next.host);
    assert_eq!(lease_of(&third), debit("l1", 1.0));
    assert_eq!(third.host.shared_writes.get(), 0);
    assert_eq!(remaining(&third.host), 7.0);
    // Spent: the next draws again.
    let fourth = request(&shared, &third.host);
    assert_eq!(lease_of(&fourth), debit("l1", 1.0));
    assert_eq!(
        remaining(&fourth.host),
        6.0,
        "a quarter of 7 is one request"
    );
}

#[test]
fn the_usage_report_carries_the_lease_and_its_debits() {
    let shared = budgets();
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut stage);
    answer(&mut stage, "200", &grant("l1", 10));
    let f = stage.forwarded.clone().unwrap();
    let key_check = stage.key.clone();
    let key = key_check.as_deref().and_then(KeyCheck::info);
    let now = stage.host.now_ns();
    let report = stage.usage_report(f, true, key, now);
    assert_eq!(report.lease_id.as_deref(), Some("l1"));
    assert_eq!(report.lease_debits, debit("l1", 1.0).unwrap().1);
    assert_eq!(report.reservation_id, None);
    let wire: Value = serde_json::to_value(&report).unwrap();
    assert_eq!(
        wire["lease_debits"],
        json!([{"budget_id": "bud_key", "amount": 1.0}])
    );
}

#[test]
fn two_workers_debit_one_lease_without_double_spending() {
    let (w1, w2) = (budgets(), budgets());
    let mut first = authorized(&w1, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut first);
    answer(&mut first, "200", &grant("l1", 2));
    assert_eq!(remaining(&first.host), 1.0, "one request left");

    // Worker 1's next request reads the slot; worker 2 admits a request
    // from it before worker 1 writes. Worker 1's write finds the slot
    // changed, reads it again, finds it dry and asks for a lease.
    let host = chat("sk-a", &openai("gpt-4o", "hi")).sharing(&first.host);
    let other = chat("sk-a", &openai("gpt-4o", "hi")).sharing(&first.host);
    let second: Rc<RefCell<Option<RequestStage<MockHost>>>> = Rc::default();
    let (w2c, out) = (Arc::clone(&w2), Rc::clone(&second));
    *host.before_write.borrow_mut() = Some(Box::new(move || {
        let mut stage = RequestStage::new(w2c, other);
        // Worker 2 knows the key from shared data: no key check either.
        assert_eq!(stage.on_http_request_headers(0, false), Action::Continue);
        assert_eq!(body_end(&mut stage), Action::Continue);
        *out.borrow_mut() = Some(stage);
    }));
    let mut racing = RequestStage::new(Arc::clone(&w1), host);
    assert_eq!(racing.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(body_end(&mut racing), Action::Pause);

    let second = second.borrow_mut().take().unwrap();
    assert!(second.host.callouts.borrow().is_empty());
    assert_eq!(lease_of(&second), debit("l1", 1.0));
    assert_eq!(racing.host.cas_mismatches.get(), 1);
    assert_eq!(paths(&racing.host), ["/v1/lease"]);
    assert_eq!(lease_of(&racing), None);
    assert_eq!(remaining(&racing.host), 0.0, "l1 spent exactly twice");
    answer(&mut racing, "200", &grant("l2", 5));
    assert_eq!(lease_of(&racing), debit("l2", 1.0));
}

#[test]
fn a_denial_is_answered_with_429_in_the_clients_format() {
    let shared = budgets();
    let denied = r#"{"allowed": false, "reason": "budget", "message": "Team budget exceeded.", "retry_after_s": 30}"#;
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut stage), Action::Pause);
    answer(&mut stage, "200", denied);
    let reply = stage.host.reply().unwrap();
    assert_eq!((reply.status, reply.retry_after_s), (429, Some(30)));
    assert_eq!(reply.body["error"]["message"], "Team budget exceeded.");
    assert_eq!(reply.body["error"]["code"], "budget_exceeded");
    // Resumed once, after the key check; never after the denial.
    assert_eq!(stage.host.resumed.get(), 1);
    assert!(stage.forwarded.is_none() && stage.answered.is_none());
    assert_eq!(
        stage.counter("tollgate.budget_denials.reason.budget_exceeded"),
        1
    );

    // An Anthropic client gets it in the Messages format.
    let body = br#"{"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#;
    let host = MockHost::request(
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-a"), ("anthropic-version", "2023-06-01")],
        body,
    );
    let mut stage = RequestStage::new(Arc::clone(&shared), host);
    assert_eq!(stage.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(body_end(&mut stage), Action::Pause);
    let limited = r#"{"allowed": false, "reason": "rate_limit", "message": "5 requests a minute.", "retry_after_s": 12}"#;
    answer(&mut stage, "200", limited);
    let reply = stage.host.reply().unwrap();
    assert_eq!((reply.status, reply.retry_after_s), (429, Some(12)));
    assert_eq!(reply.body["type"], "error");
    assert_eq!(reply.body["error"]["type"], "rate_limit_error");
    assert_eq!(reply.body["error"]["message"], "5 requests a minute.");
}

#[test]
fn a_denial_looks_in_the_slot_once_more() {
    let shared = budgets();
    let mut waiting = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut waiting);
    // Meanwhile another request's grant left room in the slot.
    let mut other = request(&shared, &waiting.host);
    answer(&mut other, "200", &grant("l9", 3));
    answer(&mut waiting, "200", r#"{"allowed": false}"#);
    assert!(waiting.host.replies.borrow().is_empty());
    assert_eq!(waiting.host.resumed.get(), 2);
    assert_eq!(lease_of(&waiting), debit("l9", 1.0));
    assert_eq!(remaining(&waiting.host), 1.0);
}

#[test]
fn a_refill_is_queued_at_low_water_and_merged_from_the_root() {
    let shared = budgets();
    let mut first = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut first);
    answer(&mut first, "200", &grant("l1", 4));
    assert_eq!(shared.background.borrow().queued().count(), 0);
    // 3 left, then 2: above the low-water mark (a quarter, two requests).
    let second = request(&shared, &first.host);
    assert_eq!(second.counter("tollgate.leases.refills"), 0);
    // 1 left: a refill is queued; the request still goes at once.
    let third = request(&shared, &first.host);
    assert!(third.host.callouts.borrow().is_empty());
    assert_eq!(third.counter("tollgate.leases.refills"), 1);
    let queued: Vec<Job> = shared.background.borrow().queued().cloned().collect();
    let [Job::Refill(need)] = queued.as_slice() else {
        panic!("{queued:?}")
    };
    assert_eq!(
        (need.key_id.as_str(), need.upstream_model.as_str()),
        ("k1", "gpt-4o")
    );
    // The last request: still low, but one refill is already under way.
    let fourth = request(&shared, &first.host);
    assert_eq!(lease_of(&fourth), debit("l1", 1.0));
    assert_eq!(shared.background.borrow().queued().count(), 1);

    // The root's tick sends it; its answer lands in the slot.
    let root = MockHost::default().sharing(&first.host);
    root.now_ns.set(first.host.now_ns.get());
    shared.background.borrow_mut().tick(&root, &shared.sidecar);
    assert_eq!(paths(&root), ["/v1/lease"]);
    let refill = grant("l2", 8);
    shared
        .background
        .borrow_mut()
        .on_response(&root, 1, Some("200"), refill.as_bytes());
    assert_eq!(slot(&root).leases.len(), 2);
    // The slot was never dry: the next request takes from the refill.
    let fifth = request(&shared, &first.host);
    assert!(fifth.host.callouts.borrow().is_empty());
    assert_eq!(lease_of(&fifth), debit("l2", 1.0));
}

#[test]
fn expired_leases_are_handed_back_with_the_next_callout() {
    let shared = budgets();
    let mut first = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut first);
    answer(&mut first, "200", &grant("l1", 10));
    // Past the lease's 10 s (and the key cache's: the key is checked again).
    later(&first.host, 10_001);
    let mut next = request(&shared, &first.host);
    assert_eq!(paths(&next.host), ["/v1/authorize", "/v1/lease"]);
    let sent: LeaseRequest = serde_json::from_slice(&next.host.callouts.borrow()[1].body).unwrap();
    assert_eq!(sent.release.len(), 1);
    assert_eq!(sent.release[0].lease_id, "l1");
    assert_eq!(sent.release[0].unused, debit("l1", 9.0).unwrap().1);
    answer(&mut next, "200", &grant("l2", 10));
    let slot = slot(&next.host);
    assert!(slot.releases.is_empty());
    assert_eq!(slot.leases.len(), 1);
}

#[test]
fn no_hard_budget_caches_an_empty_lease_for_its_ttl() {
    let shared = budgets();
    let mut first = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut first);
    answer(
        &mut first,
        "200",
        r#"{"allowed": true, "lease_id": "free", "ttl_ms": 10000}"#,
    );
    assert_eq!(lease_of(&first), Some(("free".into(), vec![])));
    // The newest CAS token: it moves with every write.
    let version = || first.host.shared.borrow().last_token();
    let written = version();
    for _ in 0..20 {
        let next = request(&shared, &first.host);
        assert!(next.host.callouts.borrow().is_empty());
        assert_eq!(lease_of(&next), Some(("free".into(), vec![])));
    }
    assert_eq!(
        version(),
        written,
        "admitting from an empty lease writes nothing"
    );
    assert_eq!(shared.background.borrow().queued().count(), 0);
}

#[test]
fn an_unreachable_sidecar_applies_the_budget_failure_mode() {
    let closed = budgets();
    let mut stage = authorized(&closed, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut stage);
    // No answer (a reset or a timeout).
    *stage.host.call_answer.borrow_mut() = (None, Vec::new());
    stage.on_http_call_response(2, 0, 0, 0);
    assert_eq!(stage.host.reply().unwrap().status, 503);

    let open = shared(json!({"chain": "two_stage", "budgets": {"failure_mode": "open"}}));
    let mut stage = authorized(&open, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut stage);
    answer(&mut stage, "502", "");
    assert_eq!(stage.host.resumed.get(), 2);
    assert!(stage.host.replies.borrow().is_empty());
    assert_eq!(stage.phase, Phase::Forwarded);
    assert_eq!(lease_of(&stage), None, "forwarded without a lease");
    assert_eq!(stage.counter("tollgate.sidecar_failures"), 1);
}

#[test]
fn workers_share_key_verdicts_and_revocation_bites_within_the_ttl() {
    let two_stage = || shared(json!({"chain": "two_stage"}));
    let (w1, w2) = (two_stage(), two_stage());
    let first = authorized(&w1, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    let hash = crate::core::key::hash("sk-a");
    assert!(first
        .host
        .shared_value(&key_cache::entry_key(&hash))
        .is_some());
    // Worker 2 has never seen the key: no key check.
    let second = request(&w2, &first.host);
    assert!(second.host.callouts.borrow().is_empty());
    assert_eq!(second.counter("tollgate.key_cache.shared_hits"), 1);
    assert_eq!(decision(&second.host).unwrap().cluster, "c_openai");
    // An unknown key is refused without growing shared data.
    let stranger = authorized(
        &w2,
        chat("sk-nobody", &openai("gpt-4o", "hi")).sharing(&first.host),
        r#"{"valid": false}"#,
    );
    assert_eq!(stranger.host.reply().unwrap().status, 401);
    assert_eq!(first.host.shared.borrow().keys(), 1);

    // In the last quarter of the verdict's life the first worker to see it
    // claims the refresh; the other one does not.
    later(&first.host, 8_000);
    let third = request(&w2, &first.host);
    assert!(third.host.callouts.borrow().is_empty());
    let fourth = request(&w1, &first.host);
    assert!(fourth.host.callouts.borrow().is_empty());
    assert_eq!(
        w2.background.borrow().queued().cloned().collect::<Vec<_>>(),
        [Job::KeyRefresh(hash.clone())]
    );
    assert_eq!(w1.background.borrow().queued().count(), 0);

    // The key is revoked; worker 2's root learns it on its refresh.
    let root = MockHost::default().sharing(&first.host);
    root.now_ns.set(first.host.now_ns.get());
    w2.background.borrow_mut().tick(&root, &w2.sidecar);
    assert_eq!(paths(&root), ["/v1/authorize"]);
    let revoked = br#"{"valid": false, "reason": "revoked"}"#;
    w2.background
        .borrow_mut()
        .on_response(&root, 1, Some("200"), revoked);
    // Worker 1's cached verdict expires on time (10 s after the sidecar
    // gave it), and it then reads the refusal from shared data.
    later(&first.host, 1_999);
    let still = request(&w1, &first.host);
    assert!(still.host.replies.borrow().is_empty());
    later(&first.host, 1);
    let mut refused = RequestStage::new(
        Arc::clone(&w1),
        chat("sk-a", &openai("gpt-4o", "hi")).sharing(&first.host),
    );
    refused.host.now_ns.set(first.host.now_ns.get());
    assert_eq!(refused.on_http_request_headers(0, false), Action::Pause);
    assert!(refused.host.callouts.borrow().is_empty());
    let reply = refused.host.reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}

#[test]
fn single_stage_routes_the_held_headers_before_the_lease_callout_and_resumes_once() {
    let shared = shared(json!({"budgets": {}}));
    let mut stage = authorized(&shared, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut stage), Action::Pause);
    assert_eq!(paths(&stage.host), ["/v1/authorize", "/v1/lease"]);
    // Headers set while they are held; nothing resumed until the lease.
    assert_eq!(cluster(&stage.host).as_deref(), Some("c_openai"));
    assert_eq!(stage.host.resumed.get(), 0);
    answer(&mut stage, "200", &grant("l1", 3));
    assert_eq!(stage.host.resumed.get(), 1);
    assert_eq!(lease_of(&stage), debit("l1", 1.0));

    // The next one is admitted from the slot as its body ends: Continue.
    let next = request(&shared, &stage.host);
    assert!(next.host.callouts.borrow().is_empty());
    assert_eq!(next.phase, Phase::Forwarded);
    assert_eq!(next.host.resumed.get(), 0);
    assert_eq!(cluster(&next.host).as_deref(), Some("c_openai"));
}

/// The host calls of one request once its key and lease are cached: each
/// is a crossing into Envoy, which in wasm costs more than most of the
/// filter's own work (one that returns data about 10k instructions), so a
/// new call on the hot path has to be worth it and has to change this list.
#[test]
fn a_steady_request_makes_only_the_host_calls_it_needs() {
    let shared = shared(json!({
        "budgets": {},
        "tracing": {"cluster": "otel"},
        "guardrails": {"secrets": {"input": "block", "output": "block"}}
    }));
    let mut host = MockHost::default();
    for round in 0..3 {
        host = chat("sk-a", &openai("gpt-4o", "hi")).sharing(&host);
        let mut stage = RequestStage::new(Arc::clone(&shared), host);
        stage.on_http_request_headers(0, false);
        if round == 0 {
            answer_call(&mut stage, VALID);
        }
        body_end(&mut stage);
        if round == 0 {
            answer_call(&mut stage, &grant("l1", 1000));
        }
        provider_answers(&mut stage);
        assert_eq!(stage.host.replies.borrow().len(), 0);
        if round == 2 {
            let calls = stage.host.calls.borrow().clone();
            let expected = [
                // The clock: start, upstream start, end.
                ("now_ns", 3),
                // Upstream time and time to the first chunk.
                ("record_value", 2),
                ("request_body", 1),
                ("request_headers", 1),
                ("response_body", 1),
                ("response_headers", 1),
                // Out: the gateway key, openai-organization (the client's);
                // in: x-tollgate-cluster, traceparent (no provider key here).
                ("set_request_header", 4),
                // x-tollgate-target.
                ("set_response_header", 1),
            ];
            assert_eq!(calls, expected.into_iter().collect());
        }
        host = stage.host;
    }
}

/// The provider's answer, a small chat completion, in one chunk; then the
/// stream ends.
fn provider_answers(stage: &mut RequestStage<MockHost>) {
    let answer = json!({"id": "c1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    .to_string();
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    *stage.host.response_body.borrow_mut() = answer.clone().into_bytes();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(answer.len(), true);
    stage.on_log();
}

/// Answers the one callout in flight.
fn answer_call(stage: &mut RequestStage<MockHost>, body: &str) {
    assert!(!stage.host.callouts.borrow().is_empty());
    answer(stage, "200", body);
}

/// A configuration Envoy replaces (a listener update) hands the usage
/// reports it has not sent to the one configured after it, when both
/// report to the same sidecar; never to another one.
#[test]
fn a_replaced_configuration_hands_its_unsent_reports_to_its_successor() {
    let old = shared(json!({"budgets": {}}));
    let mut stage = RequestStage::new(Arc::clone(&old), chat("sk-a", &openai("gpt-4o", "hi")));
    stage.on_http_request_headers(0, false);
    answer_call(&mut stage, VALID);
    body_end(&mut stage);
    answer_call(&mut stage, &grant("l1", 1000));
    provider_answers(&mut stage);
    assert_eq!(old.reports_pending(), 1);

    let elsewhere =
        shared(json!({"budgets": {}, "sidecar": {"token_env": TOKEN_ENV, "cluster": "other"}}));
    assert!(!old.hand_over(&elsewhere));
    assert_eq!((old.reports_pending(), elsewhere.reports_pending()), (1, 0));

    let successor = shared(json!({"budgets": {}}));
    assert!(old.hand_over(&successor));
    assert_eq!((old.reports_pending(), successor.reports_pending()), (0, 1));
    assert!(old.drained());
}
