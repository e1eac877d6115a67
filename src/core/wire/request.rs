//! Requests: the client's body read through its wire into a
//! `Conversation` and written in the upstream's wire, or forwarded with only
//! the model name (and a stream's usage request) changed when both speak
//! the same wire.

use super::{str_of, Conversation, Translation, Wire};
use crate::core::api::Api;
use crate::core::error::GatewayError;
use serde_json::{Map, Value};

pub(super) fn bad(msg: &str) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Translates a client body for the upstream wire; `stream` is the
/// request's stream flag as parsed (`LlmRequest`).
pub fn translate(
    client: Api,
    upstream: Wire,
    body: &Value,
    stream: bool,
    model: &str,
) -> Result<(Value, Translation), GatewayError> {
    let inbound = client.inbound();
    let translation = Translation {
        client,
        upstream,
        stream,
        client_wants_usage: inbound.wants_stream_usage(body),
    };
    let mut out = if client.wire() == upstream {
        let mut out = body.clone();
        if let Some(o) = out.as_object_mut() {
            o.insert("model".into(), Value::String(model.into()));
        }
        out
    } else {
        let mut conversation = inbound.read_request(body)?;
        conversation.stream = stream;
        upstream.upstream().write_request(&conversation, model)?
    };
    if let (true, Some(o)) = (stream, out.as_object_mut()) {
        upstream.upstream().ask_stream_usage(o);
    }
    Ok((out, translation))
}

// ---- reading, shared by the wires ----

pub(super) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub(super) fn common(body: &Value, conv: &mut Conversation) {
    conv.temperature = body.get("temperature").and_then(Value::as_f64);
    conv.top_p = body.get("top_p").and_then(Value::as_f64);
    conv.parallel_tool_calls = body.get("parallel_tool_calls").and_then(Value::as_bool);
    // OpenAI's successor of `user`.
    conv.user = str_of(body, "user")
        .or_else(|| str_of(body, "safety_identifier"))
        .map(String::from);
    conv.stop = match body.get("stop").or_else(|| body.get("stop_sequences")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
}

pub(super) fn insert_opt(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        out.insert(key.into(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::messages::DEFAULT_MAX_TOKENS;
    use serde_json::json;

    /// `translate` with the stream flag as the request stage reads it.
    fn translate(
        client: Api,
        upstream: Api,
        body: &Value,
        model: &str,
    ) -> Result<(Value, Translation), GatewayError> {
        let stream = body.get("stream") == Some(&Value::Bool(true));
        super::translate(client, upstream.wire(), body, stream, model)
    }

    #[test]
    fn chat_to_messages_with_tools_images_and_results() {
        let chat = json!({
            "model": "x", "max_tokens": 50, "temperature": 0.3, "stop": "END", "stream": true,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false
        });
        let (out, t) = translate(Api::ChatCompletions, Api::Messages, &chat, "claude-x").unwrap();
        assert!(t.rewrites());
        assert_eq!(out["system"], "be brief\n\nuse tools");
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(
            out["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(out["messages"][1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(out["messages"][1]["content"][1]["name"], "time");
        // Both tool results in one user turn.
        assert_eq!(out["messages"][2]["role"], "user");
        assert_eq!(
            out["messages"][2]["content"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(out["stream"], true);
    }

    #[test]
    fn messages_to_chat_and_default_max_tokens() {
        let msgs = json!({
            "model": "x", "max_tokens": 10, "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"}
        });
        let (out, _) = translate(Api::Messages, Api::ChatCompletions, &msgs, "gpt-4o").unwrap();
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(
            out["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(
            out["messages"][3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "42"})
        );
        assert_eq!(
            out["messages"][4]["content"][0]["image_url"]["url"],
            "https://x/y.png"
        );
        assert_eq!(out["max_completion_tokens"], 10);
        assert_eq!(out["tool_choice"]["function"]["name"], "f");
        let (out, _) = translate(
            Api::ChatCompletions,
            Api::Messages,
            &json!({"messages": [{"role": "user", "content": "x"}]}),
            "c",
        )
        .unwrap();
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn responses_to_chat_and_messages() {
        let resp = json!({
            "model": "x", "instructions": "sys", "max_output_tokens": 7,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "https://i"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"}
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "high"}
        });
        let (chat, _) = translate(Api::Responses, Api::ChatCompletions, &resp, "m").unwrap();
        assert_eq!(chat["messages"][0]["content"], "sys");
        assert_eq!(chat["reasoning_effort"], "high");
        assert_eq!(chat["messages"][2]["tool_calls"][0]["id"], "c1");
        assert_eq!(chat["messages"][3]["role"], "tool");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "out");
        assert_eq!(chat["tools"][0]["function"]["name"], "f");
        let (msgs, _) = translate(Api::Responses, Api::Messages, &resp, "c").unwrap();
        assert_eq!(msgs["max_tokens"], 7);
        assert_eq!(msgs.get("thinking"), None, "an effort level is no budget");
        assert_eq!(msgs["messages"][2]["content"][0]["type"], "tool_result");
    }

    #[test]
    fn refuses_what_cannot_be_translated() {
        let n2 = json!({"n": 2, "messages": [{"role": "user", "content": "x"}]});
        assert!(translate(Api::ChatCompletions, Api::Messages, &n2, "c").is_err());
        let audio = json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]});
        assert!(translate(Api::ChatCompletions, Api::Messages, &audio, "c").is_err());
        assert!(translate(
            Api::Messages,
            Api::ChatCompletions,
            &json!({"model": "x"}),
            "c"
        )
        .is_err());
    }

    #[test]
    fn refusals_thinking_and_user_ids_in_history() {
        let chat = json!({"temperature": 1.5, "safety_identifier": "u-1", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "refusal": "I can't."},
            {"role": "user", "content": "y"}]});
        let (out, _) = translate(Api::ChatCompletions, Api::Messages, &chat, "c").unwrap();
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [{"type": "text", "text": "I can't."}]})
        );
        assert_eq!(out["temperature"], 1.0, "Anthropic's maximum");
        assert_eq!(out["metadata"]["user_id"], "u-1");
        let resp = json!({"input": [
            {"role": "user", "content": "x"},
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}]});
        let (out, _) = translate(Api::Responses, Api::ChatCompletions, &resp, "m").unwrap();
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": null, "refusal": "No."})
        );
        let msgs = json!({"max_tokens": 9, "metadata": {"user_id": "u-2"}, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "f", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "redacted_thinking", "data": "d"},
                    {"type": "text", "text": "a"}]}]});
        let (out, _) = translate(Api::Messages, Api::ChatCompletions, &msgs, "m").unwrap();
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": "a"})
        );
        assert_eq!(out["user"], "u-2");
        assert_eq!(
            out["tools"].as_array().map(Vec::len),
            Some(1),
            "Anthropic's server tools are not functions"
        );
        assert_eq!(
            (out.get("top_k"), out.get("reasoning_effort")),
            (None, None)
        );
        let by_file = json!({"max_tokens": 9, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]});
        assert!(translate(Api::Messages, Api::ChatCompletions, &by_file, "m").is_err());
    }

    #[test]
    fn same_api_chat_stream_asks_for_usage() {
        let body = json!({"model": "a", "stream": true, "messages": []});
        let (out, t) = translate(Api::ChatCompletions, Api::ChatCompletions, &body, "b").unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["model"], "b");
        assert!(
            t.rewrites(),
            "the usage chunk must be dropped for this client"
        );
        let body = json!({"model": "a", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
        let (_, t) = translate(Api::ChatCompletions, Api::ChatCompletions, &body, "b").unwrap();
        assert!(!t.rewrites());
    }
}
