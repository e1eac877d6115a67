//! Property tests of in-place stream editing (`edit`): for random provider
//! streams of each client API (several choices, thinking with signatures,
//! refusals, logprobs, stop sequences, tool calls, reasoning items, fields
//! no model knows) cut into random body chunks,
//! - with the output guardrails on and nothing to redact, the client
//!   parses exactly the events the provider sent;
//! - with an entity in one slot's text, only that slot's text changes, to
//!   its non-streamed redaction, and the whole-text fields agree;
//! - with a blocked entity, no byte of it reaches the client and the
//!   stream still ends in the API's shape.

use super::edit::StreamEditor;
use crate::core::api::Api;
use crate::core::guard::stream::SlotGuards;
use crate::core::guard::test_rng::Rng;
use crate::core::guard::{GuardAction, GuardrailConfig, Guardrails, Policy};
use crate::core::sse::SseFramer;
use serde_json::{json, Value};

/// Text no built-in detector fires on: words, punctuation, escapes and
/// non-ASCII text, never digits (number groups can chain into phones).
const WORDS: &[&str] = &[
    "",
    "The ",
    "quick ",
    "brown fox",
    " jumps",
    " over the lazy dog. ",
    "é",
    "Grüße, ",
    "日本語の文",
    "\n",
    "\"quoted\" ",
    "a\\b ",
    "tab\there ",
    "plan",
    "s for tomorrow",
    " — ",
    "emoji 🦀 ",
    "password",
    " manager ",
    "key",
    " ideas",
];

fn cases() -> usize {
    std::env::var("STREAM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(300, |n: usize| n / 4)
}

/// The text of each slot the provider sent.
type Texts = Vec<((u64, u64), String)>;

/// Random words joined.
fn words(rng: &mut Rng) -> String {
    (0..1 + rng.below(3)).map(|_| rng.pick(WORDS)).collect()
}

/// Random words, then ` secret ` when one is given (spaced, so no word
/// runs into it).
fn words_with(rng: &mut Rng, secret: Option<&str>) -> String {
    let mut text = words(rng);
    if let Some(secret) = secret {
        text.push(' ');
        text.push_str(secret);
        text.push(' ');
    }
    text
}

/// One SSE event as the provider writes it.
fn sse(out: &mut String, name: Option<&str>, data: &Value) {
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// A Chat stream: up to three choices interleaved, content, refusals,
/// logprobs, tool calls and an unknown field; the usage chunk; `[DONE]`.
/// The texts of each choice's content are returned by choice.
fn chat_stream(rng: &mut Rng, secret: Option<&str>) -> (String, Texts) {
    let n = 1 + rng.below(3);
    let mut out = String::new();
    let mut texts = vec![String::new(); n];
    let chunk = |choices: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "system_fingerprint": "fp_1", "choices": choices, "x_future": {"a": [1, 2]}})
    };
    for i in 0..n {
        sse(
            &mut out,
            None,
            &chunk(
                json!([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": null},
                            "logprobs": null, "finish_reason": null}]),
            ),
        );
    }
    let secret_at = secret.map(|_| (rng.below(n), rng.below(12)));
    for step in 0..rng.below(14) {
        let i = rng.below(n);
        let text = words_with(rng, secret.filter(|_| secret_at == Some((i, step))));
        let delta = match rng.below(5) {
            0 => json!({"refusal": words(rng)}),
            1 => json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                        "function": {"name": "f", "arguments": "{\"q\":"}}]}),
            2 => json!({"content": text, "x_new_delta_field": true}),
            _ => json!({"content": text}),
        };
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            texts[i].push_str(t);
        }
        let logprobs = json!({"content": [{"token": "x", "logprob": -0.25, "bytes": [120], "top_logprobs": []}]});
        sse(
            &mut out,
            None,
            &chunk(
                json!([{"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": null}]),
            ),
        );
    }
    let reasons = ["stop", "length", "tool_calls", "content_filter"];
    let finishes: Vec<Value> = (0..n)
        .map(|i| json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": rng.pick(&reasons)}))
        .collect();
    sse(&mut out, None, &chunk(Value::Array(finishes)));
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8});
    sse(&mut out, None, &usage);
    out.push_str("data: [DONE]\n\n");
    let texts = (0u64..).zip(texts).map(|(i, t)| ((i, 0), t)).collect();
    (out, texts)
}

