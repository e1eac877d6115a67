//! OpenAI Responses, `POST /v1/responses`: requests, answers, streams
//! (typed `response.*` events, usage in `response.completed`) and where
//! their text is. Only Responses clients are sent to a Responses upstream
//! (an OpenAI or Azure provider), so requests, answers and streams pass it
//! unchanged (streams edited in place under output guardrails, `edit`);
//! its stream decoder serves the codec tests.

use super::chat;
use super::edit::{Block, EditState, Ends, PlainText, Slot, StreamEdit};
use super::request::{bad, common, text_of};
use super::stream::{write_sse, Decoder, Encoder, Open};
use super::{
    set, str_of, u64_of, Conversation, Event, Finish, Inbound, Message, Part, Reasoning, Reply,
    Role, TextVisitor, Upstream,
};
use crate::core::api::ClientFormat;
use crate::core::content;
use crate::core::error::GatewayError;
use crate::core::guard::locate;
use crate::core::usage::{ResponseSummary, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The Responses wire.
#[derive(Debug)]
pub struct Responses;

impl Upstream for Responses {
    fn name(&self) -> &'static str {
        "responses"
    }

    fn write_request(&self, _: &Conversation, _: &str) -> Result<Value, GatewayError> {
        Err(GatewayError::Internal(
            "no translation to this upstream API",
        ))
    }

    fn stream_usage_on_request(&self) -> bool {
        false
    }

    fn ask_stream_usage(&self, _: &mut Map<String, Value>) {}

    fn is_usage_event(&self, _: &str) -> bool {
        false
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn read_reply(&self, _: &Value, _: u64) -> Result<Reply, GatewayError> {
        Err(GatewayError::Internal(
            "no translation from this upstream API",
        ))
    }

    fn decode(&self, d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
        decode(d, v, out);
    }

    fn text_delta(&self, _: &str, _: &mut Vec<Event>) -> bool {
        false
    }

    fn summarize(&self, v: &Value) -> ResponseSummary {
        let mut s = ResponseSummary::default();
        observe(&mut s, v);
        s
    }

    /// Usage comes in `response.completed`.
    fn observe_event(&self, s: &mut ResponseSummary, data: &str) -> usize {
        s.observe_event(data, observe)
    }

    fn reply_text(&self, v: &Value) -> String {
        v.get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|item| {
                item.get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect()
    }

    fn push_stream_text(&self, data: &str, out: &mut String) {
        if !data.contains("delta") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if str_of(&v, "type") == Some("response.output_text.delta") {
            if let Some(piece) = str_of(&v, "delta") {
                out.push_str(piece);
            }
        }
    }
}

impl Inbound for Responses {
    fn path(&self) -> &'static str {
        "/v1/responses"
    }

    fn format(&self) -> ClientFormat {
        ClientFormat::OpenAi
    }

    fn read_request(&self, body: &Value) -> Result<Conversation, GatewayError> {
        read_request(body)
    }

    fn conversation_fields(&self) -> &'static [&'static str] {
        &["instructions", "input"]
    }

    fn wants_stream_usage(&self, _: &Value) -> bool {
        false
    }

    fn max_output_tokens(&self, body: &Value) -> Option<u64> {
        body.get("max_output_tokens").and_then(Value::as_u64)
    }

    fn input_messages(&self, body: &Value) -> Vec<Value> {
        content::with_system(body.get("instructions"), body.get("input"))
    }

    fn write_reply(&self, r: &Reply) -> Value {
        write_reply(r)
    }

    fn mark_filtered(&self, body: &mut Value) {
        let (status, details) = ending(Finish::ContentFilter);
        set(body, "status", json!(status));
        set(body, "incomplete_details", details);
    }

    fn reply_texts(&self, body: &mut Value, f: &mut TextVisitor) {
        for item in body
            .get_mut("output")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            locate::content(item.get_mut("content"), f);
            locate::text_field(item, "arguments", f);
            // Refusal parts and reasoning summaries, which `locate` skips.
            for (list, key) in [("content", "refusal"), ("summary", "text")] {
                for part in item
                    .get_mut(list)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    locate::text_field(part, key, f);
                }
            }
        }
    }

    fn stream_start(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        let response = response_object(e, "in_progress");
        event(e, "response.created", json!({"response": response}), out);
        let response = response_object(e, "in_progress");
        event(
            e,
            "response.in_progress",
            json!({"response": response}),
            out,
        );
    }

    fn stream_text(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        let (index, content) = open_part(e, Open::Text, out);
        e.item_text.push_str(text);
        let item_id = item_id("msg", index, e);
        event(
            e,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": index, "content_index": content, "delta": text, "logprobs": []}),
            out,
        );
    }

    fn stream_refusal(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        let (index, content) = open_part(e, Open::Refusal, out);
        e.item_text.push_str(text);
        let item_id = item_id("msg", index, e);
        event(
            e,
            "response.refusal.delta",
            json!({"item_id": item_id, "output_index": index, "content_index": content, "delta": text}),
            out,
        );
    }

    /// Reasoning is written as a reasoning item's summary text.
    fn stream_reasoning(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        let index = match e.open {
            Some(Open::Reasoning(i)) => i,
            _ => {
                close_item(e, out);
                let index = e.next_block;
                e.next_block += 1;
                e.open = Some(Open::Reasoning(index));
                let item_id = item_id("rs", index, e);
                let item = json!({"type": "reasoning", "id": item_id, "summary": []});
                event(
                    e,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                    out,
                );
                event(
                    e,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": item_id, "output_index": index, "summary_index": 0, "part": summary_part("")}),
                    out,
                );
                index
            }
        };
        e.item_text.push_str(text);
        let item_id = item_id("rs", index, e);
        event(
            e,
            "response.reasoning_summary_text.delta",
            json!({"item_id": item_id, "output_index": index, "summary_index": 0, "delta": text}),
            out,
        );
    }

    fn stream_tool_start(
        &self,
        e: &mut Encoder,
        index: usize,
        id: &str,
        name: &str,
        out: &mut Vec<u8>,
    ) {
        close_item(e, out);
        let output = e.next_block;
        e.next_block += 1;
        e.open = Some(Open::Tool(output));
        let item_id = item_id("fc", output, e);
        e.tool_slots.push((index, output, item_id.clone()));
        let item = json!({"type": "function_call", "id": item_id, "call_id": id, "name": name, "arguments": "", "status": "in_progress"});
        event(
            e,
            "response.output_item.added",
            json!({"output_index": output, "item": item}),
            out,
        );
    }

    fn stream_tool_args(&self, e: &mut Encoder, index: usize, json: &str, out: &mut Vec<u8>) {
        if let Some((output, item_id)) = e.tool_slot(index) {
            event(
                e,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": output, "delta": json}),
                out,
            );
        }
    }

    fn stream_finish(&self, _: &mut Encoder, _: &mut Vec<u8>) {}

    fn stream_error(&self, e: &mut Encoder, message: &str, out: &mut Vec<u8>) {
        event(
            e,
            "error",
            json!({"code": "upstream_error", "message": message, "param": null}),
            out,
        );
        e.done = true;
    }

    fn stream_end(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        close_item(e, out);
        let response = response_object(e, "completed");
        event(e, "response.completed", json!({"response": response}), out);
    }
}

