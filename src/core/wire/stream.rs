//! Streams: the upstream's SSE decoded through its wire into canonical
//! `Event`s and encoded through the client's, chunk by chunk as they arrive.
//! Upstream bytes may be split anywhere (the framer reassembles events). A
//! stream that ends early still gets a valid terminal sequence for its
//! client. The wires' own event shapes live in their files; this is the
//! state both sides share.

use super::{Event, Part, Translation, Wire};
use crate::core::api::Api;
use crate::core::sse::SseEvent;
use crate::core::usage::Usage;
use serde_json::Value;

/// What a client is told of an upstream event that is not JSON.
pub(super) const MALFORMED_EVENT: &str = "the provider sent a malformed stream event";

/// Reads upstream events of one wire.
#[derive(Debug)]
pub struct Decoder {
    upstream: Wire,
    started: bool,
    /// Upstream block / output index -> tool index.
    pub(super) tool_blocks: Vec<(usize, usize)>,
    pub(super) tools: usize,
    /// Input token counts from a stream's first event (Anthropic).
    pub(super) input: Usage,
}

impl Decoder {
    pub fn new(upstream: Wire) -> Decoder {
        Decoder {
            upstream,
            started: false,
            tool_blocks: Vec::new(),
            tools: 0,
            input: Usage::default(),
        }
    }

    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Event>) {
        let wire = self.upstream.upstream();
        if event.data == "[DONE]"
            || event.data.is_empty()
            || (self.started && wire.text_delta(&event.data, out))
        {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            out.push(Event::Error(MALFORMED_EVENT.into()));
            return;
        };
        wire.decode(self, &v, out);
    }

    /// Announces the stream once, with the upstream's id and model.
    pub(super) fn start(&mut self, id: Option<&str>, model: Option<&str>, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(Event::Start {
                id: id.unwrap_or("tollgate").into(),
                model: model.unwrap_or_default().into(),
            });
        }
    }
}

/// Writes the client's event sequence: the state every client wire's
/// writer shares (see `Inbound::stream_*`).
#[derive(Debug)]
pub struct Encoder {
    client: Api,
    pub(super) wants_usage: bool,
    pub(super) now_s: u64,
    started: bool,
    pub(super) done: bool,
    pub(super) id: String,
    pub(super) model: String,
    pub(super) finish: Option<super::Finish>,
    /// Chat: the finish chunk went out.
    pub(super) finish_sent: bool,
    pub(super) usage: Option<Usage>,
    /// What was said so far (Responses needs it in the final event).
    pub(super) parts: Vec<Part>,
    /// Text of the open Responses content or summary part.
    pub(super) item_text: String,
    /// The closed content parts of the open Responses message item.
    pub(super) item_parts: Vec<Value>,
    /// Messages / Responses: the open block or output item, and its number.
    pub(super) open: Option<Open>,
    pub(super) next_block: usize,
    /// tool index -> (block or output index, item id)
    pub(super) tool_slots: Vec<(usize, usize, String)>,
    /// Responses: the next event's `sequence_number`.
    pub(super) sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    Text(usize),
    /// Responses: a refusal part of a message item (Messages writes refusals as text).
    Refusal(usize),
    Reasoning(usize),
    Tool(usize),
}

