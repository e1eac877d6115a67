//! The filter's per-request work, natively and stage by stage: what one
//! small chat request and its answer cost in the host-free core, without
//! Envoy. `cargo bench --bench hot_path` (part of `make bench`) prints µs per
//! request per stage, then what the guardrails cost on 4 MB worst cases
//! (`cargo bench --bench hot_path -- adversarial [bytes] [case]` runs only
//! those).
//! For repeatable instruction counts, build with symbols
//! (`CARGO_PROFILE_BENCH_STRIP=false CARGO_PROFILE_BENCH_DEBUG=line-tables-only
//! cargo bench --bench hot_path --no-run`) and run the binary it names under
//! `valgrind --tool=callgrind`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;
use tollgate::core::api::Api;
use tollgate::core::config::Config;
use tollgate::core::decision::RouteDecision;
use tollgate::core::guard::stream::{OutputGuard, SlotGuards};
use tollgate::core::guard::{worst_case, Guardrails};
use tollgate::core::request::LlmRequest;
use tollgate::core::sse::SseFramer;
use tollgate::core::usage::{self, ResponseSummary};
use tollgate::core::wire::edit::StreamEditor;
use tollgate::core::wire::{self, Wire};
use tollgate::core::{budget, key, otlp, routing, telemetry, tracecontext};

const REQUEST: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise our meeting notes: the team agreed to ship the release on Friday, review the budget next week and hire two engineers."}],"max_tokens":128,"temperature":0.2}"#;
const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1796083170,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The team will ship on Friday, review the budget next week and hire two engineers."},"finish_reason":"stop"}],"usage":{"prompt_tokens":42,"completion_tokens":18,"total_tokens":60}}"#;

/// The plugin configuration of `envoy/gateway.yaml` (the JSON block under `value: |`).
fn example_config() -> Config {
    let yaml = include_str!("../envoy/gateway.yaml");
    let start = yaml
        .find("value: |")
        .expect("plugin configuration in gateway.yaml");
    let json: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("                    "))
        .collect::<Vec<_>>()
        .join("\n");
    Config::parse(json.as_bytes()).expect("example configuration parses")
}

struct Stages {
    names: Vec<&'static str>,
    ns: Vec<u128>,
}

impl Stages {
    fn time<T>(&mut self, i: usize, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let ns = t.elapsed().as_nanos();
        if self.names.len() <= i {
            self.names.push(name);
            self.ns.push(0);
        }
        self.ns[i] += ns;
        out
    }
}

