//! Non-streamed responses: the upstream's JSON read into a `Reply` and
//! written in the client's API shape. Ids and the model name are the
//! upstream's own.

use super::{chat_tool_calls, joined_text, set, str_of, u64_of, Finish, Part, Reply, Translation};
use crate::core::api::Api;
use crate::core::error::GatewayError;
use crate::core::usage::Usage;
use serde_json::{json, Value};

pub fn translate(
    t: &Translation,
    upstream_body: &[u8],
    now_s: u64,
) -> Result<Vec<u8>, GatewayError> {
    let v: Value = serde_json::from_slice(upstream_body).map_err(|_| NOT_JSON)?;
    serde_json::to_vec(&translate_value(t, &v, now_s)?)
        .map_err(|_| GatewayError::Internal("could not encode the translated answer"))
}

/// What a translated client gets when the provider's answer is not JSON.
pub const NOT_JSON: GatewayError =
    GatewayError::UpstreamInvalid("the provider's answer is not valid JSON");

/// Translates an answer already parsed into the client's API.
pub fn translate_value(t: &Translation, v: &Value, now_s: u64) -> Result<Value, GatewayError> {
    let reply = match t.upstream {
        Api::ChatCompletions => from_chat(v, now_s)?,
        Api::Messages => from_messages(v, now_s)?,
        _ => {
            return Err(GatewayError::Internal(
                "no translation from this upstream API",
            ))
        }
    };
    match t.client {
        Api::ChatCompletions => Ok(to_chat(&reply)),
        Api::Messages => Ok(to_messages(&reply)),
        Api::Responses => Ok(to_responses(&reply)),
        Api::Models => Err(GatewayError::Internal("model listing is not translated")),
    }
}

pub fn from_chat(v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
    let choice = v
        .pointer("/choices/0")
        .ok_or(GatewayError::UpstreamInvalid(
            "the provider's answer has no choices",
        ))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    if let Some(text) = str_of(message, "content").filter(|t| !t.is_empty()) {
        parts.push(Part::Text(text.into()));
    }
    parts.extend(chat_tool_calls(message));
    let u = v.get("usage").unwrap_or(&Value::Null);
    Ok(Reply {
        id: str_of(v, "id").unwrap_or("chatcmpl-tollgate").into(),
        model: str_of(v, "model").unwrap_or_default().into(),
        created: v.get("created").and_then(Value::as_u64).unwrap_or(now_s),
        parts,
        finish: Finish::from_openai(str_of(choice, "finish_reason").unwrap_or("stop")),
        usage: Usage::from_usage_object(u).unwrap_or_default(),
    })
}

pub fn from_messages(v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
    let blocks =
        v.get("content")
            .and_then(Value::as_array)
            .ok_or(GatewayError::UpstreamInvalid(
                "the provider's answer has no content",
            ))?;
    let mut parts = Vec::new();
    for b in blocks {
        match str_of(b, "type") {
            Some("text") => parts.push(Part::Text(str_of(b, "text").unwrap_or_default().into())),
            Some("tool_use") => parts.push(Part::ToolCall {
                id: str_of(b, "id").unwrap_or_default().into(),
                name: str_of(b, "name").unwrap_or_default().into(),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            _ => {} // thinking blocks stay with the provider
        }
    }
    let u = v.get("usage").unwrap_or(&Value::Null);
    let cached = u64_of(u, "cache_read_input_tokens");
    // Anthropic counts cached and cache-writing tokens apart from input_tokens;
    // OpenAI-style usage includes them in the prompt.
    let input = u64_of(u, "input_tokens") + cached + u64_of(u, "cache_creation_input_tokens");
    Ok(Reply {
        id: str_of(v, "id").unwrap_or("msg_tollgate").into(),
        model: str_of(v, "model").unwrap_or_default().into(),
        created: now_s,
        parts,
        finish: Finish::from_anthropic(str_of(v, "stop_reason").unwrap_or("end_turn")),
        usage: Usage {
            input_tokens: input,
            output_tokens: u64_of(u, "output_tokens"),
            cached_tokens: cached,
            reasoning_tokens: 0,
        },
    })
}

pub fn chat_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

pub fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cached_tokens),
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    })
}

pub fn responses_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

