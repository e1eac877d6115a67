//! Azure OpenAI: Chat Completions on deployment paths, with `api-version`;
//! Responses clients to Azure's Responses API when `responses_api_version`
//! says which one.

use super::{url_segment, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct Azure;

/// The `responses_api_version` of Azure's v1 API (`/openai/v1/...`, no
/// `api-version` query).
const V1: &str = "v1";

/// The first dated API version with the Responses API, 2025-03-01-preview.
const FIRST_RESPONSES_DATE: (u32, u32, u32) = (2025, 3, 1);

impl Kind for Azure {
    fn wire(&self, p: &Provider, client: Api) -> Wire {
        match (client, &p.responses_api_version) {
            (Api::Responses, Some(_)) => Wire::Responses,
            _ => Wire::ChatCompletions,
        }
    }

    fn path(&self, p: &Provider, wire: Wire, target: &Target) -> String {
        match (wire, p.responses_api_version.as_deref()) {
            (Wire::Responses, Some(V1)) => "/openai/v1/responses".into(),
            (Wire::Responses, Some(version)) => {
                format!("/openai/responses?api-version={version}")
            }
            _ => format!(
                "/openai/deployments/{}/chat/completions?api-version={}",
                url_segment(target.deployment),
                p.api_version.as_deref().unwrap_or_default()
            ),
        }
    }

    /// The Responses API has no deployment in its path: the body names it.
    fn body_model<'a>(&self, wire: Wire, target: &Target<'a>) -> &'a str {
        match wire {
            Wire::Responses => target.deployment,
            _ => target.model,
        }
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
        let mut out = Vec::new();
        if p.api_version.is_none() {
            out.push("azure providers need api_version (e.g. \"2024-10-21\")".into());
        }
        if let Some(version) = &p.responses_api_version {
            if !serves_responses(version) {
                out.push(format!(
                    "responses_api_version `{version}` has no Responses API: use \"v1\" (/openai/v1/responses) or a dated version from 2025-03-01-preview on (/openai/responses?api-version=...)"
                ));
            }
        }
        out
    }
}

/// Whether Azure serves the Responses API at `version`: `v1`, or a dated
/// `YYYY-MM-DD[-preview]` from the first one that had it.
fn serves_responses(version: &str) -> bool {
    if version == V1 {
        return true;
    }
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let mut parts = date.split('-');
    let fields = (
        parts.next().and_then(|s| number(s, 4)),
        parts.next().and_then(|s| number(s, 2)),
        parts.next().and_then(|s| number(s, 2)),
        parts.next(),
    );
    match fields {
        (Some(y), Some(m), Some(d), None) => {
            (1..=12).contains(&m) && (1..=31).contains(&d) && (y, m, d) >= FIRST_RESPONSES_DATE
        }
        _ => false,
    }
}

/// `s` as a number of exactly `digits` ASCII digits.
fn number(s: &str, digits: usize) -> Option<u32> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::routing;

    fn config(responses: &str) -> Result<Config, String> {
        Config::parse(
            format!(
                r#"{{"providers": [{{"name": "az", "kind": "azure", "cluster": "c", "api_version": "2024-10-21"{responses}}}],
                    "models": [{{"name": "gpt-4o", "provider": "az", "deployment": "prod-4o"}}]}}"#
            )
            .as_bytes(),
        )
    }

    #[test]
    fn responses_clients_reach_the_responses_api_when_configured() {
        let c = config("").unwrap();
        let r = routing::resolve(&c, Api::Responses, "gpt-4o", false)
            .unwrap()
            .0;
        assert_eq!(
            r.upstream_api,
            Wire::ChatCompletions,
            "translated by default"
        );
        assert_eq!(
            r.path,
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );

        let c = config(r#", "responses_api_version": "v1""#).unwrap();
        let r = routing::resolve(&c, Api::Responses, "gpt-4o", true)
            .unwrap()
            .0;
        assert_eq!(
            (r.upstream_api, r.path.as_str()),
            (Wire::Responses, "/openai/v1/responses")
        );
        assert_eq!(
            (r.body_model.as_str(), r.upstream_model.as_str()),
            ("prod-4o", "gpt-4o"),
            "the body names the deployment; the ledger keeps the model"
        );
        let r = routing::resolve(&c, Api::ChatCompletions, "gpt-4o", false)
            .unwrap()
            .0;
        assert_eq!(r.upstream_api, Wire::ChatCompletions);
        assert_eq!(
            r.path,
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        let r = routing::resolve(&c, Api::Messages, "gpt-4o", false)
            .unwrap()
            .0;
        assert_eq!(r.upstream_api, Wire::ChatCompletions);

        let c = config(r#", "responses_api_version": "2025-04-01-preview""#).unwrap();
        let r = routing::resolve(&c, Api::Responses, "gpt-4o", false)
            .unwrap()
            .0;
        assert_eq!(r.path, "/openai/responses?api-version=2025-04-01-preview");
    }

    #[test]
    fn responses_api_version_must_have_the_responses_api() {
        for good in [
            "v1",
            "2025-03-01-preview",
            "2025-04-01-preview",
            "2026-01-01",
        ] {
            assert!(config(&format!(r#", "responses_api_version": "{good}""#)).is_ok());
        }
        for bad in [
            "2024-10-21",
            "2025-02-01-preview",
            "V1",
            "preview",
            "2025-13-01",
            "2025-4-01",
            "+025-04-01",
            "2025-04-01-preview-x",
            "",
        ] {
            let err = config(&format!(r#", "responses_api_version": "{bad}""#))
                .err()
                .unwrap_or_default();
            assert!(
                err.contains(&format!(
                    "responses_api_version `{bad}` has no Responses API"
                )),
                "{bad}: {err}"
            );
        }
    }
}
