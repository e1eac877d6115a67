//! Google Gemini `generateContent` (upstream only): requests as `contents`
//! of `user` / `model` turns with `parts`, `systemInstruction` and
//! `generationConfig`; answers and stream events (`streamGenerateContent
//! ?alt=sse`, each `data:` a partial answer) as `candidates` with
//! `usageMetadata`. The model and the stream flag are in the path, not the
//! body (`core::provider::gemini`). Only the first candidate is read; a
//! prompt Gemini blocked (`promptFeedback.blockReason`, no candidates) is a
//! content-filter finish.

use super::request::insert_opt;
use super::stream::Decoder;
use super::{
    joined_text, set, str_of, u64_of, Conversation, Event, Finish, Part, Reply, Role, ToolChoice,
    Upstream,
};
use crate::core::error::GatewayError;
use crate::core::usage::{ResponseSummary, Usage};
use serde_json::{json, Map, Value};

/// The Gemini wire.
#[derive(Debug)]
pub struct Gemini;

impl Upstream for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn write_request(&self, c: &Conversation, _model: &str) -> Result<Value, GatewayError> {
        Ok(write_request(c))
    }

    fn stream_usage_on_request(&self) -> bool {
        false
    }

    fn ask_stream_usage(&self, _: &mut Map<String, Value>) {}

    fn is_usage_event(&self, _: &str) -> bool {
        false
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn read_reply(&self, v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
        let (parts, finish) = match (v.pointer("/candidates/0"), blocked(v)) {
            (Some(candidate), _) => {
                let parts: Vec<Part> = answer_parts(candidate).collect();
                let called = parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
                let reason = str_of(candidate, "finishReason").unwrap_or("STOP");
                let finish = read_finish(reason, called);
                (parts, finish)
            }
            (None, true) => (Vec::new(), Finish::ContentFilter),
            (None, false) => {
                return Err(GatewayError::UpstreamInvalid(
                    "the provider's answer has no candidates",
                ))
            }
        };
        Ok(Reply {
            id: str_of(v, "responseId").unwrap_or("gemini-tollgate").into(),
            model: str_of(v, "modelVersion").unwrap_or_default().into(),
            created: now_s,
            parts,
            finish,
            usage: v.get("usageMetadata").map(usage).unwrap_or_default(),
        })
    }

    fn decode(&self, d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
        if let Some(e) = v.get("error") {
            out.push(Event::Error(
                str_of(e, "message").unwrap_or("provider error").into(),
            ));
            return;
        }
        d.start(str_of(v, "responseId"), str_of(v, "modelVersion"), out);
        let candidate = v.pointer("/candidates/0").unwrap_or(&Value::Null);
        for part in answer_parts(candidate) {
            match part {
                Part::Text(text) if !text.is_empty() => out.push(Event::TextDelta(text)),
                Part::Reasoning(text) if !text.is_empty() => out.push(Event::ReasoningDelta(text)),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    // A call arrives whole: announced and given its arguments at once.
                    let index = d.tools;
                    d.tools += 1;
                    out.push(Event::ToolStart { index, id, name });
                    out.push(Event::ToolArgs {
                        index,
                        json: arguments,
                    });
                }
                _ => {}
            }
        }
        if let Some(reason) = str_of(candidate, "finishReason") {
            out.push(Event::Finish(read_finish(reason, d.tools > 0)));
        } else if blocked(v) {
            out.push(Event::Finish(Finish::ContentFilter));
        }
        if let Some(u) = v.get("usageMetadata") {
            out.push(Event::Usage(usage(u)));
        }
    }

    fn text_delta(&self, _: &str, _: &mut Vec<Event>) -> bool {
        false
    }

    fn summarize(&self, v: &Value) -> ResponseSummary {
        let mut s = ResponseSummary::default();
        observe(&mut s, v);
        s
    }

    fn observe_event(&self, s: &mut ResponseSummary, data: &str) -> usize {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return 0;
        };
        observe(s, &v);
        let candidate = v.pointer("/candidates/0").unwrap_or(&Value::Null);
        answer_parts(candidate)
            .map(|p| match p {
                Part::Text(t) | Part::Reasoning(t) | Part::Refusal(t) => t.chars().count(),
                Part::ToolCall { arguments, .. } => arguments.chars().count(),
                Part::Image { .. } | Part::ToolResult { .. } => 0,
            })
            .sum()
    }

    fn reply_text(&self, v: &Value) -> String {
        joined_text(
            &answer_parts(v.pointer("/candidates/0").unwrap_or(&Value::Null)).collect::<Vec<_>>(),
        )
    }

    fn push_stream_text(&self, data: &str, out: &mut String) {
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            out.push_str(&self.reply_text(&v));
        }
    }
}

