//! OpenAI-compatible servers (vLLM, Ollama, llama.cpp ...): Chat Completions only.

use super::{base, Kind, Target};
use crate::core::api::Api;
use crate::core::config::{MaxTokensField, Provider};
use crate::core::wire::Wire;
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct OpenAiCompatible;

impl Kind for OpenAiCompatible {
    fn wire(&self, _: &Provider, _: Api) -> Wire {
        Wire::ChatCompletions
    }

    fn path(&self, p: &Provider, _: Wire, _: &Target) -> String {
        format!("{}/chat/completions", base(p, "/v1"))
    }

    /// The chat wire writes OpenAI's `max_completion_tokens`; `max_tokens`
    /// (the default) is the name every such server reads, older ones only it.
    fn adapt_request(&self, p: &Provider, body: &mut Map<String, Value>) {
        if p.max_tokens_field == Some(MaxTokensField::MaxCompletionTokens) {
            return;
        }
        if let Some(n) = body.remove("max_completion_tokens") {
            body.insert("max_tokens".into(), n);
        }
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("authorization", "Bearer ")
    }

    /// No convention name fits every server: the configured name is used.
    fn semconv_name<'a>(&self, configured: &'a str) -> &'a str {
        configured
    }

    fn has_deployments(&self) -> bool {
        false
    }
}
