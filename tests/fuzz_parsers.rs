//! Property test: random and mutated inputs to every parser the filter runs
//! on client or provider bytes must never panic (a panic kills the wasm VM).
//! Deterministic seeds, so a failure reproduces; raise FUZZ_ITERATIONS to
//! search longer.
#![allow(clippy::indexing_slicing, clippy::panic)] // test code: a panic is a failure report

use tollgate::core::api::{Api, ClientFormat};
use tollgate::core::auth::{parse_authorize_response, SharedVerdict};
use tollgate::core::budget::{parse_lease_response, LeaseGrant};
use tollgate::core::config::Config;
use tollgate::core::decision::RouteDecision;
use tollgate::core::guard::stream::{OutputGuard, SlotGuards};
use tollgate::core::guard::{worst_case, GuardrailConfig, Guardrails, Policy};
use tollgate::core::json;
use tollgate::core::lease::{Lease, Size, Slot};
use tollgate::core::request::LlmRequest;
use tollgate::core::sse::SseFramer;
use tollgate::core::usage::{text_chars, ResponseSummary};
use tollgate::core::wire::edit::StreamEditor;
use tollgate::core::wire::stream::StreamTranslator;
use tollgate::core::wire::{self, Event, Translation, Wire};

/// xorshift64*: tiny, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    br#"{"model":"gpt-4o","messages":[],"model":"gpt-5.5","a":{"b":1,"b":2}}"#,
    br#"{ "choices" : [ { "delta" : { "content" : "x" }, "finish_reason" : "stop" } ] }"#,
    br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi \u00e9"}]}"#,
    br#"{"model":"claude-3","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
    b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\r\n\r\n",
    b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
    br#"{"valid":true,"key_id":"k","models":["a*"],"team_models":[],"expires_at":1}"#,
    br#"{"allowed":true,"lease_id":"l","ttl_ms":10,"budgets":[{"budget_id":"b","kind":"spend","granted":1e-3}],"price":{"input":2,"output":8}}"#,
    b"c=cluster\np=/path\na=authorization\tBearer \tVAR",
    br#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
    br#"{"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"o"}],"instructions":"s"}"#,
    br#"{"id":"m","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1}}"#,
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}\n\n",
    b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":\"{\"}}]}}]}\n\n",
    b"data: {\"choices\":[{\"delta\":{\"content\":\"mail jane@example.com, card 4111 1111 1111 1111\"},\"finish_reason\":null}]}\n\n",
    b"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"AKIAIOSFODNN7EXAMPLE\"}\n\n",
    b"data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n",
    // Every field a model reads (tools, schemas, names, predictions, formats).
    br#"{"model":"m","messages":[{"role":"user","name":"AKIAIOSFODNN7EXAMPLE","content":"hi"}],"prediction":{"type":"content","content":[{"type":"text","text":"a@b.io"}]},"tools":[{"type":"function","function":{"name":"f","description":"1.2.3.4","parameters":{"type":"object","properties":{"x":{"type":"string","enum":["sk-abcdefghijklmnopqrstuvwxyz"],"default":"x","examples":[{"y":1}]}},"required":["x"]}}}],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"$defs":{"d":{"title":"t"}}}}},"metadata":{"k":"v"}}"#,
    br#"{"model":"m","instructions":[{"role":"system","content":"x"}],"input":[{"type":"function_call","name":"f","arguments":"{}"}],"tools":[{"type":"mcp","headers":{"a":"b"}}],"text":{"format":{"type":"json_schema","schema":{"properties":{"p":{}}}}},"prompt":{"id":"p","variables":{"v":"+44 20 7946 0958"}}}"#,
    br#"{"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"GB82 WEST 1234 5698 7654 32"},"title":"t","context":"c"},{"type":"image","source":{"type":"base64","data":"QUFB"}}]}],"tools":[{"name":"n","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"n"}}"#,
];

const APIS: [Api; 3] = [Api::ChatCompletions, Api::Responses, Api::Messages];
const WIRES: [Wire; 4] = [
    Wire::ChatCompletions,
    Wire::Responses,
    Wire::Messages,
    Wire::Gemini,
];