/// Id, model, how it ended and usage of an answer or a stream event
/// (events wrap the response object).
fn observe(s: &mut ResponseSummary, v: &Value) {
    let response = v.get("response").unwrap_or(v);
    s.meta
        .seen(str_of(response, "id"), str_of(response, "model"));
    if str_of(response, "object") == Some("response") {
        match str_of(response, "status") {
            Some("completed") => s.meta.reason(Some("stop")),
            Some("incomplete") => s.meta.reason(Some("length")),
            _ => {}
        }
    }
    if let Some(u) = v
        .get("usage")
        .or_else(|| response.get("usage"))
        .and_then(Usage::from_usage_object)
    {
        s.add_usage(u);
    }
}

// ---- requests ----

fn read_request(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    conv.max_tokens = body.get("max_output_tokens").and_then(Value::as_u64);
    if let Some(instructions) = str_of(body, "instructions") {
        conv.system.push(instructions.into());
    }
    conv.tools = chat::openai_tools(body.get("tools"), false);
    conv.tool_choice = chat::openai_tool_choice(body.get("tool_choice"));
    if let Some(format) = body.pointer("/text/format") {
        chat::schema_format(format, &mut conv);
    }
    conv.reasoning_effort = body
        .pointer("/reasoning/effort")
        .and_then(Value::as_str)
        .map(String::from);
    if ["/reasoning/summary", "/reasoning/generate_summary"]
        .iter()
        .any(|p| body.pointer(p).is_some_and(Value::is_string))
    {
        conv.reasoning = Some(Reasoning {
            budget_tokens: None,
        });
    }
    match body.get("input") {
        Some(Value::String(s)) => conv.messages.push(Message {
            role: Role::User,
            parts: vec![Part::Text(s.clone())],
        }),
        Some(Value::Array(items)) => {
            for item in items {
                responses_item(item, &mut conv)?;
            }
        }
        _ => return Err(bad("Missing required parameter: `input`.")),
    }
    Ok(conv)
}

