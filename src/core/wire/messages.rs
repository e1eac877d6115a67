//! Anthropic Messages, `POST /v1/messages`: requests, answers, streams
//! (`message_start`, content blocks, `message_delta` with the stop reason
//! and output usage) and where their text is.

use super::edit::{Block, EditState, Ends, PlainText, Slot, StreamEdit};
use super::request::{bad, common, insert_opt, text_of};
use super::stream::{write_json, write_sse, Decoder, Encoder, Open};
use super::{
    set, str_of, u64_of, Conversation, Event, Finish, Inbound, Message, Part, Reasoning, Reply,
    Role, TextVisitor, Tool, ToolChoice, Upstream,
};
use crate::core::api::ClientFormat;
use crate::core::content;
use crate::core::error::GatewayError;
use crate::core::guard::locate;
use crate::core::usage::{ResponseSummary, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// Output tokens asked of Anthropic when the client set no maximum
/// (Anthropic requires one; OpenAI does not).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The Messages API version sent for clients of other APIs.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Messages wire.
#[derive(Debug)]
pub struct Messages;

impl Upstream for Messages {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn write_request(&self, c: &Conversation, model: &str) -> Result<Value, GatewayError> {
        Ok(write_request(c, model))
    }

    fn stream_usage_on_request(&self) -> bool {
        false
    }

    fn ask_stream_usage(&self, _: &mut Map<String, Value>) {}

    fn is_usage_event(&self, _: &str) -> bool {
        false
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", ANTHROPIC_VERSION)]
    }

    fn read_reply(&self, v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
        read_reply(v, now_s)
    }

    fn decode(&self, d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
        decode(d, v, out);
    }

    fn text_delta(&self, data: &str, out: &mut Vec<Event>) -> bool {
        match serde_json::from_str::<MessagesDelta>(data) {
            Ok(d) if d.kind == "content_block_delta" && d.delta.kind == "text_delta" => {
                out.push(Event::TextDelta(d.delta.text.into_owned()));
                true
            }
            _ => false,
        }
    }

    fn summarize(&self, v: &Value) -> ResponseSummary {
        let mut s = ResponseSummary::default();
        observe(&mut s, v);
        s
    }

    /// Input usage comes in `message_start`, output in `message_delta`.
    fn observe_event(&self, s: &mut ResponseSummary, data: &str) -> usize {
        s.observe_event(data, observe)
    }

    fn reply_text(&self, v: &Value) -> String {
        v.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect()
    }

    fn push_stream_text(&self, data: &str, out: &mut String) {
        if !data.contains("delta") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(piece) = v.pointer("/delta/text").and_then(Value::as_str) {
            out.push_str(piece);
        }
    }
}

impl Inbound for Messages {
    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn format(&self) -> ClientFormat {
        ClientFormat::Anthropic
    }

    fn read_request(&self, body: &Value) -> Result<Conversation, GatewayError> {
        read_request(body)
    }

    fn conversation_fields(&self) -> &'static [&'static str] {
        &["system", "messages"]
    }

    fn wants_stream_usage(&self, _: &Value) -> bool {
        false
    }

    fn max_output_tokens(&self, body: &Value) -> Option<u64> {
        body.get("max_tokens").and_then(Value::as_u64)
    }

    fn input_messages(&self, body: &Value) -> Vec<Value> {
        content::with_system(body.get("system"), body.get("messages"))
    }

    fn write_reply(&self, r: &Reply) -> Value {
        write_reply(r)
    }

    fn mark_filtered(&self, body: &mut Value) {
        set(
            body,
            "stop_reason",
            json!(stop_reason(Finish::ContentFilter, &[])),
        );
        set(body, "stop_sequence", Value::Null);
    }

    fn reply_texts(&self, body: &mut Value, f: &mut TextVisitor) {
        locate::content(body.get_mut("content"), f);
        for block in body
            .get_mut("content")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            // Only the thinking the gateway wrote (from another provider):
            // Anthropic's own is signed, and rewriting it would fail the next turn.
            if str_of(block, "signature") == Some("") {
                locate::text_field(block, "thinking", f);
            }
        }
    }

    fn stream_start(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        let message = json!({
            "id": e.id, "type": "message", "role": "assistant", "model": e.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": e.usage.map_or(0, |u| u.input_tokens), "output_tokens": 0},
        });
        e.sse(
            "message_start",
            json!({"type": "message_start", "message": message}),
            out,
        );
    }

    fn stream_text(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        let index = open_text(e, out);
        text_event(index, text, out);
    }

    /// A refusal is text here; the stop reason says it was one.
    fn stream_refusal(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        self.stream_text(e, text, out);
    }

    fn stream_reasoning(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        let index = open_block(e, Open::Reasoning, thinking_block(""), out);
        e.sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": text}}),
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
        close_block(e, out);
        let block = e.next_block;
        e.next_block += 1;
        e.open = Some(Open::Tool(block));
        e.tool_slots.push((index, block, id.into()));
        e.sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": block, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            out,
        );
    }

    fn stream_tool_args(&self, e: &mut Encoder, index: usize, json: &str, out: &mut Vec<u8>) {
        if let Some((block, _)) = e.tool_slot(index) {
            e.sse(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": json}}),
                out,
            );
        }
    }

    fn stream_finish(&self, _: &mut Encoder, _: &mut Vec<u8>) {}

    fn stream_error(&self, e: &mut Encoder, message: &str, out: &mut Vec<u8>) {
        e.sse(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            out,
        );
        e.done = true;
    }

    fn stream_end(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        close_block(e, out);
        let u = e.usage.unwrap_or_default();
        let reason = stop_reason(e.finish.unwrap_or(Finish::Stop), &e.parts);
        let mut usage = usage_object(&u);
        if let Some(o) = usage.as_object_mut() {
            o.remove("cache_creation_input_tokens");
        }
        e.sse(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": usage}),
            out,
        );
        e.sse("message_stop", json!({"type": "message_stop"}), out);
    }
}

