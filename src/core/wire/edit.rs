//! Same-API streams under output guardrails, edited in place. Every event
//! reaches the client as the provider sent it (the same bytes) except the
//! generated text the guardrails rewrite, so choices, thinking blocks and
//! their signatures, stop sequences, refusals, logprobs and fields no
//! canonical model knows pass through.
//!
//! Each text delta belongs to a slot (a choice, a content block, an output
//! part; the wire's `StreamEdit` says which) with its own guard. An event
//! waits while a guard holds part of its text, so with nothing to redact
//! the client gets exactly the provider's events, each at most a word
//! later. A redaction goes into the event where the redacted span starts;
//! events whose text it swallowed carry "". Events that repeat a slot's
//! whole text (Responses' `*.done`, `response.completed`) get the text the
//! client assembled. A block drops what is held and ends the stream in the
//! wire's shape with the notice.

use super::stream::{write_json, Encoder, MALFORMED_EVENT};
use super::Translation;
use crate::core::api::Api;
use crate::core::json;
use crate::core::sse::SseEvent;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// A text slot, as the wire numbers it: (choice, part) where a part is the
/// content or a tool call's arguments, (content block, 0), or (output
/// index, content index).
pub type Slot = (u64, u64);

/// The slots an event closes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ends {
    None,
    Slots(Vec<Slot>),
    /// Every slot of these choices or output items (`Slot`'s first number).
    Groups(Vec<u64>),
    /// The answer is over (its stop reason, or its final event).
    All,
}

/// What the wire remembers from the stream to end it after a block.
#[derive(Debug, Default)]
pub struct EditState {
    /// Chat: the first chunk (id, model, created); Responses: the response
    /// object of `response.created`.
    pub template: Option<Value>,
    /// Responses: the next `sequence_number`.
    pub sequence: u64,
    /// Responses: the output items so far, by output index; Messages: the
    /// content blocks started, by index.
    pub items: Vec<(u64, Value)>,
}

/// The most frequent event: one text delta and nothing else to edit (it
/// ends no slot and repeats no whole text).
pub struct PlainText<'a> {
    pub slot: Slot,
    pub text: Cow<'a, str>,
    /// Responses: the event's `sequence_number`.
    pub sequence: Option<u64>,
}

/// A wire's side of in-place editing (one implementation per client API).
pub trait StreamEdit: Sync {
    /// The cheap read of a plain text delta (borrowed structs, no `Value`);
    /// it must find the text `texts` would.
    fn plain_text<'a>(&self, data: &'a str) -> Option<PlainText<'a>>;

    /// Visits the generated text deltas of one event, with their slots.
    fn texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String));

    /// The slots the event closes (visited after its own deltas).
    fn ends(&self, v: &Value) -> Ends;

    /// Visits the fields of an event that repeat a slot's whole text.
    fn whole_texts(&self, v: &mut Value, f: &mut dyn FnMut(Slot, &mut String));

    /// Notes what `blocked` needs (the event as the client gets it; plain
    /// text deltas after the first event are not shown).
    fn observe(&self, st: &mut EditState, v: &Value);

    /// Ends the stream after a block in `b.slot`, with the notice where the
    /// client shows text; `b.slots` are all seen so far.
    fn blocked(&self, st: &mut EditState, b: Block, out: &mut Vec<u8>);
}

/// A block, for `StreamEdit::blocked`.
pub struct Block<'a> {
    pub slot: Slot,
    pub notice: &'a str,
    /// The slot's text the client already has (before the notice).
    pub text: &'a str,
    pub slots: &'a [Slot],
}

/// The guard: `(slot index, text, end)` -> the text to send now and the
/// bytes of what came that are still held, or the block notice.
pub type Filter<'a> = dyn FnMut(usize, &str, bool) -> Result<(String, usize), String> + 'a;

#[derive(Debug)]
pub struct StreamEditor {
    api: Api,
    /// The gateway asked for a usage event the client did not.
    drop_usage: bool,
    slots: Vec<SlotText>,
    /// Slot key -> index in `slots`.
    by_key: HashMap<Slot, usize>,
    /// The slots whose guard holds text (the only ones an end flushes),
    /// in all and by group: the provider decides how many slots there are,
    /// so no end walks them all.
    holding: BTreeSet<usize>,
    holding_by_group: HashMap<u64, BTreeSet<usize>>,
    held: VecDeque<Held>,
    state: EditState,
    stopped: bool,
    /// The first event is always read in full (`observe` sees it).
    started: bool,
}

