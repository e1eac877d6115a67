//! The request stage's routing decision, handed to the route stage through
//! Envoy filter state (`tollgate.route`) as `key=value` lines (values hold
//! no newlines: they come from configuration and validated headers).

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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteDecision {
    pub cluster: String,
    /// New `:path`, or `None` to keep the client's.
    pub path: Option<String>,
    /// `traceparent` for the provider, naming the gateway's upstream span.
    pub traceparent: Option<String>,
    pub auth: Option<EnvAuth>,
    /// Headers the provider needs that the client may not have sent (e.g.
    /// `anthropic-version` when an OpenAI client is routed to Anthropic);
    /// set only when absent.
    pub defaults: Vec<(String, String)>,
    /// Client headers the provider must not see.
    pub remove: Vec<String>,
    /// Envoy's attempt cap and per-attempt timeout for a model on an
    /// attempt-stage cluster (`x-envoy-max-retries`, which also selects
    /// the route with the retry policy, and
    /// `x-envoy-upstream-rq-per-try-timeout-ms`).
    pub retries: Option<Retries>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub max_retries: u32,
    pub per_try_timeout_ms: Option<u64>,
    /// The request goes to the model's `direct_cluster`: the relay route
    /// (`x-tollgate-relay`) retries once, into the relay, whose own route
    /// makes the other attempts; `max_retries` is not sent.
    pub relay: bool,
}

impl RouteDecision {
    pub fn encode(&self) -> String {
        let mut out = format!("c={}", self.cluster);
        if let Some(p) = &self.path {
            out.push_str(&format!("\np={p}"));
        }
        if let Some(t) = &self.traceparent {
            out.push_str(&format!("\nt={t}"));
        }
        if let Some(a) = &self.auth {
            out.push_str(&format!("\na={}\t{}\t{}", a.header, a.prefix, a.var));
        }
        for (name, value) in &self.defaults {
            out.push_str(&format!("\nh={name}\t{value}"));
        }
        for name in &self.remove {
            out.push_str(&format!("\nr={name}"));
        }
        if let Some(r) = &self.retries {
            out.push_str(&format!("\nn={}", r.max_retries));
            if let Some(ms) = r.per_try_timeout_ms {
                out.push_str(&format!("\tt{ms}"));
            }
            if r.relay {
                out.push_str("\tr");
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RouteDecision> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut d = RouteDecision::default();
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "c" => d.cluster = value.into(),
                "p" => d.path = Some(value.into()),
                "t" => d.traceparent = Some(value.into()),
                "a" => {
                    let mut f = value.split('\t');
                    let (header, prefix, var) = (f.next()?, f.next()?, f.next()?);
                    d.auth = Some(EnvAuth {
                        header: header.into(),
                        prefix: prefix.into(),
                        var: var.into(),
                    });
                }
                "h" => {
                    let (name, value) = value.split_once('\t')?;
                    d.defaults.push((name.into(), value.into()));
                }
                "r" => d.remove.push(value.into()),
                "n" => {
                    let mut f = value.split('\t');
                    let mut r = Retries {
                        max_retries: f.next()?.parse().ok()?,
                        per_try_timeout_ms: None,
                        relay: false,
                    };
                    for field in f {
                        match field.split_at_checked(1)? {
                            ("t", ms) => r.per_try_timeout_ms = Some(ms.parse().ok()?),
                            ("r", "") => r.relay = true,
                            _ => return None,
                        }
                    }
                    d.retries = Some(r);
                }
                _ => return None,
            }
        }
        (!d.cluster.is_empty()).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let plain = RouteDecision {
            cluster: "openai".into(),
            ..RouteDecision::default()
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
                header: "authorization".into(),
                prefix: "Bearer ".into(),
                var: "AZ".into(),
            }),
            defaults: vec![("anthropic-version".into(), "2023-06-01".into())],
            remove: vec!["openai-organization".into(), "openai-project".into()],
            retries: Some(Retries {
                max_retries: 2,
                per_try_timeout_ms: Some(1500),
                relay: true,
            }),
        };
        let no_timeout = RouteDecision {
            cluster: "fb".into(),
            retries: Some(Retries {
                max_retries: 0,
                per_try_timeout_ms: None,
                relay: false,
            }),
            ..RouteDecision::default()
        };
        assert_eq!(
            RouteDecision::decode(no_timeout.encode().as_bytes()),
            Some(no_timeout)
        );
        assert_eq!(RouteDecision::decode(full.encode().as_bytes()), Some(full));
        assert_eq!(RouteDecision::decode(b""), None);
        assert_eq!(RouteDecision::decode(b"\xff"), None);
        assert_eq!(RouteDecision::decode(b"c=x\nz=1"), None);
        assert_eq!(RouteDecision::decode(b"c=x\nn=1\tq"), None);
    }
}