/// Every translator sees the bytes: as a request of each API, as an
/// answer and an error of each upstream, and as a stream cut at random,
/// translated or re-encoded through the output guardrails.
fn exercise_translators(bytes: &[u8], rng: &mut Rng, g: &Guardrails) {
    let value = serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
    let policy = g.policy(None, None);
    for client in APIS {
        let mut guarded = value.clone();
        let _ = g.check_request(client, &mut guarded, &policy);
        let _ = g.check_response(client, &mut guarded, &policy);
        for upstream in WIRES {
            let _ = wire::request::translate(client, upstream, &value, rng.below(2) == 0, "m");
            let t = Translation {
                client,
                upstream,
                stream: true,
                client_wants_usage: rng.below(2) == 0,
            };
            let _ = wire::reply::translate(&t, bytes, 0);
            if client.wire() == upstream && rng.below(2) == 0 {
                edit_stream(client, bytes, rng, g, &policy);
                continue;
            }
            let mut s = StreamTranslator::new(&t, 0);
            let mut guard = SlotGuards::default();
            let mut framer = SseFramer::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
                let _ = s.push_events(&framer.push(chunk), &mut |batch: &mut Vec<Event>| {
                    guard.filter_events(g, &policy, batch, false)
                });
                rest = tail;
            }
            let _ = s.finish_with(&mut |batch: &mut Vec<Event>| {
                guard.filter_events(g, &policy, batch, true)
            });
        }
    }
    let _ = wire::error::translate(ClientFormat::Anthropic, 400 + rng.below(200) as u32, bytes);
}

/// A same-API stream edited in place under the output guardrails.
fn edit_stream(client: Api, bytes: &[u8], rng: &mut Rng, g: &Guardrails, policy: &Policy) {
    let mut editor = StreamEditor::new(client, rng.below(2) == 0);
    let mut guards = SlotGuards::default();
    let mut filter = |slot: usize, text: &str, end: bool| guards.filter(g, policy, slot, text, end);
    let mut framer = SseFramer::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
        for event in framer.push(chunk) {
            editor.push(event, &mut filter, &mut out);
        }
        rest = tail;
    }
    editor.finish(&mut filter, &mut out);
}

const INTERESTING: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"\\u",
    b"\xff",
    b"\xe2\x82",
    b":",
    b"data:",
    b"\0",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let from = rng.below(out.len());
                let piece: Vec<u8> = out.iter().skip(from).take(rng.below(32)).copied().collect();
                out.splice(at..at, piece);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// The strict parser reads what serde_json reads, and refuses only
/// duplicate keys on top.
fn strict_agrees_with_serde_json(bytes: &[u8]) {
    match (
        json::parse_strict(bytes),
        serde_json::from_slice::<serde_json::Value>(bytes),
    ) {
        (Ok(strict), Ok(loose)) => assert_eq!(strict, loose),
        (Ok(_), Err(e)) => panic!("strict parse accepted what serde_json refused: {e}"),
        (Err(e), Ok(_)) => assert!(e.to_string().contains("duplicate key"), "{e}"),
        (Err(_), Err(_)) => {}
    }
}

fn exercise(bytes: &[u8], rng: &mut Rng, g: &Guardrails) {
    strict_agrees_with_serde_json(bytes);
    if let Ok(mut request) = LlmRequest::parse(bytes, None) {
        let _ = request.rewritten_for("other-model");
    }
    let value = serde_json::from_slice(bytes).unwrap_or_default();
    for w in WIRES {
        let _ = w.upstream().summarize(&value);
        let _ = w.upstream().reply_text(&value);
    }
    let _ = parse_authorize_response(bytes);
    let _ = parse_lease_response(bytes);
    shared_values(bytes);
    let _ = RouteDecision::decode(bytes);
    let _ = Config::parse(bytes);
    // The framer sees the same bytes cut at random points.
    let mut framer = SseFramer::new();
    let mut usage = ResponseSummary::default();
    let mut captured = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
        for event in framer.push(chunk) {
            for w in WIRES {
                w.upstream().observe_event(&mut usage, &event.data);
                w.upstream().push_stream_text(&event.data, &mut captured);
            }
            let _ = text_chars(&event.data);
        }
        rest = tail;
    }
    if let Some(event) = framer.finish() {
        for w in WIRES {
            w.upstream().observe_event(&mut usage, &event.data);
        }
    }
    exercise_translators(bytes, rng, g);
}

