//! Whole requests through the stage in a loop, for counting the filter's
//! own instructions natively by function (`make bench-instructions`
//! counts them in Envoy, where the functions have no names):
//!
//! ```text
//! CARGO_PROFILE_TEST_OPT_LEVEL=3 CARGO_PROFILE_TEST_DEBUG=line-tables-only \
//!   cargo test -p tollgate --lib --no-run        # prints the test binary
//! COST_CONFIG=s COST_REQUESTS=1500 valgrind --tool=callgrind <binary> \
//!   request_loop --ignored --test-threads=1
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! `COST_CONFIG` is a bench variant: `c0` (keys and routing), `c` (+
//! guardrails), `s0` (+ tracing), `s` (envoy/gateway.yaml as shipped);
//! `COST_MODEL` the model asked for (default `gpt-4o-mini`; `fast` and
//! `gpt-4o-ha` are (sa) and (sf), a model alias and a fallback chain).
//! Run it twice with different `COST_REQUESTS` and divide the difference,
//! so set-up does not count.
use super::*;
use crate::filter::request_stage::Phase;

/// envoy/gateway.yaml's plugin configuration, less what `variant` turns off.
fn shipped(variant: &str) -> Value {
    let yaml = include_str!("../../../../envoy/gateway.yaml");
    let start = yaml.find("value: |").unwrap();
    let text: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("                    "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    o.insert("sidecar".into(), json!({"token_env": TOKEN_ENV}));
    match variant {
        "c0" => {
            o.remove("tracing");
            o.remove("budgets");
            o.insert("guardrails".into(), Value::Null);
        }
        "c" => {
            o.remove("tracing");
            o.remove("budgets");
        }
        "s0" => {
            o.remove("budgets");
        }
        _ => {}
    }
    v
}

#[test]
#[ignore]
fn request_loop() {
    let variant = std::env::var("COST_CONFIG").unwrap_or("s".into());
    let n: usize = std::env::var("COST_REQUESTS")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2000);
    std::env::set_var("OPENAI_API_KEY", "sk-openai");
    std::env::set_var("ANTHROPIC_API_KEY", "sk-ant");
    let shared = super::shared(shipped(&variant));
    let root = MockHost::default();
    let model = std::env::var("COST_MODEL").unwrap_or("gpt-4o-mini".into());
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello in one short sentence."}}]}}"#
    );
    let body = body.as_bytes();
    let answer_body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, nice to meet you!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#;
    let grant = json!({"allowed": true, "lease_id": "l1", "ttl_ms": 1_000_000_000u64,
           "budgets": [{"budget_id": "bud_key", "kind": "requests", "granted": 1_000_000_000u64}]})
    .to_string();
    for i in 0..n {
        let host = chat("sk-a", body).sharing(&root);
        host.now_ns.set(root.now_ns.get() + i as u64 * 100_000);
        let mut stage = RequestStage::new(Arc::clone(&shared), host);
        if stage.on_http_request_headers(0, false) == Action::Pause
            && stage.phase == Phase::Authorizing
        {
            stage.host.answer_call("200", VALID);
            stage.on_http_call_response(1, 0, VALID.len(), 0);
        }
        let size = stage.host.request_body.borrow().len();
        if stage.on_http_request_body(size, true) == Action::Pause
            && stage.phase == Phase::Reserving
        {
            let token = stage.host.callouts.borrow().len() as u32;
            stage.host.answer_call("200", &grant);
            stage.on_http_call_response(token, 0, grant.len(), 0);
        }
        assert_eq!(
            stage.phase,
            Phase::Forwarded,
            "{:?}",
            stage.host.replies.borrow()
        );
        *stage.host.response_headers.borrow_mut() = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        *stage.host.response_body.borrow_mut() = answer_body.to_vec();
        stage.on_http_response_headers(0, false);
        stage.on_http_response_body(answer_body.len(), true);
        stage.on_log();
        // The root context's tick: report and span batches go out.
        if i % 100 == 99 {
            let now = stage.host.now_ms();
            if let Some(r) = &shared.reporter {
                r.borrow_mut().tick(&root, now);
                r.borrow_mut().on_response(&root, Some("200".into()));
            }
            if let Some(e) = &shared.exporter {
                e.borrow_mut().flush(&root, now);
                let t = root.callouts.borrow().len() as u32;
                e.borrow_mut().on_response(&root, t, Some("200".into()));
            }
            root.callouts.borrow_mut().clear();
        }
    }
}
