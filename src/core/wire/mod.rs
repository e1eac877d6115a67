//! Wire formats: the shapes of LLM API bodies, one file per API. Each file
//! implements `Upstream` (speaking to a provider in it) and, for the APIs
//! clients call, `Inbound` (reading their requests, answering them). The
//! rest of the gateway goes through the canonical model (`canonical`) and
//! the two registries below, so a new wire is one file plus its registry
//! lines, and the compiler lists every match a new variant must join.

pub mod canonical;
pub mod chat;
pub mod edit;
#[cfg(test)]
mod edit_props;
pub mod error;
pub mod gemini;
pub mod messages;
pub mod reply;
pub mod request;
pub mod responses;
pub mod stream;

pub use canonical::*;

use super::api::{Api, ClientFormat};
use super::error::GatewayError;
use super::usage::ResponseSummary;
use serde_json::{Map, Value};
use stream::{Decoder, Encoder};

/// The body formats providers are spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    ChatCompletions,
    Responses,
    Messages,
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
}

impl Wire {
    /// The wire's implementation: the registry of upstream formats.
    pub fn upstream(self) -> &'static dyn Upstream {
        match self {
            Wire::ChatCompletions => &chat::Chat,
            Wire::Responses => &responses::Responses,
            Wire::Messages => &messages::Messages,
            Wire::Gemini => &gemini::Gemini,
        }
    }

    /// The name used in traces and stats.
    pub fn name(self) -> &'static str {
        self.upstream().name()
    }
}

impl Api {
    /// The API's implementation: the registry of client APIs.
    pub fn inbound(self) -> &'static dyn Inbound {
        match self {
            Api::ChatCompletions => &chat::Chat,
            Api::Responses => &responses::Responses,
            Api::Messages => &messages::Messages,
        }
    }

    /// The wire format the API's bodies are in.
    pub fn wire(self) -> Wire {
        match self {
            Api::ChatCompletions => Wire::ChatCompletions,
            Api::Responses => Wire::Responses,
            Api::Messages => Wire::Messages,
        }
    }
}

/// Visits (and may rewrite) one text the model reads or wrote.
pub type TextVisitor<'a> = dyn FnMut(&mut String) + 'a;

/// A provider-side wire: requests written in it, answers and streams read
/// from it.
pub trait Upstream: Sync {
    /// The name used in traces and stats.
    fn name(&self) -> &'static str;

    /// The request body for `model`, with the stream flag set as `c.stream`.
    fn write_request(&self, c: &Conversation, model: &str) -> Result<Value, GatewayError>;

    /// Whether its streams report usage only when asked to.
    fn stream_usage_on_request(&self) -> bool;

    /// Asks a stream request to report usage (when it must be asked).
    fn ask_stream_usage(&self, body: &mut Map<String, Value>);

    /// Whether a stream event is the usage report `ask_stream_usage` asked for.
    fn is_usage_event(&self, data: &str) -> bool;

    /// Headers (name, value) a translated request needs when the client
    /// sent none.
    fn default_headers(&self) -> &'static [(&'static str, &'static str)];

    /// A complete answer, read.
    fn read_reply(&self, v: &Value, now_s: u64) -> Result<Reply, GatewayError>;

    /// One stream event (its JSON) read into canonical events.
    fn decode(&self, d: &mut Decoder, v: &Value, out: &mut Vec<Event>);

    /// The cheap read of the most frequent event, a plain text delta of a
    /// started stream: true when `data` was one (its events pushed).
    fn text_delta(&self, data: &str, out: &mut Vec<Event>) -> bool;

    /// Usage, id, model and finish reasons of a complete answer.
    fn summarize(&self, v: &Value) -> ResponseSummary;

    /// Folds one stream event into `s`; answers the characters of
    /// generated text it carried (for estimating usage when none comes).
    fn observe_event(&self, s: &mut ResponseSummary, data: &str) -> usize;

    /// The generated text of a complete answer (content capture).
    fn reply_text(&self, v: &Value) -> String;

    /// Appends the generated text of one stream event (content capture).
    fn push_stream_text(&self, data: &str, out: &mut String);
}

/// A wire clients call the gateway in: requests read from it, answers,
/// streams and errors written in it.
pub trait Inbound: Upstream {
    /// The `POST` path (under `/v1`, as the OpenAI and Anthropic SDKs send).
    fn path(&self) -> &'static str;

    /// The error format its clients read.
    fn format(&self) -> ClientFormat;

    /// A request, read.
    fn read_request(&self, body: &Value) -> Result<Conversation, GatewayError>;

    /// The fields holding the conversation, in reading order (guardrail
    /// placeholders number in the order a reader meets the values).
    fn conversation_fields(&self) -> &'static [&'static str];

    /// Whether the client asked for a usage report in its stream.
    fn wants_stream_usage(&self, body: &Value) -> bool;

    /// The most output tokens the request allows, when it says.
    fn max_output_tokens(&self, body: &Value) -> Option<u64>;

    /// The conversation of a request as GenAI-convention messages (content
    /// capture): `{"role", "parts"}` objects.
    fn input_messages(&self, body: &Value) -> Vec<Value>;

    /// A complete answer, written.
    fn write_reply(&self, r: &Reply) -> Value;

    /// Visits the generated text of a complete answer (output guardrails).
    fn reply_texts(&self, body: &mut Value, f: &mut TextVisitor);

    /// Marks a complete answer as ended by a content filter (an output
    /// guardrail blocked it), as a blocked stream ends.
    fn mark_filtered(&self, body: &mut Value);

    /// Stream writing, one call per canonical event; `e` holds what the
    /// stream has said so far.
    fn stream_start(&self, e: &mut Encoder, out: &mut Vec<u8>);
    fn stream_text(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>);
    fn stream_refusal(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>);
    fn stream_reasoning(&self, e: &mut Encoder, text: &str, out: &mut Vec<u8>);
    fn stream_tool_start(
        &self,
        e: &mut Encoder,
        index: usize,
        id: &str,
        name: &str,
        out: &mut Vec<u8>,
    );
    fn stream_tool_args(&self, e: &mut Encoder, index: usize, json: &str, out: &mut Vec<u8>);
    /// How the answer ended is known (`e.finish`).
    fn stream_finish(&self, e: &mut Encoder, out: &mut Vec<u8>);
    fn stream_error(&self, e: &mut Encoder, message: &str, out: &mut Vec<u8>);
    /// The last bytes: closes what is open and writes the terminal events.
    fn stream_end(&self, e: &mut Encoder, out: &mut Vec<u8>);
}

/// What the response side needs to know about a translated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub client: Api,
    pub upstream: Wire,
    pub stream: bool,
    /// The client asked for a usage report in its stream.
    pub client_wants_usage: bool,
}

impl Translation {
    /// Whether responses need rewriting at all: another wire, or a stream
    /// where the gateway asked for usage the client did not.
    pub fn rewrites(&self) -> bool {
        self.client.wire() != self.upstream
            || (self.stream
                && !self.client_wants_usage
                && self.upstream.upstream().stream_usage_on_request())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::api::APIS;

    #[test]
    fn registries_agree() {
        for api in APIS {
            assert_eq!(api.inbound().name(), api.wire().name(), "{api:?}");
            assert_eq!(api.name(), api.wire().name());
        }
        let names: Vec<&str> = [
            Wire::ChatCompletions,
            Wire::Responses,
            Wire::Messages,
            Wire::Gemini,
        ]
        .map(Wire::name)
        .to_vec();
        assert_eq!(
            names,
            ["chat_completions", "responses", "messages", "gemini"]
        );
    }
}
