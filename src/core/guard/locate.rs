//! Where the text lives in each API's bodies: message content and text
//! blocks, system prompts, Responses input items, tool call arguments and
//! tool results. JSON keys, ids, model names and image data are not visited.

use crate::core::api::Api;
use serde_json::Value;

fn text_field(v: &mut Value, key: &str, f: &mut dyn FnMut(&mut String)) {
    if let Some(Value::String(s)) = v.get_mut(key) {
        f(s);
    }
}

/// A string, or an array of parts/blocks whose `text` (or `content`) is visited.
fn content(v: Option<&mut Value>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                let kind = p
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("text")
                    .to_string();
                match kind.as_str() {
                    "text" | "input_text" | "output_text" => text_field(p, "text", f),
                    "tool_use" => strings(p.get_mut("input"), f),
                    "tool_result" => content(p.get_mut("content"), f),
                    _ => {} // images, files, audio
                }
            }
        }
        _ => {}
    }
}

/// Every string value inside (tool inputs are JSON objects).
fn strings(v: Option<&mut Value>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => items.iter_mut().for_each(|i| strings(Some(i), f)),
        Some(Value::Object(map)) => map.values_mut().for_each(|i| strings(Some(i), f)),
        _ => {}
    }
}

fn tool_calls(message: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
        for call in calls {
            if let Some(function) = call.get_mut("function") {
                text_field(function, "arguments", f);
            }
        }
    }
}

/// Visits the text of a request body.
pub fn request_texts(api: Api, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match api {
        Api::ChatCompletions => {
            for m in body
                .get_mut("messages")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                content(m.get_mut("content"), f);
                tool_calls(m, f);
            }
        }
        Api::Messages => {
            content(body.get_mut("system"), f);
            for m in body
                .get_mut("messages")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                content(m.get_mut("content"), f);
            }
        }
        Api::Responses => {
            text_field(body, "instructions", f);
            match body.get_mut("input") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => {
                    for item in items {
                        content(item.get_mut("content"), f);
                        text_field(item, "arguments", f);
                        text_field(item, "output", f);
                    }
                }
                _ => {}
            }
        }
        Api::Models => {}
    }
}

/// Visits the generated text of a complete response body.
pub fn response_texts(api: Api, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match api {
        Api::ChatCompletions => {
            for c in body
                .get_mut("choices")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(m) = c.get_mut("message") {
                    text_field(m, "content", f);
                    tool_calls(m, f);
                }
            }
        }
        Api::Messages => content(body.get_mut("content"), f),
        Api::Responses => {
            for item in body
                .get_mut("output")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                content(item.get_mut("content"), f);
                text_field(item, "arguments", f);
            }
        }
        Api::Models => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(api: Api, mut body: Value, request: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut f = |s: &mut String| out.push(s.clone());
        if request {
            request_texts(api, &mut body, &mut f);
        } else {
            response_texts(api, &mut body, &mut f);
        }
        out
    }

    #[test]
    fn visits_text_not_keys_or_images() {
        let chat = json!({"model": "secret-model", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"q\":\"b\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "c"}]});
        assert_eq!(
            collect(Api::ChatCompletions, chat, true),
            ["a", "{\"q\":\"b\"}", "c"]
        );
        let msgs = json!({"system": [{"type": "text", "text": "s"}], "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]},
            {"type": "image", "source": {"data": "AAAA"}}]}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": "i"}}]}]});
        assert_eq!(collect(Api::Messages, msgs, true), ["s", "r", "i"]);
        let resp = json!({"instructions": "s", "input": [{"role": "user", "content": [{"type": "input_text", "text": "u"}]},
            {"type": "function_call_output", "call_id": "c", "output": "o"}]});
        assert_eq!(collect(Api::Responses, resp, true), ["s", "u", "o"]);
        let out = json!({"choices": [{"message": {"content": "x"}}]});
        assert_eq!(collect(Api::ChatCompletions, out, false), ["x"]);
    }
}