/// Id, model, stop reason and usage of an answer or a stream event
/// (`message_start` wraps the message).
fn observe(s: &mut ResponseSummary, v: &Value) {
    let message = v.get("message").unwrap_or(v);
    s.meta.seen(str_of(message, "id"), str_of(message, "model"));
    s.meta.reason(str_of(message, "stop_reason"));
    s.meta
        .reason(v.pointer("/delta/stop_reason").and_then(Value::as_str));
    if let Some(u) = v
        .get("usage")
        .or_else(|| message.get("usage"))
        .and_then(Usage::from_usage_object)
    {
        s.add_usage(u);
    }
}

/// A content filter and an answer that refused (OpenAI's `refusal`) end
/// as Anthropic's `refusal`. Never `stop_sequence`: the other APIs do not
/// say whether a stop sequence matched.
fn stop_reason(f: Finish, parts: &[Part]) -> &'static str {
    match f {
        Finish::Stop if parts.iter().any(|p| matches!(p, Part::Refusal(_))) => "refusal",
        Finish::Stop => "end_turn",
        Finish::ContentFilter => "refusal",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

fn read_finish(s: &str) -> Finish {
    match s {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "tool_use" => Finish::ToolCalls,
        "refusal" => Finish::ContentFilter,
        _ => Finish::Stop, // end_turn, stop_sequence, pause_turn
    }
}

/// A thinking block without a signature: only Anthropic can sign one.
fn thinking_block(text: &str) -> Value {
    json!({"type": "thinking", "thinking": text, "signature": ""})
}

// ---- requests ----

fn anthropic_parts(content: &Value, role: Role) -> Result<Vec<Part>, GatewayError> {
    let blocks = match content {
        Value::String(s) => return Ok(vec![Part::Text(s.clone())]),
        Value::Array(b) => b,
        _ => {
            return Err(bad(
                "message content must be a string or an array of blocks",
            ))
        }
    };
    let mut out = Vec::new();
    for b in blocks {
        match str_of(b, "type") {
            Some("text") => out.push(Part::Text(str_of(b, "text").unwrap_or_default().into())),
            Some("image") => {
                let source = b.get("source").unwrap_or(&Value::Null);
                let url = match (str_of(source, "type"), str_of(source, "url")) {
                    (Some("base64"), _) => format!(
                        "data:{};base64,{}",
                        str_of(source, "media_type").unwrap_or("image/png"),
                        str_of(source, "data").unwrap_or_default()
                    ),
                    (Some("url"), Some(url)) => url.into(),
                    _ => return Err(bad("Only images by URL or base64 data can be translated for this model's provider.")),
                };
                out.push(Part::Image { url });
            }
            Some("tool_use") if role == Role::Assistant => out.push(Part::ToolCall {
                id: str_of(b, "id").unwrap_or_default().into(),
                name: str_of(b, "name").unwrap_or_default().into(),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            Some("tool_result") => out.push(Part::ToolResult {
                id: str_of(b, "tool_use_id").unwrap_or_default().into(),
                content: text_of(b.get("content").unwrap_or(&Value::Null)),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            }),
            // Thinking blocks are signed by Anthropic, for Anthropic only.
            Some("thinking") | Some("redacted_thinking") => {}
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                "Content blocks of type `{other}` cannot be translated for this model's provider."
            )))
            }
            None => return Err(bad("content block without type")),
        }
    }
    Ok(out)
}

