//! The most frequent upstream event, a bare text delta, read into borrowed
//! structs instead of a `serde_json::Value` (a third of the cost of a
//! re-encoded stream). Anything else, or anything unusual about a delta,
//! is left to the full readers, so this only ever takes the easy cases.

use super::{Decoder, Event};
use crate::core::api::Api;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(borrow)]
    choices: Vec<ChatChoice<'a>>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(borrow)]
    delta: ChatDelta<'a>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct MessagesDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    delta: MessagesText<'a>,
}

#[derive(Deserialize)]
struct MessagesText<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

impl Decoder {
    /// True when `data` was a plain text delta of a started stream, read
    /// here (with the same events the full reader would give).
    pub(super) fn text_delta(&self, data: &str, out: &mut Vec<Event>) -> bool {
        if !self.started {
            return false;
        }
        match self.upstream {
            Some(Api::Messages) => match serde_json::from_str::<MessagesDelta>(data) {
                Ok(d) if d.kind == "content_block_delta" && d.delta.kind == "text_delta" => {
                    out.push(Event::TextDelta(d.delta.text.into_owned()));
                    true
                }
                _ => false,
            },
            Some(Api::Responses) => false,
            _ => match serde_json::from_str::<ChatChunk>(data) {
                Ok(ChatChunk {
                    choices,
                    usage: None,
                    error: None,
                }) => match choices.as_slice() {
                    [ChatChoice {
                        delta:
                            ChatDelta {
                                content: Some(text),
                                tool_calls: None,
                            },
                        finish_reason: None,
                    }] => {
                        if !text.is_empty() {
                            out.push(Event::TextDelta(text.to_string()));
                        }
                        true
                    }
                    _ => false,
                },
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full reader gives for `data` in a started stream.
    fn full(upstream: Api, data: &str) -> Vec<Event> {
        let mut d = Decoder::new(upstream);
        d.started = true;
        let v = serde_json::from_str(data).unwrap();
        let mut out = Vec::new();
        match upstream {
            Api::Messages => d.anthropic(&v, &mut out),
            _ => d.chat(&v, &mut out),
        }
        out
    }

    #[test]
    fn takes_only_plain_text_deltas_and_reads_them_as_the_full_reader_does() {
        let cases = [
            (
                Api::ChatCompletions,
                r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a \"q\" \\ \u00e9\n"},"finish_reason":null,"logprobs":null}],"system_fingerprint":"x"}"#,
                true,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[{"delta":{"content":""}}]}"#,
                true,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[{"delta":{"content":"end"},"finish_reason":"stop"}]}"#,
                false,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
                false,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                false,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                false,
            ),
            (
                Api::ChatCompletions,
                r#"{"error":{"message":"boom"}}"#,
                false,
            ),
            (
                Api::ChatCompletions,
                r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
                false,
            ),
            (
                Api::Messages,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi \"there\""}}"#,
                true,
            ),
            (
                Api::Messages,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
                false,
            ),
            (
                Api::Messages,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
                false,
            ),
        ];
        for (upstream, data, fast) in cases {
            let d = Decoder {
                started: true,
                ..Decoder::new(upstream)
            };
            let mut out = Vec::new();
            assert_eq!(d.text_delta(data, &mut out), fast, "{data}");
            if fast {
                assert_eq!(out, full(upstream, data), "{data}");
            } else {
                assert!(out.is_empty());
            }
        }
        // Before the stream has started, the full reader must see the event.
        assert!(!Decoder::new(Api::ChatCompletions).text_delta(cases[0].1, &mut Vec::new()));
    }
}
