//! Property test: random and mutated inputs to every parser the filter runs
//! on client or provider bytes must never panic (a panic kills the wasm VM).
//! Deterministic seeds, so a failure reproduces; raise FUZZ_ITERATIONS to
//! search longer.
#![allow(clippy::indexing_slicing, clippy::panic)] // test code: a panic is a failure report

use tollgate::core::api::{Api, ClientFormat};
use tollgate::core::auth::parse_authorize_response;
use tollgate::core::config::Config;
use tollgate::core::convert::stream::{Event, StreamTranslator};
use tollgate::core::convert::{self, Translation};
use tollgate::core::decision::RouteDecision;
use tollgate::core::guard::stream::OutputGuard;
use tollgate::core::guard::{GuardrailConfig, Guardrails};
use tollgate::core::request::LlmRequest;
use tollgate::core::sse::SseFramer;
use tollgate::core::usage::{text_chars, ResponseSummary};

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
    br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi \u00e9"}]}"#,
    br#"{"model":"claude-3","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
    b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\r\n\r\n",
    b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
    br#"{"valid":true,"key_id":"k","models":["a*"],"team_models":[],"expires_at":1}"#,
    b"c=cluster\np=/path\na=authorization\tBearer \tVAR",
    br#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
    br#"{"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"o"}],"instructions":"s"}"#,
    br#"{"id":"m","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1}}"#,
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}\n\n",
    b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":\"{\"}}]}}]}\n\n",
    b"data: {\"choices\":[{\"delta\":{\"content\":\"mail jane@example.com, card 4111 1111 1111 1111\"},\"finish_reason\":null}]}\n\n",
    b"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"AKIAIOSFODNN7EXAMPLE\"}\n\n",
    b"data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n",
];

const APIS: [Api; 3] = [Api::ChatCompletions, Api::Responses, Api::Messages];

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
        for upstream in APIS {
            let _ = convert::request::translate(client, upstream, &value, "m");
            let t = Translation {
                client,
                upstream,
                stream: true,
                client_wants_usage: rng.below(2) == 0,
            };
            let _ = convert::response::translate(&t, bytes, 0);
            let mut s = if rng.below(2) == 0 {
                StreamTranslator::new(&t, 0)
            } else {
                StreamTranslator::reencoding(&t, 0)
            };
            let mut guard = OutputGuard::default();
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
    let _ = convert::error::translate(ClientFormat::Anthropic, 400 + rng.below(200) as u32, bytes);
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

fn exercise(bytes: &[u8], rng: &mut Rng, g: &Guardrails) {
    if let Ok(mut request) = LlmRequest::parse(bytes, None) {
        let _ = request.rewritten_for("other-model");
    }
    let _ = ResponseSummary::from_body(bytes);
    let _ = parse_authorize_response(bytes);
    let _ = RouteDecision::decode(bytes);
    let _ = Config::parse(bytes);
    // The framer sees the same bytes cut at random points.
    let mut framer = SseFramer::new();
    let mut usage = ResponseSummary::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
        for event in framer.push(chunk) {
            usage.observe_event(&event.data);
            let _ = text_chars(&event.data);
        }
        rest = tail;
    }
    if let Some(event) = framer.finish() {
        usage.observe_event(&event.data);
    }
    exercise_translators(bytes, rng, g);
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
    for i in 0..iterations {
        let input = if i % 4 == 0 {
            (0..rng.below(256)).map(|_| rng.next() as u8).collect()
        } else {
            let seed = SEEDS[rng.below(SEEDS.len())];
            mutate(&mut rng, seed)
        };
        exercise(&input, &mut rng, &g);
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