fn read_request(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    conv.max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    conv.top_k = body.get("top_k").and_then(Value::as_u64);
    conv.user = body
        .pointer("/metadata/user_id")
        .and_then(Value::as_str)
        .map(String::from);
    conv.reasoning = match body.pointer("/thinking/type").and_then(Value::as_str) {
        Some("enabled") => Some(Reasoning {
            budget_tokens: body
                .pointer("/thinking/budget_tokens")
                .and_then(Value::as_u64),
        }),
        Some("adaptive") => Some(Reasoning {
            budget_tokens: None,
        }),
        _ => None,
    };
    match body.get("system") {
        Some(Value::String(s)) => conv.system.push(s.clone()),
        Some(blocks @ Value::Array(_)) => conv.system.push(text_of(blocks)),
        _ => {}
    }
    conv.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // Anthropic's own tools (web search, bash, ...) have a versioned type.
        .filter(|t| str_of(t, "type").unwrap_or("custom") == "custom")
        .filter_map(|t| {
            Some(Tool {
                name: str_of(t, "name")?.into(),
                description: str_of(t, "description").map(String::from),
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .unwrap_or(json!({"type": "object"})),
            })
        })
        .collect();
    conv.tool_choice = body
        .get("tool_choice")
        .and_then(|c| match str_of(c, "type")? {
            "any" => Some(ToolChoice::Required),
            "none" => Some(ToolChoice::None),
            "tool" => Some(ToolChoice::Named(str_of(c, "name")?.into())),
            _ => Some(ToolChoice::Auto),
        });
    if let Some(false) = body
        .pointer("/tool_choice/disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d)
    {
        conv.parallel_tool_calls = Some(false);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Missing required parameter: `messages`."))?;
    for m in messages {
        let role = match str_of(m, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return Err(bad("every message needs a role of user or assistant")),
        };
        conv.messages.push(Message {
            role,
            parts: anthropic_parts(m.get("content").unwrap_or(&Value::Null), role)?,
        });
    }
    Ok(conv)
}

/// A Messages client's request for Anthropic itself: drops the thinking
/// blocks the gateway wrote for another provider's reasoning (with an
/// empty signature), as Anthropic refuses blocks it did not sign. Whether
/// there were any.
pub fn drop_unsigned_thinking(body: &mut Value) -> bool {
    let mut dropped = false;
    for m in body
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
            let before = blocks.len();
            blocks.retain(|b| {
                str_of(b, "type") != Some("thinking") || str_of(b, "signature") != Some("")
            });
            dropped |= blocks.len() < before;
        }
    }
    dropped
}

fn anthropic_image(url: &str) -> Value {
    match url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((media_type, data)) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

fn write_request(conv: &Conversation, model: &str) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in &conv.messages {
        let blocks: Vec<Value> = m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
            .map(block)
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let role = if m.role == Role::User {
            "user"
        } else {
            "assistant"
        };
        // Anthropic wants alternating roles: merge consecutive same-role turns
        // (e.g. several OpenAI `tool` messages become one user turn).
        match messages.last_mut() {
            Some(last) if last.get("role").and_then(Value::as_str) == Some(role) => {
                if let Some(existing) = last.get_mut("content").and_then(Value::as_array_mut) {
                    existing.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    out.insert("messages".into(), Value::Array(messages));
    out.insert(
        "max_tokens".into(),
        conv.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if !conv.system.is_empty() {
        out.insert("system".into(), Value::String(conv.system.join("\n\n")));
    }
    // Anthropic's range ends at 1, OpenAI's at 2.
    insert_opt(
        &mut out,
        "temperature",
        conv.temperature.map(|t| Value::from(t.min(1.0))),
    );
    insert_opt(&mut out, "top_p", conv.top_p.map(Value::from));
    if !conv.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(conv.stop));
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    set(&mut tool, "description", Value::String(d.clone()));
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &conv.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Named(n)) => Some(json!({"type": "tool", "name": n})),
        None if conv.parallel_tool_calls == Some(false) && !conv.tools.is_empty() => {
            Some(json!({"type": "auto"}))
        }
        None => None,
    };
    if conv.parallel_tool_calls == Some(false) {
        if let Some(c) = choice.as_mut().filter(|c| c["type"] != "none") {
            set(c, "disable_parallel_tool_use", Value::Bool(true));
        }
    }
    insert_opt(&mut out, "tool_choice", choice);
    if let Some(user) = &conv.user {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(out)
}

// ---- answers ----

fn read_reply(v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
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
            Some("thinking") => parts.push(Part::Reasoning(
                str_of(b, "thinking").unwrap_or_default().into(),
            )),
            _ => {} // signatures, redacted thinking and server tools stay with the provider
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
        finish: read_finish(str_of(v, "stop_reason").unwrap_or("end_turn")),
        usage: Usage {
            input_tokens: input,
            output_tokens: u64_of(u, "output_tokens"),
            cached_tokens: cached,
            reasoning_tokens: 0,
        },
    })
}

fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cached_tokens),
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    })
}

