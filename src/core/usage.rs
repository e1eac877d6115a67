//! Token usage as reported by providers, from JSON bodies and stream
//! events: the counts, the OpenAI / Anthropic usage object reader, the
//! stream event scan and the summary each wire's reader folds into (where
//! each wire keeps them is in its own file, `Upstream::summarize`).

use serde::de::DeserializeSeed;
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

/// What one pass over a stream event found: the characters of generated
/// text (the string values of text-carrying keys, to estimate output tokens
/// when a stream ends without usage) and whether the event can carry usage,
/// a finish reason or the end of a response (then it is worth a full parse).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventScan {
    pub text_chars: usize,
    pub has_meta: bool,
}

/// Scans one stream event's JSON without building it: a real parse (any
/// spacing, escapes, key order), allocation-free for plain keys. Text that
/// is not JSON counts nothing.
pub fn scan_event(data: &str) -> EventScan {
    let mut scan = EventScan::default();
    let mut de = serde_json::Deserializer::from_str(data);
    let seed = ScanSeed {
        scan: &mut scan,
        key: KeyClass::Other,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => scan,
        Err(_) => EventScan::default(),
    }
}

/// Characters of generated text in one stream event.
pub fn text_chars(data: &str) -> usize {
    scan_event(data).text_chars
}

/// What the key a value sits under says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// Generated text (chat `content`, Messages `text` and `partial_json`,
    /// Responses `delta`, tool call `arguments`).
    Text,
    /// Usage, `finish_reason` or `stop_reason`: meta when not null.
    Meta,
    /// An event's `type`: meta when it ends a Responses stream.
    Type,
    Other,
}

impl KeyClass {
    fn of(key: &str) -> KeyClass {
        match key {
            "content" | "text" | "delta" | "arguments" | "partial_json" => KeyClass::Text,
            "usage" | "finish_reason" | "stop_reason" => KeyClass::Meta,
            "type" => KeyClass::Type,
            _ => KeyClass::Other,
        }
    }
}

struct ScanSeed<'a> {
    scan: &'a mut EventScan,
    key: KeyClass,
}

impl<'de> serde::de::DeserializeSeed<'de> for ScanSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ScanSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        match self.key {
            KeyClass::Text => self.scan.text_chars += v.chars().count(),
            KeyClass::Meta => self.scan.has_meta = true,
            KeyClass::Type => {
                self.scan.has_meta |= matches!(v, "response.completed" | "response.incomplete")
            }
            KeyClass::Other => {}
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Items of a text array (`content: [...]`) are read by their own keys.
        while seq
            .next_element_seed(ScanSeed {
                scan: &mut *self.scan,
                key: KeyClass::Other,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.key == KeyClass::Meta {
            self.scan.has_meta = true;
        }
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            map.next_value_seed(ScanSeed {
                scan: &mut *self.scan,
                key: KeyClass::of(&key),
            })?;
        }
        Ok(())
    }
}

