//! Azure OpenAI: Chat Completions on deployment paths, with `api-version`.

use super::{url_segment, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct Azure;

impl Kind for Azure {
    fn wire(&self, _: Api) -> Wire {
        Wire::ChatCompletions
    }

    fn path(&self, p: &Provider, _: Wire, target: &Target) -> String {
        format!(
            "/openai/deployments/{}/chat/completions?api-version={}",
            url_segment(target.deployment),
            p.api_version.as_deref().unwrap_or_default()
        )
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("api-key", "")
    }

    fn semconv_name<'a>(&self, _: &'a str) -> &'a str {
        "azure.ai.openai"
    }

    fn has_deployments(&self) -> bool {
        true
    }

    fn problems(&self, p: &Provider) -> Vec<String> {
        match &p.api_version {
            Some(_) => Vec::new(),
            None => vec!["azure providers need api_version (e.g. \"2024-10-21\")".into()],
        }
    }
}