impl Open {
    /// The open block's or output item's index.
    pub(super) fn index(self) -> usize {
        match self {
            Open::Text(i) | Open::Refusal(i) | Open::Reasoning(i) | Open::Tool(i) => i,
        }
    }
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
            item_parts: Vec::new(),
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
        let client = self.client.inbound();
        match event {
            Event::Start { id, model } => {
                if self.started {
                    return;
                }
                self.started = true;
                self.id = id;
                self.model = model;
                client.stream_start(self, out);
            }
            Event::TextDelta(text) => {
                match self.parts.last_mut() {
                    Some(Part::Text(t)) => t.push_str(&text),
                    _ => self.parts.push(Part::Text(text.clone())),
                }
                client.stream_text(self, &text, out);
            }
            Event::RefusalDelta(text) => {
                match self.parts.last_mut() {
                    Some(Part::Refusal(t)) => t.push_str(&text),
                    _ => self.parts.push(Part::Refusal(text.clone())),
                }
                client.stream_refusal(self, &text, out);
            }
            Event::ReasoningDelta(text) => {
                match self.parts.last_mut() {
                    Some(Part::Reasoning(t)) => t.push_str(&text),
                    _ => self.parts.push(Part::Reasoning(text.clone())),
                }
                client.stream_reasoning(self, &text, out);
            }
            Event::ToolStart { index, id, name } => {
                self.parts.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
                client.stream_tool_start(self, index, &id, &name, out);
            }
            Event::ToolArgs { index, json } => {
                if let Some(Part::ToolCall { arguments, .. }) = self.tool_part(index) {
                    arguments.push_str(&json);
                }
                client.stream_tool_args(self, index, &json, out);
            }
            Event::Finish(f) => {
                self.finish = Some(f);
                client.stream_finish(self, out);
            }
            Event::Usage(u) => self.usage = Some(u),
            Event::Error(message) => client.stream_error(self, &message, out),
        }
    }

    /// The `index`th tool call so far.
    pub(super) fn tool_part(&mut self, index: usize) -> Option<&mut Part> {
        self.parts
            .iter_mut()
            .filter(|p| matches!(p, Part::ToolCall { .. }))
            .nth(index)
    }

    /// The block or output index and item id of tool call `index`.
    pub(super) fn tool_slot(&self, index: usize) -> Option<(usize, String)> {
        self.tool_slots
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, b, id)| (*b, id.clone()))
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
        self.client.inbound().stream_end(self, out);
        self.done = true;
    }

    /// A named SSE event.
    pub(super) fn sse(&mut self, name: &str, data: Value, out: &mut Vec<u8>) {
        write_sse(out, name, &data);
    }

    #[cfg(test)]
    pub(super) fn for_test(client: Api) -> Encoder {
        Encoder::new(
            &Translation {
                client,
                upstream: client.wire(),
                stream: true,
                client_wants_usage: false,
            },
            7,
        )
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
    /// Same wire: events pass unchanged except the usage report the client
    /// did not ask for.
    DropUsageChunk(Wire),
    Translate(Decoder, Box<Encoder>),
}

