//! OpenAI: Chat Completions, and Responses for Responses clients.

use super::{base, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct OpenAi;

impl Kind for OpenAi {
    fn wire(&self, _: &Provider, client: Api) -> Wire {
        match client {
            Api::Responses => Wire::Responses,
            Api::ChatCompletions | Api::Messages => Wire::ChatCompletions,
        }
    }

    fn path(&self, p: &Provider, wire: Wire, _: &Target) -> String {
        let tail = if wire == Wire::Responses {
            "/responses"
        } else {
            "/chat/completions"
        };
        [base(p, "/v1"), tail].concat()
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("authorization", "Bearer ")
    }

    fn semconv_name<'a>(&self, _: &'a str) -> &'a str {
        "openai"
    }

    fn has_deployments(&self) -> bool {
        false
    }
}