/// A Messages stream: thinking with its signature, redacted thinking,
/// text and tool blocks, pings, a stop sequence. Texts by block index.
fn messages_stream(rng: &mut Rng, secret: Option<&str>) -> (String, Texts) {
    let mut out = String::new();
    let mut texts = Vec::new();
    sse(
        &mut out,
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-6", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 5, "output_tokens": 1}, "x_future": "kept"}}),
    );
    let blocks = 1 + rng.below(4);
    let secret_block = rng.below(blocks);
    for index in 0..blocks {
        let event = |out: &mut String, name: &str, mut data: Value| {
            data["type"] = json!(name);
            data["index"] = json!(index);
            sse(out, Some(name), &data);
        };
        let mut text = String::new();
        let kind = rng.below(4);
        let is_text = kind >= 2;
        match kind {
            0 => {
                event(
                    &mut out,
                    "content_block_start",
                    json!({"content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                );
                for _ in 0..rng.below(4) {
                    event(
                        &mut out,
                        "content_block_delta",
                        json!({"delta": {"type": "thinking_delta", "thinking": words(rng)}}),
                    );
                }
                event(
                    &mut out,
                    "content_block_delta",
                    json!({"delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}),
                );
            }
            1 => {
                event(
                    &mut out,
                    "content_block_start",
                    json!({"content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
                );
                event(
                    &mut out,
                    "content_block_delta",
                    json!({"delta": {"type": "input_json_delta", "partial_json": "{\"q\": 1}"}}),
                );
            }
            _ => {
                event(
                    &mut out,
                    "content_block_start",
                    json!({"content_block": {"type": "text", "text": ""}}),
                );
                for step in 0..rng.below(6) {
                    let delta =
                        words_with(rng, secret.filter(|_| index == secret_block && step == 1));
                    text.push_str(&delta);
                    event(
                        &mut out,
                        "content_block_delta",
                        json!({"delta": {"type": "text_delta", "text": delta}}),
                    );
                    if rng.below(4) == 0 {
                        sse(&mut out, Some("ping"), &json!({"type": "ping"}));
                    }
                }
            }
        }
        event(&mut out, "content_block_stop", json!({}));
        if is_text {
            texts.push(((index as u64, 0), text));
        }
    }
    sse(
        &mut out,
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 7}}),
    );
    sse(
        &mut out,
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    );
    (out, texts)
}

/// A Responses stream: a reasoning item, a message of one or two text
/// parts (logprobs, an annotation), a function call, the `*.done` events
/// and `response.completed` repeating the texts. Texts by part, in order.
fn responses_stream(rng: &mut Rng, secret: Option<&str>) -> (String, Texts) {
    let mut out = String::new();
    let mut seq = 0;
    let mut texts = Vec::new();
    let mut event = |out: &mut String, name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse(out, Some(name), &data);
    };
    let response = json!({"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-4o",
                          "output": [], "usage": null, "x_future": {"kept": true}});
    event(&mut out, "response.created", json!({"response": response}));
    event(
        &mut out,
        "response.in_progress",
        json!({"response": response}),
    );
    let mut items = Vec::new();
    let secret_part = rng.below(2);
    for output in 0..1 + rng.below(3) {
        match rng.below(3) {
            0 => {
                let summary = words(rng);
                let item = json!({"type": "reasoning", "id": format!("rs_{output}"), "summary": [], "encrypted_content": "gAAAA"});
                event(
                    &mut out,
                    "response.output_item.added",
                    json!({"output_index": output, "item": item}),
                );
                event(
                    &mut out,
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": format!("rs_{output}"), "output_index": output, "summary_index": 0, "delta": summary}),
                );
                let mut done = item.clone();
                done["summary"] = json!([{"type": "summary_text", "text": summary}]);
                event(
                    &mut out,
                    "response.output_item.done",
                    json!({"output_index": output, "item": done}),
                );
                items.push(done);
            }
            1 => {
                let item = json!({"type": "function_call", "id": format!("fc_{output}"), "call_id": "call_1", "name": "f", "arguments": "", "status": "in_progress"});
                event(
                    &mut out,
                    "response.output_item.added",
                    json!({"output_index": output, "item": item}),
                );
                event(
                    &mut out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": format!("fc_{output}"), "output_index": output, "delta": "{}"}),
                );
                let mut done = item.clone();
                done["arguments"] = json!("{}");
                done["status"] = json!("completed");
                event(
                    &mut out,
                    "response.output_item.done",
                    json!({"output_index": output, "item": done}),
                );
                items.push(done);
            }
            _ => {
                let id = format!("msg_{output}");
                let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                event(
                    &mut out,
                    "response.output_item.added",
                    json!({"output_index": output, "item": item}),
                );
                let mut parts = Vec::new();
                for content in 0..1 + rng.below(2) {
                    let empty = json!({"type": "output_text", "text": "", "annotations": []});
                    event(
                        &mut out,
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": output, "content_index": content, "part": empty}),
                    );
                    let mut text = String::new();
                    for step in 0..rng.below(6) {
                        let delta =
                            words_with(rng, secret.filter(|_| content == secret_part && step == 0));
                        text.push_str(&delta);
                        event(
                            &mut out,
                            "response.output_text.delta",
                            json!({"item_id": id, "output_index": output, "content_index": content, "delta": delta, "logprobs": [{"token": "x", "logprob": -0.5}]}),
                        );
                    }
                    let annotation = json!({"type": "url_citation", "url": "https://example.org/", "title": "t", "start_index": 0, "end_index": 0});
                    event(
                        &mut out,
                        "response.output_text.annotation.added",
                        json!({"item_id": id, "output_index": output, "content_index": content, "annotation_index": 0, "annotation": annotation}),
                    );
                    event(
                        &mut out,
                        "response.output_text.done",
                        json!({"item_id": id, "output_index": output, "content_index": content, "text": text, "logprobs": []}),
                    );
                    let part =
                        json!({"type": "output_text", "text": text, "annotations": [annotation]});
                    event(
                        &mut out,
                        "response.content_part.done",
                        json!({"item_id": id, "output_index": output, "content_index": content, "part": part}),
                    );
                    parts.push(part);
                    texts.push(((output as u64, content as u64), text));
                }
                let mut done = item.clone();
                done["content"] = Value::Array(parts);
                done["status"] = json!("completed");
                event(
                    &mut out,
                    "response.output_item.done",
                    json!({"output_index": output, "item": done}),
                );
                items.push(done);
            }
        }
    }
    let mut response = response.clone();
    response["status"] = json!("completed");
    response["output"] = Value::Array(items);
    response["usage"] = json!({"input_tokens": 3, "output_tokens": 5, "total_tokens": 8});
    event(
        &mut out,
        "response.completed",
        json!({"response": response}),
    );
    (out, texts)
}

fn stream(api: Api, rng: &mut Rng, secret: Option<&str>) -> (String, Texts) {
    match api {
        Api::ChatCompletions => chat_stream(rng, secret),
        Api::Messages => messages_stream(rng, secret),
        Api::Responses => responses_stream(rng, secret),
    }
}

/// The stream's events as a client parses them: (name, JSON or raw data).
fn parsed(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    let mut framer = SseFramer::new();
    let mut events = framer.push(bytes);
    events.extend(framer.finish());
    events
        .into_iter()
        .map(|e| {
            let v = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data));
            (e.event, v)
        })
        .collect()
}

/// `input` through the editor in random body chunks: the client's bytes
/// and the guardrail events.
fn edit(
    api: Api,
    input: &str,
    g: &Guardrails,
    p: &Policy,
    drop_usage: bool,
    rng: &mut Rng,
) -> (Vec<u8>, usize) {
    let mut editor = StreamEditor::new(api, drop_usage);
    let mut guards = SlotGuards::default();
    let mut filter = |slot: usize, text: &str, end: bool| guards.filter(g, p, slot, text, end);
    let mut framer = SseFramer::new();
    let mut out = Vec::new();
    let mut rest = input.as_bytes();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(96)));
        for event in framer.push(chunk) {
            editor.push(event, &mut filter, &mut out);
        }
        rest = tail;
    }
    editor.finish(&mut filter, &mut out);
    (out, guards.events.len())
}

