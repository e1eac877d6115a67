//! The request stage's routing decision, handed to the route stage through
//! Envoy filter state (`tollgate.route`) as a few newline-separated fields.

/// How the route stage sets the provider credential, when Envoy does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAuth {
    /// Header name, e.g. `authorization`, `x-api-key`, `api-key`.
    pub header: String,
    /// Prefix before the secret, e.g. `Bearer `.
    pub prefix: String,
    /// Environment variable holding the secret.
    pub var: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub cluster: String,
    /// New `:path`, or `None` to keep the client's.
    pub path: Option<String>,
    /// `traceparent` for the provider, naming the gateway's upstream span.
    pub traceparent: Option<String>,
    pub auth: Option<EnvAuth>,
}

impl RouteDecision {
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}",
            self.cluster,
            self.path.as_deref().unwrap_or(""),
            self.traceparent.as_deref().unwrap_or("")
        );
        if let Some(a) = &self.auth {
            out.push_str(&format!("\n{}\n{}\n{}", a.header, a.prefix, a.var));
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RouteDecision> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split('\n');
        let cluster = fields.next().filter(|c| !c.is_empty())?.to_string();
        let path = fields.next().filter(|p| !p.is_empty()).map(String::from);
        let traceparent = fields.next().filter(|t| !t.is_empty()).map(String::from);
        let auth = match (fields.next(), fields.next(), fields.next()) {
            (Some(header), Some(prefix), Some(var)) => Some(EnvAuth {
                header: header.into(),
                prefix: prefix.into(),
                var: var.into(),
            }),
            _ => None,
        };
        Some(RouteDecision {
            cluster,
            path,
            traceparent,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let plain = RouteDecision {
            cluster: "openai".into(),
            path: None,
            traceparent: None,
            auth: None,
        };
        assert_eq!(
            RouteDecision::decode(plain.encode().as_bytes()),
            Some(plain)
        );
        let full = RouteDecision {
            cluster: "azure".into(),
            path: Some("/openai/deployments/d/chat/completions?api-version=1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            auth: Some(EnvAuth {
                header: "api-key".into(),
                prefix: String::new(),
                var: "AZ".into(),
            }),
        };
        assert_eq!(RouteDecision::decode(full.encode().as_bytes()), Some(full));
        assert_eq!(RouteDecision::decode(b""), None);
        assert_eq!(RouteDecision::decode(b"\xff"), None);
    }
}
