//! Streams: the upstream's SSE decoded into canonical `Event`s and encoded
//! as the client's event sequence, chunk by chunk as they arrive. Upstream
//! bytes may be split anywhere (the framer reassembles events). A stream
//! that ends early still gets a valid terminal sequence for its client.

use super::response::{anthropic_usage, chat_usage, responses_usage};
use super::{set, str_of, u64_of, Finish, Part, Reply, Translation};
use crate::core::api::Api;
use crate::core::sse::SseEvent;
use crate::core::usage::Usage;
use serde_json::{json, Value};

mod responses;
mod text_delta;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start {
        id: String,
        model: String,
    },
    TextDelta(String),
    /// A tool call begins; `index` counts tool calls from 0.
    ToolStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolArgs {
        index: usize,
        json: String,
    },
    Finish(Finish),
    Usage(Usage),
    Error(String),
}

/// Reads upstream events of one API.
#[derive(Debug, Default)]
pub struct Decoder {
    upstream: Option<Api>,
    started: bool,
    /// Anthropic block / Responses output index -> tool index.
    tool_blocks: Vec<(usize, usize)>,
    tools: usize,
    /// Anthropic: input token counts from message_start.
    input: Usage,
}

impl Decoder {
    pub fn new(upstream: Api) -> Decoder {
        Decoder {
            upstream: Some(upstream),
            ..Decoder::default()
        }
    }

    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Event>) {
        if event.data == "[DONE]" || event.data.is_empty() || self.text_delta(&event.data, out) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            out.push(Event::Error(
                "the provider sent a malformed stream event".into(),
            ));
            return;
        };
        match self.upstream {
            Some(Api::Messages) => self.anthropic(&v, out),
            Some(Api::Responses) => self.responses(&v, out),
            _ => self.chat(&v, out),
        }
    }

    fn start(&mut self, id: Option<&str>, model: Option<&str>, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(Event::Start {
                id: id.unwrap_or("tollgate").into(),
                model: model.unwrap_or_default().into(),
            });
        }
    }

    fn chat(&mut self, v: &Value, out: &mut Vec<Event>) {
        if let Some(e) = v.get("error") {
            out.push(Event::Error(
                str_of(e, "message").unwrap_or("provider error").into(),
            ));
            return;
        }
        self.start(str_of(v, "id"), str_of(v, "model"), out);
        if let Some(choice) = v.pointer("/choices/0") {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = str_of(delta, "content").filter(|t| !t.is_empty()) {
                out.push(Event::TextDelta(text.into()));
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
                out.push(Event::Finish(Finish::from_openai(reason)));
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

    fn anthropic(&mut self, v: &Value, out: &mut Vec<Event>) {
        match str_of(v, "type") {
            Some("message_start") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.start(str_of(m, "id"), str_of(m, "model"), out);
                let u = m.get("usage").unwrap_or(&Value::Null);
                self.input = anthropic_input(u);
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                if str_of(block, "type") == Some("tool_use") {
                    let index = self.tools;
                    self.tools += 1;
                    self.tool_blocks.push((
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
                    Some("input_json_delta") => {
                        let block = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                        if let Some(&(_, index)) =
                            self.tool_blocks.iter().find(|(b, _)| *b == block)
                        {
                            let json = str_of(delta, "partial_json").unwrap_or_default();
                            if !json.is_empty() {
                                out.push(Event::ToolArgs {
                                    index,
                                    json: json.into(),
                                });
                            }
                        }
                    }
                    _ => {} // thinking deltas stay with the provider
                }
            }
            Some("message_delta") => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(Event::Finish(Finish::from_anthropic(reason)));
                }
                if let Some(u) = v.get("usage") {
                    let mut usage = self.input;
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

/// Writes the client's event sequence.
#[derive(Debug)]
pub struct Encoder {
    client: Api,
    wants_usage: bool,
    now_s: u64,
    started: bool,
    done: bool,
    id: String,
    model: String,
    finish: Option<Finish>,
    finish_sent: bool,
    usage: Option<Usage>,
    /// Text and tool calls so far (Responses needs them in the final event).
    parts: Vec<Part>,
    /// Text of the open Responses message item.
    item_text: String,
    /// Anthropic / Responses: the open block or output item, and its number.
    open: Option<Open>,
    next_block: usize,
    /// tool index -> (block or output index, item id)
    tool_slots: Vec<(usize, usize, String)>,
    sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(usize),
    Tool(usize),
}

impl Encoder {
    pub fn new(t: &Translation, now_s: u64) -> Encoder {
        Encoder {
            client: t.client,
            wants_usage: t.client_wants_usage,
            now_s,
            started: false,
            done: false,
            id: String::new(),
            model: String::new(),
            finish: None,
            finish_sent: false,
            usage: None,
            parts: Vec::new(),
            item_text: String::new(),
            open: None,
            next_block: 0,
            tool_slots: Vec::new(),
            sequence: 0,
        }
    }

    pub fn encode(&mut self, event: Event, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started && !matches!(event, Event::Start { .. } | Event::Error(_)) {
            self.encode(
                Event::Start {
                    id: "tollgate".into(),
                    model: String::new(),
                },
                out,
            );
        }
        match event {
            Event::Start { id, model } => {
                if self.started {
                    return;
                }
                self.started = true;
                self.id = id;
                self.model = model;
                self.on_start(out);
            }
            Event::TextDelta(text) => {
                match self.parts.last_mut() {
                    Some(Part::Text(t)) => t.push_str(&text),
                    _ => self.parts.push(Part::Text(text.clone())),
                }
                self.on_text(&text, out);
            }
            Event::ToolStart { index, id, name } => {
                self.parts.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
                self.on_tool_start(index, &id, &name, out);
            }
            Event::ToolArgs { index, json } => {
                if let Some(Part::ToolCall { arguments, .. }) = self.tool_part(index) {
                    arguments.push_str(&json);
                }
                self.on_tool_args(index, &json, out);
            }
            Event::Finish(f) => {
                self.finish = Some(f);
                if self.client == Api::ChatCompletions {
                    self.chat_finish(out);
                }
            }
            Event::Usage(u) => self.usage = Some(u),
            Event::Error(message) => self.on_error(&message, out),
        }
    }

    fn tool_part(&mut self, index: usize) -> Option<&mut Part> {
        self.parts
            .iter_mut()
            .filter(|p| matches!(p, Part::ToolCall { .. }))
            .nth(index)
    }

    /// Ends the stream: closes what is open and writes the terminal events
    /// (also when the upstream stopped without finishing).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.encode(
                Event::Start {
                    id: "tollgate".into(),
                    model: String::new(),
                },
                out,
            );
        }
        match self.client {
            Api::ChatCompletions => {
                self.chat_finish(out);
                if self.wants_usage {
                    if let Some(u) = self.usage {
                        self.chat_chunk(json!([]), Some(chat_usage(&u)), out);
                    }
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Api::Messages => {
                self.close_block(out);
                let u = self.usage.unwrap_or_default();
                let finish = self.finish.unwrap_or(Finish::Stop);
                let mut usage = anthropic_usage(&u);
                if let Some(o) = usage.as_object_mut() {
                    o.remove("cache_creation_input_tokens");
                }
                self.sse(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": finish.anthropic(), "stop_sequence": null}, "usage": usage}),
                    out,
                );
                self.sse("message_stop", json!({"type": "message_stop"}), out);
            }
            _ => {
                self.close_item(out);
                let response = self.response_object("completed");
                self.responses_event("response.completed", json!({"response": response}), out);
            }
        }
        self.done = true;
    }

    fn sse(&mut self, name: &str, data: Value, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        write_json(out, &data);
        out.extend_from_slice(b"\n\n");
    }

    fn responses_event(&mut self, kind: &str, mut data: Value, out: &mut Vec<u8>) {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), Value::String(kind.into()));
            o.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        self.sse(kind, data, out);
    }

    fn chat_chunk(&mut self, choices: Value, usage: Option<Value>, out: &mut Vec<u8>) {
        let mut chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.now_s, "model": self.model, "choices": choices});
        if let Some(u) = usage {
            set(&mut chunk, "usage", u);
        }
        out.extend_from_slice(b"data: ");
        write_json(out, &chunk);
        out.extend_from_slice(b"\n\n");
    }

    /// A chat text delta, the most frequent event, written without
    /// building a `Value` (same JSON as `chat_delta` would give).
    fn chat_text(&self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":");
        write_json(out, text);
        out.extend_from_slice(
            b"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":",
        );
        out.extend_from_slice(self.now_s.to_string().as_bytes());
        out.extend_from_slice(b",\"id\":");
        write_json(out, &self.id);
        out.extend_from_slice(b",\"model\":");
        write_json(out, &self.model);
        out.extend_from_slice(b",\"object\":\"chat.completion.chunk\"}\n\n");
    }

    /// An Anthropic text delta, written without building a `Value`.
    fn messages_text(index: usize, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: content_block_delta\ndata: {\"delta\":{\"text\":");
        write_json(out, text);
        out.extend_from_slice(b",\"type\":\"text_delta\"},\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.extend_from_slice(b",\"type\":\"content_block_delta\"}\n\n");
    }

    fn chat_delta(&mut self, delta: Value, out: &mut Vec<u8>) {
        self.chat_chunk(
            json!([{"index": 0, "delta": delta, "finish_reason": null, "logprobs": null}]),
            None,
            out,
        );
    }

    fn chat_finish(&mut self, out: &mut Vec<u8>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        let reason = self.finish.unwrap_or(Finish::Stop).openai();
        self.chat_chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": reason, "logprobs": null}]),
            None,
            out,
        );
    }

    fn on_start(&mut self, out: &mut Vec<u8>) {
        match self.client {
            Api::ChatCompletions => {
                self.chat_delta(json!({"role": "assistant", "content": ""}), out)
            }
            Api::Messages => {
                let message = json!({
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.usage.map_or(0, |u| u.input_tokens), "output_tokens": 0},
                });
                self.sse(
                    "message_start",
                    json!({"type": "message_start", "message": message}),
                    out,
                );
            }
            _ => {
                let response = self.response_object("in_progress");
                self.responses_event("response.created", json!({"response": response}), out);
                let response = self.response_object("in_progress");
                self.responses_event("response.in_progress", json!({"response": response}), out);
            }
        }
    }

    fn on_text(&mut self, text: &str, out: &mut Vec<u8>) {
        match self.client {
            Api::ChatCompletions => self.chat_text(text, out),
            Api::Messages => {
                let index = self.open_text(out);
                Encoder::messages_text(index, text, out);
            }
            _ => {
                let index = self.open_text(out);
                self.item_text.push_str(text);
                let item_id = self.message_item_id();
                self.responses_event(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
                    out,
                );
            }
        }
    }

    fn on_tool_start(&mut self, index: usize, id: &str, name: &str, out: &mut Vec<u8>) {
        match self.client {
            Api::ChatCompletions => self.chat_delta(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                out,
            ),
            Api::Messages => {
                self.close_block(out);
                let block = self.next_block;
                self.next_block += 1;
                self.open = Some(Open::Tool(block));
                self.tool_slots.push((index, block, id.into()));
                self.sse(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": block, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                    out,
                );
            }
            _ => {
                self.close_item(out);
                let output = self.next_block;
                self.next_block += 1;
                self.open = Some(Open::Tool(output));
                let item_id = format!("fc_{output}_{}", self.id);
                self.tool_slots.push((index, output, item_id.clone()));
                let item = json!({"type": "function_call", "id": item_id, "call_id": id, "name": name, "arguments": "", "status": "in_progress"});
                self.responses_event("response.output_item.added", json!({"output_index": output, "item": item}), out);
            }
        }
    }

    fn on_tool_args(&mut self, index: usize, json_piece: &str, out: &mut Vec<u8>) {
        let slot = self
            .tool_slots
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, b, id)| (*b, id.clone()));
        match (self.client, slot) {
            (Api::ChatCompletions, _) => {
                self.chat_delta(json!({"tool_calls": [{"index": index, "function": {"arguments": json_piece}}]}), out)
            }
            (Api::Messages, Some((block, _))) => self.sse(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": json_piece}}),
                out,
            ),
            (Api::Responses, Some((output, item_id))) => self.responses_event(
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": output, "delta": json_piece}),
                out,
            ),
            _ => {}
        }
    }

    fn on_error(&mut self, message: &str, out: &mut Vec<u8>) {
        match self.client {
            Api::Messages => {
                self.sse(
                    "error",
                    json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                    out,
                );
                self.done = true;
            }
            Api::Responses => {
                self.responses_event(
                    "error",
                    json!({"code": "upstream_error", "message": message, "param": null}),
                    out,
                );
                self.done = true;
            }
            _ => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(
                    json!({"error": {"message": message, "type": "server_error"}})
                        .to_string()
                        .as_bytes(),
                );
                out.extend_from_slice(b"\n\n");
            }
        }
    }

    /// Opens a text block / message item if none is open; its index.
    fn open_text(&mut self, out: &mut Vec<u8>) -> usize {
        if let Some(Open::Text(i)) = self.open {
            return i;
        }
        match self.client {
            Api::Messages => self.close_block(out),
            _ => self.close_item(out),
        }
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(Open::Text(index));
        if self.client == Api::Messages {
            self.sse(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                out,
            );
        } else {
            let item_id = self.message_item_id();
            let item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
            self.responses_event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
                out,
            );
            self.responses_event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
                out,
            );
        }
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(Open::Text(i) | Open::Tool(i)) = self.open.take() {
            self.sse(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
                out,
            );
        }
    }

    fn message_item_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    fn close_item(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            Some(Open::Text(i)) => {
                let item_id = self.message_item_id();
                let text = std::mem::take(&mut self.item_text);
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.responses_event(
                    "response.output_text.done",
                    json!({"item_id": item_id, "output_index": i, "content_index": 0, "text": text, "logprobs": []}),
                    out,
                );
                self.responses_event(
                    "response.content_part.done",
                    json!({"item_id": item_id, "output_index": i, "content_index": 0, "part": part}),
                    out,
                );
                let item = json!({"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]});
                self.responses_event(
                    "response.output_item.done",
                    json!({"output_index": i, "item": item}),
                    out,
                );
            }
            Some(Open::Tool(i)) => {
                let Some((index, _, item_id)) =
                    self.tool_slots.iter().find(|(_, b, _)| *b == i).cloned()
                else {
                    return;
                };
                let (call_id, name, args) = match self.tool_part(index) {
                    Some(Part::ToolCall {
                        id,
                        name,
                        arguments,
                    }) => (id.clone(), name.clone(), arguments.clone()),
                    _ => Default::default(),
                };
                self.responses_event(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": i, "arguments": args}),
                    out,
                );
                let item = json!({"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": args, "status": "completed"});
                self.responses_event(
                    "response.output_item.done",
                    json!({"output_index": i, "item": item}),
                    out,
                );
            }
            None => {}
        }
    }

    /// A Responses upstream's id is kept as is; others get the prefix.
    fn response_id(&self) -> String {
        if self.id.starts_with("resp_") {
            self.id.clone()
        } else {
            format!("resp_{}", self.id)
        }
    }

    fn response_object(&self, status: &str) -> Value {
        let reply = Reply {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.now_s,
            parts: self.parts.clone(),
            finish: self.finish.unwrap_or(Finish::Stop),
            usage: self.usage.unwrap_or_default(),
        };
        let incomplete = status == "completed" && reply.finish == Finish::Length;
        let output = if status == "completed" {
            super::response::responses_output(&reply)
        } else {
            Vec::new()
        };
        json!({
            "id": self.response_id(), "object": "response", "created_at": self.now_s, "model": self.model,
            "status": if incomplete { "incomplete" } else { status },
            "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "output": output,
            "usage": if status == "completed" { responses_usage(&reply.usage) } else { Value::Null },
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
        })
    }
}

