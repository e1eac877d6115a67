//! Token usage as reported by providers, from JSON bodies and stream events.

use serde_json::Value;

/// Token counts of one request; fields absent from the provider stay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
}

fn num(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
}

impl Usage {
    /// Reads a `usage` object in any of the three formats (chat, Responses,
    /// Anthropic); `None` if it holds no token counts.
    pub fn from_usage_object(u: &Value) -> Option<Usage> {
        let input = num(u, &["prompt_tokens"]).or_else(|| num(u, &["input_tokens"]));
        let output = num(u, &["completion_tokens"]).or_else(|| num(u, &["output_tokens"]));
        if input.is_none() && output.is_none() {
            return None;
        }
        // Anthropic counts cache reads and writes apart from input_tokens;
        // the gateway reports input in OpenAI terms (cached included).
        let anthropic_cache = num(u, &["cache_read_input_tokens"]).unwrap_or(0)
            + num(u, &["cache_creation_input_tokens"]).unwrap_or(0);
        Some(Usage {
            input_tokens: input.unwrap_or(0) + anthropic_cache,
            output_tokens: output.unwrap_or(0),
            cached_tokens: num(u, &["prompt_tokens_details", "cached_tokens"])
                .or_else(|| num(u, &["input_tokens_details", "cached_tokens"]))
                .or_else(|| num(u, &["cache_read_input_tokens"]))
                .unwrap_or(0),
            reasoning_tokens: num(u, &["completion_tokens_details", "reasoning_tokens"])
                .or_else(|| num(u, &["output_tokens_details", "reasoning_tokens"]))
                .unwrap_or(0),
        })
    }
}

/// Characters of generated text in one stream event, found without parsing
/// it: the string values of the keys that carry text deltas. Used only to
/// estimate output tokens when a stream ends without usage.
pub fn text_chars(data: &str) -> usize {
    const KEYS: [&str; 5] = [
        "\"content",
        "\"text",
        "\"delta",
        "\"arguments",
        "\"partial_json",
    ];
    // One pass over the `":"` separators, checking the key before each.
    let mut total = 0;
    for (at, sep) in data.match_indices("\":\"") {
        let key = data.get(..at).unwrap_or("");
        if !KEYS.iter().any(|k| key.ends_with(k)) {
            continue;
        }
        let value = data.get(at + sep.len()..).unwrap_or("");
        let mut escaped = false;
        for c in value.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => {}
            }
            if !escaped {
                total += 1;
            }
        }
    }
    total
}

/// What the tracer reports about a response besides usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl ResponseMeta {
    /// Reads id, model and finish reasons from a response body or one stream
    /// event of any of the three APIs.
    pub fn observe(&mut self, v: &Value) {
        // Anthropic message_start and Responses events wrap the object.
        let object = v.get("message").or_else(|| v.get("response")).unwrap_or(v);
        if self.id.is_none() {
            self.id = object.get("id").and_then(Value::as_str).map(String::from);
        }
        if let Some(model) = object.get("model").and_then(Value::as_str) {
            if self.model.as_deref() != Some(model) {
                self.model = Some(model.to_string());
            }
        }
        let mut reason = |r: Option<&str>| {
            if let Some(r) = r {
                if !self.finish_reasons.iter().any(|f| f == r) {
                    self.finish_reasons.push(r.to_string());
                }
            }
        };
        if let Some(choices) = object.get("choices").and_then(Value::as_array) {
            for choice in choices {
                reason(choice.get("finish_reason").and_then(Value::as_str));
            }
        }
        reason(object.get("stop_reason").and_then(Value::as_str));
        reason(v.pointer("/delta/stop_reason").and_then(Value::as_str));
        if object.get("object").and_then(Value::as_str) == Some("response") {
            match object.get("status").and_then(Value::as_str) {
                Some("completed") => reason(Some("stop")),
                Some("incomplete") => reason(Some("length")),
                _ => {}
            }
        }
    }
}

/// Usage and metadata of a whole response.
#[derive(Debug, Clone, Default)]
pub struct ResponseSummary {
    pub usage: Option<Usage>,
    pub meta: ResponseMeta,
}

impl ResponseSummary {
    /// Summary of a complete (non-streamed) JSON body.
    pub fn from_body(body: &[u8]) -> ResponseSummary {
        serde_json::from_slice::<Value>(body)
            .map(|v| ResponseSummary::from_value(&v))
            .unwrap_or_default()
    }