/// One slot's text: pushed to its guard, released, and how.
#[derive(Debug)]
struct SlotText {
    key: Slot,
    pushed: usize,
    released: usize,
    /// Pushed, not yet released.
    pending: String,
    /// Released ranges whose events have not all gone out.
    pieces: VecDeque<Piece>,
    /// The slot's text as the client gets it.
    assembled: String,
    changed: bool,
}

/// Released bytes `start..end` of a slot; `out` when the guard changed them.
#[derive(Debug)]
struct Piece {
    start: usize,
    end: usize,
    out: Option<String>,
}

#[derive(Debug)]
struct Held {
    event: SseEvent,
    body: Body,
    /// (slot index, start, end) of each text delta, in visiting order.
    texts: Vec<(usize, usize, usize)>,
    /// A whole-text field was rewritten.
    edited: bool,
}

/// What the editor read of a held event.
#[derive(Debug)]
enum Body {
    /// `[DONE]` (or an empty event): written as it came.
    Raw,
    /// A plain text delta (`StreamEdit::plain_text`): its text and sequence
    /// number; parsed in full only if its text changes.
    Plain {
        text: String,
        sequence: Option<u64>,
    },
    Parsed(Value),
}

impl StreamEditor {
    pub fn new(api: Api, drop_usage: bool) -> StreamEditor {
        StreamEditor {
            api,
            drop_usage,
            slots: Vec::new(),
            by_key: HashMap::new(),
            holding: BTreeSet::new(),
            holding_by_group: HashMap::new(),
            held: VecDeque::new(),
            state: EditState::default(),
            stopped: false,
            started: false,
        }
    }

    /// One upstream event; writes what may go out now.
    pub fn push(&mut self, event: SseEvent, filter: &mut Filter, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        if event.data == "[DONE]" || event.data.is_empty() {
            if self.end_slots(Ends::All, filter, out) {
                self.queue(event, Body::Raw, Vec::new(), false, out);
            }
            return;
        }
        let edit = self.api.stream_edit();
        let plain = match self.started {
            true => edit.plain_text(&event.data),
            false => None,
        };
        self.started = true;
        if let Some(PlainText {
            slot,
            text,
            sequence,
        }) = plain
        {
            let text = text.into_owned();
            if let Some(delta) = self.push_text(slot, &text, filter, out) {
                let body = Body::Plain { text, sequence };
                self.queue(event, body, vec![delta], false, out);
            }
            return;
        }
        let wire = self.api.wire().upstream();
        if self.drop_usage && wire.is_usage_event(&event.data) {
            return;
        }
        // Strict: the client gets these bytes, and clients disagree on
        // which of a key's two values counts.
        let Ok(mut v) = json::parse_strict(event.data.as_bytes()) else {
            self.malformed(filter, out);
            return;
        };
        let mut deltas = Vec::new();
        edit.texts(&mut v, &mut |slot, text| deltas.push((slot, text.clone())));
        let mut texts = Vec::with_capacity(deltas.len());
        for (slot, text) in deltas {
            match self.push_text(slot, &text, filter, out) {
                Some(delta) => texts.push(delta),
                None => return,
            }
        }
        if !self.end_slots(edit.ends(&v), filter, out) {
            return;
        }
        let mut edited = false;
        let slots = &self.slots;
        edit.whole_texts(&mut v, &mut |slot, text| {
            if let Some(s) = slots.iter().find(|s| s.key == slot && s.changed) {
                if *text != s.assembled {
                    text.clone_from(&s.assembled);
                    edited = true;
                }
            }
        });
        self.queue(event, Body::Parsed(v), texts, edited, out);
    }