const APIS: [Api; 3] = [Api::ChatCompletions, Api::Messages, Api::Responses];

#[test]
fn with_nothing_to_redact_the_client_parses_the_providers_events() {
    let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
    let p = g.policy(None, None);
    let mut rng = Rng(0x5eed_ed17);
    for api in APIS {
        for case in 0..cases() {
            let (input, _) = stream(api, &mut rng, None);
            let drop_usage = api == Api::ChatCompletions && rng.below(2) == 0;
            let (out, events) = edit(api, &input, &g, &p, drop_usage, &mut rng);
            assert_eq!(
                events, 0,
                "{api:?} case {case}: a guardrail fired on\n{input}"
            );
            let mut want = parsed(input.as_bytes());
            if drop_usage {
                want.retain(|(_, v)| v.get("usage").is_none());
            }
            assert_eq!(parsed(&out), want, "{api:?} case {case}");
            if !drop_usage {
                assert_eq!(out, input.as_bytes(), "{api:?} case {case}: same bytes");
            }
        }
    }
}

/// The texts a client assembles from `out`, by slot, and every whole-text
/// field with the text it should equal.
fn assembled(api: Api, out: &[u8]) -> (Texts, Vec<(String, String)>) {
    let mut slots: Vec<((u64, u64), String)> = Vec::new();
    let mut wholes = Vec::new();
    for (_, mut v) in parsed(out) {
        api.stream_edit()
            .texts(
                &mut v,
                &mut |slot, text| match slots.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, t)) => t.push_str(text),
                    None => slots.push((slot, text.clone())),
                },
            );
        api.stream_edit().whole_texts(&mut v, &mut |slot, text| {
            let so_far = slots
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, t)| t.clone());
            wholes.push((text.clone(), so_far.unwrap_or_default()));
        });
    }
    (slots, wholes)
}