fn responses_item(item: &Value, conv: &mut Conversation) -> Result<(), GatewayError> {
    let push = |conv: &mut Conversation, role: Role, part: Part| match conv.messages.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => conv.messages.push(Message {
            role,
            parts: vec![part],
        }),
    };
    match str_of(item, "type").unwrap_or("message") {
        "message" => {
            let content = item.get("content").unwrap_or(&Value::Null);
            let mut parts = Vec::new();
            match content {
                Value::String(s) => parts.push(Part::Text(s.clone())),
                Value::Array(blocks) => {
                    for b in blocks {
                        match str_of(b, "type") {
                            Some("input_text") | Some("output_text") | Some("text") => {
                                parts.push(Part::Text(str_of(b, "text").unwrap_or_default().into()))
                            }
                            Some("refusal") => parts.push(Part::Refusal(str_of(b, "refusal").unwrap_or_default().into())),
                            Some("input_image") => parts.push(Part::Image {
                                url: str_of(b, "image_url").ok_or_else(|| bad("input_image without image_url"))?.into(),
                            }),
                            Some(other) => {
                                return Err(GatewayError::BadRequest(format!(
                                    "Input content of type `{other}` cannot be translated for this model's provider."
                                )))
                            }
                            None => return Err(bad("input content without type")),
                        }
                    }
                }
                _ => return Err(bad("input message content must be a string or an array")),
            }
            match str_of(item, "role") {
                Some("system") | Some("developer") => conv.system.push(text_of(content)),
                Some("assistant") => parts
                    .into_iter()
                    .for_each(|p| push(conv, Role::Assistant, p)),
                _ => parts.into_iter().for_each(|p| push(conv, Role::User, p)),
            }
        }
        "function_call" => push(
            conv,
            Role::Assistant,
            Part::ToolCall {
                id: str_of(item, "call_id").unwrap_or_default().into(),
                name: str_of(item, "name").unwrap_or_default().into(),
                arguments: str_of(item, "arguments").unwrap_or("{}").into(),
            },
        ),
        "function_call_output" => push(
            conv,
            Role::User,
            Part::ToolResult {
                id: str_of(item, "call_id").unwrap_or_default().into(),
                content: match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => text_of(other),
                    None => String::new(),
                },
                is_error: false,
            },
        ),
        // Reasoning items belong to the model that made them.
        "reasoning" => {}
        other => {
            return Err(GatewayError::BadRequest(format!(
                "Input items of type `{other}` cannot be translated for this model's provider."
            )))
        }
    }
    Ok(())
}

// ---- answers ----

fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// Output items of an answer (also the stream's last event), as the
/// stream writes them: consecutive text and refusals make one message.
fn output(r: &Reply) -> Vec<Value> {
    let mut items = Vec::new();
    let mut content: Vec<Value> = Vec::new();
    for p in &r.parts {
        match (p, content.last_mut()) {
            (Part::Text(t), _) if t.is_empty() => {}
            (Part::Text(t), Some(last)) if str_of(last, "type") == Some("output_text") => {
                if let Some(Value::String(text)) = last.get_mut("text") {
                    text.push_str(t);
                }
            }
            (Part::Text(t), _) => content.push(text_part(t)),
            (Part::Refusal(t), _) => content.push(refusal_part(t)),
            _ => {
                push_message(&mut items, &mut content, &r.id);
                let id = |kind| format!("{kind}_{}_{}", items.len(), r.id);
                match p {
                    Part::Reasoning(t) => items.push(json!({
                        "type": "reasoning", "id": id("rs"), "summary": [summary_part(t)],
                    })),
                    Part::ToolCall {
                        id: call_id,
                        name,
                        arguments,
                    } => items.push(json!({
                        "type": "function_call", "id": id("fc"), "call_id": call_id, "name": name,
                        "arguments": arguments, "status": "completed",
                    })),
                    _ => {}
                }
            }
        }
    }
    push_message(&mut items, &mut content, &r.id);
    items
}