/// Upstream events in, client bytes out. The caller frames the upstream
/// bytes (`SseFramer`): the response path frames each chunk once, for usage
/// and for translation.
#[derive(Debug)]
pub struct StreamTranslator {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Same API: events pass unchanged except the usage chunk the client did not ask for.
    DropUsageChunk,
    Translate(Decoder, Box<Encoder>),
}

impl StreamTranslator {
    pub fn new(t: &Translation, now_s: u64) -> StreamTranslator {
        let mode = if t.client == t.upstream {
            Mode::DropUsageChunk
        } else {
            Mode::Translate(Decoder::new(t.upstream), Box::new(Encoder::new(t, now_s)))
        };
        StreamTranslator { mode }
    }

    /// Translates framed events; `hook` sees (and may change) the canonical
    /// events between decoding and encoding: the output guardrails' seat.
    pub fn push_events(
        &mut self,
        events: &[SseEvent],
        hook: &mut dyn FnMut(&mut Vec<Event>),
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(events.iter().map(|e| e.data.len() * 2).sum());
        for event in events {
            self.event(event, &mut out, hook);
        }
        out
    }

    /// Decodes and re-encodes even same-API streams, so a hook sees them.
    pub fn reencoding(t: &Translation, now_s: u64) -> StreamTranslator {
        StreamTranslator {
            mode: Mode::Translate(Decoder::new(t.upstream), Box::new(Encoder::new(t, now_s))),
        }
    }

