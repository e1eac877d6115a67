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
        Some(Usage {
            input_tokens: input.unwrap_or(0),
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

    /// Usage of a complete (non-streamed) response body.
    pub fn from_response_body(body: &[u8]) -> Option<Usage> {
        let v: Value = serde_json::from_slice(body).ok()?;
        Usage::from_usage_object(v.get("usage")?)
    }
}

/// Accumulates usage over a stream's events. Anthropic splits it: input in
/// `message_start`, output in `message_delta`; OpenAI sends one final chunk;
/// Responses puts it in `response.completed`.
#[derive(Debug, Default)]
pub struct StreamUsage {
    usage: Option<Usage>,
}

impl StreamUsage {
    pub fn observe(&mut self, data: &str) {
        // Cheap pre-check: most chunks are text deltas without usage.
        if !data.contains("\"usage\"") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let found = v
            .get("usage")
            .or_else(|| v.pointer("/message/usage"))
            .or_else(|| v.pointer("/response/usage"))
            .and_then(Usage::from_usage_object);
        let Some(found) = found else {
            return;
        };
        let merged = match self.usage {
            // message_delta repeats or omits input; keep the larger counts.
            Some(prev) => Usage {
                input_tokens: prev.input_tokens.max(found.input_tokens),
                output_tokens: prev.output_tokens.max(found.output_tokens),
                cached_tokens: prev.cached_tokens.max(found.cached_tokens),
                reasoning_tokens: prev.reasoning_tokens.max(found.reasoning_tokens),
            },
            None => found,
        };
        self.usage = Some(merged);
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_format() {
        let chat = br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            Usage::from_response_body(chat),
            Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_tokens: 2,
                reasoning_tokens: 1
            })
        );
        let anthropic =
            br#"{"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":4}}"#;
        assert_eq!(
            Usage::from_response_body(anthropic).map(|u| (u.input_tokens, u.cached_tokens)),
            Some((7, 4))
        );
        assert_eq!(Usage::from_response_body(b"{}"), None);
        assert_eq!(Usage::from_response_body(b"not json"), None);
    }

    #[test]
    fn accumulates_anthropic_stream() {
        let mut s = StreamUsage::default();
        s.observe(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        );
        s.observe(r#"{"type":"content_block_delta","delta":{"text":"hi"}}"#);
        s.observe(r#"{"type":"message_delta","usage":{"output_tokens":9}}"#);
        assert_eq!(
            s.usage().map(|u| (u.input_tokens, u.output_tokens)),
            Some((12, 9))
        );
        let mut r = StreamUsage::default();
        r.observe(r#"{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":4}}}"#);
        assert_eq!(r.usage().map(|u| u.output_tokens), Some(4));
    }
}
