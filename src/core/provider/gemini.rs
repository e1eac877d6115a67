//! Google Gemini (the Gemini API's native `generateContent`): the model and
//! the stream flag are in the path, the key in `x-goog-api-key`.

use super::{base, url_segment, Kind, Target};
use crate::core::api::Api;
use crate::core::config::Provider;
use crate::core::wire::Wire;

#[derive(Debug)]
pub struct Gemini;

impl Kind for Gemini {
    fn wire(&self, _: &Provider, _: Api) -> Wire {
        Wire::Gemini
    }

    fn path(&self, p: &Provider, _: Wire, target: &Target) -> String {
        let method = if target.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        format!(
            "{}/models/{}:{method}",
            base(p, "/v1beta"),
            url_segment(target.model)
        )
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("x-goog-api-key", "")
    }

    fn semconv_name<'a>(&self, _: &'a str) -> &'a str {
        "gcp.gemini"
    }

    fn has_deployments(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::routing;

    #[test]
    fn routes_to_generate_content() {
        let c = Config::parse(
            br#"{"providers": [{"name": "g", "kind": "gemini", "cluster": "c_g"}],
                 "models": [{"name": "gemini-*", "provider": "g"}]}"#,
        )
        .unwrap();
        let r = routing::resolve(&c, Api::ChatCompletions, "gemini-2.5-flash", false)
            .unwrap()
            .0;
        assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(r.upstream_api, Wire::Gemini);
        let r = routing::resolve(&c, Api::Messages, "gemini-x/y", true)
            .unwrap()
            .0;
        assert_eq!(
            r.path,
            "/v1beta/models/gemini-x%2Fy:streamGenerateContent?alt=sse"
        );
        assert_eq!(Gemini.auth_header(), ("x-goog-api-key", ""));
    }
}
