//! OpenAI Chat Completions, `POST /v1/chat/completions`: requests, answers,
//! streams (`data:` chunks of `choices[].delta`, a final usage chunk only
//! when `stream_options.include_usage` asks for it) and where their text is.

use super::edit::{Block, EditState, Ends, PlainText, Slot, StreamEdit};
use super::request::{bad, common, insert_opt, text_of};
use super::stream::{write_json, Decoder, Encoder};
use super::{
    joined_refusal, joined_text, set, str_of, u64_of, Conversation, Event, Finish, Inbound,
    Message, Part, Reply, Role, TextVisitor, Tool, ToolChoice, Upstream,
};
use crate::core::api::ClientFormat;
use crate::core::content;
use crate::core::error::GatewayError;
use crate::core::guard::locate;
use crate::core::usage::{ResponseSummary, Usage};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The Chat Completions wire.
#[derive(Debug)]
pub struct Chat;

impl Upstream for Chat {
    fn name(&self) -> &'static str {
        "chat_completions"
    }

    fn write_request(&self, c: &Conversation, model: &str) -> Result<Value, GatewayError> {
        Ok(write_request(c, model))
    }

    fn stream_usage_on_request(&self) -> bool {
        true
    }

    fn ask_stream_usage(&self, body: &mut Map<String, Value>) {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }

    fn is_usage_event(&self, data: &str) -> bool {
        data.contains("\"usage\"")
            && serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| {
                    v.get("choices")
                        .and_then(Value::as_array)
                        .map(Vec::is_empty)
                })
                .unwrap_or(false)
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn read_reply(&self, v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
        read_reply(v, now_s)
    }

    fn decode(&self, d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
        decode(d, v, out);
    }

    fn text_delta(&self, data: &str, out: &mut Vec<Event>) -> bool {
        text_delta(data, out)
    }

    fn summarize(&self, v: &Value) -> ResponseSummary {
        let mut s = ResponseSummary::default();
        observe(&mut s, v);
        s
    }

    fn observe_event(&self, s: &mut ResponseSummary, data: &str) -> usize {
        s.observe_event(data, observe)
    }

    fn reply_text(&self, v: &Value) -> String {
        choices(v)
            .filter_map(|choice| choice.pointer("/message/content").and_then(Value::as_str))
            .collect()
    }

    fn push_stream_text(&self, data: &str, out: &mut String) {
        if !data.contains("content") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(piece) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            out.push_str(piece);
        }
    }
}

impl Inbound for Chat {
    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn format(&self) -> ClientFormat {
        ClientFormat::OpenAi
    }

    fn read_request(&self, body: &Value) -> Result<Conversation, GatewayError> {
        read_request(body)
    }

