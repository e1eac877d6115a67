//! Translation between the OpenAI Chat Completions, OpenAI Responses and
//! Anthropic Messages APIs, through one canonical model: requests are read
//! into a `Conversation`, responses into a `Reply`, streams into `Event`s,
//! and written out in the other API's shape. The mapping and what is dropped
//! on purpose are documented in docs/translation.md.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use super::api::Api;
use super::config::ProviderKind;
use super::usage::Usage;
use serde_json::Value;

/// Output tokens asked of Anthropic when the client set no maximum
/// (Anthropic requires one; OpenAI does not).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The API a provider is spoken to in, for a client API.
pub fn upstream_api(client: Api, kind: ProviderKind) -> Api {
    match (kind, client) {
        (ProviderKind::Anthropic, _) => Api::Messages,
        (ProviderKind::Openai, Api::Responses) => Api::Responses,
        _ => Api::ChatCompletions,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// An image by URL (`data:` URLs carry base64).
    Image {
        url: String,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    ToolResult {
        id: String,
        content: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

/// A request in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// A JSON schema the output must follow (OpenAI `response_format` /
    /// Responses `text.format`), as `{"name", "schema", "strict"}`.
    pub json_schema: Option<Value>,
    pub json_object: bool,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl Finish {
    pub fn openai(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
        }
    }

    pub fn anthropic(self) -> &'static str {
        match self {
            Finish::Stop | Finish::ContentFilter => "end_turn",
            Finish::Length => "max_tokens",
            Finish::ToolCalls => "tool_use",
        }
    }

    pub fn from_openai(s: &str) -> Finish {
        match s {
            "length" => Finish::Length,
            "tool_calls" | "function_call" => Finish::ToolCalls,
            "content_filter" => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }

    pub fn from_anthropic(s: &str) -> Finish {
        match s {
            "max_tokens" | "model_context_window_exceeded" => Finish::Length,
            "tool_use" => Finish::ToolCalls,
            "refusal" => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }
}

/// A complete (non-streamed) answer in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// Text and tool calls, in order.
    pub parts: Vec<Part>,
    pub finish: Finish,
    pub usage: Usage,
}

/// What the response side needs to know about a translated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub client: Api,
    pub upstream: Api,
    pub stream: bool,
    /// The client asked for a usage chunk (chat `stream_options.include_usage`).
    pub client_wants_usage: bool,
}

impl Translation {
    /// Whether responses need rewriting at all: a different API, or a chat
    /// stream where the gateway asked for usage the client did not.
    pub fn rewrites(&self) -> bool {
        self.client != self.upstream
            || (self.stream && self.upstream == Api::ChatCompletions && !self.client_wants_usage)
    }
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub(crate) fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Sets a field of a JSON object (no-op on other values, so it cannot panic).
pub(crate) fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), value);
    }
}

/// The tool calls of an OpenAI chat message (`tool_calls[].function`).
pub(crate) fn chat_tool_calls(message: &Value) -> impl Iterator<Item = Part> + '_ {
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

/// The text parts of `parts`, joined.
pub(crate) fn joined_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            if let Part::Text(t) = p {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}