    /// The upstream ended. An event it left unterminated is dropped, as the
    /// SSE spec says; the client still gets a complete terminal sequence.
    pub fn finish(&mut self) -> Vec<u8> {
        self.finish_with(&mut |_| {})
    }

    /// Like `finish`; `hook` gets a last (possibly empty) batch to flush into.
    pub fn finish_with(&mut self, hook: &mut dyn FnMut(&mut Vec<Event>)) -> Vec<u8> {
        let mut out = Vec::new();
        if let Mode::Translate(_, encoder) = &mut self.mode {
            let mut last = Vec::new();
            hook(&mut last);
            for e in last {
                encoder.encode(e, &mut out);
            }
            encoder.finish(&mut out);
        }
        out
    }

    fn event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<u8>,
        hook: &mut dyn FnMut(&mut Vec<Event>),
    ) {
        match &mut self.mode {
            Mode::DropUsageChunk => {
                let usage_only = event.data.contains("\"usage\"")
                    && serde_json::from_str::<Value>(&event.data)
                        .ok()
                        .and_then(|v| {
                            v.get("choices")
                                .and_then(Value::as_array)
                                .map(Vec::is_empty)
                        })
                        .unwrap_or(false);
                if !usage_only {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(event.data.as_bytes());
                    out.extend_from_slice(b"\n\n");
                }
            }
            Mode::Translate(decoder, encoder) => {
                let mut events = Vec::new();
                decoder.decode(event, &mut events);
                hook(&mut events);
                for e in events {
                    encoder.encode(e, out);
                }
            }
        }
    }
}