    fn conversation_fields(&self) -> &'static [&'static str] {
        &["messages"]
    }

    fn wants_stream_usage(&self, body: &Value) -> bool {
        body.pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn max_output_tokens(&self, body: &Value) -> Option<u64> {
        ["max_tokens", "max_completion_tokens"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64))
    }

    fn input_messages(&self, body: &Value) -> Vec<Value> {
        content::messages(body.get("messages"))
    }

    fn write_reply(&self, r: &Reply) -> Value {
        write_reply(r)
    }

    fn mark_filtered(&self, body: &mut Value) {
        for c in choices_mut(body) {
            set(
                c,
                "finish_reason",
                json!(finish_reason(Finish::ContentFilter)),
            );
        }
    }

    fn reply_texts(&self, body: &mut Value, f: &mut TextVisitor) {
        for c in choices_mut(body) {
            if let Some(m) = c.get_mut("message") {
                locate::text_field(m, "content", f);
                locate::text_field(m, "refusal", f);
                if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                    for call in calls {
                        if let Some(function) = call.get_mut("function") {
                            locate::text_field(function, "arguments", f);
                        }
                    }
                }
            }
        }
    }

    fn stream_start(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        delta_chunk(e, json!({"role": "assistant", "content": ""}), out);
    }

    fn stream_text(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        text_chunk(e, text, out);
    }

    fn stream_refusal(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>) {
        delta_chunk(e, json!({"refusal": text}), out);
    }

    /// Chat Completions has no standard field for reasoning.
    fn stream_reasoning(&self, _: &mut Encoder, _: &str, _: &mut Vec<u8>) {}

    fn stream_tool_start(
        &self,
        e: &mut Encoder,
        index: usize,
        id: &str,
        name: &str,
        out: &mut Vec<u8>,
    ) {
        delta_chunk(
            e,
            json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            out,
        );
    }

    fn stream_tool_args(&self, e: &mut Encoder, index: usize, json: &str, out: &mut Vec<u8>) {
        delta_chunk(
            e,
            json!({"tool_calls": [{"index": index, "function": {"arguments": json}}]}),
            out,
        );
    }

    fn stream_finish(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        finish_chunk(e, out);
    }

    fn stream_error(&self, _: &mut Encoder, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(
            json!({"error": {"message": message, "type": "server_error"}})
                .to_string()
                .as_bytes(),
        );
        out.extend_from_slice(b"\n\n");
    }

    fn stream_end(&self, e: &mut Encoder, out: &mut Vec<u8>) {
        finish_chunk(e, out);
        if e.wants_usage {
            if let Some(u) = e.usage {
                chunk(e, json!([]), Some(usage_object(&u)), out);
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// Id, model, finish reasons and usage of an answer or a chunk.
fn observe(s: &mut ResponseSummary, v: &Value) {
    s.meta.seen(str_of(v, "id"), str_of(v, "model"));
    for choice in choices(v) {
        s.meta.reason(str_of(choice, "finish_reason"));
    }
    if let Some(u) = v.get("usage").and_then(Usage::from_usage_object) {
        s.add_usage(u);
    }
}

pub(super) fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::ContentFilter => "content_filter",
    }
}

fn read_finish(s: &str) -> Finish {
    match s {
        "length" => Finish::Length,
        "tool_calls" | "function_call" => Finish::ToolCalls,
        "content_filter" => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

// ---- requests ----

fn chat_parts(content: &Value) -> Result<Vec<Part>, GatewayError> {
    let mut out = Vec::new();
    match content {
        Value::String(s) => out.push(Part::Text(s.clone())),
        Value::Array(parts) => {
            for p in parts {
                match str_of(p, "type") {
                    Some("text") => out.push(Part::Text(str_of(p, "text").unwrap_or_default().into())),
                    Some("refusal") => out.push(Part::Refusal(str_of(p, "refusal").unwrap_or_default().into())),
                    Some("image_url") => {
                        let url = p.pointer("/image_url/url").and_then(Value::as_str).ok_or_else(|| bad("image_url without url"))?;
                        out.push(Part::Image { url: url.into() });
                    }
                    Some(other) => {
                        return Err(GatewayError::BadRequest(format!(
                            "Content parts of type `{other}` cannot be translated for this model's provider."
                        )))
                    }
                    None => return Err(bad("content part without type")),
                }
            }
        }
        Value::Null => {}
        _ => return Err(bad("message content must be a string or an array of parts")),
    }
    Ok(out)
}

pub(super) fn openai_tools(tools: Option<&Value>, nested: bool) -> Vec<Tool> {
    let Some(Value::Array(tools)) = tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter(|t| str_of(t, "type").unwrap_or("function") == "function")
        .filter_map(|t| {
            let f = if nested { t.get("function")? } else { t };
            Some(Tool {
                name: str_of(f, "name")?.into(),
                description: str_of(f, "description").map(String::from),
                parameters: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

pub(super) fn openai_tool_choice(v: Option<&Value>) -> Option<ToolChoice> {
    match v? {
        Value::String(s) => match s.as_str() {
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => Some(ToolChoice::Auto),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)?;
            Some(ToolChoice::Named(name.into()))
        }
        _ => None,
    }
}

pub(super) fn schema_format(format: &Value, conv: &mut Conversation) {
    match str_of(format, "type") {
        Some("json_schema") => {
            let spec = format.get("json_schema").unwrap_or(format);
            conv.json_schema = Some(json!({
                "name": str_of(spec, "name").unwrap_or("output"),
                "schema": spec.get("schema").cloned().unwrap_or(json!({})),
                "strict": spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }));
        }
        Some("json_object") => conv.json_object = true,
        _ => {}
    }
}

fn read_request(body: &Value) -> Result<Conversation, GatewayError> {
    let mut conv = Conversation::default();
    common(body, &mut conv);
    conv.seed = body.get("seed").and_then(Value::as_i64);
    conv.presence_penalty = body.get("presence_penalty").and_then(Value::as_f64);
    conv.frequency_penalty = body.get("frequency_penalty").and_then(Value::as_f64);
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad(
            "`n` greater than 1 cannot be served by this model's provider.",
        ));
    }
    conv.max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    conv.tools = openai_tools(body.get("tools"), true);
    conv.tool_choice = openai_tool_choice(body.get("tool_choice"));
    if let Some(format) = body.get("response_format") {
        schema_format(format, &mut conv);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Missing required parameter: `messages`."))?;
    for m in messages {
        let content = m.get("content").unwrap_or(&Value::Null);
        match str_of(m, "role") {
            Some("system") | Some("developer") => conv.system.push(text_of(content)),
            Some("user") => conv.messages.push(Message {
                role: Role::User,
                parts: chat_parts(content)?,
            }),
            Some("assistant") => {
                let mut parts = chat_parts(content)?;
                parts.extend(refusal(m));
                parts.extend(tool_calls(m));
                conv.messages.push(Message {
                    role: Role::Assistant,
                    parts,
                });
            }
            Some("tool") => conv.messages.push(Message {
                role: Role::User,
                parts: vec![Part::ToolResult {
                    id: str_of(m, "tool_call_id").unwrap_or_default().into(),
                    content: text_of(content),
                    is_error: false,
                }],
            }),
            _ => {
                return Err(bad(
                    "every message needs a role of system, developer, user, assistant or tool",
                ))
            }
        }
    }
    Ok(conv)
}

fn chat_content(parts: &[Part]) -> Value {
    let texts: Vec<&Part> = parts
        .iter()
        .filter(|p| matches!(p, Part::Text(_) | Part::Image { .. }))
        .collect();
    if let [Part::Text(t)] = texts.as_slice() {
        return Value::String(t.clone());
    }
    Value::Array(
        texts
            .iter()
            .map(|p| match p {
                Part::Image { url } => json!({"type": "image_url", "image_url": {"url": url}}),
                Part::Text(t) => json!({"type": "text", "text": t}),
                _ => Value::Null,
            })
            .collect(),
    )
}

fn write_request(conv: &Conversation, model: &str) -> Value {
    let mut messages = Vec::new();
    if !conv.system.is_empty() {
        messages.push(json!({"role": "system", "content": conv.system.join("\n\n")}));
    }
    for m in &conv.messages {
        let results: Vec<&Part> = m
            .parts
            .iter()
            .filter(|p| matches!(p, Part::ToolResult { .. }))
            .collect();
        for r in &results {
            if let Part::ToolResult {
                id,
                content,
                is_error,
            } = r
            {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        }
        let has_other = m
            .parts
            .iter()
            .any(|p| !matches!(p, Part::ToolResult { .. }));
        if !has_other {
            continue;
        }
        match m.role {
            Role::User => messages.push(json!({"role": "user", "content": chat_content(&m.parts)})),
            Role::Assistant => messages.push(assistant_message(&m.parts)),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = conv.max_tokens {
        out.insert("max_completion_tokens".into(), n.into());
    }
    insert_opt(&mut out, "temperature", conv.temperature.map(Value::from));
    insert_opt(&mut out, "top_p", conv.top_p.map(Value::from));
    if !conv.stop.is_empty() {
        out.insert("stop".into(), json!(conv.stop));
    }
    if !conv.tools.is_empty() {
        let tools: Vec<Value> = conv
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        insert_opt(
            &mut out,
            "parallel_tool_calls",
            conv.parallel_tool_calls.map(Value::from),
        );
    }
    insert_opt(
        &mut out,
        "tool_choice",
        conv.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        }),
    );
    if let Some(schema) = &conv.json_schema {
        out.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": schema}),
        );
    } else if conv.json_object {
        out.insert("response_format".into(), json!({"type": "json_object"}));
    }
    insert_opt(&mut out, "user", conv.user.clone().map(Value::String));
    insert_opt(
        &mut out,
        "reasoning_effort",
        conv.reasoning_effort.clone().map(Value::String),
    );
    if conv.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(out)
}

// ---- answers ----

/// The `refusal` of an OpenAI chat message.
fn refusal(message: &Value) -> Option<Part> {
    str_of(message, "refusal")
        .filter(|r| !r.is_empty())
        .map(|r| Part::Refusal(r.into()))
}

/// The tool calls of an OpenAI chat message (`tool_calls[].function`).
fn tool_calls(message: &Value) -> impl Iterator<Item = Part> + '_ {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| Part::ToolCall {
            id: str_of(call, "id").unwrap_or_default().into(),
            name: call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            arguments: call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}")
                .into(),
        })
}

fn read_reply(v: &Value, now_s: u64) -> Result<Reply, GatewayError> {
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
    parts.extend(refusal(message));
    parts.extend(tool_calls(message));
    let u = v.get("usage").unwrap_or(&Value::Null);
    Ok(Reply {
        id: str_of(v, "id").unwrap_or("chatcmpl-tollgate").into(),
        model: str_of(v, "model").unwrap_or_default().into(),
        created: v.get("created").and_then(Value::as_u64).unwrap_or(now_s),
        parts,
        finish: read_finish(str_of(choice, "finish_reason").unwrap_or("stop")),
        usage: Usage::from_usage_object(u).unwrap_or_default(),
    })
}

fn usage_object(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// An assistant turn: its text (null when it only refuses or calls tools),
/// refusal and tool calls; in a request's history and in an answer alike.
fn assistant_message(parts: &[Part]) -> Value {
    let text = joined_text(parts);
    let refusal = joined_refusal(parts);
    let calls: Vec<Value> = parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, arguments } => {
                Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
            }
            _ => None,
        })
        .collect();
    let only_other = text.is_empty() && !(calls.is_empty() && refusal.is_empty());
    let mut message = json!({"role": "assistant", "content": if only_other { Value::Null } else { Value::String(text) }});
    if !refusal.is_empty() {
        set(&mut message, "refusal", Value::String(refusal));
    }
    if !calls.is_empty() {
        set(&mut message, "tool_calls", Value::Array(calls));
    }
    message
}

