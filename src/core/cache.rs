//! The response cache's host-free half: which requests a cache rule covers,
//! the client's opt-out, and the cache key. The key is a SHA-256 over the
//! tenant scope, the client's API, the resolved provider and upstream model
//! and the checked request body in canonical form (object keys sorted,
//! integral floats written as integers, no whitespace), so everything that
//! changes the answer changes the key and nothing else does. Entries live
//! behind the sidecar (`/v1/cache/*`); `filter::cache_index` keeps which
//! keys exist, so a miss costs no callout.

use super::auth::KeyInfo;
use super::glob;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest TTL accepted: a stale answer must not outlive a model update by much.
const MAX_TTL_S: u64 = 30 * 24 * 3600;

/// `cache` in the filter configuration: off unless a rule covers a request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The first rule that covers a request decides its TTL.
    pub rules: Vec<CacheRule>,
    /// Lookups slower than this are skipped (the request goes upstream).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Answers larger than this (as the client got them) are not stored.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// Shared-data slots of the index of stored keys, 8 keys each.
    #[serde(default = "default_index_slots")]
    pub index_slots: u32,
}

fn default_timeout_ms() -> u64 {
    25
}
fn default_max_entry_bytes() -> usize {
    1024 * 1024
}
fn default_index_slots() -> u32 {
    4096
}

/// Requests a rule covers: each list it names must match (model names are
/// the client-facing names, patterns allowed; teams and keys are ids).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub keys: Vec<String>,
    pub ttl_s: u64,
    /// Entries are shared by every team's keys (default: each team, or a
    /// team-less key, has its own).
    #[serde(default)]
    pub shared_across_teams: bool,
}

impl CacheConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rules.is_empty() {
            out.push("cache.rules is empty: name the models, teams or keys to cache".into());
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.models.is_empty() && r.teams.is_empty() && r.keys.is_empty() {
                out.push(format!(
                    "cache.rules[{i}] names no models, teams or keys (use models: [\"*\"] to cache every model)"
                ));
            }
            if r.ttl_s == 0 || r.ttl_s > MAX_TTL_S {
                out.push(format!(
                    "cache.rules[{i}].ttl_s is {} but must be 1..{MAX_TTL_S}",
                    r.ttl_s
                ));
            }
        }
        if self.timeout_ms == 0 {
            out.push("cache.timeout_ms must be greater than 0".into());
        }
        if self.max_entry_bytes == 0 {
            out.push("cache.max_entry_bytes must be greater than 0".into());
        }
        if !(1..=1_000_000).contains(&self.index_slots) {
            out.push(format!(
                "cache.index_slots is {} but must be 1..1000000",
                self.index_slots
            ));
        }
        out
    }

    /// The rule covering a request for `model` by `key`. A request without
    /// a known key (key checks off or failing open) has no tenant: not cached.
    pub fn rule_for(&self, model: &str, key: Option<&KeyInfo>) -> Option<&CacheRule> {
        let key = key?;
        let team = key.team.as_deref();
        self.rules.iter().find(|r| {
            (r.models.is_empty() || r.models.iter().any(|p| glob::matches(p, model)))
                && (r.teams.is_empty() || team.is_some_and(|t| r.teams.iter().any(|x| x == t)))
                && (r.keys.is_empty() || r.keys.contains(&key.key_id))
        })
    }
}

impl CacheRule {
    /// Whose entries a request may see: its team's, or a team-less key's own.
    pub fn scope(&self, key: &KeyInfo) -> String {
        match (&key.team, self.shared_across_teams) {
            (_, true) => "*".into(),
            (Some(team), false) => format!("team:{team}"),
            (None, false) => format!("key:{}", key.key_id),
        }
    }
}

/// What the client's `cache-control` asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWish {
    /// Read and store.
    Use,
    /// `no-cache`: a fresh answer (stored for the next request).
    Refresh,
    /// `no-store`: neither read nor store.
    Bypass,
}

impl ClientWish {
    /// Reads the directives of a `cache-control` header (case-insensitive,
    /// comma-separated, arguments ignored).
    pub fn from_header(value: Option<&str>) -> ClientWish {
        let mut wish = ClientWish::Use;
        for directive in value.unwrap_or("").split(',') {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-store") {
                return ClientWish::Bypass;
            }
            if name.eq_ignore_ascii_case("no-cache") {
                wish = ClientWish::Refresh;
            }
        }
        wish
    }

    pub fn reads(self) -> bool {
        self == ClientWish::Use
    }

    pub fn stores(self) -> bool {
        self != ClientWish::Bypass
    }
}

/// What the key covers besides the body.
pub struct KeyParts<'a> {
    pub scope: &'a str,
    pub api: &'static str,
    pub provider: &'a str,
    pub upstream_model: &'a str,
}

/// The cache key of a checked request `body` (its `model` is replaced by
/// the resolved route in `parts`): 32 bytes.
pub fn key(parts: &KeyParts, body: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in [
        "tollgate-cache-v1",
        parts.scope,
        parts.api,
        parts.provider,
        parts.upstream_model,
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    match body {
        Value::Object(map) => canonical_object(&mut h, map.iter().filter(|(k, _)| *k != "model")),
        other => canonical(&mut h, other),
    }
    h.finalize().into()
}

/// Writes `v` canonically. serde_json's map is ordered by key (no
/// `preserve_order`), so objects come out sorted; the parser bounds depth.
fn canonical(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"null"),
        Value::Bool(b) => h.update(if *b { &b"true"[..] } else { &b"false"[..] }),
        Value::Number(n) => canonical_number(h, n),
        Value::String(s) => canonical_string(h, s),
        Value::Array(items) => {
            h.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                canonical(h, item);
            }
            h.update(b"]");
        }
        Value::Object(map) => canonical_object(h, map.iter()),
    }
}