pub fn to_chat(r: &Reply) -> Value {
    let text = joined_text(&r.parts);
    let calls: Vec<Value> = r
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, arguments } => {
                Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
            }
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }, "refusal": null});
    if !calls.is_empty() {
        set(&mut message, "tool_calls", Value::Array(calls));
    }
    json!({
        "id": r.id, "object": "chat.completion", "created": r.created, "model": r.model,
        "choices": [{"index": 0, "message": message, "finish_reason": r.finish.openai(), "logprobs": null}],
        "usage": chat_usage(&r.usage),
    })
}

pub fn to_messages(r: &Reply) -> Value {
    let content: Vec<Value> = r
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::ToolCall { id, name, arguments } => Some(json!({
                "type": "tool_use", "id": id, "name": name,
                "input": serde_json::from_str::<Value>(arguments).ok().filter(Value::is_object).unwrap_or_else(|| json!({})),
            })),
            _ => None,
        })
        .collect();
    json!({
        "id": r.id, "type": "message", "role": "assistant", "model": r.model, "content": content,
        "stop_reason": r.finish.anthropic(), "stop_sequence": null, "usage": anthropic_usage(&r.usage),
    })
}

/// Output items of a Responses answer (shared with the stream encoder).
pub fn responses_output(r: &Reply) -> Vec<Value> {
    let mut out = Vec::new();
    let text = joined_text(&r.parts);
    if !text.is_empty() {
        out.push(json!({
            "type": "message", "id": format!("msg_{}", r.id), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    for (i, p) in r.parts.iter().enumerate() {
        if let Part::ToolCall {
            id,
            name,
            arguments,
        } = p
        {
            out.push(json!({
                "type": "function_call", "id": format!("fc_{i}_{}", r.id), "call_id": id, "name": name,
                "arguments": arguments, "status": "completed",
            }));
        }
    }
    out
}

pub fn to_responses(r: &Reply) -> Value {
    let incomplete = r.finish == Finish::Length;
    json!({
        "id": format!("resp_{}", r.id), "object": "response", "created_at": r.created, "model": r.model,
        "status": if incomplete { "incomplete" } else { "completed" },
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "output": responses_output(r), "usage": responses_usage(&r.usage),
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(client: Api, upstream: Api) -> Translation {
        Translation {
            client,
            upstream,
            stream: false,
            client_wants_usage: false,
        }
    }

    const CHAT_TOOLS: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"gpt-4o",
        "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"c1","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}},
            {"id":"c2","type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":10,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":3}}}"#;

    const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
        "content":[{"type":"text","text":"Hello"},{"type":"tool_use","id":"t1","name":"f","input":{"q":"z"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":7,"output_tokens":2,"cache_read_input_tokens":5}}"#;

    fn out(t: &Translation, body: &str) -> Value {
        serde_json::from_slice(&translate(t, body.as_bytes(), 9).unwrap()).unwrap()
    }

    #[test]
    fn chat_to_messages_and_responses() {
        let m = out(&t(Api::Messages, Api::ChatCompletions), CHAT_TOOLS);
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0]["input"]["x"], 1);
        assert_eq!(m["content"][1]["name"], "b");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0})
        );
        let r = out(&t(Api::Responses, Api::ChatCompletions), CHAT_TOOLS);
        assert_eq!(r["output"][0]["type"], "function_call");
        assert_eq!(r["output"][1]["call_id"], "c2");
        assert_eq!(r["usage"]["input_tokens"], 10);
    }

    #[test]
    fn messages_to_chat_and_responses() {
        let c = out(&t(Api::ChatCompletions, Api::Messages), MESSAGE);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":\"z\"}"
        );
        assert_eq!(
            c["usage"]["prompt_tokens"], 12,
            "cached tokens count as prompt tokens for OpenAI clients"
        );
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        let r = out(&t(Api::Responses, Api::Messages), MESSAGE);
        assert_eq!(r["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(r["status"], "completed");
    }

    #[test]
    fn bad_upstream_bodies_are_errors() {
        for body in ["not json", "{}", r#"{"choices":[]}"#] {
            assert!(
                translate(&t(Api::Messages, Api::ChatCompletions), body.as_bytes(), 0).is_err()
            );
        }
        assert!(translate(&t(Api::ChatCompletions, Api::Messages), b"{}", 0).is_err());
    }
}
