//! The response side of a forwarded request: status, time to first chunk,
//! usage and metadata read from the upstream's JSON body or SSE stream, and,
//! when the client speaks another API, the translation of the answer (streams
//! chunk by chunk; JSON bodies and errors once complete).

use super::context::Action;
use super::env::Host;
use crate::core::api::Api;
use crate::core::content;
use crate::core::fallback::TARGET_HEADER;
use crate::core::guard::stream::SlotGuards;
use crate::core::guard::{GuardEvent, Guardrails, Policy};
use crate::core::header_map::Headers;
use crate::core::json;
use crate::core::sse::{SseEvent, SseFramer};
use crate::core::usage::ResponseSummary;
use crate::core::wire::edit::StreamEditor;
use crate::core::wire::stream::StreamTranslator;
use crate::core::wire::{self, Event, Translation, Wire};
use sha2::{Digest, Sha256};

/// Non-streamed response bytes kept for reading usage; beyond this the usage
/// of that response is not counted rather than growing the VM's memory.
const MAX_RESPONSE_CAPTURE: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct ResponseState {
    /// Upstream status; 0 until response headers arrive (e.g. a reset).
    pub status: u32,
    pub stream: bool,
    pub first_chunk_ns: Option<u64>,
    /// When the last chunk arrived, once the upstream body has ended
    /// (`None` when the client or provider left early).
    pub end_ns: Option<u64>,
    pub summary: ResponseSummary,
    /// Generated text seen in a stream, for estimating output tokens.
    pub text_chars: usize,
    /// The generated text, when traces capture content.
    pub captured: Option<String>,
    /// Set when the client speaks another API than the upstream (or must not
    /// see the usage chunk the gateway asked for).
    pub translation: Option<Translation>,
    translator: Option<StreamTranslator>,
    /// A same-API stream under output guardrails, edited in place.
    editor: Option<StreamEditor>,
    /// The client's API and the upstream's wire (set when forwarded).
    pub apis: Option<(Api, Wire)>,
    /// Output guardrails for this request, when any is on.
    pub output_policy: Option<Policy>,
    /// The output guards of the stream (edited in place or translated).
    output_guard: SlotGuards,
    /// Output guardrail events since the stage last took them.
    pub new_guard_events: Vec<GuardEvent>,
    framer: SseFramer,
    body: Vec<u8>,
    /// The answer as the client gets it, kept for the response cache (up
    /// to `keep_limit` bytes; dropped beyond).
    pub kept: Option<Vec<u8>>,
    pub keep_limit: usize,
    /// SHA-256 of what the client got, for the audit log (`audit.body_digests`).
    pub digest: Option<Sha256>,
}

impl ResponseState {
    /// Reads the response `headers` (as the host handed them over);
    /// `on_chain`: the request went to a fallback chain or key pool, whose
    /// answering target the request stage names.
    pub fn on_headers(&mut self, host: &impl Host, headers: &Headers, on_chain: bool) {
        self.status = headers.status();
        if !on_chain && headers.get(TARGET_HEADER).is_some() {
            // Only the gateway names the target (on a chain, it overwrites).
            host.set_response_header(TARGET_HEADER, None);
        }
        self.stream = headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        // Every upstream API's stream decodes, so output guardrails can
        // re-encode any stream.
        let guarded = self.output_policy.is_some() && self.status < 400;
        if self.translation.is_none() && !guarded {
            return;
        }
        // The body changes size; Envoy sends it chunked.
        host.set_response_header("content-length", None);
        if self.status >= 400 {
            let status = wire::error::client_status(self.status).to_string();
            host.set_response_header(":status", Some(&status));
            host.set_response_header("content-type", Some("application/json"));
        } else if self.stream {
            let (client, upstream) = self.wires();
            if guarded && client.wire() == upstream {
                let drop_usage = self
                    .translation
                    .as_ref()
                    .is_some_and(|t| !t.client_wants_usage);
                self.editor = Some(StreamEditor::new(client, drop_usage));
            } else if let Some(t) = &self.translation {
                self.translator = Some(StreamTranslator::new(t, host.now_ms() / 1000));
            }
        }
    }