fn write_reply(r: &Reply) -> Value {
    let mut message = assistant_message(&r.parts);
    if message.get("refusal").is_none() {
        set(&mut message, "refusal", Value::Null);
    }
    json!({
        "id": r.id, "object": "chat.completion", "created": r.created, "model": r.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(r.finish), "logprobs": null}],
        "usage": usage_object(&r.usage),
    })
}

// ---- streams ----

fn decode(d: &mut Decoder, v: &Value, out: &mut Vec<Event>) {
    if let Some(e) = v.get("error") {
        out.push(Event::Error(
            str_of(e, "message").unwrap_or("provider error").into(),
        ));
        return;
    }
    d.start(str_of(v, "id"), str_of(v, "model"), out);
    if let Some(choice) = v.pointer("/choices/0") {
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = str_of(delta, "content").filter(|t| !t.is_empty()) {
            out.push(Event::TextDelta(text.into()));
        }
        if let Some(text) = str_of(delta, "refusal").filter(|t| !t.is_empty()) {
            out.push(Event::RefusalDelta(text.into()));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                let id = str_of(call, "id").unwrap_or_default().to_string();
                out.push(Event::ToolStart {
                    index,
                    id,
                    name: name.into(),
                });
            }
            if let Some(args) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                out.push(Event::ToolArgs {
                    index,
                    json: args.into(),
                });
            }
        }
        if let Some(reason) = str_of(choice, "finish_reason") {
            out.push(Event::Finish(read_finish(reason)));
        }
    }
    if let Some(usage) = v
        .get("usage")
        .filter(|u| !u.is_null())
        .and_then(Usage::from_usage_object)
    {
        out.push(Event::Usage(usage));
    }
}

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
    #[serde(default)]
    index: u64,
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
    refusal: Option<IgnoredAny>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// True when `data` was a plain text delta of a started stream, read into
