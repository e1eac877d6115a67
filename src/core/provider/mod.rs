//! Provider kinds: for each, the wire it is spoken to in, the upstream path,
//! the header its key goes in, its GenAI semantic-convention name and the
//! configuration it needs. One file per kind; `ProviderKind` (config's
//! `kind`) is the registry.

pub mod anthropic;
pub mod azure;
pub mod gemini;
pub mod openai;
pub mod openai_compatible;

use super::api::Api;
use super::config::Provider;
use super::wire::Wire;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The kinds of provider, as named in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Azure,
    OpenaiCompatible,
    Gemini,
}

impl ProviderKind {
    /// The name the configuration gives it.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Azure => "azure",
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Gemini => "gemini",
        }
    }

    /// The kind's implementation.
    pub fn spec(self) -> &'static dyn Kind {
        match self {
            ProviderKind::Openai => &openai::OpenAi,
            ProviderKind::Anthropic => &anthropic::Anthropic,
            ProviderKind::Azure => &azure::Azure,
            ProviderKind::OpenaiCompatible => &openai_compatible::OpenAiCompatible,
            ProviderKind::Gemini => &gemini::Gemini,
        }
    }
}

/// Every kind of provider.
pub const KINDS: [ProviderKind; 5] = [
    ProviderKind::Openai,
    ProviderKind::Anthropic,
    ProviderKind::Azure,
    ProviderKind::OpenaiCompatible,
    ProviderKind::Gemini,
];

/// The headers any provider's key goes in.
pub fn credential_headers() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = KINDS.iter().map(|k| k.spec().auth_header().0).collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// What one request asks of the provider, for its path.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The model name sent upstream.
    pub model: &'a str,
    /// The Azure deployment (the upstream model unless configured).
    pub deployment: &'a str,
    pub stream: bool,
}

/// Everything that differs between provider kinds.
pub trait Kind: Sync {
    /// The wire requests of `client` are sent in.
    fn wire(&self, p: &Provider, client: Api) -> Wire;

    /// The upstream `:path` (with query where the provider needs one).
    fn path(&self, p: &Provider, wire: Wire, target: &Target) -> String;

    /// The model name the upstream body carries.
    fn body_model<'a>(&self, _wire: Wire, target: &Target<'a>) -> &'a str {
        target.model
    }

    /// Adjusts a request the gateway wrote (translated) to what the
    /// provider reads.
    fn adapt_request(&self, _p: &Provider, _body: &mut Map<String, Value>) {}

    /// The header the provider key goes in, and the value's prefix (`env`
    /// auth; Envoy's credential injector is configured to match).
    fn auth_header(&self) -> (&'static str, &'static str);

    /// `gen_ai.provider.name` of the GenAI semantic conventions.
    fn semconv_name<'a>(&self, configured: &'a str) -> &'a str;

    /// Whether model entries may name a deployment.
    fn has_deployments(&self) -> bool;

    /// Problems with the kind's own settings (azure's `api_version`), one
    /// per line.
    fn problems(&self, _p: &Provider) -> Vec<String> {
        Vec::new()
    }
}

/// Settings only one kind reads: on another they would be ignored silently.
pub(crate) fn unused_settings(p: &Provider) -> Vec<String> {
    [
        ("api_version", p.api_version.is_some(), ProviderKind::Azure),
        (
            "responses_api_version",
            p.responses_api_version.is_some(),
            ProviderKind::Azure,
        ),
        (
            "max_tokens_field",
            p.max_tokens_field.is_some(),
            ProviderKind::OpenaiCompatible,
        ),
    ]
    .into_iter()
    .filter(|&(_, set, kind)| set && kind != p.kind)
    .map(|(name, _, kind)| format!("{name} is only used by {} providers", kind.name()))
    .collect()
}

/// `base_path`, or the provider's default.
pub(crate) fn base<'a>(p: &'a Provider, default: &'a str) -> &'a str {
    p.base_path.as_deref().unwrap_or(default)
}

/// Percent-encodes a path segment so a model or deployment name cannot
/// alter the path.
pub(crate) fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_configurations() {
        use ProviderKind::*;
        for kind in [Openai, Anthropic, Azure, OpenaiCompatible, Gemini] {
            let parsed: ProviderKind = serde_json::from_value(kind.name().into()).unwrap();
            assert_eq!(parsed, kind);
        }
    }
}