    /// Observes (and when translating, rewrites) a body chunk.
    pub fn on_body(
        &mut self,
        host: &impl Host,
        size: usize,
        end: bool,
        guardrails: Option<&Guardrails>,
    ) -> Action {
        // One clock read serves both ends of a one-chunk answer.
        if (self.first_chunk_ns.is_none() && size > 0) || end {
            let now = host.now_ns();
            if size > 0 {
                self.first_chunk_ns.get_or_insert(now);
            }
            if end {
                self.end_ns = Some(now);
            }
        }
        // Translated or guarded JSON, and translated errors, are rewritten
        // whole: hold the chunks.
        let guard_body = self.output_policy.is_some() && !self.stream && self.status < 400;
        let streamed = self.translator.is_some() || self.editor.is_some();
        let whole_body = (self.translation.is_some() || guard_body) && !streamed;
        if whole_body && !end {
            return Action::Pause;
        }
        let chunk = host.response_body(size);
        let framed = if self.stream && self.status < 400 {
            self.observe_stream(&chunk, end)
        } else if whole_body && self.status < 400 {
            let rewritten =
                self.rewrite_whole_body(host, &chunk, guard_body.then_some(guardrails).flatten());
            match rewritten {
                Some(out) => {
                    host.set_response_body(size, &out);
                    self.sent(&out);
                }
                None => self.sent(&chunk),
            }
            return Action::Continue;
        } else {
            self.observe_body(&chunk, end);
            Vec::new()
        };
        if let Some(editor) = &mut self.editor {
            let (guards, policy) = (&mut self.output_guard, self.output_policy.as_ref());
            let mut filter = |slot: usize, text: &str, end: bool| match (guardrails, policy) {
                (Some(g), Some(p)) => guards.filter(g, p, slot, text, end),
                _ => Ok((text.to_string(), 0)),
            };
            let mut out = Vec::new();
            for event in framed {
                editor.push(event, &mut filter, &mut out);
            }
            if end {
                editor.finish(&mut filter, &mut out);
            }
            self.new_guard_events.append(&mut self.output_guard.events);
            host.set_response_body(size, &out);
            self.sent(&out);
        } else if let Some(translator) = &mut self.translator {
            let guard = (guardrails, self.output_policy.as_ref());
            let (og, events) = (&mut self.output_guard, &mut self.new_guard_events);
            let captured = &mut self.captured;
            let at_end = std::cell::Cell::new(false);
            let mut hook = |batch: &mut Vec<Event>| {
                // The provider's text as decoded, before the output guardrails.
                if let Some(text) = captured.as_mut() {
                    content::push_events(batch, text);
                }
                if let (Some(g), Some(p)) = guard {
                    og.filter_events(g, p, batch, at_end.get());
                    events.append(&mut og.events);
                }
            };
            let mut out = translator.push_events(&framed, &mut hook);
            if end {
                at_end.set(true);
                out.extend(translator.finish_with(&mut hook));
            }
            host.set_response_body(size, &out);
            self.sent(&out);
        } else if let (true, Some(t)) = (whole_body, &self.translation) {
            // An upstream error, in the client's error format.
            let format = t.client.inbound().format();
            let out = wire::error::translate(format, self.status, &chunk).1;
            host.set_response_body(size, &out);
            self.sent(&out);
        } else {
            self.sent(&chunk);
        }
        Action::Continue
    }

    /// What the client gets: into the digest, and into the kept answer (a
    /// successful one only).
    pub fn sent(&mut self, bytes: &[u8]) {
        if let Some(digest) = &mut self.digest {
            digest.update(bytes);
        }
        let Some(kept) = &mut self.kept else {
            return;
        };
        if self.status != 200 || kept.len() + bytes.len() > self.keep_limit {
            self.kept = None;
            return;
        }
        kept.extend_from_slice(bytes);
    }

    /// The kept answer, when it is whole: a 200 that ended with a finish
    /// reason (not cut short, not an error event).
    pub fn complete_answer(&mut self) -> Option<Vec<u8>> {
        let whole = self.status == 200
            && self.end_ns.is_some()
            && !self.summary.meta.finish_reasons.is_empty();
        self.kept.take().filter(|_| whole)
    }