/// borrowed structs (with the same events the full reader would give).
fn text_delta(data: &str, out: &mut Vec<Event>) -> bool {
    match serde_json::from_str::<ChatChunk>(data) {
        Ok(ChatChunk {
            choices,
            usage: None,
            error: None,
        }) => match choices.as_slice() {
            [ChatChoice {
                index: _,
                delta:
                    ChatDelta {
                        content: Some(text),
                        refusal: None,
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
    }
}

fn chunk(e: &Encoder, choices: Value, usage: Option<Value>, out: &mut Vec<u8>) {
    let mut chunk = json!({"id": e.id, "object": "chat.completion.chunk", "created": e.now_s, "model": e.model, "choices": choices});
    if let Some(u) = usage {
        set(&mut chunk, "usage", u);
    }
    out.extend_from_slice(b"data: ");
    write_json(out, &chunk);
    out.extend_from_slice(b"\n\n");
}

/// A text delta, the most frequent event, written without building a
/// `Value` (same JSON as `delta_chunk` would give).
fn text_chunk(e: &Encoder, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":");
    write_json(out, text);
    out.extend_from_slice(b"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":");
    out.extend_from_slice(e.now_s.to_string().as_bytes());
    out.extend_from_slice(b",\"id\":");
    write_json(out, &e.id);
    out.extend_from_slice(b",\"model\":");
    write_json(out, &e.model);
    out.extend_from_slice(b",\"object\":\"chat.completion.chunk\"}\n\n");
}

fn delta_chunk(e: &Encoder, delta: Value, out: &mut Vec<u8>) {
    chunk(
        e,
        json!([{"index": 0, "delta": delta, "finish_reason": null, "logprobs": null}]),
        None,
        out,
    );
}

fn finish_chunk(e: &mut Encoder, out: &mut Vec<u8>) {
    if e.finish_sent {
        return;
    }
    e.finish_sent = true;
    let reason = finish_reason(e.finish.unwrap_or(Finish::Stop));
    chunk(
        e,
        json!([{"index": 0, "delta": {}, "finish_reason": reason, "logprobs": null}]),
        None,
        out,
    );
}

/// Chat streams edited in place: a slot per choice's content, refusal and
/// tool call's arguments, ended by the choice's `finish_reason`.
impl StreamEdit for Chat {
    fn plain_text<'a>(&self, data: &'a str) -> Option<PlainText<'a>> {
        let chunk = serde_json::from_str::<ChatChunk>(data).ok()?;
        match <[ChatChoice; 1]>::try_from(chunk.choices) {
            Ok(
                [ChatChoice {
                    index,
                    delta:
                        ChatDelta {
                            content: Some(text),
                            tool_calls: None,
                            refusal: None,
                        },
                    finish_reason: None,
                }],
            ) => Some(PlainText {
                slot: (index, 0),
                text,
                sequence: None,
            }),
            _ => None,
        }
    }

    fn texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String)) {
        for c in choices_mut(v) {
            let choice = u64_of(c, "index");
            if let Some(Value::String(text)) = c.pointer_mut("/delta/content") {
                f((choice, 0), text);
            }
            if let Some(Value::String(text)) = c.pointer_mut("/delta/refusal") {
                f((choice, REFUSAL_PART), text);
            }
            let calls = c
                .pointer_mut("/delta/tool_calls")
                .and_then(Value::as_array_mut);
            for call in calls.into_iter().flatten() {
                let slot = (choice, 1 + u64_of(call, "index"));
                if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                    f(slot, arguments);
                }
            }
        }
    }

    fn ends(&self, v: &Value) -> Ends {
        let ended: Vec<u64> = choices(v)
            .filter(|c| c.get("finish_reason").is_some_and(|r| !r.is_null()))
            .map(|c| u64_of(c, "index"))
            .collect();
        if ended.is_empty() {
            Ends::None
        } else {
            Ends::Groups(ended)
        }
    }

    fn whole_texts(&self, _: &mut Value, _: &mut dyn FnMut(Slot, &mut String)) {}

    fn observe(&self, st: &mut EditState, v: &Value) {
        if st.template.is_none() && v.get("choices").is_some() {
            st.template = Some(v.clone());
        }
    }

    /// Every choice ends with `content_filter`, the blocked one after the
    /// notice.
    fn blocked(&self, st: &mut EditState, b: Block, out: &mut Vec<u8>) {
        let mut chunk = st.template.take().unwrap_or_else(|| json!({}));
        if let Some(o) = chunk.as_object_mut() {
            o.remove("usage");
            o.remove("obfuscation");
        }
        let mut choices: Vec<u64> = b.slots.iter().map(|s| s.0).collect();
        choices.sort_unstable();
        choices.dedup();
        for index in choices {
            let delta = if index == b.slot.0 {
                json!({"content": b.notice})
            } else {
                json!({})
            };
            set(
                &mut chunk,
                "choices",
                json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason(Finish::ContentFilter)}]),
            );
            out.extend_from_slice(b"data: ");
            write_json(out, &chunk);
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// A choice's refusal slot (its content is part 0, tool call `i` part
/// 1 + `i`).
const REFUSAL_PART: u64 = u64::MAX;

