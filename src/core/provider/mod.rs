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
    fn wire(&self, client: Api) -> Wire;

    /// The upstream `:path` (with query where the provider needs one).
    fn path(&self, p: &Provider, wire: Wire, target: &Target) -> String;

    /// The header the provider key goes in, and the value's prefix (`env`
    /// auth; Envoy's credential injector is configured to match).
    fn auth_header(&self) -> (&'static str, &'static str);

    /// `gen_ai.provider.name` of the GenAI semantic conventions.
    fn semconv_name<'a>(&self, configured: &'a str) -> &'a str;

    /// Whether model entries may name a deployment.
    fn has_deployments(&self) -> bool;

    /// Problems with the kind's own settings (`api_version`), one per line.
    fn problems(&self, p: &Provider) -> Vec<String>;
}

/// `base_path`, or the provider's default.
pub(crate) fn base<'a>(p: &'a Provider, default: &'a str) -> &'a str {
    p.base_path.as_deref().unwrap_or(default)
}

/// `api_version` is Azure's alone.
pub(crate) fn no_api_version(p: &Provider) -> Vec<String> {
    match &p.api_version {
        Some(_) => vec!["api_version is only used by azure providers".into()],
        None => Vec::new(),
    }
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