fn canonical_object<'a>(h: &mut Sha256, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    h.update(b"{");
    for (i, (k, item)) in entries.enumerate() {
        if i > 0 {
            h.update(b",");
        }
        canonical_string(h, k);
        h.update(b":");
        canonical(h, item);
    }
    h.update(b"}");
}

/// `1.0` and `1` are one number to every model API.
fn canonical_number(h: &mut Sha256, n: &serde_json::Number) {
    let integral = n
        .as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15 && n.is_f64());
    match integral {
        Some(f) => h.update((f as i64).to_string().as_bytes()),
        None => h.update(n.to_string().as_bytes()),
    }
}

/// Strings as JSON writes them, so a quote inside one cannot forge structure.
fn canonical_string(h: &mut Sha256, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => h.update(quoted.as_bytes()),
        // Unreachable for a `str`; the length still separates it.
        Err(_) => h.update((s.len() as u64).to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts() -> KeyParts<'static> {
        KeyParts {
            scope: "team:a",
            api: "chat_completions",
            provider: "openai",
            upstream_model: "gpt-4o",
        }
    }

    fn k(body: &str) -> [u8; 32] {
        key(&parts(), &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn key_order_whitespace_and_number_form_do_not_matter() {
        let a = k(r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":1}"#);
        let b = k(r#"{ "temperature" : 1.0,
            "messages":[{"content":"hi","role":"user"}], "model":"y"}"#);
        assert_eq!(a, b);
    }

    #[test]
    fn every_field_and_every_part_matters() {
        let base = json!({
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "auto",
            "response_format": {"type": "json_object"},
            "temperature": 0.5,
            "top_p": 1,
            "max_tokens": 10,
            "stream": false,
        });
        let reference = key(&parts(), &base);
        let changes: Vec<(&str, Value)> = vec![
            (
                "messages",
                json!([{"role": "system", "content": "be long"}, {"role": "user", "content": "hi"}]),
            ),
            (
                "messages",
                json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "ho"}]),
            ),
            ("tools", json!([])),
            ("tool_choice", json!("none")),
            ("response_format", json!({"type": "text"})),
            ("temperature", json!(0.6)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(11)),
            ("stream", json!(true)),
            ("seed", json!(1)),
        ];
        for (field, value) in changes {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(key(&parts(), &changed), reference, "{field}");
        }
        for other in [
            KeyParts {
                scope: "team:b",
                ..parts()
            },
            KeyParts {
                api: "responses",
                ..parts()
            },
            KeyParts {
                provider: "azure",
                ..parts()
            },
            KeyParts {
                upstream_model: "gpt-4o-mini",
                ..parts()
            },
        ] {
            assert_ne!(key(&other, &base), reference);
        }
    }

    #[test]
    fn strings_cannot_forge_structure() {
        assert_ne!(k(r#"{"a":"x\",\"b\":\"y"}"#), k(r#"{"a":"x","b":"y"}"#));
        let p = |scope| KeyParts { scope, ..parts() };
        let body = json!({});
        assert_ne!(
            key(&p("team:ab"), &body),
            key(
                &KeyParts {
                    api: "bchat_completions",
                    ..p("team:a")
                },
                &body
            )
        );
    }

    fn info(team: Option<&str>) -> KeyInfo {
        KeyInfo {
            key_id: "k1".into(),
            team: team.map(Into::into),
            user: None,
            models: vec![],
            team_models: vec![],
            expires_at: None,
        }
    }

    fn config(rules: Value) -> CacheConfig {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn rules_match_by_model_team_and_key() {
        let c = config(json!([
            {"models": ["gpt-4o*"], "teams": ["research"], "ttl_s": 60},
            {"keys": ["k1"], "ttl_s": 5},
        ]));
        let research = info(Some("research"));
        assert_eq!(
            c.rule_for("gpt-4o-mini", Some(&research)).unwrap().ttl_s,
            60
        );
        assert_eq!(c.rule_for("claude", Some(&research)).unwrap().ttl_s, 5);
        let mut other = info(Some("ops"));
        other.key_id = "k2".into();
        assert!(c.rule_for("gpt-4o", Some(&other)).is_none());
        assert!(c.rule_for("gpt-4o", None).is_none());
        assert_eq!(c.rules[0].scope(&research), "team:research");
        assert_eq!(c.rules[0].scope(&info(None)), "key:k1");
    }

    #[test]
    fn problems_are_listed() {
        let c = config(json!([{"ttl_s": 0}]));
        let p = c.problems();
        assert!(p.iter().any(|p| p.contains("names no models")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("ttl_s is 0")), "{p:?}");
        assert!(config(json!([])).problems()[0].contains("rules is empty"));
    }

    #[test]
    fn client_wishes() {
        use ClientWish::*;
        assert_eq!(ClientWish::from_header(None), Use);
        assert_eq!(
            ClientWish::from_header(Some("max-age=0, No-Cache")),
            Refresh
        );
        assert_eq!(ClientWish::from_header(Some("no-cache, no-store")), Bypass);
        assert_eq!(ClientWish::from_header(Some("no-storey")), Use);
        assert!(Refresh.stores() && !Refresh.reads() && !Bypass.stores());
    }
}