/// A content block, in a request or an answer (requests hold no reasoning:
/// the readers drop it).
fn block(p: &Part) -> Value {
    match p {
        Part::Text(t) | Part::Refusal(t) => json!({"type": "text", "text": t}),
        Part::Reasoning(t) => thinking_block(t),
        Part::Image { url } => anthropic_image(url),
        Part::ToolCall {
            id,
            name,
            arguments,
        } => json!({
            "type": "tool_use", "id": id, "name": name,
            "input": serde_json::from_str::<Value>(arguments).ok().filter(Value::is_object).unwrap_or_else(|| json!({})),
        }),
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error})
        }
    }
}

fn write_reply(r: &Reply) -> Value {
    let content: Vec<Value> = r.parts.iter().map(block).collect();
    json!({
        "id": r.id, "type": "message", "role": "assistant", "model": r.model, "content": content,
        "stop_reason": stop_reason(r.finish, &r.parts), "stop_sequence": null, "usage": usage_object(&r.usage),
    })
}

// ---- streams ----

fn decode(d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
    match str_of(v, "type") {
        Some("message_start") => {
            let m = v.get("message").unwrap_or(&Value::Null);
            d.start(str_of(m, "id"), str_of(m, "model"), out);
            let u = m.get("usage").unwrap_or(&Value::Null);
            d.input = anthropic_input(u);
        }
        Some("content_block_start") => {
            let block = v.get("content_block").unwrap_or(&Value::Null);
            if str_of(block, "type") == Some("tool_use") {
                let index = d.tools;
                d.tools += 1;
                d.tool_blocks.push((
                    v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize,
                    index,
                ));
                out.push(Event::ToolStart {
                    index,
                    id: str_of(block, "id").unwrap_or_default().into(),
                    name: str_of(block, "name").unwrap_or_default().into(),
                });
            }
        }
        Some("content_block_delta") => {
            let delta = v.get("delta").unwrap_or(&Value::Null);
            match str_of(delta, "type") {
                Some("text_delta") => out.push(Event::TextDelta(
                    str_of(delta, "text").unwrap_or_default().into(),
                )),
                Some("thinking_delta") => out.push(Event::ReasoningDelta(
                    str_of(delta, "thinking").unwrap_or_default().into(),
                )),
                Some("input_json_delta") => {
                    let block = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if let Some(&(_, index)) = d.tool_blocks.iter().find(|(b, _)| *b == block) {
                        let json = str_of(delta, "partial_json").unwrap_or_default();
                        if !json.is_empty() {
                            out.push(Event::ToolArgs {
                                index,
                                json: json.into(),
                            });
                        }
                    }
                }
                _ => {} // signatures and citations stay with the provider
            }
        }
        Some("message_delta") => {
            if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                out.push(Event::Finish(read_finish(reason)));
            }
            if let Some(u) = v.get("usage") {
                let mut usage = d.input;
                let later = anthropic_input(u);
                if later.input_tokens > 0 {
                    usage.input_tokens = later.input_tokens;
                    usage.cached_tokens = later.cached_tokens;
                }
                usage.output_tokens = u64_of(u, "output_tokens");
                out.push(Event::Usage(usage));
            }
        }
        Some("error") => out.push(Event::Error(
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("provider error")
                .into(),
        )),
        _ => {} // ping, content_block_stop, message_stop
    }
}

