//! Anthropic: the Messages API.

use super::{base, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct Anthropic;

impl Kind for Anthropic {
    fn wire(&self, _: &Provider, _: Api) -> Wire {
        Wire::Messages
    }

    fn path(&self, p: &Provider, _: Wire, _: &Target) -> String {
        [base(p, "/v1"), "/messages"].concat()
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("x-api-key", "")
    }

    fn semconv_name<'a>(&self, _: &'a str) -> &'a str {
        "anthropic"
    }

    fn has_deployments(&self) -> bool {
        false
    }
}
