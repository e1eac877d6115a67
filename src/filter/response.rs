//! The response side of a forwarded request: status, time to first chunk,
//! usage and metadata read from the upstream's JSON body or SSE stream, and,
//! when the client speaks another API, the translation of the answer (streams
//! chunk by chunk; JSON bodies and errors once complete).

use super::host;
use crate::core::api::{Api, ClientFormat};
use crate::core::content;
use crate::core::convert::stream::StreamTranslator;
use crate::core::convert::{self, Translation};
use crate::core::sse::SseFramer;
use crate::core::usage::{self, ResponseSummary};
use proxy_wasm::types::Action;

/// Non-streamed response bytes kept for reading usage; beyond this the usage
/// of that response is not counted rather than growing the VM's memory.
const MAX_RESPONSE_CAPTURE: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct ResponseState {
    /// Upstream status; 0 until response headers arrive (e.g. a reset).
    pub status: u32,
    pub stream: bool,
    pub first_chunk_ns: Option<u64>,
    pub summary: ResponseSummary,
    /// The upstream body ended (false when the client or provider left early).
    pub ended: bool,
    /// Generated text seen in a stream, for estimating output tokens.
    pub text_chars: usize,
    /// The generated text, when traces capture content.
    pub captured: Option<String>,
    /// Set when the client speaks another API than the upstream (or must not
    /// see the usage chunk the gateway asked for).
    pub translation: Option<Translation>,
    translator: Option<StreamTranslator>,
    framer: SseFramer,
    body: Vec<u8>,
}

impl ResponseState {
    pub fn on_headers(&mut self) {
        self.status = host::response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.stream = host::response_header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let Some(t) = &self.translation else {
            return;
        };
        // The body changes size; Envoy sends it chunked.
        host::set_response_header("content-length", None);
        if self.status >= 400 {
            let status = convert::error::client_status(self.status).to_string();
            host::set_response_header(":status", Some(&status));
            host::set_response_header("content-type", Some("application/json"));
        } else if self.stream {
            self.translator = Some(StreamTranslator::new(t, host::now_ms() / 1000));
        }
    }

    /// Observes (and when translating, rewrites) a body chunk.
    pub fn on_body(&mut self, size: usize, end: bool) -> Action {
        self.ended |= end;
        if self.first_chunk_ns.is_none() && size > 0 {
            self.first_chunk_ns = Some(host::now_ns());
        }
        // Translated JSON and errors are rewritten whole: hold the chunks.
        let whole_body = self.translation.is_some() && self.translator.is_none();
        if whole_body && !end {
            return Action::Pause;
        }
        let chunk = host::buffer(host::RESPONSE_BODY, size);
        if self.stream && self.status < 400 {
            self.observe_stream(&chunk, end);
        } else {
            self.observe_body(&chunk, end);
        }
        if let Some(translator) = &mut self.translator {
            let mut out = translator.push(&chunk);
            if end {
                out.extend(translator.finish());
            }
            host::set_buffer(host::RESPONSE_BODY, size, &out);
        } else if let (true, Some(t)) = (whole_body, &self.translation) {
            let out = if self.status >= 400 {
                convert::error::translate(client_format(t.client), self.status, &chunk).1
            } else {
                match convert::response::translate(t, &chunk, host::now_ms() / 1000) {
                    Ok(out) => out,
                    Err(error) => error.body(client_format(t.client)),
                }
            };
            host::set_buffer(host::RESPONSE_BODY, size, &out);
        }
        Action::Continue
    }

    fn observe_stream(&mut self, chunk: &[u8], end: bool) {
        for event in self.framer.push(chunk) {
            self.text_chars += usage::text_chars(&event.data);
            if let Some(text) = &mut self.captured {
                content::push_stream_text(&event.data, text);
            }
            self.summary.observe_event(&event.data);
        }
        if end {
            if let Some(event) = self.framer.finish() {
                self.summary.observe_event(&event.data);
            }
        }
    }

    fn observe_body(&mut self, chunk: &[u8], end: bool) {
        if self.body.len() + chunk.len() <= MAX_RESPONSE_CAPTURE {
            self.body.extend_from_slice(chunk);
        }
        if end {
            self.summary = ResponseSummary::from_body(&self.body);
            if self.captured.is_some() {
                let body = serde_json::from_slice(&self.body).unwrap_or_default();
                self.captured = Some(content::output_text(&body));
            }
            self.body = Vec::new();
        }
    }
}

fn client_format(api: Api) -> ClientFormat {
    if api == Api::Messages {
        ClientFormat::Anthropic
    } else {
        ClientFormat::OpenAi
    }
}