    /// Summary of a complete body already parsed.
    pub fn from_value(v: &Value) -> ResponseSummary {
        let mut summary = ResponseSummary {
            usage: v.get("usage").and_then(Usage::from_usage_object),
            ..ResponseSummary::default()
        };
        summary.meta.observe(v);
        summary
    }

    /// Folds in one stream event's data. Anthropic splits usage (input in
    /// `message_start`, output in `message_delta`), OpenAI sends one final
    /// chunk, Responses puts it in `response.completed`. Events that can
    /// carry nothing new are not parsed: most are text deltas.
    pub fn observe_event(&mut self, data: &str) {
        let worth_parsing = self.meta.id.is_none()
            || data.contains("\"usage\"")
            || data.contains("_reason\":\"")
            || data.contains("\"response.completed\"")
            || data.contains("\"response.incomplete\"");
        if !worth_parsing {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        self.meta.observe(&v);
        let found = v
            .get("usage")
            .or_else(|| v.pointer("/message/usage"))
            .or_else(|| v.pointer("/response/usage"))
            .and_then(Usage::from_usage_object);
        if let Some(found) = found {
            self.usage = Some(match self.usage {
                // message_delta repeats or omits input; keep the larger counts.
                Some(prev) => Usage {
                    input_tokens: prev.input_tokens.max(found.input_tokens),
                    output_tokens: prev.output_tokens.max(found.output_tokens),
                    cached_tokens: prev.cached_tokens.max(found.cached_tokens),
                    reasoning_tokens: prev.reasoning_tokens.max(found.reasoning_tokens),
                },
                None => found,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_format() {
        let chat = br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            ResponseSummary::from_body(chat).usage,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_tokens: 2,
                reasoning_tokens: 1
            })
        );
        let anthropic = br#"{"id":"msg_1","model":"claude-x","stop_reason":"end_turn","usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":4}}"#;
        let summary = ResponseSummary::from_body(anthropic);
        assert_eq!(
            summary.usage.map(|u| (u.input_tokens, u.cached_tokens)),
            Some((11, 4))
        );
        assert_eq!(summary.meta.finish_reasons, vec!["end_turn".to_string()]);
        assert_eq!(ResponseSummary::from_body(b"{}").usage, None);
        assert_eq!(ResponseSummary::from_body(b"not json").usage, None);
    }

    #[test]
    fn accumulates_anthropic_and_responses_streams() {
        let mut s = ResponseSummary::default();
        s.observe_event(r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":12,"output_tokens":1}}}"#);
        s.observe_event(r#"{"type":"content_block_delta","delta":{"text":"hi"}}"#);
        s.observe_event(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#);
        assert_eq!(
            s.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((12, 9))
        );
        assert_eq!(s.meta.id.as_deref(), Some("msg_1"));
        assert_eq!(s.meta.model.as_deref(), Some("claude-x"));
        assert_eq!(s.meta.finish_reasons, vec!["end_turn".to_string()]);
        let mut r = ResponseSummary::default();
        r.observe_event(r#"{"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4o"}}"#);
        r.observe_event(r#"{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":3,"output_tokens":4}}}"#);
        assert_eq!(r.usage.map(|u| u.output_tokens), Some(4));
        assert_eq!(r.meta.finish_reasons, vec!["stop".to_string()]);
    }

    #[test]
    fn counts_delta_text() {
        assert_eq!(
            text_chars(r#"{"choices":[{"delta":{"content":"Hello \"x\""}}]}"#),
            9
        );
        assert_eq!(
            text_chars(
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"héllo"}}"#
            ),
            5
        );
        assert_eq!(
            text_chars(r#"{"type":"response.output_text.delta","delta":"abc"}"#),
            3
        );
        assert_eq!(text_chars(r#"{"delta":"unterminated"#), 12);
        assert_eq!(text_chars("no text"), 0);
    }

    #[test]
    fn chat_stream_meta() {
        let mut s = ResponseSummary::default();
        s.observe_event(r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{"role":"assistant"},"finish_reason":null}]}"#);
        s.observe_event(r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{"content":"x"},"finish_reason":null}]}"#);
        s.observe_event(r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#);
        assert_eq!(s.meta.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(s.meta.finish_reasons, vec!["tool_calls".to_string()]);
    }
}
