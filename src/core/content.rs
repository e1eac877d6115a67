//! Content capture for traces (`gen_ai.input.messages`,
//! `gen_ai.output.messages`), in the GenAI conventions' shape:
//! `[{"role": .., "parts": [{"type": "text", "content": ..}]}]`. Only text
//! parts are kept (images and tool payloads become typed placeholders), and
//! each attribute is capped so a span stays small.

use super::api::Api;
use super::wire::{Event, Wire};
use serde_json::{json, Value};

/// Longest captured text per attribute, in bytes.
pub const MAX_CAPTURE: usize = 16 * 1024;

fn text_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "content": s})],
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| {
                match b
                    .get("text")
                    .or_else(|| b.get("content"))
                    .and_then(Value::as_str)
                {
                    Some(t) => json!({"type": "text", "content": t}),
                    None => {
                        json!({"type": b.get("type").and_then(Value::as_str).unwrap_or("other")})
                    }
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One message in the conventions' shape.
pub fn message(role: &str, content: &Value) -> Value {
    json!({"role": role, "parts": text_parts(content)})
}

/// A list of `{role, content}` messages (or a bare string, a user turn).
pub fn messages(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                message(role, m.get("content").unwrap_or(&Value::Null))
            })
            .collect(),
        Some(text @ Value::String(_)) => vec![message("user", text)],
        _ => Vec::new(),
    }
}

/// A system prompt (if any) then the messages (`messages`).
pub fn with_system(system: Option<&Value>, list: Option<&Value>) -> Vec<Value> {
    let mut out: Vec<Value> = system.map(|s| message("system", s)).into_iter().collect();
    out.extend(messages(list));
    out
}

/// The conversation of a request body of `api`.
pub fn input_messages(api: Api, body: &Value) -> String {
    capped(Value::Array(api.inbound().input_messages(body)))
}

pub fn output_messages(text: &str, finish_reason: Option<&str>) -> String {
    capped(json!([{
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish_reason.unwrap_or("stop"),
    }]))
}

fn capped(v: Value) -> String {
    let s = v.to_string();
    if s.len() <= MAX_CAPTURE {
        return s;
    }
    let end = s.floor_char_boundary(MAX_CAPTURE);
    format!("{}…(truncated)", s.get(..end).unwrap_or(""))
}

/// Appends the text deltas of decoded stream events, up to the capture limit.
pub fn push_events(events: &[Event], out: &mut String) {
    for e in events {
        if let (Event::TextDelta(text), true) = (e, out.len() < MAX_CAPTURE) {
            out.push_str(text);
        }
    }
}

/// Appends the generated text of one stream event of `upstream` (not
/// decoded), up to the capture limit.
pub fn push_stream_text(upstream: Wire, data: &str, out: &mut String) {
    if out.len() < MAX_CAPTURE {
        upstream.upstream().push_stream_text(data, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_each_api() {
        let chat = json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:..."}}]}]});
        let v: Value = serde_json::from_str(&input_messages(Api::ChatCompletions, &chat)).unwrap();
        assert_eq!(v[1]["parts"][0]["content"], "hi");
        assert_eq!(v[1]["parts"][1]["type"], "image_url");
        let anthropic =
            json!({"system": "sys", "messages": [{"role": "user", "content": "hello"}]});
        let v: Value = serde_json::from_str(&input_messages(Api::Messages, &anthropic)).unwrap();
        assert_eq!(
            (v[0]["role"].as_str(), v[1]["parts"][0]["content"].as_str()),
            (Some("system"), Some("hello"))
        );
        let responses = json!({"instructions": "x", "input": "question"});
        assert!(input_messages(Api::Responses, &responses).contains("question"));
        let output_text = |wire: Wire, v: Value| wire.upstream().reply_text(&v);
        assert_eq!(
            output_text(
                Wire::ChatCompletions,
                json!({"choices": [{"message": {"content": "a"}}]})
            ),
            "a"
        );
        assert_eq!(
            output_text(
                Wire::Messages,
                json!({"content": [{"type": "text", "text": "b"}]})
            ),
            "b"
        );
        assert_eq!(
            output_text(
                Wire::Responses,
                json!({"output": [{"content": [{"type": "output_text", "text": "c"}]}]})
            ),
            "c"
        );
        let mut s = String::new();
        push_stream_text(
            Wire::ChatCompletions,
            r#"{"choices":[{"delta":{"content":"He"}}]}"#,
            &mut s,
        );
        push_stream_text(
            Wire::Messages,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"llo"}}"#,
            &mut s,
        );
        push_stream_text(
            Wire::Responses,
            r#"{"type":"response.output_text.delta","delta":"!"}"#,
            &mut s,
        );
        assert_eq!(s, "Hello!");
        let mut decoded = String::new();
        push_events(
            &[
                Event::TextDelta("He".into()),
                Event::Finish(crate::core::wire::Finish::Stop),
            ],
            &mut decoded,
        );
        assert_eq!(decoded, "He");
        assert!(output_messages(&"x".repeat(MAX_CAPTURE * 2), None).ends_with("(truncated)"));
    }
}
