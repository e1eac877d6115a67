//! The response side of a forwarded request: status, time to first chunk,
//! usage and metadata, read from the JSON body or the SSE stream as it passes
//! (nothing is held back here).

use super::host;
use crate::core::content;
use crate::core::sse::SseFramer;
use crate::core::usage::{self, ResponseSummary};

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
    }

    pub fn on_body(&mut self, size: usize, end: bool) {
        self.ended |= end;
        if self.first_chunk_ns.is_none() && size > 0 {
            self.first_chunk_ns = Some(host::now_ns());
        }
        let chunk = host::buffer(host::RESPONSE_BODY, size);
        if self.stream {
            for event in self.framer.push(&chunk) {
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
        } else {
            if self.body.len() + chunk.len() <= MAX_RESPONSE_CAPTURE {
                self.body.extend_from_slice(&chunk);
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
}