/// Whether Gemini refused the prompt itself (no candidates then).
fn blocked(v: &Value) -> bool {
    v.pointer("/promptFeedback/blockReason").is_some()
}

/// Gemini reasons in OpenAI terms: a stop after function calls is a tool
/// call; the safety family is a content filter.
fn read_finish(reason: &str, called: bool) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            Finish::ContentFilter
        }
        _ if called => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

/// Usage in OpenAI terms: the prompt count includes cached tokens, and
/// thinking tokens are output (as OpenAI's reasoning tokens are).
fn usage(u: &Value) -> Usage {
    let thoughts = u64_of(u, "thoughtsTokenCount");
    Usage {
        input_tokens: u64_of(u, "promptTokenCount"),
        output_tokens: u64_of(u, "candidatesTokenCount") + thoughts,
        cached_tokens: u64_of(u, "cachedContentTokenCount"),
        reasoning_tokens: thoughts,
    }
}

/// Folds an answer or stream event into the summary; the provider's own
/// finish reason is kept for traces.
fn observe(s: &mut ResponseSummary, v: &Value) {
    s.meta
        .seen(str_of(v, "responseId"), str_of(v, "modelVersion"));
    s.meta.reason(
        v.pointer("/candidates/0/finishReason")
            .and_then(Value::as_str),
    );
    if let Some(u) = v.get("usageMetadata") {
        s.add_usage(usage(u));
    }
}

/// The thought summaries, text and function calls of a candidate (thought
/// signatures stay with the provider).
fn answer_parts(candidate: &Value) -> impl Iterator<Item = Part> + '_ {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| {
            if let Some(text) = str_of(p, "text") {
                return Some(if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    Part::Reasoning(text.into())
                } else {
                    Part::Text(text.into())
                });
            }
            let call = p.get("functionCall")?;
            Some(Part::ToolCall {
                // Gemini ids are optional; clients need one to answer the call.
                id: str_of(call, "id").map_or_else(|| format!("call_{i}"), String::from),
                name: str_of(call, "name").unwrap_or_default().into(),
                arguments: call
                    .get("args")
                    .map_or_else(|| "{}".into(), Value::to_string),
            })
        })
}

fn write_request(c: &Conversation) -> Value {
    let mut contents: Vec<Value> = Vec::new();
    for m in &c.messages {
        let parts: Vec<Value> = m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
            .map(|p| write_part(p, c))
            .collect();
        if parts.is_empty() {
            continue;
        }
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        // Consecutive turns of one role (several tool results) become one.
        match contents.last_mut() {
            Some(last) if str_of(last, "role") == Some(role) => {
                if let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut) {
                    existing.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !c.system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": c.system.join("\n\n")}]}),
        );
    }
    let mut config = Map::new();
    insert_opt(
        &mut config,
        "maxOutputTokens",
        c.max_tokens.map(Value::from),
    );
    insert_opt(&mut config, "temperature", c.temperature.map(Value::from));
    insert_opt(&mut config, "topP", c.top_p.map(Value::from));
    insert_opt(&mut config, "topK", c.top_k.map(Value::from));
    insert_opt(&mut config, "seed", c.seed.map(Value::from));
    insert_opt(
        &mut config,
        "presencePenalty",
        c.presence_penalty.map(Value::from),
    );
    insert_opt(
        &mut config,
        "frequencyPenalty",
        c.frequency_penalty.map(Value::from),
    );
    if let Some(r) = c.reasoning {
        let mut thinking = json!({"includeThoughts": true});
        if let Some(budget) = r.budget_tokens {
            set(&mut thinking, "thinkingBudget", budget.into());
        }
        config.insert("thinkingConfig".into(), thinking);
    }
    if !c.stop.is_empty() {
        config.insert("stopSequences".into(), json!(c.stop));
    }
    if let Some(schema) = &c.json_schema {
        config.insert("responseMimeType".into(), json!("application/json"));
        insert_opt(
            &mut config,
            "responseJsonSchema",
            schema.get("schema").cloned(),
        );
    } else if c.json_object {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if !c.tools.is_empty() {
        let declarations: Vec<Value> = c
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "parametersJsonSchema": t.parameters});
                if let (Some(o), Some(desc)) = (d.as_object_mut(), &t.description) {
                    o.insert("description".into(), Value::String(desc.clone()));
                }
                d
            })
            .collect();
        out.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    insert_opt(
        &mut out,
        "toolConfig",
        c.tool_choice.as_ref().map(|choice| {
            let config = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Named(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
            };
            json!({"functionCallingConfig": config})
        }),
    );
    Value::Object(out)
}