    /// A text delta of `slot` to its guard: its (slot index, start, end),
    /// or `None` when the guard blocked.
    fn push_text(
        &mut self,
        slot: Slot,
        text: &str,
        filter: &mut Filter,
        out: &mut Vec<u8>,
    ) -> Option<(usize, usize, usize)> {
        let i = self.slot(slot);
        let s = self.slots.get_mut(i)?;
        let start = s.pushed;
        s.pushed += text.len();
        s.pending.push_str(text);
        let delta = (i, start, s.pushed);
        self.run_guard(i, text, false, filter, out).then_some(delta)
    }

    /// An event that is not JSON (or has a key twice): the guard cannot
    /// read it as every client would, so the client gets an error event in
    /// its format instead (after what is held), and, where its API ends a
    /// stream at an error, nothing more.
    fn malformed(&mut self, filter: &mut Filter, out: &mut Vec<u8>) {
        log::warn!("tollgate: the provider sent a malformed stream event");
        if !self.end_slots(Ends::All, filter, out) {
            return;
        }
        self.write_ready(out);
        let mut e = Encoder::new(
            &Translation {
                client: self.api,
                upstream: self.api.wire(),
                stream: true,
                client_wants_usage: false,
            },
            0,
        );
        e.sequence = self.state.sequence;
        self.api
            .inbound()
            .stream_error(&mut e, MALFORMED_EVENT, out);
        self.state.sequence = e.sequence;
        self.stopped = e.done;
    }

    /// The upstream ended: everything held is released.
    pub fn finish(&mut self, filter: &mut Filter, out: &mut Vec<u8>) {
        if !self.stopped && self.end_slots(Ends::All, filter, out) {
            self.write_ready(out);
        }
    }

    /// The index of `key`'s slot, added when new.
    fn slot(&mut self, key: Slot) -> usize {
        if let Some(i) = self.by_key.get(&key) {
            return *i;
        }
        self.by_key.insert(key, self.slots.len());
        self.slots.push(SlotText {
            key,
            pushed: 0,
            released: 0,
            pending: String::new(),
            pieces: VecDeque::new(),
            assembled: String::new(),
            changed: false,
        });
        self.slots.len() - 1
    }

    /// Flushes the slots `ends` names that hold text, in the order they
    /// came; false when a guard blocked.
    fn end_slots(&mut self, ends: Ends, filter: &mut Filter, out: &mut Vec<u8>) -> bool {
        let mut ended: Vec<usize> = match ends {
            Ends::None => return true,
            Ends::All => self.holding.iter().copied().collect(),
            Ends::Slots(keys) => keys
                .iter()
                .filter_map(|k| self.by_key.get(k))
                .filter(|i| self.holding.contains(i))
                .copied()
                .collect(),
            Ends::Groups(groups) => groups
                .iter()
                .filter_map(|g| self.holding_by_group.get(g))
                .flatten()
                .copied()
                .collect(),
        };
        ended.sort_unstable();
        ended.dedup();
        ended
            .into_iter()
            .all(|i| self.run_guard(i, "", true, filter, out))
    }

    /// Runs slot `i`'s guard; records what it released. False on a block
    /// (the stream has then been ended).
    fn run_guard(
        &mut self,
        i: usize,
        text: &str,
        end: bool,
        filter: &mut Filter,
        out: &mut Vec<u8>,
    ) -> bool {
        let (released, held) = match filter(i, text, end) {
            Ok(r) => r,
            Err(notice) => {
                self.block(i, &notice, out);
                return false;
            }
        };
        let Some(s) = self.slots.get_mut(i) else {
            return true;
        };
        let cut = s
            .pending
            .floor_char_boundary(s.pending.len().saturating_sub(held));
        if cut > 0 || !released.is_empty() {
            let original: String = s.pending.drain(..cut).collect();
            let changed = released != original;
            s.changed |= changed;
            s.assembled.push_str(&released);
            s.pieces.push_back(Piece {
                start: s.released,
                end: s.released + cut,
                out: changed.then_some(released),
            });
            s.released += cut;
        }
        let (group, holds) = (s.key.0, !s.pending.is_empty());
        let by_group = self.holding_by_group.entry(group).or_default();
        if holds {
            self.holding.insert(i);
            by_group.insert(i);
        } else {
            self.holding.remove(&i);
            by_group.remove(&i);
        }
        true
    }