/// One request through the stages the request stage and the response path
/// run, in the filter's order. `translate`: the OpenAI client calls a Claude
/// model (chat -> messages and back).
fn one_request(config: &Config, g: &Guardrails, s: &mut Stages, n: u64, translate: bool) {
    let model = if translate {
        "claude-haiku-4-5"
    } else {
        "gpt-4o-mini"
    };
    let raw = String::from_utf8_lossy(REQUEST).replace("gpt-4o-mini", model);
    let hash = s.time(0, "key hash", || {
        key::hash(key::extract(Some("Bearer tg-0123456789abcdef0123456789abcdef"), None).unwrap())
    });
    let (trace_id, span_id) = s.time(1, "trace ids", || {
        let (trace, span, _upstream) = tracecontext::mint_ids(7, n);
        (trace, span)
    });
    let mut request = s.time(2, "parse body", || {
        LlmRequest::parse(raw.as_bytes(), None).unwrap()
    });
    let policy = g.policy(Some("team"), Some("key_1"));
    let outcome = s.time(3, "input guardrails", || {
        g.check_request(Api::ChatCompletions, &mut request.body, &policy)
    });
    assert!(outcome.blocked.is_none() && !outcome.changed);
    let (route, body, translation) = s.time(4, "route + rewrite", || {
        let (route, _) =
            routing::resolve(config, Api::ChatCompletions, &request.model, request.stream).unwrap();
        if route.upstream_api == Wire::ChatCompletions {
            let body = request.rewritten_for(&route.upstream_model);
            (route, body, None)
        } else {
            let (v, t) = wire::request::translate(
                Api::ChatCompletions,
                route.upstream_api,
                &request.body,
                request.stream,
                &route.upstream_model,
            )
            .unwrap();
            (route, serde_json::to_vec(&v).ok(), Some(t))
        }
    });
    black_box(&body);
    s.time(5, "decision", || {
        let d = RouteDecision {
            cluster: route.provider.cluster.clone(),
            path: Some(route.path.clone()),
            traceparent: Some(tracecontext::format(&trace_id, &span_id, true)),
            auth: None,
            defaults: Vec::new(),
            remove: Vec::new(),
            retries: None,
        };
        RouteDecision::decode(d.encode().as_bytes()).unwrap()
    });
    let (estimated, params) = s.time(6, "budget estimate", || {
        (
            budget::estimate_input_tokens(Api::ChatCompletions, &request.body),
            request.params(Api::ChatCompletions),
        )
    });
    black_box((estimated, params.max_tokens.unwrap_or(4096)));
    // The response path parses the answer once (usage, translation, guardrails).
    let upstream = match translation {
        Some(_) => anthropic_answer().into_bytes(),
        None => ANSWER.to_vec(),
    };
    let (v, summary) = s.time(7, "parse answer + usage", || {
        let v: Value = serde_json::from_slice(&upstream).unwrap();
        let summary = route.upstream_api.upstream().summarize(&v);
        (v, summary)
    });
    assert!(summary.usage.is_some());
    let mut answer = s.time(8, "translate answer", || match &translation {
        Some(t) => wire::reply::translate_value(t, &v, 1_796_083_170).unwrap(),
        None => v,
    });
    let out = s.time(9, "output guardrails", || {
        let o = g.check_response(Api::ChatCompletions, &mut answer, &policy);
        (o.changed || translation.is_some()).then(|| serde_json::to_vec(&answer).unwrap())
    });
    black_box(out);
    s.time(10, "spans + OTLP", || {
        let record = telemetry::RequestRecord {
            ids: telemetry::TraceIds {
                trace_id,
                span_id,
                upstream_span_id: span_id,
                parent: None,
            },
            forwarded: true,
            request_id: "00000000000000010000000000000002",
            client_request_id: None,
            client_api: Api::ChatCompletions,
            upstream_api: route.upstream_api,
            provider: &route.provider.name,
            provider_kind: route.provider.kind,
            request_model: &request.model,
            params: &params,
            summary: &summary,
            status: 200,
            key_id: Some("key_1"),
            team: Some("team"),
            start_ns: 1,
            upstream_start_ns: 2,
            first_chunk_ns: None,
            end_ns: 3,
            input_messages: None,
            output_messages: None,
            guard_events: &[],
            failed_attempts: &[],
            cache: None,
        };
        let mut spans = Vec::new();
        telemetry::with_spans(&record, |made| {
            made.iter()
                .for_each(|span| otlp::encode_span_entry(&mut spans, span))
        });
        let resource = [("service.name", otlp::AttrValue::Str("tollgate"))];
        otlp::encode_export(&resource, "tollgate", &spans)
    });
    black_box(hash);
}

/// The fast mock's 100-chunk chat stream, one SSE event per body callback.
fn chat_stream_events() -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    out.extend((0..100).map(|i| chunk(&format!("{{\"content\":\"word{i} \"}}"), "null")));
    out.push(chunk("{}", "\"stop\""));
    out.push("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":100,\"total_tokens\":112}}\n\n".into());
    out.push("data: [DONE]\n\n".into());
    out
}

/// A streamed answer as the response path handles it: each chunk framed
/// once, its events observed for usage and (output guardrails on) edited
/// in place under the guards.
fn one_stream(g: &Guardrails, s: &mut Stages, events: &[String]) {
    let policy = g.policy(Some("team"), Some("key_1"));
    let upstream = Wire::ChatCompletions;
    let mut framer = SseFramer::new();
    let mut summary = ResponseSummary::default();
    let mut editor = StreamEditor::new(Api::ChatCompletions, false);
    let mut guards = SlotGuards::default();
    let mut filter =
        |slot: usize, text: &str, end: bool| guards.filter(g, &policy, slot, text, end);
    let mut out = Vec::new();
    for chunk in events {
        let framed = s.time(0, "frame + usage", || {
            let framed = framer.push(chunk.as_bytes());
            for e in &framed {
                black_box(usage::text_chars(&e.data));
                upstream.upstream().observe_event(&mut summary, &e.data);
            }
            framed
        });
        s.time(1, "edit + guard", || {
            for e in framed {
                editor.push(e, &mut filter, &mut out);
            }
        });
    }
    s.time(1, "edit + guard", || editor.finish(&mut filter, &mut out));
    assert!(summary.usage.is_some());
    black_box(out);
}