fn write_part(p: &Part, c: &Conversation) -> Value {
    match p {
        Part::Text(t) | Part::Refusal(t) => json!({"text": t}),
        Part::Reasoning(t) => json!({"text": t, "thought": true}),
        Part::Image { url } => match url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,"))
        {
            Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
            None => json!({"fileData": {"fileUri": url}}),
        },
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            let args = serde_json::from_str::<Value>(arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({"functionCall": {"id": id, "name": name, "args": args}})
        }
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            // Gemini matches a result to its call by the function's name.
            let name = tool_name(c, id).unwrap_or(id);
            let key = if *is_error { "error" } else { "result" };
            json!({"functionResponse": {"id": id, "name": name, "response": {key: content}}})
        }
    }
}

/// The name of the function call `id` answers.
fn tool_name<'a>(c: &'a Conversation, id: &str) -> Option<&'a str> {
    c.messages
        .iter()
        .flat_map(|m| &m.parts)
        .find_map(|p| match p {
            Part::ToolCall { id: call, name, .. } if call == id => Some(name.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::api::Api;
    use crate::core::sse::SseFramer;
    use crate::core::wire::request::translate;
    use crate::core::wire::stream::StreamTranslator;
    use crate::core::wire::{reply, Translation, Wire};

    #[test]
    fn chat_and_messages_requests_become_contents() {
        let chat = json!({
            "model": "gemini-x", "max_tokens": 50, "temperature": 0.2, "stop": ["END"], "stream": true,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}}
        });
        let (out, t) = translate(Api::ChatCompletions, Wire::Gemini, &chat, true, "g").unwrap();
        assert!(t.rewrites());
        assert_eq!(out.get("model"), None, "the model is in the path");
        assert_eq!(out.get("stream"), None, "so is the stream flag");
        assert_eq!(out["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 50, "temperature": 0.2, "stopSequences": ["END"]})
        );
        let contents = &out["contents"];
        assert_eq!(contents[0]["role"], "user");
        assert_eq!(
            contents[0]["parts"][1]["inlineData"]["mimeType"],
            "image/png"
        );
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(
            contents[1]["parts"][0]["functionCall"]["args"]["city"],
            "Paris"
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"],
            json!({"id": "c1", "name": "weather", "response": {"result": "sunny"}})
        );
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
        );
        assert_eq!(
            out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
            json!({"type": "object"})
        );
        let msgs = json!({"model": "g", "max_tokens": 9, "system": "sys",
            "messages": [{"role": "user", "content": "hi"}]});
        let (out, _) = translate(Api::Messages, Wire::Gemini, &msgs, false, "g").unwrap();
        assert_eq!(
            out,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "sys"}]},
                "generationConfig": {"maxOutputTokens": 9}})
        );
    }

    const ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking","thought":true},{"text":"Hello"},{"functionCall":{"name":"f","args":{"q":1}}}]},"finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"thoughtsTokenCount":2,"cachedContentTokenCount":3,"totalTokenCount":16},
        "modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

    fn t(client: Api, stream: bool) -> Translation {
        Translation {
            client,
            upstream: Wire::Gemini,
            stream,
            client_wants_usage: true,
        }
    }

    #[test]
    fn answers_translate_with_usage() {
        let out: Value = serde_json::from_slice(
            &reply::translate(&t(Api::ChatCompletions, false), ANSWER.as_bytes(), 5).unwrap(),
        )
        .unwrap();
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], "Hello");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"q\":1}"
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["prompt_tokens"], 10);
        assert_eq!(out["usage"]["completion_tokens"], 6);
        assert_eq!(out["model"], "gemini-2.5-flash");
        let out: Value = serde_json::from_slice(
            &reply::translate(&t(Api::Messages, false), ANSWER.as_bytes(), 5).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out["content"][0],
            json!({"type": "thinking", "thinking": "thinking", "signature": ""})
        );
        assert_eq!(out["content"][1]["text"], "Hello");
        assert_eq!(out["usage"]["input_tokens"], 7, "cached tokens apart");
        let out: Value = serde_json::from_slice(
            &reply::translate(&t(Api::Responses, false), ANSWER.as_bytes(), 5).unwrap(),
        )
        .unwrap();
        assert_eq!(out["output"][0]["summary"][0]["text"], "thinking");
        assert_eq!(out["output"][1]["content"][0]["text"], "Hello");
        assert_eq!(out["output"][2]["type"], "function_call");
        let v: Value = serde_json::from_str(ANSWER).unwrap();
        let s = Gemini.summarize(&v);
        assert_eq!(
            s.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((10, 6))
        );
        assert_eq!(s.meta.finish_reasons, ["STOP"]);
        assert_eq!(s.meta.id.as_deref(), Some("r1"));
        assert_eq!(Gemini.reply_text(&v), "Hello");
        assert!(reply::translate(&t(Api::Messages, false), b"{}", 0).is_err());
    }

    const STREAM: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r2\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r2\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"!\"}]},\"finishReason\":\"MAX_TOKENS\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":3,\"totalTokenCount\":11},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r2\"}\r\n\r\n",
    );

    fn run(client: Api, cut: usize) -> (Vec<u8>, ResponseSummary) {
        run_stream(client, STREAM, cut)
    }

    fn run_stream(client: Api, input: &str, cut: usize) -> (Vec<u8>, ResponseSummary) {
        let mut s = StreamTranslator::new(&t(client, true), 1);
        let mut summary = ResponseSummary::default();
        let mut framer = SseFramer::new();
        let mut out = Vec::new();
        for chunk in [&input.as_bytes()[..cut], &input.as_bytes()[cut..]] {
            let events = framer.push(chunk);
            for e in &events {
                Gemini.observe_event(&mut summary, &e.data);
            }
            out.extend(s.push_events(&events, &mut |_| {}));
        }
        out.extend(s.finish());
        (out, summary)
    }

    #[test]
    fn streams_translate_at_any_cut() {
        let (chat, summary) = run(Api::ChatCompletions, 0);
        assert_eq!(
            summary.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((8, 3))
        );
        assert_eq!(summary.meta.finish_reasons, ["MAX_TOKENS"]);
        let text = String::from_utf8(chat.clone()).unwrap();
        assert!(text.contains("\"content\":\"Hel\""), "{text}");
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
        assert!(text.contains("\"completion_tokens\":3"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
        for cut in 1..STREAM.len() {
            assert_eq!(run(Api::ChatCompletions, cut).0, chat, "cut at {cut}");
        }
        let (messages, _) = run(Api::Messages, 100);
        let text = String::from_utf8(messages).unwrap();
        assert!(text.contains("\"stop_reason\":\"max_tokens\""), "{text}");
        assert!(text.contains("\"output_tokens\":3"), "{text}");
        assert!(text.contains("\"text\":\"lo\""), "{text}");
    }

    /// Parsed `data:` payloads of a translated stream.
    fn payloads(out: &[u8]) -> Vec<Value> {
        SseFramer::new()
            .push(out)
            .into_iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    const THOUGHTS: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Weighing it\",\"thought\":true}]},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r3\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" up.\",\"thought\":true}]},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r3\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Yes.\",\"thoughtSignature\":\"c2ln\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":1,\"thoughtsTokenCount\":7},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r3\"}\r\n\r\n",
    );

    #[test]
    fn thought_summaries_stream_as_thinking_or_reasoning() {
        let (messages, _) = run_stream(Api::Messages, THOUGHTS, 0);
        let ev = payloads(&messages);
        assert_eq!(
            ev[1]["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        let thinking: String = ev
            .iter()
            .filter_map(|e| e.pointer("/delta/thinking").and_then(Value::as_str))
            .collect();
        assert_eq!(thinking, "Weighing it up.");
        assert_eq!(ev[4]["type"], "content_block_stop");
        assert_eq!(ev[5]["content_block"]["type"], "text");
        assert_eq!(ev[5]["index"], 1);
        let (responses, _) = run_stream(Api::Responses, THOUGHTS, 0);
        let ev = payloads(&responses);
        let done = &ev.last().unwrap()["response"];
        assert_eq!(
            done["output"][0]["summary"],
            json!([{"type": "summary_text", "text": "Weighing it up."}])
        );
        assert_eq!(done["output"][1]["content"][0]["text"], "Yes.");
        let (chat, _) = run_stream(Api::ChatCompletions, THOUGHTS, 0);
        let text = String::from_utf8(chat).unwrap();
        assert!(!text.contains("Weighing"), "{text}");
        for client in [Api::ChatCompletions, Api::Responses, Api::Messages] {
            let whole = run_stream(client, THOUGHTS, 0).0;
            for cut in 1..THOUGHTS.len() {
                assert_eq!(
                    run_stream(client, THOUGHTS, cut).0,
                    whole,
                    "{client:?} {cut}"
                );
            }
        }
    }

    const BLOCKED: &str = r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":6,"totalTokenCount":6},"modelVersion":"gemini-2.5-flash","responseId":"r4"}"#;

    #[test]
    fn a_blocked_prompt_is_a_content_filter() {
        let answer = |client| -> Value {
            serde_json::from_slice(
                &reply::translate(&t(client, false), BLOCKED.as_bytes(), 5).unwrap(),
            )
            .unwrap()
        };
        assert_eq!(
            answer(Api::ChatCompletions)["choices"][0]["finish_reason"],
            "content_filter"
        );
        assert_eq!(answer(Api::Messages)["stop_reason"], "refusal");
        assert_eq!(
            answer(Api::Responses)["incomplete_details"]["reason"],
            "content_filter"
        );
        let stream = format!("data: {BLOCKED}\r\n\r\n");
        let ev = payloads(&run_stream(Api::Messages, &stream, 0).0);
        assert_eq!(ev[ev.len() - 2]["delta"]["stop_reason"], "refusal");
        let ev = payloads(&run_stream(Api::ChatCompletions, &stream, 0).0);
        let reasons: Vec<&Value> = ev
            .iter()
            .filter_map(|e| e.pointer("/choices/0/finish_reason"))
            .filter(|r| !r.is_null())
            .collect();
        assert_eq!(reasons, [&json!("content_filter")]);
    }

    #[test]
    fn reasoning_and_sampling_requests_reach_generation_config() {
        let msgs = json!({"model": "g", "max_tokens": 4000, "top_k": 40,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "hello"}]},
                {"role": "user", "content": "again"}]});
        let (out, _) = translate(Api::Messages, Wire::Gemini, &msgs, false, "g").unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 4000, "topK": 40,
                "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 2048}})
        );
        assert_eq!(
            out["contents"][1],
            json!({"role": "model", "parts": [{"text": "hello"}]}),
            "Anthropic's signed thinking is not sent to Gemini"
        );
        let resp = json!({"input": "hi", "reasoning": {"effort": "low", "summary": "auto"}});
        let (out, _) = translate(Api::Responses, Wire::Gemini, &resp, false, "g").unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"thinkingConfig": {"includeThoughts": true}})
        );
        let chat = json!({"seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 1,
            "messages": [{"role": "user", "content": "hi"}]});
        let (out, _) = translate(Api::ChatCompletions, Wire::Gemini, &chat, false, "g").unwrap();
        assert_eq!(
            out["generationConfig"],
            json!({"seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5})
        );
        let n2 = json!({"n": 2, "messages": [{"role": "user", "content": "hi"}]});
        let err = translate(Api::ChatCompletions, Wire::Gemini, &n2, false, "g").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().contains("`n`"), "{}", err.message());
    }
}