/// Appends `v` as JSON. Writing to a `Vec` cannot fail, and every value
/// here is serializable (no maps with non-string keys).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        log::warn!("tollgate: could not encode a stream event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sse::SseFramer;

    const CHAT_STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"x\\\":\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );

    const MESSAGES_STREAM: &str = concat!(
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \\u00e9\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"q\\\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\":2}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":6}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o\"}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":3,\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":4,\"output_index\":1,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n",
        "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":5,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":6,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"Héllo \",\"logprobs\":[]}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"world\",\"logprobs\":[]}\n\n",
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":8,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"text\":\"Héllo world\",\"logprobs\":[]}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":9,\"output_index\":1,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Héllo world\",\"annotations\":[]}]}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":10,\"output_index\":2,\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"a\",\"arguments\":\"\",\"status\":\"in_progress\"}}\n\n",
        "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":11,\"item_id\":\"fc_1\",\"output_index\":2,\"delta\":\"{\\\"x\\\":\"}\n\n",
        "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":12,\"item_id\":\"fc_1\",\"output_index\":2,\"delta\":\"1}\"}\n\n",
        "event: response.function_call_arguments.done\ndata: {\"type\":\"response.function_call_arguments.done\",\"sequence_number\":13,\"item_id\":\"fc_1\",\"output_index\":2,\"arguments\":\"{\\\"x\\\":1}\"}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":14,\"output_index\":2,\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"a\",\"arguments\":\"{\\\"x\\\":1}\",\"status\":\"completed\"}}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":15,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4o\",\"incomplete_details\":null,\"usage\":{\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":4,\"output_tokens_details\":{\"reasoning_tokens\":1},\"total_tokens\":13}}}\n\n",
    );

    #[test]
    fn text_delta_fast_paths_write_what_the_value_path_would() {
        let text = "quote \" backslash \\ newline \n tab \t ünïcödé \u{1}";
        let mut e = Encoder::new(&t(Api::ChatCompletions, Api::Messages, false), 7);
        e.id = "chatcmpl-\"x".into();
        e.model = "m".into();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        e.chat_text(text, &mut fast);
        e.chat_delta(json!({"content": text}), &mut slow);
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        Encoder::messages_text(3, text, &mut fast);
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

    fn t(client: Api, upstream: Api, wants_usage: bool) -> Translation {
        Translation {
            client,
            upstream,
            stream: true,
            client_wants_usage: wants_usage,
        }
    }

    fn run(tr: &Translation, input: &str, cuts: &[usize]) -> Vec<u8> {
        drive(StreamTranslator::new(tr, 1), input, cuts)
    }

    fn reencode(tr: &Translation, input: &str, cuts: &[usize]) -> Vec<u8> {
        drive(StreamTranslator::reencoding(tr, 1), input, cuts)
    }

    fn drive(mut s: StreamTranslator, input: &str, cuts: &[usize]) -> Vec<u8> {
        let mut framer = SseFramer::new();
        let mut push = |chunk: &[u8]| s.push_events(&framer.push(chunk), &mut |_| {});
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            out.extend(push(&input.as_bytes()[last..c]));
            last = c;
        }
        out.extend(push(&input.as_bytes()[last..]));
        out.extend(s.finish());
        out
    }

    fn events(out: &[u8]) -> Vec<(Option<String>, Value)> {
        let mut f = SseFramer::new();
        f.push(out)
            .into_iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| (e.event, serde_json::from_str(&e.data).unwrap()))
            .collect()
    }

    #[test]
    fn chat_to_messages_sequence() {
        let out = run(
            &t(Api::Messages, Api::ChatCompletions, false),
            CHAT_STREAM,
            &[],
        );
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[1].1["content_block"]["type"], "text");
        assert_eq!(ev[5].1["content_block"]["name"], "a");
        assert_eq!(ev[9].1["index"], 2);
        let delta = &ev[12].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["input_tokens"], 9);
        assert_eq!(delta["usage"]["output_tokens"], 4);
    }

    #[test]
    fn messages_to_chat_and_responses() {
        let out = run(
            &t(Api::ChatCompletions, Api::Messages, true),
            MESSAGES_STREAM,
            &[],
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let ev = events(&out);
        assert_eq!(ev[0].1["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(ev[1].1["choices"][0]["delta"]["content"], "Hi é");
        assert_eq!(
            ev[2].1["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(
            ev[4].1["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            ":2}"
        );
        assert_eq!(ev[5].1["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(ev[6].1["usage"]["prompt_tokens"], 7);
        assert_eq!(ev[6].1["usage"]["completion_tokens"], 6);

        let out = run(
            &t(Api::Responses, Api::Messages, false),
            MESSAGES_STREAM,
            &[],
        );
        let ev = events(&out);
        let kinds: Vec<&str> = ev
            .iter()
            .map(|(_, v)| v["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        for (i, (name, v)) in ev.iter().enumerate() {
            assert_eq!(name.as_deref(), v["type"].as_str());
            assert_eq!(v["sequence_number"], i);
        }
        let done = &ev.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hi é");
        assert_eq!(done["output"][1]["arguments"], "{\"q\":2}");
        assert_eq!(done["usage"]["output_tokens"], 6);
    }

    #[test]
    fn same_output_at_every_cut() {
        for (tr, input) in [
            (t(Api::Messages, Api::ChatCompletions, false), CHAT_STREAM),
            (t(Api::Responses, Api::ChatCompletions, false), CHAT_STREAM),
            (
                t(Api::ChatCompletions, Api::Messages, true),
                MESSAGES_STREAM,
            ),
            (t(Api::Responses, Api::Messages, false), MESSAGES_STREAM),
            (
                t(Api::ChatCompletions, Api::ChatCompletions, false),
                CHAT_STREAM,
            ),
            (
                t(Api::ChatCompletions, Api::Responses, true),
                RESPONSES_STREAM,
            ),
            (t(Api::Messages, Api::Responses, false), RESPONSES_STREAM),
        ] {
            let whole = run(&tr, input, &[]);
            for cut in 1..input.len() {
                assert_eq!(run(&tr, input, &[cut]), whole, "{tr:?} cut at {cut}");
            }
        }
        let tr = t(Api::Responses, Api::Responses, false);
        let whole = reencode(&tr, RESPONSES_STREAM, &[]);
        for cut in 1..RESPONSES_STREAM.len() {
            let out = reencode(&tr, RESPONSES_STREAM, &[cut]);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    fn decode_all(upstream: Api, input: &str) -> Vec<Event> {
        let mut d = Decoder::new(upstream);
        let mut out = Vec::new();
        for e in SseFramer::new().push(input.as_bytes()) {
            d.decode(&e, &mut out);
        }
        out
    }

    #[test]
    fn responses_stream_decodes() {
        assert_eq!(
            decode_all(Api::Responses, RESPONSES_STREAM),
            [
                Event::Start {
                    id: "resp_1".into(),
                    model: "gpt-4o".into()
                },
                Event::TextDelta("Héllo ".into()),
                Event::TextDelta("world".into()),
                Event::ToolStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "a".into()
                },
                Event::ToolArgs {
                    index: 0,
                    json: "{\"x\":".into()
                },
                Event::ToolArgs {
                    index: 0,
                    json: "1}".into()
                },
                Event::Finish(Finish::ToolCalls),
                Event::Usage(Usage {
                    input_tokens: 9,
                    output_tokens: 4,
                    cached_tokens: 2,
                    reasoning_tokens: 1
                }),
            ]
        );
    }

    #[test]
    fn responses_stream_failures_and_cut_offs() {
        let created = "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"model\":\"m\"}}\n\n";
        let failed = "data: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_2\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        let decoded = decode_all(Api::Responses, &format!("{created}{failed}"));
        assert_eq!(decoded.last(), Some(&Event::Error("boom".into())));
        let error = "data: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null}\n\n";
        assert_eq!(
            decode_all(Api::Responses, error),
            [Event::Error("slow down".into())]
        );
        let incomplete = "data: {\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}}\n\n";
        assert_eq!(
            decode_all(Api::Responses, incomplete).first(),
            Some(&Event::Finish(Finish::Length))
        );
        // The client gets the failure as its API's error event.
        let tr = t(Api::Responses, Api::Responses, false);
        let ev = events(&reencode(&tr, &format!("{created}{failed}"), &[]));
        let (name, last) = ev.last().unwrap();
        assert_eq!(
            (name.as_deref(), &last["message"]),
            (Some("error"), &json!("boom"))
        );
        // Cut short: still a terminal response.completed.
        let half = &RESPONSES_STREAM[..RESPONSES_STREAM.len() / 2];
        let ev = events(&reencode(&tr, half, &[]));
        assert_eq!(ev.last().unwrap().0.as_deref(), Some("response.completed"));
    }

    #[test]
    fn responses_round_trip_keeps_text_tool_and_usage() {
        let tr = t(Api::Responses, Api::Responses, false);
        let ev = events(&reencode(&tr, RESPONSES_STREAM, &[]));
        for (i, (name, v)) in ev.iter().enumerate() {
            assert_eq!(name.as_deref(), v["type"].as_str());
            assert_eq!(v["sequence_number"], i);
        }
        let text: String = ev
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
            .map(|(_, v)| v["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Héllo world");
        let done = &ev.last().unwrap().1["response"];
        assert_eq!(done["id"], "resp_1");
        assert_eq!(done["model"], "gpt-4o");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Héllo world");
        let call = &done["output"][1];
        assert_eq!(
            (&call["type"], &call["call_id"], &call["name"]),
            (&json!("function_call"), &json!("call_1"), &json!("a"))
        );
        assert_eq!(call["arguments"], "{\"x\":1}");
        assert_eq!(
            done["usage"],
            json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
                   "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13})
        );
    }

    #[test]
    fn usage_chunk_only_for_clients_that_asked() {
        let out = String::from_utf8(run(
            &t(Api::ChatCompletions, Api::ChatCompletions, false),
            CHAT_STREAM,
            &[],
        ))
        .unwrap();
        assert!(!out.contains("\"usage\""));
        assert!(out.contains("\"finish_reason\":\"tool_calls\""));
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn cut_short_or_broken_streams_still_terminate() {
        let half = &MESSAGES_STREAM[..MESSAGES_STREAM.len() / 2];
        for client in [Api::ChatCompletions, Api::Responses] {
            let out = run(&t(client, Api::Messages, true), half, &[]);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.ends_with("data: [DONE]\n\n") || text.contains("response.completed"),
                "{text}"
            );
        }
        let out = run(
            &t(Api::Messages, Api::ChatCompletions, false),
            "data: {not json\n\n",
            &[],
        );
        let ev = events(&out);
        assert_eq!(ev.last().unwrap().0.as_deref(), Some("error"));
        let out = run(&t(Api::Messages, Api::ChatCompletions, false), "", &[]);
        assert!(String::from_utf8(out).unwrap().contains("message_stop"));
    }
}