    fn block(&mut self, i: usize, notice: &str, out: &mut Vec<u8>) {
        self.stopped = true;
        self.held.clear();
        let keys: Vec<Slot> = self.slots.iter().map(|s| s.key).collect();
        let Some(s) = self.slots.get(i) else {
            return;
        };
        let block = Block {
            slot: s.key,
            notice,
            text: &s.assembled,
            slots: &keys,
        };
        self.api.stream_edit().blocked(&mut self.state, block, out);
    }

    fn queue(
        &mut self,
        event: SseEvent,
        body: Body,
        texts: Vec<(usize, usize, usize)>,
        edited: bool,
        out: &mut Vec<u8>,
    ) {
        self.held.push_back(Held {
            event,
            body,
            texts,
            edited,
        });
        self.write_ready(out);
    }

    /// Writes the held events whose text is all released, in order.
    fn write_ready(&mut self, out: &mut Vec<u8>) {
        while let Some(front) = self.held.front() {
            let ready = front
                .texts
                .iter()
                .all(|(i, _, end)| self.slots.get(*i).is_some_and(|s| s.released >= *end));
            if !ready {
                return;
            }
            if let Some(held) = self.held.pop_front() {
                self.write(held, out);
            }
        }
    }

    fn write(&mut self, held: Held, out: &mut Vec<u8>) {
        let Held {
            event,
            body,
            texts,
            mut edited,
        } = held;
        let edit = self.api.stream_edit();
        let mut value = match body {
            Body::Raw => return write_event(event.event.as_deref(), &event.data, out),
            // As it came unless its text changed.
            Body::Plain { text, sequence } => {
                let changed = texts.first().is_some_and(|&(i, start, end)| {
                    self.slots
                        .get(i)
                        .is_some_and(|s| s.text_for(start, end, &text) != text)
                });
                if !changed {
                    if let Some(n) = sequence {
                        self.state.sequence = n + 1;
                    }
                    self.prune(&texts);
                    return write_event(event.event.as_deref(), &event.data, out);
                }
                match serde_json::from_str(&event.data) {
                    Ok(v) => v,
                    Err(_) => return,
                }
            }
            Body::Parsed(v) => v,
        };
        let mut k = 0;
        let slots = &self.slots;
        edit.texts(&mut value, &mut |_, text| {
            if let Some((i, start, end)) = texts.get(k) {
                if let Some(new) = slots.get(*i).map(|s| s.text_for(*start, *end, text)) {
                    if new != *text {
                        *text = new;
                        edited = true;
                    }
                }
            }
            k += 1;
        });
        self.prune(&texts);
        // What `blocked` needs is what the client saw.
        edit.observe(&mut self.state, &value);
        if edited {
            let mut data = Vec::new();
            write_json(&mut data, &value);
            write_event(event.event.as_deref(), &String::from_utf8_lossy(&data), out);
        } else {
            write_event(event.event.as_deref(), &event.data, out);
        }
    }

    /// Drops the released pieces no held event still needs.
    fn prune(&mut self, written: &[(usize, usize, usize)]) {
        for (i, _, end) in written {
            if let Some(s) = self.slots.get_mut(*i) {
                while s.pieces.front().is_some_and(|p| p.end <= *end) {
                    s.pieces.pop_front();
                }
            }
        }
    }
}

impl SlotText {
    /// What the client gets for the delta that carried bytes
    /// `start..end` (`original`) of this slot.
    fn text_for(&self, start: usize, end: usize, original: &str) -> String {
        let mut text = String::new();
        for p in &self.pieces {
            if p.end <= start || p.start >= end {
                continue;
            }
            match &p.out {
                None => {
                    let from = p.start.max(start) - start;
                    let to = p.end.min(end) - start;
                    text.push_str(original.get(from..to).unwrap_or_default());
                }
                // A rewritten span goes where it starts.
                Some(out) if p.start >= start => text.push_str(out),
                Some(_) => {}
            }
        }
        text
    }
}

/// Writes one SSE event (data with newlines as several `data:` lines).
pub(super) fn write_event(name: Option<&str>, data: &str, out: &mut Vec<u8>) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