/// Values other workers wrote in shared data: a slot decodes to what
/// encodes back to the same bytes, or to nothing; a key verdict parses or not.
fn shared_values(bytes: &[u8]) {
    if let Some(mut slot) = Slot::decode(bytes) {
        assert_eq!(slot.encode(), bytes);
        let size = Size {
            input: 7,
            output: 9,
        };
        if let Some(mut share) = slot.draw(5, size, true) {
            let _ = share.take(size);
        }
        slot.prune(6);
        let _ = slot.wants_refill(
            6,
            Size {
                input: 1,
                output: 1,
            },
        );
    }
    if let Some(verdict) = SharedVerdict::decode(bytes) {
        let _ = verdict.check();
    }
}

/// A slot of two leases and a release, as a worker writes it.
fn slot_seed() -> Vec<u8> {
    let grant: LeaseGrant = serde_json::from_str(
        r#"{"allowed":true,"lease_id":"lease_1","ttl_ms":10000,"price":{"input":2,"output":8},
            "budgets":[{"budget_id":"b1","kind":"spend","granted":2.5},{"budget_id":"b2","kind":"requests","granted":9}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut slot = Slot::default();
    slot.merge(Lease::from_grant(&grant, 100), 100);
    let mut other = grant.clone();
    other.lease_id = "lease_2".into();
    slot.merge(Lease::from_grant(&other, 5), 5);
    slot.prune(20_000);
    slot.merge(Lease::from_grant(&grant, 30_000), 30_000);
    slot.encode()
}

#[test]
fn shared_data_decoders_never_panic() {
    let mut rng = Rng(0x5eed_1ea5e);
    let seed = slot_seed();
    assert!(Slot::decode(&seed).is_some_and(|s| !s.releases.is_empty()));
    for i in 0..20_000 {
        let input: Vec<u8> = match i % 4 {
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => mutate(&mut rng, &seed),
        };
        shared_values(&input);
    }
}

fn guardrails() -> Guardrails {
    Guardrails::new(&GuardrailConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn parsers_never_panic_on_random_and_mutated_input() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let g = guardrails();
    // The guardrails' worst cases, small, as text and inside a request.
    let worst: Vec<Vec<u8>> = worst_case::inputs(512)
        .into_iter()
        .flat_map(|(_, text)| {
            let body =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
            [text.into_bytes(), body.to_string().into_bytes()]
        })
        .collect();
    for i in 0..iterations {
        let input = match i % 8 {
            0 | 4 => (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
            1 => {
                let seed = &worst[rng.below(worst.len())];
                mutate(&mut rng, seed)
            }
            _ => {
                let seed = SEEDS[rng.below(SEEDS.len())];
                mutate(&mut rng, seed)
            }
        };
        exercise(&input, &mut rng, &g);
    }
}

/// The guardrails' worst cases (64 KB each) through the request check of
/// each API and the stream guard: no panic, each done in well under the
/// limit even in a debug build.
#[test]
fn guardrail_worst_cases_never_panic_and_finish() {
    let g = guardrails();
    let policy = g.policy(None, None);
    for (name, text) in worst_case::inputs(64 << 10) {
        let start = std::time::Instant::now();
        for api in APIS {
            let mut body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": &text}],
                "input": &text, "system": &text});
            let _ = g.check_request(api, &mut body, &policy);
        }
        let mut guard = OutputGuard::default();
        for chunk in text.as_bytes().chunks(97) {
            let _ = guard.push(&g, &policy, &String::from_utf8_lossy(chunk));
        }
        let _ = guard.flush(&g, &policy);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{name}: {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn deep_nesting_and_huge_inputs_are_rejected_cleanly() {
    let mut rng = Rng(7);
    let g = guardrails();
    let deep = format!(
        "{{\"model\":\"m\",\"x\":{}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    assert!(LlmRequest::parse(deep.as_bytes(), None).is_err());
    exercise(deep.as_bytes(), &mut rng, &g);
    let big_line = vec![b'a'; 3 << 20];
    exercise(&big_line, &mut rng, &g);
}