    /// A complete successful JSON answer: parsed once for usage, captured
    /// content, translation and output guardrails. Answers the new body
    /// when translated, redacted or refused; `None`: the chunk goes as it came.
    fn rewrite_whole_body(
        &mut self,
        host: &impl Host,
        chunk: &[u8],
        guardrails: Option<&Guardrails>,
    ) -> Option<Vec<u8>> {
        let (client, wire) = self.wires();
        // Untranslated, the client gets these bytes when the guard changes
        // nothing: it reads them strictly, as clients disagree on which of
        // a key's two values counts (the stream editor does the same).
        let strict = guardrails.is_some() && self.translation.is_none();
        let parsed = match strict {
            true => json::parse_strict(chunk),
            false => serde_json::from_slice(chunk),
        };
        let readable = parsed.is_ok();
        // Usage is still read from an answer the client will not get.
        let upstream = parsed
            .ok()
            .or_else(|| strict.then(|| serde_json::from_slice(chunk).ok()).flatten());
        if let Some(v) = &upstream {
            self.summary = wire.upstream().summarize(v);
            if self.captured.is_some() {
                self.captured = Some(wire.upstream().reply_text(v));
            }
        }
        let translated = match (&self.translation, upstream) {
            _ if strict && !readable => Err(wire::reply::NOT_JSON),
            (Some(t), Some(v)) => wire::reply::translate_value(t, &v, host.now_ms() / 1000),
            (Some(_), None) => Err(wire::reply::NOT_JSON),
            (None, Some(v)) => Ok(v),
            // Not JSON and nothing to translate or guard: passed through as it came.
            (None, None) => return None,
        };
        let mut body = match translated {
            Ok(body) => body,
            Err(error) => {
                // Not a whole answer: never kept.
                self.kept = None;
                return Some(error.body(client.inbound().format()));
            }
        };
        let mut changed = self.translation.is_some();
        if let (Some(g), Some(p)) = (guardrails, &self.output_policy) {
            let outcome = g.check_response(client, &mut body, p);
            self.new_guard_events.extend(outcome.events);
            changed |= outcome.changed;
        }
        if !changed {
            return None;
        }
        match serde_json::to_vec(&body) {
            Ok(out) => Some(out),
            Err(_) => {
                log::warn!("tollgate: could not encode the rewritten answer");
                self.kept = None;
                None
            }
        }
    }

    /// Frames a stream chunk and reads usage from its events; returns them
    /// for the translator. Captured text comes from the translator's
    /// decoded events when it decodes, so no event is parsed for it twice.
    fn observe_stream(&mut self, chunk: &[u8], end: bool) -> Vec<SseEvent> {
        let wire = self.wires().1;
        let decoded = self
            .translator
            .as_ref()
            .is_some_and(StreamTranslator::decodes);
        let events = self.framer.push(chunk);
        for event in &events {
            self.text_chars += wire
                .upstream()
                .observe_event(&mut self.summary, &event.data);
            if let (Some(text), false) = (&mut self.captured, decoded) {
                content::push_stream_text(wire, &event.data, text);
            }
        }
        if end {
            if let Some(event) = self.framer.finish() {
                wire.upstream()
                    .observe_event(&mut self.summary, &event.data);
            }
        }
        events
    }

    fn observe_body(&mut self, chunk: &[u8], end: bool) {
        if self.body.len() + chunk.len() <= MAX_RESPONSE_CAPTURE {
            self.body.extend_from_slice(chunk);
        }
        if end {
            let upstream = self.wires().1.upstream();
            let body = serde_json::from_slice(&self.body).unwrap_or_default();
            self.summary = upstream.summarize(&body);
            if self.captured.is_some() {
                self.captured = Some(upstream.reply_text(&body));
            }
            self.body = Vec::new();
        }
    }

    /// The client's API and the upstream's wire.
    fn wires(&self) -> (Api, Wire) {
        self.apis
            .unwrap_or((Api::ChatCompletions, Wire::ChatCompletions))
    }
}