/// The `choices` of a chunk or answer.
fn choices(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The `choices` of a chunk or answer, to edit.
fn choices_mut(v: &mut Value) -> impl Iterator<Item = &mut Value> {
    v.get_mut("choices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fast_path_writes_what_the_value_path_would() {
        let text = "quote \" backslash \\ newline \n tab \t ünïcödé \u{1}";
        let mut e = Encoder::for_test(crate::core::api::Api::Messages);
        e.id = "chatcmpl-\"x".into();
        e.model = "m".into();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        text_chunk(&e, text, &mut fast);
        delta_chunk(&e, json!({"content": text}), &mut slow);
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }

    #[test]
    fn refusal_deltas_take_the_full_reader() {
        let mut out = Vec::new();
        let refusal = r#"{"choices":[{"delta":{"content":"","refusal":"No."}}]}"#;
        assert!(!text_delta(refusal, &mut out));
        let mut d = Decoder::new(crate::core::wire::Wire::ChatCompletions);
        decode(&mut d, &serde_json::from_str(refusal).unwrap(), &mut out);
        assert_eq!(out.last(), Some(&Event::RefusalDelta("No.".into())));
        let text = r#"{"choices":[{"delta":{"content":"Hi","refusal":null}}]}"#;
        let mut out = Vec::new();
        assert!(text_delta(text, &mut out));
        assert_eq!(out, [Event::TextDelta("Hi".into())]);
    }
}
