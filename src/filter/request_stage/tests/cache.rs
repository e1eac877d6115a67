//! The response cache through MockHost: a miss stores the answer as the
//! client got it, the next identical request is answered from the sidecar
//! without a provider call or a budget, and everything else goes upstream.

use super::*;
use tollgate_protocol::{CachePut, CachedAnswer};

const OTHER_TEAM: &str = r#"{"valid": true, "key_id": "k2", "team": "ops"}"#;

fn cached() -> Arc<Shared> {
    shared(json!({
        "cache": {"rules": [{"models": ["gpt-4o*"], "ttl_s": 60}]},
        "budgets": {"enforce": true}
    }))
}

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;

impl RequestStage<MockHost> {
    fn cache_header(&self) -> Option<String> {
        let headers = self.host.response_headers.borrow();
        headers
            .iter()
            .find(|(n, _)| n == "x-tollgate-cache")
            .map(|(_, v)| v.clone())
    }
}

fn with_header(host: MockHost, name: &str, value: &str) -> MockHost {
    host.request_headers
        .borrow_mut()
        .push((name.into(), value.into()));
    host
}

/// The lease callout answered with a grant, when the stage asked for one.
fn grant(stage: &mut RequestStage<MockHost>) {
    if stage.phase == super::super::Phase::Reserving {
        let g = r#"{"allowed":true,"lease_id":"l1","ttl_ms":60000,"budgets":[]}"#;
        stage.host.answer_call("200", g);
        let n = stage.host.callouts.borrow().len() as u32;
        stage.on_http_call_response(n, 0, g.len(), 0);
    }
}

/// A request forwarded and answered with `answer` (a 200 of `content_type`).
fn answered(stage: &mut RequestStage<MockHost>, content_type: &str, answer: &str) {
    *stage.host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), content_type.into()),
    ];
    *stage.host.response_body.borrow_mut() = answer.as_bytes().to_vec();
    stage.on_http_response_headers(0, false);
    stage.on_http_response_body(answer.len(), true);
}

fn stores(shared: &Arc<Shared>) -> Vec<CachePut> {
    shared
        .background
        .borrow()
        .queued_stores()
        .map(|s| serde_json::from_slice(&s.put).unwrap())
        .collect()
}

/// The root's tick sends the queued stores; the sidecar stores each.
fn sidecar_stores(shared: &Arc<Shared>, worker: &MockHost) {
    let root = MockHost::default().sharing(worker);
    let mut background = shared.background.borrow_mut();
    background.tick(&root, &shared.sidecar);
    let sent = root.callouts.borrow().clone();
    for (token, call) in (1..).zip(&sent) {
        let batch: Value = serde_json::from_slice(&call.body).unwrap();
        let stored = vec![true; batch["entries"].as_array().unwrap().len()];
        let answer = json!({ "stored": stored }).to_string();
        background.on_response(&root, token, Some("200"), answer.as_bytes());
    }
}

/// A first request for `hi`, answered and stored by the sidecar.
fn stored_once(shared: &Arc<Shared>) -> RequestStage<MockHost> {
    let mut first = authorized(shared, chat("tg-a", &openai("gpt-4o", "hi")), VALID);
    body_end(&mut first);
    grant(&mut first);
    answered(&mut first, "application/json", ANSWER);
    first.on_log();
    sidecar_stores(shared, &first.host);
    first
}

#[test]
fn a_miss_is_stored_as_the_client_got_it_and_the_next_request_is_a_hit() {
    let shared = cached();
    let mut first = authorized(&shared, chat("tg-a", &openai("gpt-4o", "hi")), VALID);
    assert_eq!(body_end(&mut first), Action::Pause, "the budget lease");
    grant(&mut first);
    assert!(!paths(&first.host).contains(&"/v1/cache/get".to_string()));
    answered(&mut first, "application/json", ANSWER);
    assert_eq!(first.cache_header().as_deref(), Some("miss"));
    first.on_log();
    let put = stores(&shared);
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].ttl_s, 60);
    assert_eq!(put[0].answer.body, ANSWER);
    assert_eq!(put[0].answer.content_type, "application/json");
    assert_eq!(
        (put[0].answer.input_tokens, put[0].answer.output_tokens),
        (5, 3)
    );
    sidecar_stores(&shared, &first.host);

    // The same question, keys in another order and spaced: listed, looked up.
    let body = br#"{ "messages": [{"content": "hi", "role": "user"}], "model": "gpt-4o" }"#;
    let mut second = authorized(&shared, chat("tg-a", body).sharing(&first.host), VALID);
    second.host.now_ns.set(first.host.now_ns.get());
    assert_eq!(body_end(&mut second), Action::Pause);
    let calls = paths(&second.host);
    assert_eq!(calls.last().map(String::as_str), Some("/v1/cache/get"));
    let stored = serde_json::to_string(&put[0].answer).unwrap();
    second.host.answer_call("200", &stored);
    second.on_http_call_response(calls.len() as u32, 0, stored.len(), 0);
    let reply = second.host.reply().unwrap();
    assert_eq!(
        (reply.status, reply.raw.as_slice()),
        (200, ANSWER.as_bytes())
    );
    assert!(reply
        .headers
        .contains(&("x-tollgate-cache".into(), "hit".into())));
    // No lease was asked for, and nothing was resumed towards a provider.
    assert!(!paths(&second.host).contains(&"/v1/lease".to_string()));
    assert_eq!(second.host.resumed.get(), 0);
    assert_eq!(second.counter("tollgate.cache.hits"), 1);
    second.on_log();
    let reporter = shared.reporter.as_ref().unwrap();
    let root = MockHost::default();
    reporter.borrow_mut().tick(&root, u64::MAX / 2);
    let batch: Value = serde_json::from_slice(&root.callouts.borrow()[0].body).unwrap();
    let hit = batch["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cache_hit"] == true)
        .expect("the hit's report");
    assert_eq!(hit["forwarded"], false);
    assert_eq!(
        (hit["input_tokens"].as_u64(), hit["output_tokens"].as_u64()),
        (Some(5), Some(3))
    );
}

