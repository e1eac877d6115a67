//! The canonical request, answer and stream event every wire reads into
//! and writes from: a request is read into a `Conversation`, an answer into
//! a `Reply`, a stream into `Event`s, then written in another wire's shape.
//! The mapping and what is dropped on purpose are in docs/translation.md.

use crate::core::usage::Usage;
use serde_json::Value;

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
    /// The model declining to answer (OpenAI `refusal`).
    Refusal(String),
    /// Reasoning the model showed (thinking text, a reasoning summary),
    /// without the provider's signature: only that provider can check it.
    Reasoning(String),
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
    /// Anthropic `top_k`.
    pub top_k: Option<u64>,
    /// Chat Completions `seed` and penalties.
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// A JSON schema the output must follow (OpenAI `response_format` /
    /// Responses `text.format`), as `{"name", "schema", "strict"}`.
    pub json_schema: Option<Value>,
    pub json_object: bool,
    pub user: Option<String>,
    /// The client asked to see the model's reasoning.
    pub reasoning: Option<Reasoning>,
    /// OpenAI's reasoning effort (`low`, `high`, ...).
    pub reasoning_effort: Option<String>,
}

/// Reasoning asked for: Anthropic `thinking` (with its token budget) or a
/// Responses `reasoning.summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reasoning {
    pub budget_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

/// A complete (non-streamed) answer in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// Reasoning, text, refusals and tool calls, in order.
    pub parts: Vec<Part>,
    pub finish: Finish,
    pub usage: Usage,
}

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start {
        id: String,
        model: String,
    },
    TextDelta(String),
    RefusalDelta(String),
    ReasoningDelta(String),
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

/// The refusal parts of `parts`, joined.
pub(crate) fn joined_refusal(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            if let Part::Refusal(t) = p {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}