/// Anthropic input counts in OpenAI terms: cached and cache-writing tokens included.
fn anthropic_input(u: &Value) -> Usage {
    let cached = u64_of(u, "cache_read_input_tokens");
    Usage {
        input_tokens: u64_of(u, "input_tokens") + cached + u64_of(u, "cache_creation_input_tokens"),
        output_tokens: 0,
        cached_tokens: cached,
        reasoning_tokens: 0,
    }
}

#[derive(Deserialize)]
struct MessagesDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: u64,
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

/// Opens a text block if none is open; its index.
fn open_text(e: &mut Encoder, out: &mut Vec<u8>) -> usize {
    open_block(e, Open::Text, json!({"type": "text", "text": ""}), out)
}

/// Opens a block of `kind` (starting as `content_block`) unless one is
/// open; its index.
fn open_block(
    e: &mut Encoder,
    kind: fn(usize) -> Open,
    content_block: Value,
    out: &mut Vec<u8>,
) -> usize {
    if let Some(open) = e.open {
        let index = open.index();
        if open == kind(index) {
            return index;
        }
    }
    close_block(e, out);
    let index = e.next_block;
    e.next_block += 1;
    e.open = Some(kind(index));
    e.sse(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        out,
    );
    index
}

fn close_block(e: &mut Encoder, out: &mut Vec<u8>) {
    if let Some(i) = e.open.take().map(Open::index) {
        e.sse(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
            out,
        );
    }
}

/// A text delta, written without building a `Value`.
fn text_event(index: usize, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: content_block_delta\ndata: {\"delta\":{\"text\":");
    write_json(out, text);
    out.extend_from_slice(b",\"type\":\"text_delta\"},\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"type\":\"content_block_delta\"}\n\n");
}

/// Messages streams edited in place: a slot per text block and per tool
/// call's input, ended by its `content_block_stop`. Thinking blocks pass as
/// sent: their signature covers them.
impl StreamEdit for Messages {
    fn plain_text<'a>(&self, data: &'a str) -> Option<PlainText<'a>> {
        match serde_json::from_str::<MessagesDelta>(data) {
            Ok(d) if d.kind == "content_block_delta" && d.delta.kind == "text_delta" => {
                Some(PlainText {
                    slot: (d.index, 0),
                    text: d.delta.text,
                    sequence: None,
                })
            }
            _ => None,
        }
    }

    fn texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String)) {
        if str_of(v, "type") != Some("content_block_delta") {
            return;
        }
        let slot = (u64_of(v, "index"), 0);
        let Some(delta) = v.get_mut("delta") else {
            return;
        };
        let field = match str_of(delta, "type") {
            Some("text_delta") => "text",
            Some("input_json_delta") => "partial_json",
            _ => return,
        };
        if let Some(Value::String(text)) = delta.get_mut(field) {
            f(slot, text);
        }
    }

    fn ends(&self, v: &Value) -> Ends {
        match str_of(v, "type") {
            Some("content_block_stop") => Ends::Slots(vec![(u64_of(v, "index"), 0)]),
            Some("message_delta" | "message_stop" | "error") => Ends::All,
            _ => Ends::None,
        }
    }

    fn whole_texts(&self, _: &mut Value, _: &mut dyn FnMut(Slot, &mut String)) {}

    fn observe(&self, st: &mut EditState, v: &Value) {
        if str_of(v, "type") == Some("content_block_start") {
            if let Some(block) = v.get("content_block") {
                st.items.push((u64_of(v, "index"), block.clone()));
            }
        }
    }

    /// The notice ends the open block if it is text, else a text block of
    /// its own after it; the message stops as a refusal.
    fn blocked(&self, st: &mut EditState, b: Block, out: &mut Vec<u8>) {
        let mut index = b.slot.0;
        let text_block = st
            .items
            .iter()
            .any(|(i, block)| *i == index && str_of(block, "type") == Some("text"));
        if !text_block {
            write_sse(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
            index += 1;
            write_sse(
                out,
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            );
        }
        write_sse(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": b.notice}}),
        );
        write_sse(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        write_sse(
            out,
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(Finish::ContentFilter, &[]), "stop_sequence": null}, "usage": {"output_tokens": 0}}),
        );
        write_sse(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fast_path_writes_what_the_value_path_would() {
        let text = "quote \" backslash \\ newline \n tab \t ünïcödé \u{1}";
        let mut e = Encoder::for_test(crate::core::api::Api::Messages);
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        text_event(3, text, &mut fast);
        e.sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": text}}),
            &mut slow,
        );
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }
}