impl StreamTranslator {
    pub fn new(t: &Translation, now_s: u64) -> StreamTranslator {
        let mode = if t.client.wire() == t.upstream {
            Mode::DropUsageChunk(t.upstream)
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

    /// Whether upstream events are decoded (the hook sees canonical events).
    pub fn decodes(&self) -> bool {
        match self.mode {
            Mode::DropUsageChunk(_) => false,
            Mode::Translate(..) => true,
        }
    }

    /// Decodes and re-encodes even a same-API stream (codec round trips).
    #[cfg(test)]
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
            Mode::DropUsageChunk(upstream) => {
                if !upstream.upstream().is_usage_event(&event.data) {
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

/// Appends a named SSE event.
pub(super) fn write_sse(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_json(out, data);
    out.extend_from_slice(b"\n\n");
}

/// Appends `v` as JSON. Writing to a `Vec` cannot fail, and every value
/// here is serializable (no maps with non-string keys).
pub(super) fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        log::warn!("tollgate: could not encode a stream event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sse::SseFramer;
    use crate::core::wire::Finish;
    use serde_json::json;

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

    fn t(client: Api, upstream: Api, wants_usage: bool) -> Translation {
        Translation {
            client,
            upstream: upstream.wire(),
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
        let mut d = Decoder::new(upstream.wire());
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

    /// What the full reader gives for `data` in a started stream.
    fn full(upstream: Api, data: &str) -> Vec<Event> {
        let mut d = Decoder::new(upstream.wire());
        d.started = true;
        let v = serde_json::from_str(data).unwrap();
        let mut out = Vec::new();
        upstream.wire().upstream().decode(&mut d, &v, &mut out);
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
            let mut out = Vec::new();
            let wire = upstream.wire().upstream();
            assert_eq!(wire.text_delta(data, &mut out), fast, "{data}");
            if fast {
                assert_eq!(out, full(upstream, data), "{data}");
            } else {
                assert!(out.is_empty());
            }
        }
        // Before the stream has started, the full reader must see the event.
        let mut d = Decoder::new(Wire::ChatCompletions);
        let mut out = Vec::new();
        d.decode(
            &SseEvent {
                event: None,
                data: cases[0].1.into(),
            },
            &mut out,
        );
        assert!(matches!(out.first(), Some(Event::Start { .. })));
    }

    const CHAT_REFUSAL_STREAM: &str = concat!(
        "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"refusal\":\"help.\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c2\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );

    const MESSAGES_THINKING_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m2\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Count \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"them.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Three\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    /// The `type`s of a translated stream's events.
    fn kinds(ev: &[(Option<String>, Value)]) -> Vec<&str> {
        ev.iter()
            .map(|(_, v)| v["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn chat_refusal_streams_to_responses_messages_and_chat() {
        let ev = events(&run(
            &t(Api::Responses, Api::ChatCompletions, false),
            CHAT_REFUSAL_STREAM,
            &[],
        ));
        assert_eq!(
            kinds(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(ev[3].1["part"], json!({"type": "refusal", "refusal": ""}));
        assert_eq!(ev[6].1["refusal"], "I can't help.");
        let refusal = json!([{"type": "refusal", "refusal": "I can't help."}]);
        assert_eq!(ev[8].1["item"]["content"], refusal);
        let done = &ev[9].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"], json!([ev[8].1["item"]]));

        let ev = events(&run(
            &t(Api::Messages, Api::ChatCompletions, false),
            CHAT_REFUSAL_STREAM,
            &[],
        ));
        let text: String = ev
            .iter()
            .filter_map(|(_, v)| v.pointer("/delta/text").and_then(Value::as_str))
            .collect();
        assert_eq!(text, "I can't help.");
        let stop = &ev[ev.len() - 2].1["delta"];
        assert_eq!(
            (&stop["stop_reason"], &stop["stop_sequence"]),
            (&json!("refusal"), &Value::Null)
        );

        // A same-API re-encode (output guardrails) keeps the refusal.
        let ev = events(&reencode(
            &t(Api::ChatCompletions, Api::ChatCompletions, false),
            CHAT_REFUSAL_STREAM,
            &[],
        ));
        let refusal: String = ev
            .iter()
            .filter_map(|(_, v)| {
                v.pointer("/choices/0/delta/refusal")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(refusal, "I can't help.");
    }

    #[test]
    fn messages_thinking_and_stop_sequence_stream_to_openai_clients() {
        let ev = events(&run(
            &t(Api::Responses, Api::Messages, false),
            MESSAGES_THINKING_STREAM,
            &[],
        ));
        assert_eq!(
            kinds(&ev)[2..10],
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
            ]
        );
        let reasoning = json!({"type": "reasoning", "id": "rs_0_m2",
            "summary": [{"type": "summary_text", "text": "Count them."}]});
        assert_eq!(ev[8].1["item"], reasoning);
        let done = &ev.last().unwrap().1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0], reasoning);
        assert_eq!(done["output"][1]["id"], "msg_1_m2");
        assert_eq!(done["output"][1]["content"][0]["text"], "Three");

        let out = run(
            &t(Api::ChatCompletions, Api::Messages, false),
            MESSAGES_THINKING_STREAM,
            &[],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Count"), "{text}");
        assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    }

    #[test]
    fn responses_items_match_the_final_output() {
        // Text, a refusal, reasoning, a call and text again: each item its own
        // id (the SDK's stream helper refuses repeated ones), and the final
        // output is the items as they were done.
        let mut e = Encoder::new(&t(Api::Responses, Api::Messages, false), 1);
        let mut out = Vec::new();
        for event in [
            Event::Start {
                id: "x".into(),
                model: "m".into(),
            },
            Event::TextDelta("a".into()),
            Event::RefusalDelta("no".into()),
            Event::TextDelta("b".into()),
            Event::ReasoningDelta("r".into()),
            Event::ToolStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
            },
            Event::ToolArgs {
                index: 0,
                json: "{}".into(),
            },
            Event::TextDelta("d".into()),
            Event::Finish(Finish::ToolCalls),
        ] {
            e.encode(event, &mut out);
        }
        e.finish(&mut out);
        let ev = events(&out);
        let items: Vec<&Value> = ev
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.output_item.done"))
            .map(|(_, v)| &v["item"])
            .collect();
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["msg_0_x", "rs_1_x", "fc_2_x", "msg_3_x"]);
        assert_eq!(
            items[0]["content"],
            json!([{"type": "output_text", "text": "a", "annotations": []},
                {"type": "refusal", "refusal": "no"},
                {"type": "output_text", "text": "b", "annotations": []}])
        );
        let content_indices: Vec<&Value> = ev
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.content_part.added"))
            .map(|(_, v)| &v["content_index"])
            .collect();
        assert_eq!(
            content_indices,
            [&json!(0), &json!(1), &json!(2), &json!(0)]
        );
        assert_eq!(
            ev.last().unwrap().1["response"]["output"],
            json!(items),
            "the final output repeats the done items"
        );
    }

    #[test]
    fn cross_api_streams_same_at_every_cut() {
        for (tr, input) in [
            (
                t(Api::Responses, Api::ChatCompletions, false),
                CHAT_REFUSAL_STREAM,
            ),
            (
                t(Api::Messages, Api::ChatCompletions, false),
                CHAT_REFUSAL_STREAM,
            ),
            (
                t(Api::Responses, Api::Messages, false),
                MESSAGES_THINKING_STREAM,
            ),
            (
                t(Api::ChatCompletions, Api::Messages, true),
                MESSAGES_THINKING_STREAM,
            ),
        ] {
            let whole = run(&tr, input, &[]);
            for cut in 1..input.len() {
                assert_eq!(run(&tr, input, &[cut]), whole, "{tr:?} cut at {cut}");
            }
        }
    }
}
