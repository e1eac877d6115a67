//! Complete (non-streamed) answers: the upstream's JSON read through its
//! wire into a `Reply` and written in the client's. Ids and the model name
//! are the upstream's own.

use super::Translation;
use crate::core::error::GatewayError;
use serde_json::Value;

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
    let reply = t.upstream.upstream().read_reply(v, now_s)?;
    Ok(t.client.inbound().write_reply(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::api::Api;
    use serde_json::json;

    fn t(client: Api, upstream: Api) -> Translation {
        Translation {
            client,
            upstream: upstream.wire(),
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

    const CHAT_REFUSAL: &str = r#"{"id":"chatcmpl-2","object":"chat.completion","created":5,"model":"gpt-4o",
        "choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":3,"completion_tokens":6}}"#;

    #[test]
    fn chat_refusal_to_responses_and_messages() {
        let r = out(&t(Api::Responses, Api::ChatCompletions), CHAT_REFUSAL);
        assert_eq!(r["status"], "completed");
        assert_eq!(
            r["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I can't help with that."}])
        );
        let m = out(&t(Api::Messages, Api::ChatCompletions), CHAT_REFUSAL);
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "I can't help with that."}])
        );
        assert_eq!(m["stop_reason"], "refusal");
        // A content filter is a refusal for Anthropic clients, an
        // incomplete response for Responses clients.
        let filtered = CHAT_REFUSAL.replace("\"stop\"", "\"content_filter\"");
        let m = out(&t(Api::Messages, Api::ChatCompletions), &filtered);
        assert_eq!(m["stop_reason"], "refusal");
        let r = out(&t(Api::Responses, Api::ChatCompletions), &filtered);
        assert_eq!(
            (&r["status"], &r["incomplete_details"]["reason"]),
            (&json!("incomplete"), &json!("content_filter"))
        );
    }

    const THINKING: &str = r#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-x",
        "content":[{"type":"thinking","thinking":"Count the letters.","signature":"sig"},
            {"type":"redacted_thinking","data":"opaque"},{"type":"text","text":"Three"}],
        "stop_reason":"stop_sequence","stop_sequence":"END","usage":{"input_tokens":4,"output_tokens":9}}"#;

    #[test]
    fn messages_thinking_and_stop_sequence_to_chat_and_responses() {
        let c = out(&t(Api::ChatCompletions, Api::Messages), THINKING);
        assert_eq!(
            c["choices"][0]["message"],
            json!({"role": "assistant", "content": "Three", "refusal": null})
        );
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        let r = out(&t(Api::Responses, Api::Messages), THINKING);
        assert_eq!(r["status"], "completed");
        assert_eq!(
            r["output"][0],
            json!({"type": "reasoning", "id": "rs_0_msg_2",
                "summary": [{"type": "summary_text", "text": "Count the letters."}]})
        );
        assert_eq!(r["output"][1]["id"], "msg_1_msg_2");
        assert_eq!(r["output"][1]["content"][0]["text"], "Three");
        assert_eq!(r["output"].as_array().map(Vec::len), Some(2));
        let refused = THINKING.replace("\"stop_sequence\",", "\"refusal\",");
        let c = out(&t(Api::ChatCompletions, Api::Messages), &refused);
        assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
        let r = out(&t(Api::Responses, Api::Messages), &refused);
        assert_eq!(r["incomplete_details"]["reason"], "content_filter");
    }

    /// The texts output guardrails see in a client's answer.
    fn guarded_texts(client: Api, mut body: Value) -> Vec<String> {
        let mut seen = Vec::new();
        client
            .inbound()
            .reply_texts(&mut body, &mut |t: &mut String| seen.push(t.clone()));
        seen
    }

    #[test]
    fn carried_refusals_and_reasoning_are_guarded() {
        let refusal = "I can't help with that.".to_string();
        let chat: Value = serde_json::from_str(CHAT_REFUSAL).unwrap();
        assert!(guarded_texts(Api::ChatCompletions, chat).contains(&refusal));
        for client in [Api::Responses, Api::Messages] {
            let body = out(&t(client, Api::ChatCompletions), CHAT_REFUSAL);
            assert!(guarded_texts(client, body).contains(&refusal), "{client:?}");
        }
        let thought = "Count the letters.".to_string();
        let summary = out(&t(Api::Responses, Api::Messages), THINKING);
        assert!(guarded_texts(Api::Responses, summary).contains(&thought));
        // Claude's own thinking is signed: left as it came. The thinking the
        // gateway wrote for another provider's reasoning has no signature.
        let mut claude: Value = serde_json::from_str(THINKING).unwrap();
        assert!(!guarded_texts(Api::Messages, claude.clone()).contains(&thought));
        claude["content"][0]["signature"] = json!("");
        assert!(guarded_texts(Api::Messages, claude).contains(&thought));
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