const SECRET: &str = "jane.doe@example.com";

/// Random streams of each API with `SECRET` in one slot, edited with PII
/// on output redacted or blocked: `check(api, case, input, its texts,
/// the client's bytes)`.
fn with_secret(block: bool, seed: u64, check: impl Fn(Api, usize, &str, &Texts, &[u8])) {
    let mut config = GuardrailConfig::default();
    if block {
        config.pii.output = Some(GuardAction::Block);
    }
    let g = Guardrails::new(&config).unwrap();
    let p = g.policy(None, None);
    let mut rng = Rng(seed);
    for api in APIS {
        for case in 0..cases() {
            let (input, texts) = stream(api, &mut rng, Some(SECRET));
            let (out, _) = edit(api, &input, &g, &p, false, &mut rng);
            check(api, case, &input, &texts, &out);
        }
    }
}

#[test]
fn a_redaction_changes_only_its_slots_text() {
    let secret = SECRET;
    with_secret(false, 0xed17_2edac7, |api, case, input, texts, out| {
        let out_text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            !out_text.contains(secret),
            "{api:?} case {case}: {out_text}"
        );
        let (got, wholes) = assembled(api, out);
        let (sent, _) = assembled(api, input.as_bytes());
        assert_eq!(sent.len(), got.len(), "{api:?} case {case}");
        for (slot, got) in &got {
            // Text slots may carry the secret; tool arguments never do.
            let want = match texts.iter().find(|(s, _)| s == slot) {
                Some((_, text)) => text.replace(secret, "[EMAIL_1]"),
                None => sent.iter().find(|(s, _)| s == slot).unwrap().1.clone(),
            };
            assert_eq!(*got, want, "{api:?} case {case}");
        }
        for (whole, assembled) in wholes {
            assert_eq!(whole, assembled, "{api:?} case {case}");
        }
        // Everything but the text is as the provider sent it.
        let strip = |events: Vec<(Option<String>, Value)>| -> Vec<_> {
            events
                .into_iter()
                .map(|(n, mut v)| {
                    api.stream_edit().texts(&mut v, &mut |_, t| t.clear());
                    api.stream_edit().whole_texts(&mut v, &mut |_, t| t.clear());
                    (n, v)
                })
                .collect()
        };
        assert_eq!(
            strip(parsed(out)),
            strip(parsed(input.as_bytes())),
            "{api:?} case {case}"
        );
    });
}

#[test]
fn a_block_cuts_before_the_entity_and_ends_the_stream() {
    with_secret(true, 0xb10c, |api, case, input, _, out| {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("jane"), "{api:?} case {case}: {text}");
        if !input.contains(SECRET) {
            return;
        }
        assert!(
            text.contains("Response blocked by the pii guardrail"),
            "{text}"
        );
        let events = parsed(out);
        let last = events.last().unwrap();
        match api {
            Api::ChatCompletions => assert_eq!(last.1, json!("[DONE]")),
            Api::Messages => assert_eq!(last.0.as_deref(), Some("message_stop")),
            Api::Responses => {
                assert_eq!(last.0.as_deref(), Some("response.completed"));
                assert_eq!(
                    last.1["response"]["incomplete_details"]["reason"],
                    "content_filter"
                );
                let seqs: Vec<u64> = events
                    .iter()
                    .filter_map(|(_, v)| v["sequence_number"].as_u64())
                    .collect();
                assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
            }
        }
    });
}
