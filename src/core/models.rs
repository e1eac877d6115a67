//! `GET /v1/models`: the configured models this key may use, in the client's format.

use super::api::ClientFormat;
use super::auth::KeyInfo;
use super::config::Config;
use super::glob;
use serde_json::{json, Value};

/// Concrete names only: a pattern like `claude-*` cannot be enumerated.
pub fn list(config: &Config, key: Option<&KeyInfo>, format: ClientFormat) -> Vec<u8> {
    let mut names: Vec<(&str, &str)> = Vec::new();
    for m in &config.models {
        let allowed = key.is_none_or(|k| k.allows(&m.name));
        if !glob::is_pattern(&m.name) && allowed && !names.iter().any(|(n, _)| *n == m.name) {
            names.push((&m.name, &m.provider));
        }
    }
    let body = match format {
        ClientFormat::OpenAi => {
            let data: Vec<Value> = names
                .iter()
                .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
                .collect();
            json!({"object": "list", "data": data})
        }
        ClientFormat::Anthropic => {
            let data: Vec<Value> = names
                .iter()
                .map(|(id, _)| {
                    json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
                })
                .collect();
            json!({
                "data": data,
                "has_more": false,
                "first_id": names.first().map(|(n, _)| n),
                "last_id": names.last().map(|(n, _)| n),
            })
        }
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_allowed_concrete_models() {
        let config = Config::parse(
            br#"{"providers":[{"name":"o","kind":"openai","cluster":"c"}],
                 "models":[{"name":"gpt-4o","provider":"o"},{"name":"gpt-*","provider":"o"},
                           {"name":"fast","provider":"o","upstream_model":"gpt-4o-mini"}]}"#,
        )
        .unwrap();
        let key = KeyInfo {
            key_id: "k".into(),
            team: None,
            user: None,
            models: vec!["gpt-*".into()],
            team_models: vec![],
            expires_at: None,
        };
        let v: Value =
            serde_json::from_slice(&list(&config, Some(&key), ClientFormat::OpenAi)).unwrap();
        assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["data"][0]["id"], "gpt-4o");
        let v: Value =
            serde_json::from_slice(&list(&config, None, ClientFormat::Anthropic)).unwrap();
        assert_eq!(v["data"][1]["id"], "fast");
        assert_eq!(v["last_id"], "fast");
    }
}
