//! Reading an OpenAI Responses upstream stream into canonical `Event`s.
//! Only what the Encoder can write again is read: text, function calls,
//! usage and how the response ended. Reasoning, refusals, built-in tool
//! calls and annotations are dropped (see docs/translation.md).

use super::{Decoder, Event};
use crate::core::convert::{str_of, Finish};
use crate::core::usage::Usage;
use serde_json::Value;

impl Decoder {
    pub(super) fn responses(&mut self, v: &Value, out: &mut Vec<Event>) {
        match str_of(v, "type") {
            Some("response.created") => {
                let r = v.get("response").unwrap_or(&Value::Null);
                self.start(str_of(r, "id"), str_of(r, "model"), out);
            }
            Some("response.output_item.added") => self.output_item(v, out),
            Some("response.output_text.delta") => {
                if let Some(text) = str_of(v, "delta").filter(|t| !t.is_empty()) {
                    out.push(Event::TextDelta(text.into()));
                }
            }
            Some("response.function_call_arguments.delta") => {
                let output = output_index(v);
                let tool = self.tool_blocks.iter().find(|(o, _)| *o == output);
                let json = str_of(v, "delta").unwrap_or_default();
                if let (Some(&(_, index)), false) = (tool, json.is_empty()) {
                    out.push(Event::ToolArgs {
                        index,
                        json: json.into(),
                    });
                }
            }
            Some("response.completed" | "response.incomplete") => self.ended(v, out),
            Some("response.failed") => out.push(Event::Error(
                error_message(v.pointer("/response/error")).into(),
            )),
            Some("error") => out.push(Event::Error(
                str_of(v, "message")
                    .unwrap_or_else(|| error_message(v.get("error")))
                    .into(),
            )),
            _ => {} // in_progress, content parts, the .done events, reasoning
        }
    }

    /// A function call item starts a tool call; other items (messages,
    /// reasoning, built-in tools) carry nothing to announce.
    fn output_item(&mut self, v: &Value, out: &mut Vec<Event>) {
        let item = v.get("item").unwrap_or(&Value::Null);
        if str_of(item, "type") != Some("function_call") {
            return;
        }
        let index = self.tools;
        self.tools += 1;
        self.tool_blocks.push((output_index(v), index));
        out.push(Event::ToolStart {
            index,
            id: str_of(item, "call_id").unwrap_or_default().into(),
            name: str_of(item, "name").unwrap_or_default().into(),
        });
    }

    /// `response.completed` / `response.incomplete`: how it ended, and usage.
    fn ended(&mut self, v: &Value, out: &mut Vec<Event>) {
        let r = v.get("response").unwrap_or(&Value::Null);
        let finish = match (str_of(r, "status"), r.pointer("/incomplete_details/reason")) {
            (Some("incomplete"), Some(reason)) if reason == "content_filter" => {
                Finish::ContentFilter
            }
            (Some("incomplete"), _) => Finish::Length,
            _ if self.tools > 0 => Finish::ToolCalls,
            _ => Finish::Stop,
        };
        out.push(Event::Finish(finish));
        if let Some(usage) = r.get("usage").and_then(Usage::from_usage_object) {
            out.push(Event::Usage(usage));
        }
    }
}

fn output_index(v: &Value) -> usize {
    v.get("output_index").and_then(Value::as_u64).unwrap_or(0) as usize
}

fn error_message(error: Option<&Value>) -> &str {
    error
        .and_then(|e| str_of(e, "message"))
        .unwrap_or("provider error")
}