fn anthropic_answer() -> String {
    r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"The team will ship on Friday, review the budget next week and hire two engineers."}],"stop_reason":"end_turn","usage":{"input_tokens":42,"output_tokens":18}}"#.into()
}

/// The guardrails on texts built to make them work hardest
/// (`worst_case::inputs`): each text as the one message of a chat request
/// through `check_request` (injection score, detection and redaction or
/// block), and as an answer streamed in 100-byte deltas through the output
/// guard. The fastest of three runs, in ms; both must stay linear.
fn adversarial(g: &Guardrails, size: usize, only: Option<&str>) {
    let policy = g.policy(None, None);
    println!(
        "\nguardrails on {:.1} MB worst cases (ms, fastest of 3):",
        size as f64 / 1e6
    );
    println!(
        "  {:<24} {:>9} {:>9} {:>9}  outcome",
        "case", "findings", "request", "stream"
    );
    let mut worst = 0f64;
    for (name, text) in worst_case::inputs(size) {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let findings = g
            .scan(&text, &policy, tollgate::core::guard::Direction::Input)
            .len();
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        let mut request_ms = f64::MAX;
        let mut outcome = String::new();
        for _ in 0..3 {
            let mut b = body.clone();
            let t = Instant::now();
            let o = g.check_request(Api::ChatCompletions, &mut b, &policy);
            request_ms = request_ms.min(t.elapsed().as_secs_f64() * 1e3);
            outcome = match o.blocked {
                Some(b) => format!("blocked ({})", b.guardrail),
                None if o.changed => "redacted".into(),
                None => "passed".into(),
            };
            black_box(b);
        }
        let mut stream_ms = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut guard = OutputGuard::default();
            let mut at = 0;
            while at < text.len() {
                let mut end = (at + 100).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                if guard.push(g, &policy, &text[at..end]).is_err() {
                    break;
                }
                at = end;
            }
            black_box(guard.flush(g, &policy).map(|s| s.len()).ok());
            stream_ms = stream_ms.min(t.elapsed().as_secs_f64() * 1e3);
        }
        worst = worst.max(request_ms).max(stream_ms);
        println!("  {name:<24} {findings:>9} {request_ms:>9.1} {stream_ms:>9.1}  {outcome}");
    }
    println!("  slowest: {worst:.1} ms");
}

fn main() {
    let config = example_config();
    let g = Guardrails::new(
        config
            .guardrails
            .as_ref()
            .expect("guardrails in the example config"),
    )
    .unwrap();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "adversarial") {
        let size = args
            .get(at + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(4 << 20);
        adversarial(&g, size, args.get(at + 2).map(String::as_str));
        return;
    }
    let runs: u64 = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(20_000);
    let events = chat_stream_events();
    let mut s = Stages {
        names: Vec::new(),
        ns: Vec::new(),
    };
    let stream_runs = runs / 10;
    for _ in 0..stream_runs {
        one_stream(&g, &mut s, &events);
    }
    report(
        "100-chunk chat stream, output guardrails on",
        stream_runs,
        &s,
    );
    for translate in [false, true] {
        let mut s = Stages {
            names: Vec::new(),
            ns: Vec::new(),
        };
        for n in 0..runs {
            one_request(&config, &g, &mut s, n, translate);
        }
        report(
            if translate {
                "chat client -> Claude (translated)"
            } else {
                "chat client -> OpenAI (passthrough)"
            },
            runs,
            &s,
        );
    }
    adversarial(&g, 4 << 20, None);
}

fn report(what: &str, runs: u64, s: &Stages) {
    let total: u128 = s.ns.iter().sum();
    println!(
        "\n{what} ({runs} runs): {:.2} µs each",
        total as f64 / runs as f64 / 1e3
    );
    for (name, ns) in s.names.iter().zip(&s.ns) {
        println!(
            "  {name:<22} {:>8.2} µs  {:>5.1}%",
            *ns as f64 / runs as f64 / 1e3,
            *ns as f64 * 100.0 / total as f64
        );
    }
}