/// Ends the message being built (if it has content) as the next item.
fn push_message(items: &mut Vec<Value>, content: &mut Vec<Value>, id: &str) {
    if !content.is_empty() {
        items.push(message_item(
            &format!("msg_{}_{id}", items.len()),
            "completed",
            std::mem::take(content),
        ));
    }
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

fn refusal_part(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

fn summary_part(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

/// `status` and `incomplete_details` of an answer that ended with `f`.
fn ending(f: Finish) -> (&'static str, Value) {
    match f {
        Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        Finish::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn write_reply(r: &Reply) -> Value {
    let (status, details) = ending(r.finish);
    json!({
        "id": format!("resp_{}", r.id), "object": "response", "created_at": r.created, "model": r.model,
        "status": status, "incomplete_details": details,
        "output": output(r), "usage": usage_object(&r.usage),
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
    })
}

// ---- streams ----

fn decode(d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
    match str_of(v, "type") {
        Some("response.created") => {
            let r = v.get("response").unwrap_or(&Value::Null);
            d.start(str_of(r, "id"), str_of(r, "model"), out);
        }
        Some("response.output_item.added") => output_item(d, v, out),
        Some("response.output_text.delta") => {
            if let Some(text) = str_of(v, "delta").filter(|t| !t.is_empty()) {
                out.push(Event::TextDelta(text.into()));
            }
        }
        Some("response.function_call_arguments.delta") => {
            let output = output_index(v);
            let tool = d.tool_blocks.iter().find(|(o, _)| *o == output);
            let json = str_of(v, "delta").unwrap_or_default();
            if let (Some(&(_, index)), false) = (tool, json.is_empty()) {
                out.push(Event::ToolArgs {
                    index,
                    json: json.into(),
                });
            }
        }
        Some("response.completed" | "response.incomplete") => ended(d, v, out),
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
fn output_item(d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
    let item = v.get("item").unwrap_or(&Value::Null);
    if str_of(item, "type") != Some("function_call") {
        return;
    }
    let index = d.tools;
    d.tools += 1;
    d.tool_blocks.push((output_index(v), index));
    out.push(Event::ToolStart {
        index,
        id: str_of(item, "call_id").unwrap_or_default().into(),
        name: str_of(item, "name").unwrap_or_default().into(),
    });
}

/// `response.completed` / `response.incomplete`: how it ended, and usage.
fn ended(d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
    let r = v.get("response").unwrap_or(&Value::Null);
    let finish = match (str_of(r, "status"), r.pointer("/incomplete_details/reason")) {
        (Some("incomplete"), Some(reason)) if reason == "content_filter" => Finish::ContentFilter,
        (Some("incomplete"), _) => Finish::Length,
        _ if d.tools > 0 => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    out.push(Event::Finish(finish));
    if let Some(usage) = r.get("usage").and_then(Usage::from_usage_object) {
        out.push(Event::Usage(usage));
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

fn event(e: &mut Encoder, kind: &str, mut data: Value, out: &mut Vec<u8>) {
    if let Some(o) = data.as_object_mut() {
        o.insert("type".into(), Value::String(kind.into()));
        o.insert("sequence_number".into(), e.sequence.into());
    }
    e.sequence += 1;
    e.sse(kind, data, out);
}

/// The id of output item `index` (`kind` `msg`, `rs` or `fc`), as
/// `output` names it.
fn item_id(kind: &str, index: usize, e: &Encoder) -> String {
    format!("{kind}_{index}_{}", e.id)
}

/// Opens a text or refusal part (`kind`) in the open message item, or in a
/// new one; its output and content index.
fn open_part(e: &mut Encoder, kind: fn(usize) -> Open, out: &mut Vec<u8>) -> (usize, usize) {
    let index = match e.open {
        Some(open @ (Open::Text(i) | Open::Refusal(i))) => {
            if open == kind(i) {
                return (i, e.item_parts.len());
            }
            close_part(e, i, matches!(open, Open::Refusal(_)), out);
            i
        }
        _ => {
            close_item(e, out);
            let index = e.next_block;
            e.next_block += 1;
            let item = message_item(&item_id("msg", index, e), "in_progress", Vec::new());
            event(
                e,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
                out,
            );
            index
        }
    };
    e.open = Some(kind(index));
    let content = e.item_parts.len();
    let part = match kind(index) {
        Open::Refusal(_) => refusal_part(""),
        _ => text_part(""),
    };
    let item_id = item_id("msg", index, e);
    event(
        e,
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": index, "content_index": content, "part": part}),
        out,
    );
    (index, content)
}

/// Ends the open text or refusal part of message item `i` (which stays open).
fn close_part(e: &mut Encoder, i: usize, refusal: bool, out: &mut Vec<u8>) {
    let item_id = item_id("msg", i, e);
    let content = e.item_parts.len();
    let text = std::mem::take(&mut e.item_text);
    let part = if refusal {
        event(
            e,
            "response.refusal.done",
            json!({"item_id": item_id, "output_index": i, "content_index": content, "refusal": text}),
            out,
        );
        refusal_part(&text)
    } else {
        event(
            e,
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": i, "content_index": content, "text": text, "logprobs": []}),
            out,
        );
        text_part(&text)
    };
    event(
        e,
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": i, "content_index": content, "part": part}),
        out,
    );
    e.item_parts.push(part);
}

fn close_item(e: &mut Encoder, out: &mut Vec<u8>) {
    match e.open.take() {
        Some(open @ (Open::Text(i) | Open::Refusal(i))) => {
            close_part(e, i, matches!(open, Open::Refusal(_)), out);
            let content = std::mem::take(&mut e.item_parts);
            let item = message_item(&item_id("msg", i, e), "completed", content);
            event(
                e,
                "response.output_item.done",
                json!({"output_index": i, "item": item}),
                out,
            );
        }
        Some(Open::Reasoning(i)) => {
            let item_id = item_id("rs", i, e);
            let text = std::mem::take(&mut e.item_text);
            event(
                e,
                "response.reasoning_summary_text.done",
                json!({"item_id": item_id, "output_index": i, "summary_index": 0, "text": text}),
                out,
            );
            let part = summary_part(&text);
            event(
                e,
                "response.reasoning_summary_part.done",
                json!({"item_id": item_id, "output_index": i, "summary_index": 0, "part": part}),
                out,
            );
            let item = json!({"type": "reasoning", "id": item_id, "summary": [part]});
            event(
                e,
                "response.output_item.done",
                json!({"output_index": i, "item": item}),
                out,
            );
        }
        Some(Open::Tool(i)) => {
            let Some((index, _, item_id)) = e.tool_slots.iter().find(|(_, b, _)| *b == i).cloned()
            else {
                return;
            };
            let (call_id, name, args) = match e.tool_part(index) {
                Some(Part::ToolCall {
                    id,
                    name,
                    arguments,
                }) => (id.clone(), name.clone(), arguments.clone()),
                _ => Default::default(),
            };
            event(
                e,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": i, "arguments": args}),
                out,
            );
            let item = json!({"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": args, "status": "completed"});
            event(
                e,
                "response.output_item.done",
                json!({"output_index": i, "item": item}),
                out,
            );
        }
        None => {}
    }
}

/// A Responses upstream's id is kept as is; others get the prefix.
fn response_id(e: &Encoder) -> String {
    if e.id.starts_with("resp_") {
        e.id.clone()
    } else {
        format!("resp_{}", e.id)
    }
}

/// The response object of the first events (`in_progress`, no output) or
/// of the last (`completed`, or `incomplete` for how it ended).
fn response_object(e: &Encoder, status: &str) -> Value {
    let done = status == "completed";
    let reply = Reply {
        id: e.id.clone(),
        model: e.model.clone(),
        created: e.now_s,
        parts: e.parts.clone(),
        finish: e.finish.unwrap_or(Finish::Stop),
        usage: e.usage.unwrap_or_default(),
    };
    let (status, details) = if done {
        ending(reply.finish)
    } else {
        (status, Value::Null)
    };
    json!({
        "id": response_id(e), "object": "response", "created_at": e.now_s, "model": e.model,
        "status": status, "incomplete_details": details,
        "output": if done { output(&reply) } else { Vec::new() },
        "usage": if done { usage_object(&reply.usage) } else { Value::Null },
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
    })
}

/// Responses streams edited in place: a slot per message part (text or
/// refusal), per reasoning summary part and per function call's arguments
/// (`(output index, 0)`), ended by its `*.done` event; the events that
/// repeat a slot's text (`*.done`, the final response) get the client's
/// text.
impl StreamEdit for Responses {
    fn plain_text<'a>(&self, data: &'a str) -> Option<PlainText<'a>> {
        match serde_json::from_str::<TextDeltaEvent>(data) {
            Ok(e) if e.kind == "response.output_text.delta" => Some(PlainText {
                slot: (e.output_index, e.content_index),
                text: e.delta,
                sequence: e.sequence_number,
            }),
            _ => None,
        }
    }

    fn texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String)) {
        let slot = match str_of(v, "type") {
            Some("response.output_text.delta" | "response.refusal.delta") => part_slot(v),
            Some("response.reasoning_summary_text.delta") => summary_slot(v),
            Some("response.function_call_arguments.delta") => (u64_of(v, "output_index"), 0),
            _ => return,
        };
        if let Some(Value::String(text)) = v.get_mut("delta") {
            f(slot, text);
        }
    }

    fn ends(&self, v: &Value) -> Ends {
        match str_of(v, "type") {
            Some(
                "response.output_text.done"
                | "response.refusal.done"
                | "response.content_part.done",
            ) => Ends::Slots(vec![part_slot(v)]),
            Some(
                "response.reasoning_summary_text.done" | "response.reasoning_summary_part.done",
            ) => Ends::Slots(vec![summary_slot(v)]),
            Some("response.function_call_arguments.done" | "response.output_item.done") => {
                Ends::Groups(vec![u64_of(v, "output_index")])
            }
            Some("response.completed" | "response.incomplete" | "response.failed" | "error") => {
                Ends::All
            }
            _ => Ends::None,
        }
    }

    fn whole_texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String)) {
        let slot = part_slot(v);
        let output = u64_of(v, "output_index");
        match str_of(v, "type") {
            Some("response.output_text.done") => {
                if let Some(Value::String(text)) = v.get_mut("text") {
                    f(slot, text);
                }
            }
            Some("response.function_call_arguments.done") => {
                if let Some(Value::String(arguments)) = v.get_mut("arguments") {
                    f((output, 0), arguments);
                }
            }
            Some("response.refusal.done") => {
                if let Some(Value::String(text)) = v.get_mut("refusal") {
                    f(slot, text);
                }
            }
            Some("response.reasoning_summary_text.done") => {
                let slot = summary_slot(v);
                if let Some(Value::String(text)) = v.get_mut("text") {
                    f(slot, text);
                }
            }
            Some("response.reasoning_summary_part.done") => {
                let slot = summary_slot(v);
                if let Some(Value::String(text)) = v.pointer_mut("/part/text") {
                    f(slot, text);
                }
            }
            Some("response.content_part.done") => {
                if let Some(part) = v.get_mut("part") {
                    part_text(part, slot, f);
                }
            }
            Some("response.output_item.done") => {
                if let Some(item) = v.get_mut("item") {
                    item_texts(item, output, f);
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                let items = v
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut);
                for (i, item) in (0u64..).zip(items.into_iter().flatten()) {
                    item_texts(item, i, f);
                }
            }
            _ => {}
        }
    }

    fn observe(&self, st: &mut EditState, v: &Value) {
        if let Some(n) = v.get("sequence_number").and_then(Value::as_u64) {
            st.sequence = n + 1;
        }
        match str_of(v, "type") {
            Some("response.created") => st.template = v.get("response").cloned(),
            Some("response.output_item.added" | "response.output_item.done") => {
                let index = u64_of(v, "output_index");
                if let Some(item) = v.get("item") {
                    st.items.retain(|(i, _)| *i != index);
                    st.items.push((index, item.clone()));
                }
            }
            // Parts are noted in their item, so a block knows their type.
            Some("response.content_part.added") => {
                let index = u64_of(v, "output_index");
                let item = st.items.iter_mut().find(|(i, _)| *i == index);
                let parts = item.and_then(|(_, item)| item.get_mut("content"));
                if let (Some(Value::Array(parts)), Some(part)) = (parts, v.get("part")) {
                    parts.push(part.clone());
                }
            }
            _ => {}
        }
    }

    /// A text part gets the notice and closes; a function call closes
    /// with the arguments sent so far. The item ends incomplete, and the
    /// response completes as incomplete for `content_filter`.
    fn blocked(&self, st: &mut EditState, b: Block, out: &mut Vec<u8>) {
        let output = b.slot.0;
        let mut item = st
            .items
            .iter()
            .find(|(i, _)| *i == output)
            .map(|(_, item)| item.clone())
            .unwrap_or_else(|| json!({"type": "message", "role": "assistant"}));
        let mut sequence = st.sequence;
        let mut event = |name: &str, mut data: Value| {
            set(&mut data, "type", name.into());
            set(&mut data, "sequence_number", sequence.into());
            sequence += 1;
            write_sse(out, name, &data);
        };
        match str_of(&item, "type") {
            Some("message") => close_blocked_part(&mut item, &b, &mut event),
            Some("reasoning") => {
                let summary = json!([{"type": "summary_text", "text": b.text}]);
                set(&mut item, "summary", summary);
            }
            _ => set(&mut item, "arguments", json!(b.text)),
        }
        set(&mut item, "status", "incomplete".into());
        event(
            "response.output_item.done",
            json!({"output_index": output, "item": item}),
        );
        st.items.retain(|(i, _)| *i != output);
        st.items.push((output, item));
        st.items.sort_by_key(|(i, _)| *i);
        let mut response = st.template.take().unwrap_or_else(|| json!({}));
        self.mark_filtered(&mut response);
        let items = st.items.iter().map(|(_, item)| item.clone()).collect();
        set(&mut response, "output", Value::Array(items));
        event("response.completed", json!({"response": response}));
    }
}

/// The events that end the blocked text part of message `item` with the
/// notice; the part, so ended, goes into `item`.
fn close_blocked_part(item: &mut Value, b: &Block, event: &mut dyn FnMut(&str, Value)) {
    let (output, content) = b.slot;
    let item_id = item.get("id").cloned().unwrap_or(Value::Null);
    let text = format!("{}{}", b.text, b.notice);
    let mut parts = item
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    parts.truncate(usize::try_from(content).unwrap_or(usize::MAX));
    let refusal = item
        .pointer(&format!("/content/{content}/type"))
        .and_then(Value::as_str)
        == Some("refusal");
    // A refusal part ends as one, or the SDK's stream state rejects it.
    let (events, field, part) = if refusal {
        let part = json!({"type": "refusal", "refusal": text});
        ("response.refusal", "refusal", part)
    } else {
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        ("response.output_text", "text", part)
    };
    let at = json!({"item_id": item_id, "output_index": output, "content_index": content});
    let with = |key: &str, value: Value| {
        let mut data = at.clone();
        set(&mut data, key, value);
        data
    };
    event(&format!("{events}.delta"), with("delta", json!(b.notice)));
    event(&format!("{events}.done"), with(field, json!(text)));
    event("response.content_part.done", with("part", part.clone()));
    parts.push(part);
    set(item, "content", Value::Array(parts));
}

/// The fields of `response.output_text.delta` the editor reads.
#[derive(Deserialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    output_index: u64,
    #[serde(default)]
    content_index: u64,
    #[serde(borrow)]
    delta: Cow<'a, str>,
    sequence_number: Option<u64>,
}

/// (output index, content index) of a part event.
fn part_slot(v: &Value) -> Slot {
    (u64_of(v, "output_index"), u64_of(v, "content_index"))
}

/// The text of an `output_text` part.
fn part_text(part: &mut Value, slot: Slot, f: &mut dyn FnMut(Slot, &mut String)) {
    let field = match str_of(part, "type") {
        Some("output_text") => "text",
        Some("refusal") => "refusal",
        _ => return,
    };
    if let Some(Value::String(text)) = part.get_mut(field) {
        f(slot, text);
    }
}

/// (output index, summary index) of a reasoning summary event.
fn summary_slot(v: &Value) -> Slot {
    (u64_of(v, "output_index"), u64_of(v, "summary_index"))
}

/// The texts of the output item at `output`: a message's parts, a
/// reasoning item's summary, or a function call's arguments.
fn item_texts(item: &mut Value, output: u64, f: &mut dyn FnMut(Slot, &mut String)) {
    if str_of(item, "type") == Some("function_call") {
        if let Some(Value::String(arguments)) = item.get_mut("arguments") {
            f((output, 0), arguments);
        }
        return;
    }
    let summary = item.get_mut("summary").and_then(Value::as_array_mut);
    for (i, part) in (0u64..).zip(summary.into_iter().flatten()) {
        if let Some(Value::String(text)) = part.get_mut("text") {
            f((output, i), text);
        }
    }
    let parts = item.get_mut("content").and_then(Value::as_array_mut);
    for (i, part) in (0u64..).zip(parts.into_iter().flatten()) {
        part_text(part, (output, i), f);
    }
}
