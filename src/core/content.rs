//! Content capture for traces (`gen_ai.input.messages`,
//! `gen_ai.output.messages`), in the GenAI conventions' shape:
//! `[{"role": .., "parts": [{"type": "text", "content": ..}]}]`. Only text
//! parts are kept (images and tool payloads become typed placeholders), and
//! each attribute is capped so a span stays small.

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

fn message(role: &str, content: &Value) -> Value {
    json!({"role": role, "parts": text_parts(content)})
}

/// The conversation of a request body of any of the three APIs.
pub fn input_messages(body: &Value) -> String {
    let mut out = Vec::new();
    for field in ["system", "instructions"] {
        if let Some(system) = body.get(field) {
            out.push(message("system", system));
        }
    }
    match body.get("messages").or_else(|| body.get("input")) {
        Some(Value::Array(items)) => {
            for m in items {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                out.push(message(role, m.get("content").unwrap_or(&Value::Null)));
            }
        }
        Some(text @ Value::String(_)) => out.push(message("user", text)),
        _ => {}
    }
    capped(Value::Array(out))
}

/// The assistant text of a complete response body of any of the three APIs.
pub fn output_text(body: &Value) -> String {
    let mut text = String::new();
    let mut push = |t: Option<&str>| {
        if let Some(t) = t {
            text.push_str(t);
        }
    };
    for choice in body
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push(choice.pointer("/message/content").and_then(Value::as_str));
    }
    for block in body
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push(block.get("text").and_then(Value::as_str));
    }
    for item in body
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push(part.get("text").and_then(Value::as_str));
        }
    }
    text
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

/// Appends the text deltas of one stream event (chat `delta.content`,
/// Anthropic `text_delta`, Responses `output_text.delta`).
pub fn push_stream_text(data: &str, out: &mut String) {
    if out.len() >= MAX_CAPTURE || !(data.contains("content") || data.contains("delta")) {
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return;
    };
    let piece = v
        .pointer("/choices/0/delta/content")
        .or_else(|| v.pointer("/delta/text"))
        .or_else(|| {
            (v.get("type").and_then(Value::as_str) == Some("response.output_text.delta"))
                .then(|| v.get("delta"))
                .flatten()
        })
        .and_then(Value::as_str);
    if let Some(piece) = piece {
        out.push_str(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_each_api() {
        let chat = json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:..."}}]}]});
        let v: Value = serde_json::from_str(&input_messages(&chat)).unwrap();
        assert_eq!(v[1]["parts"][0]["content"], "hi");
        assert_eq!(v[1]["parts"][1]["type"], "image_url");
        let anthropic =
            json!({"system": "sys", "messages": [{"role": "user", "content": "hello"}]});
        let v: Value = serde_json::from_str(&input_messages(&anthropic)).unwrap();
        assert_eq!(
            (v[0]["role"].as_str(), v[1]["parts"][0]["content"].as_str()),
            (Some("system"), Some("hello"))
        );
        let responses = json!({"instructions": "x", "input": "question"});
        assert!(input_messages(&responses).contains("question"));
        assert_eq!(
            output_text(&json!({"choices": [{"message": {"content": "a"}}]})),
            "a"
        );
        assert_eq!(
            output_text(&json!({"content": [{"type": "text", "text": "b"}]})),
            "b"
        );
        assert_eq!(
            output_text(&json!({"output": [{"content": [{"type": "output_text", "text": "c"}]}]})),
            "c"
        );
        let mut s = String::new();
        push_stream_text(r#"{"choices":[{"delta":{"content":"He"}}]}"#, &mut s);
        push_stream_text(
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"llo"}}"#,
            &mut s,
        );
        push_stream_text(
            r#"{"type":"response.output_text.delta","delta":"!"}"#,
            &mut s,
        );
        assert_eq!(s, "Hello!");
        assert!(output_messages(&"x".repeat(MAX_CAPTURE * 2), None).ends_with("(truncated)"));
    }
}