/// What the tracer reports about a response besides usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl ResponseMeta {
    /// Notes the answer's id (the first one seen) and model (the latest).
    pub fn seen(&mut self, id: Option<&str>, model: Option<&str>) {
        if self.id.is_none() {
            self.id = id.map(String::from);
        }
        if let Some(model) = model {
            if self.model.as_deref() != Some(model) {
                self.model = Some(model.to_string());
            }
        }
    }

    /// Notes a finish reason, in the provider's own words, once.
    pub fn reason(&mut self, reason: Option<&str>) {
        if let Some(r) = reason {
            if !self.finish_reasons.iter().any(|f| f == r) {
                self.finish_reasons.push(r.to_string());
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
    /// Folds in usage: streams repeat or omit counts (Anthropic's
    /// `message_delta`), so the larger counts win.
    pub fn add_usage(&mut self, found: Usage) {
        self.usage = Some(match self.usage {
            Some(prev) => Usage {
                input_tokens: prev.input_tokens.max(found.input_tokens),
                output_tokens: prev.output_tokens.max(found.output_tokens),
                cached_tokens: prev.cached_tokens.max(found.cached_tokens),
                reasoning_tokens: prev.reasoning_tokens.max(found.reasoning_tokens),
            },
            None => found,
        });
    }

    /// Folds in one stream event's data with the wire's reader `read`.
    /// Events that can carry nothing new are only scanned, not built: most
    /// are text deltas. Answers the event's characters of generated text.
    pub fn observe_event(&mut self, data: &str, read: fn(&mut ResponseSummary, &Value)) -> usize {
        let scan = scan_event(data);
        if self.meta.id.is_some() && !scan.has_meta {
            return scan.text_chars;
        }
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            read(self, &v);
        }
        scan.text_chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::Wire;

    fn summary_of(wire: Wire, body: &[u8]) -> ResponseSummary {
        wire.upstream()
            .summarize(&serde_json::from_slice(body).unwrap_or_default())
    }

    fn observe(wire: Wire, s: &mut ResponseSummary, data: &str) -> usize {
        wire.upstream().observe_event(s, data)
    }

    #[test]
    fn reads_each_format() {
        let chat = br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            summary_of(Wire::ChatCompletions, chat).usage,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_tokens: 2,
                reasoning_tokens: 1
            })
        );
        let anthropic = br#"{"id":"msg_1","model":"claude-x","stop_reason":"end_turn","usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":4}}"#;
        let summary = summary_of(Wire::Messages, anthropic);
        assert_eq!(
            summary.usage.map(|u| (u.input_tokens, u.cached_tokens)),
            Some((11, 4))
        );
        assert_eq!(summary.meta.finish_reasons, vec!["end_turn".to_string()]);
        assert_eq!(summary_of(Wire::ChatCompletions, b"{}").usage, None);
        assert_eq!(summary_of(Wire::Messages, b"not json").usage, None);
    }

    #[test]
    fn accumulates_anthropic_and_responses_streams() {
        let mut s = ResponseSummary::default();
        observe(
            Wire::Messages,
            &mut s,
            r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":12,"output_tokens":1}}}"#,
        );
        observe(
            Wire::Messages,
            &mut s,
            r#"{"type":"content_block_delta","delta":{"text":"hi"}}"#,
        );
        observe(
            Wire::Messages,
            &mut s,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
        );
        assert_eq!(
            s.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((12, 9))
        );
        assert_eq!(s.meta.id.as_deref(), Some("msg_1"));
        assert_eq!(s.meta.model.as_deref(), Some("claude-x"));
        assert_eq!(s.meta.finish_reasons, vec!["end_turn".to_string()]);
        let mut r = ResponseSummary::default();
        observe(
            Wire::Responses,
            &mut r,
            r#"{"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4o"}}"#,
        );
        observe(
            Wire::Responses,
            &mut r,
            r#"{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":3,"output_tokens":4}}}"#,
        );
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
        // An event cut short is not JSON: nothing is counted.
        assert_eq!(text_chars(r#"{"delta":"unterminated"#), 0);
        assert_eq!(text_chars("no text"), 0);
        // Keys are keys and values are values, whatever the spacing.
        assert_eq!(
            text_chars("{ \"choices\" : [ { \"delta\" : { \"content\" : \"Hello\" } } ] }"),
            5
        );
        assert_eq!(text_chars(r#"{"role":"content","x":"text"}"#), 0);
        assert_eq!(text_chars(r#"{"delta":{"partial_json":"{\"a\": 1}"}}"#), 8);
    }

    #[test]
    fn chat_stream_meta() {
        let mut s = ResponseSummary::default();
        observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{"role":"assistant"},"finish_reason":null}]}"#,
        );
        observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{"content":"x"},"finish_reason":null}]}"#,
        );
        observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        );
        assert_eq!(s.meta.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(s.meta.finish_reasons, vec!["tool_calls".to_string()]);
    }

    #[test]
    fn stream_meta_whatever_the_spacing() {
        let mut s = ResponseSummary::default();
        observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{ "id": "c1", "choices": [ { "delta": { "content": "x" }, "finish_reason": null } ] }"#,
        );
        let chars = observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{ "id": "c1", "choices": [ { "delta": { "content": "yz" }, "finish_reason": "length" } ] }"#,
        );
        observe(
            Wire::ChatCompletions,
            &mut s,
            r#"{ "id": "c1", "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 2 } }"#,
        );
        assert_eq!(chars, 2);
        assert_eq!(s.meta.finish_reasons, vec!["length".to_string()]);
        assert_eq!(s.usage.map(|u| u.output_tokens), Some(2));
        let mut r = ResponseSummary::default();
        observe(
            Wire::Responses,
            &mut r,
            r#"{"type":"response.created","response":{"id":"r1"}}"#,
        );
        observe(
            Wire::Responses,
            &mut r,
            r#"{ "type" : "response.completed", "response": {"id":"r1","object":"response","status":"completed"} }"#,
        );
        assert_eq!(r.meta.finish_reasons, vec!["stop".to_string()]);
    }
}