impl Api {
    /// The API's in-place stream editing.
    pub fn stream_edit(self) -> &'static dyn StreamEdit {
        match self {
            Api::ChatCompletions => &super::chat::Chat,
            Api::Responses => &super::responses::Responses,
            Api::Messages => &super::messages::Messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guard::stream::SlotGuards;
    use crate::core::guard::{GuardrailConfig, Guardrails};
    use crate::core::sse::SseFramer;

    /// `input` through the editor, each event as framed, with `filter`.
    fn run(api: Api, input: &str, filter: &mut Filter) -> String {
        let mut editor = StreamEditor::new(api, false);
        let mut out = Vec::new();
        for event in SseFramer::new().push(input.as_bytes()) {
            editor.push(event, filter, &mut out);
        }
        editor.finish(filter, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// `input` through the editor with a guard that changes nothing.
    fn edit(api: Api, input: &str) -> String {
        run(api, input, &mut |_, text, _| Ok((text.to_string(), 0)))
    }

    /// `input` through the editor under the default output guardrails.
    fn guarded(api: Api, input: &str) -> String {
        guarded_by(api, input, &GuardrailConfig::default())
    }

    fn guarded_by(api: Api, input: &str, config: &GuardrailConfig) -> String {
        let g = Guardrails::new(config).unwrap();
        let p = g.policy(None, None);
        let mut guards = SlotGuards::default();
        run(api, input, &mut |slot, text, end| {
            guards.filter(&g, &p, slot, text, end)
        })
    }

    #[test]
    fn a_malformed_event_becomes_an_error_in_the_clients_format() {
        let chat = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {not json\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let out = edit(Api::ChatCompletions, chat);
        let error = "data: {\"error\":{\"message\":\"the provider sent a malformed stream event\",\"type\":\"server_error\"}}\n\n";
        assert!(out.contains(error), "{out}");
        assert!(!out.contains("not json") && out.ends_with("data: [DONE]\n\n"));
        // A key twice: the guard read one value, a client may read the other.
        let twice = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail jane.doe@example.com\",\"content\":\"hi\"}}]}\n\n",
            "data: [DONE]\n\n",
        );
        let out = guarded(Api::ChatCompletions, twice);
        assert!(out.contains(error) && !out.contains("jane"), "{out}");
        let messages = concat!(
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_delta\ndata: {broken\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let out = edit(Api::Messages, messages);
        assert!(out.contains("\"text\":\"Hi\""), "{out}");
        // Anthropic ends a stream at an error event: nothing follows it.
        assert!(
            out.ends_with("\"message\":\"the provider sent a malformed stream event\",\"type\":\"api_error\"},\"type\":\"error\"}\n\n"),
            "{out}"
        );
    }

    #[test]
    fn a_block_in_tool_arguments_ends_the_stream_as_its_api_can() {
        let mut config = GuardrailConfig::default();
        config.pii.output = Some(crate::core::guard::GuardAction::Block);
        let messages = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"send\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"to\\\": \\\"jane.doe@example.com\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let out = guarded_by(Api::Messages, messages, &config);
        assert!(!out.contains("jane"), "{out}");
        let events: Vec<Value> = SseFramer::new()
            .push(out.as_bytes())
            .into_iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        let shape: Vec<(&str, u64)> = events
            .iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap(),
                    v["index"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        // The tool block closes; the notice gets a text block of its own.
        assert_eq!(
            shape,
            [
                ("content_block_start", 0),
                ("content_block_stop", 0),
                ("content_block_start", 1),
                ("content_block_delta", 1),
                ("content_block_stop", 1),
                ("message_delta", 0),
                ("message_stop", 0)
            ],
            "{out}"
        );
        assert_eq!(events[2]["content_block"]["type"], "text");
        assert!(events[3]["delta"]["text"]
            .as_str()
            .unwrap()
            .contains("blocked by the pii guardrail"));
        assert_eq!(events[5]["delta"]["stop_reason"], "refusal");
        // A Responses refusal part ends as a refusal part (the OpenAI SDK
        // checks the part type of each delta).
        let responses = concat!(
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":0,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"content\":[]}}\n\n",
            "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":1,\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"refusal\",\"refusal\":\"\"}}\n\n",
            "event: response.refusal.delta\ndata: {\"type\":\"response.refusal.delta\",\"sequence_number\":2,\"output_index\":0,\"content_index\":0,\"delta\":\"Not for jane.doe@example.com\"}\n\n",
        );
        let out = guarded_by(Api::Responses, responses, &config);
        assert!(!out.contains("jane"), "{out}");
        let names: Vec<String> = SseFramer::new()
            .push(out.as_bytes())
            .into_iter()
            .filter_map(|e| e.event)
            .collect();
        assert_eq!(
            names,
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ],
            "{out}"
        );
        assert!(out.contains("\"part\":{\"refusal\":"), "{out}");
    }

    #[test]
    fn refusals_and_reasoning_summaries_are_guarded() {
        let chat = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I will not mail jane.do\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"e@example.com today\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let responses = concat!(
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}}\n\n",
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":0,\"summary_index\":0,\"delta\":\"Look up jane.do\"}\n\n",
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":0,\"summary_index\":0,\"delta\":\"e@example.com first\"}\n\n",
            "event: response.reasoning_summary_text.done\ndata: {\"type\":\"response.reasoning_summary_text.done\",\"output_index\":0,\"summary_index\":0,\"text\":\"Look up jane.doe@example.com first\"}\n\n",
            "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"Look up jane.doe@example.com first\"}]}}\n\n",
            "event: response.refusal.delta\ndata: {\"type\":\"response.refusal.delta\",\"output_index\":1,\"content_index\":0,\"delta\":\"Not for jane.doe@example.com\"}\n\n",
            "event: response.refusal.done\ndata: {\"type\":\"response.refusal.done\",\"output_index\":1,\"content_index\":0,\"refusal\":\"Not for jane.doe@example.com\"}\n\n",
        );
        for (api, input, redacted) in [
            (Api::ChatCompletions, chat, 1),
            (Api::Responses, responses, 5),
        ] {
            let out = guarded(api, input);
            assert!(!out.contains("jane"), "{api:?}: {out}");
            assert_eq!(out.matches("[EMAIL_1]").count(), redacted, "{api:?}: {out}");
        }
    }

    #[test]
    fn tool_call_arguments_are_guarded_as_a_whole_answer_is() {
        let chat = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"to\\\": \\\"jane.do\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"e@example.com\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let messages = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"send\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"to\\\": \\\"jane.do\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"e@example.com\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let call = "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"c1\",\"name\":\"send\",\"arguments\":\"{\\\"to\\\": \\\"jane.doe@example.com\\\"}\"}";
        let responses = format!(
            concat!(
                "event: response.function_call_arguments.delta\ndata: {{\"type\":\"response.function_call_arguments.delta\",\"output_index\":0,\"delta\":\"{{\\\"to\\\": \\\"jane.do\"}}\n\n",
                "event: response.function_call_arguments.delta\ndata: {{\"type\":\"response.function_call_arguments.delta\",\"output_index\":0,\"delta\":\"e@example.com\\\"}}\"}}\n\n",
                "event: response.function_call_arguments.done\ndata: {{\"type\":\"response.function_call_arguments.done\",\"output_index\":0,\"arguments\":\"{{\\\"to\\\": \\\"jane.doe@example.com\\\"}}\"}}\n\n",
                "event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{call}}}\n\n",
                "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{call}]}}}}\n\n",
            ),
            call = call
        );
        for (api, input, sends) in [
            (Api::ChatCompletions, chat, 1),
            (Api::Messages, messages, 1),
            (Api::Responses, responses.as_str(), 4),
        ] {
            let out = guarded(api, input);
            assert!(!out.contains("jane"), "{api:?}: {out}");
            // Every copy of the arguments is the redacted JSON.
            let redacted = "{\\\"to\\\": \\\"[EMAIL_1]\\\"}";
            let joined: String = SseFramer::new()
                .push(out.as_bytes())
                .into_iter()
                .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
                .map(|mut v| {
                    let mut args = String::new();
                    api.stream_edit()
                        .texts(&mut v, &mut |_, t| args.push_str(t));
                    args
                })
                .collect();
            assert_eq!(joined, "{\"to\": \"[EMAIL_1]\"}", "{api:?}: {out}");
            assert_eq!(out.matches(redacted).count(), sends, "{api:?}: {out}");
        }
    }
}
