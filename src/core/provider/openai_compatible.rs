//! OpenAI-compatible servers (vLLM, Ollama, llama.cpp ...): Chat Completions only.

use super::{base, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct OpenAiCompatible;

impl Kind for OpenAiCompatible {
    fn wire(&self, _: &Provider, _: Api) -> Wire {
        Wire::ChatCompletions
    }

    fn path(&self, p: &Provider, _: Wire, _: &Target) -> String {
        format!("{}/chat/completions", base(p, "/v1"))
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