#[test]
fn another_team_a_changed_field_or_no_store_never_looks_up() {
    let shared = cached();
    let first = stored_once(&shared);
    let key = |s: &RequestStage<MockHost>| s.cache.as_ref().map(|c| c.key_for_tests());
    let first_key = key(&first);
    let same_envoy = |host: MockHost| host.sharing(&first.host);
    for (host, answer) in [
        (chat("tg-b", &openai("gpt-4o", "hi")), OTHER_TEAM),
        (chat("tg-a", &openai("gpt-4o", "hi!")), VALID),
        (chat("tg-a", &openai("gpt-4o-mini", "hi")), VALID),
        (
            with_header(
                chat("tg-a", &openai("gpt-4o", "hi")),
                "cache-control",
                "no-store",
            ),
            VALID,
        ),
        (
            with_header(
                chat("tg-a", &openai("gpt-4o", "hi")),
                "cache-control",
                "no-cache",
            ),
            VALID,
        ),
    ] {
        let mut stage = authorized(&shared, same_envoy(host), answer);
        stage.host.now_ns.set(first.host.now_ns.get());
        body_end(&mut stage);
        assert!(
            !paths(&stage.host).contains(&"/v1/cache/get".to_string()),
            "{:?}",
            stage.host.request_headers.borrow()
        );
        if stage.cache_wish == crate::core::cache::ClientWish::Use {
            assert_ne!(key(&stage), first_key);
        }
    }
    // no-store: told, and nothing kept.
    let host = with_header(
        chat("tg-a", &openai("gpt-4o", "hi")),
        "cache-control",
        "no-store",
    );
    let mut stage = authorized(&shared, host, VALID);
    body_end(&mut stage);
    grant(&mut stage);
    let before = stores(&shared).len();
    answered(&mut stage, "application/json", ANSWER);
    assert_eq!(stage.cache_header().as_deref(), Some("bypass"));
    stage.on_log();
    assert_eq!(stores(&shared).len(), before);
}

#[test]
fn a_lookup_that_fails_or_finds_nothing_goes_upstream() {
    for (status, body) in [("404", "{}"), ("503", "down"), ("200", "not json")] {
        let shared = cached();
        let first = stored_once(&shared);
        let host = chat("tg-a", &openai("gpt-4o", "hi")).sharing(&first.host);
        let mut stage = authorized(&shared, host, VALID);
        stage.host.now_ns.set(first.host.now_ns.get());
        assert_eq!(body_end(&mut stage), Action::Pause);
        stage.host.answer_call(status, body);
        let n = stage.host.callouts.borrow().len() as u32;
        stage.on_http_call_response(n, 0, body.len(), 0);
        // Then the budget, as for any request (the first one's lease covers it).
        assert_eq!(stage.counter("tollgate.leases.admitted_from_slot"), 1);
        grant(&mut stage);
        assert_eq!(stage.host.resumed.get(), 1, "{status}");
        assert!(stage.host.reply().is_none());
        answered(&mut stage, "application/json", ANSWER);
        assert_eq!(stage.cache_header().as_deref(), Some("miss"));
    }
}

#[test]
fn only_whole_answers_are_stored() {
    let shared = cached();
    let stream = |model: &str| {
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .into_bytes()
    };
    let whole = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );
    let cut = "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"},\"finish_reason\":null}]}\n\n";
    for (body, expected) in [(whole, 1), (cut, 0)] {
        let before = stores(&shared).len();
        let mut stage = authorized(&shared, chat("tg-a", &stream("gpt-4o")), VALID);
        body_end(&mut stage);
        grant(&mut stage);
        answered(&mut stage, "text/event-stream", body);
        stage.on_log();
        let put = stores(&shared);
        assert_eq!(put.len() - before, expected);
        if expected == 1 {
            let answer: &CachedAnswer = &put[before].answer;
            assert_eq!(answer.content_type, "text/event-stream");
            assert_eq!(answer.body, whole);
        }
    }
    // An error is never stored.
    let before = stores(&shared).len();
    let mut stage = authorized(&shared, chat("tg-a", &openai("gpt-4o", "x")), VALID);
    body_end(&mut stage);
    grant(&mut stage);
    *stage.host.response_headers.borrow_mut() = vec![(":status".into(), "500".into())];
    stage.on_http_response_headers(0, false);
    stage.on_log();
    assert_eq!(stores(&shared).len(), before);
}
