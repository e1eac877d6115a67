//! The gateway's residency pins, read from its configuration
//! (`--gateway-config`), so that the model lists of pinned teams and keys,
//! which live here, are checked against the regions the gateway serves
//! from, which live there. A pinned team whose models have no target in its
//! regions would have every request refused: `serve` does not start with
//! one in the database, and creating or changing a team or key that would
//! make one is refused. The rules are the filter's own
//! (`tollgate::core::residency`), on its own configuration parser.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tollgate::core::auth::KeyInfo;
use tollgate::core::config::Config;
use tollgate::core::residency;

use crate::error::{Error, Result};

/// The filter configurations found in the gateway's configuration (one per
/// Tollgate filter: an Envoy may run several listeners).
#[derive(Debug)]
pub struct Pins {
    configs: Vec<Config>,
}

impl Pins {
    /// Reads `path`: the filter's JSON configuration itself, or an Envoy
    /// bootstrap or Istio manifest (YAML or JSON, several documents allowed)
    /// holding it as a Wasm filter's `configuration` string or a
    /// WasmPlugin's `pluginConfig`.
    pub fn load(path: &Path) -> Result<Pins> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!("gateway configuration {}: {e}", path.display()))
        })?;
        Pins::parse(&text)
            .map_err(|e| Error::invalid(format!("gateway configuration {}: {e}", path.display())))
    }

    fn parse(text: &str) -> std::result::Result<Pins, String> {
        let mut found = Vec::new();
        match serde_json::from_str::<Value>(text) {
            Ok(v) if is_filter_config(&v) => found.push(text.to_owned()),
            _ => {
                for doc in yaml_serde::Deserializer::from_str(text) {
                    let doc = Value::deserialize(doc).map_err(|e| {
                        // envoy/gateway.yaml is a template until scripts/stack.py renders it.
                        let hint = if text.contains("${") {
                            " (a template with ${...} values? give the rendered file)"
                        } else {
                            ""
                        };
                        format!("not YAML or JSON{hint}: {e}")
                    })?;
                    filter_configs(&doc, &mut found);
                }
            }
        }
        if found.is_empty() {
            return Err("no Tollgate filter configuration in it (a Wasm filter's configuration or a dynamic module's filter_config string, with providers and models)".into());
        }
        let configs = found
            .iter()
            .map(|c| Config::parse(c.as_bytes()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Pins { configs })
    }

    /// What is wrong with `team` having `models`, if it is pinned.
    pub fn team_problem(&self, team: &str, models: &[String]) -> Option<String> {
        self.configs.iter().find_map(|c| {
            let regions = c.residency.as_ref()?.teams.get(team)?;
            let regions: Vec<&str> = regions.iter().map(String::as_str).collect();
            let served = residency::usable_within(c, &regions, &[models]).err()?;
            Some(format!(
                "team {team} is pinned to {} where the gateway serves {}; its models ({}) allow none of them, so every request of the team would be refused",
                regions.join(", "),
                names(&served),
                names(models),
            ))
        })
    }

    /// What is wrong with key `key_id` having `models` in `team` (with the
    /// team's models), if it or its team is pinned.
    pub fn key_problem(
        &self,
        key_id: &str,
        models: &[String],
        team: Option<(&str, &[String])>,
    ) -> Option<String> {
        let key = KeyInfo {
            key_id: key_id.to_owned(),
            team: team.map(|(t, _)| t.to_owned()),
            user: None,
            models: models.to_vec(),
            team_models: team.map(|(_, m)| m.to_vec()).unwrap_or_default(),
            expires_at: None,
        };
        self.configs.iter().find_map(|c| {
            let regions = c.residency.as_ref()?.pins(Some(&key))?;
            if regions.is_empty() {
                return Some(format!(
                    "key {key_id} is pinned to regions its team's pin does not allow, so every request of it would be refused"
                ));
            }
            let served =
                residency::usable_within(c, &regions, &[&key.models, &key.team_models]).err()?;
            Some(format!(
                "key {key_id} is pinned to {} where the gateway serves {}; its models ({}) and its team's ({}) allow none of them, so every request of the key would be refused",
                regions.join(", "),
                names(&served),
                names(&key.models),
                names(&key.team_models),
            ))
        })
    }

    /// The teams and key ids any pin names.
    pub fn pinned(&self) -> (Vec<&str>, Vec<&str>) {
        let (mut teams, mut keys) = (Vec::new(), Vec::new());
        for r in self.configs.iter().filter_map(|c| c.residency.as_ref()) {
            teams.extend(r.teams.keys().map(String::as_str));
            keys.extend(r.keys.keys().map(String::as_str));
        }
        (teams, keys)
    }
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "all".into()
    } else {
        list.join(", ")
    }
}

/// The filter's own configuration: an object with providers and models.
fn is_filter_config(v: &Value) -> bool {
    v.get("providers").is_some() && v.get("models").is_some()
}

/// Every Tollgate filter configuration in `v`: a Wasm filter's
/// `configuration` string, the dynamic module's `filter_config` string, or
/// an Istio WasmPlugin's `pluginConfig` object (other filters'
/// configurations are skipped).
fn filter_configs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for field in ["configuration", "filter_config"] {
                if let Some(Value::String(s)) = map.get(field).and_then(|c| c.get("value")) {
                    if serde_json::from_str::<Value>(s).is_ok_and(|c| is_filter_config(&c)) {
                        out.push(s.clone());
                    }
                }
            }
            if let Some(plugin) = map.get("pluginConfig").filter(|c| is_filter_config(c)) {
                out.push(plugin.to_string());
            }
            map.values().for_each(|child| filter_configs(child, out));
        }
        Value::Array(items) => items.iter().for_each(|child| filter_configs(child, out)),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Value {
        json!({
            "providers": [
                {"name": "openai", "kind": "openai", "cluster": "c1", "region": "us"},
                {"name": "azure", "kind": "azure", "cluster": "c2", "region": "eu",
                 "api_version": "2024-10-21", "auth": {"type": "env", "var": "K"}}
            ],
            "models": [
                {"name": "gpt-*", "provider": "openai"},
                {"name": "azure-gpt-4o", "provider": "azure", "deployment": "gpt-4o"}
            ],
            "residency": {"teams": {"legal": ["eu"]}, "keys": {"key_1": ["us"]}}
        })
    }

    fn list(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_the_filter_config_from_an_envoy_bootstrap_in_yaml() {
        let yaml = format!(
            "static_resources:\n  listeners:\n  - filters:\n    - typed_config:\n        config:\n          configuration:\n            \"@type\": type.googleapis.com/google.protobuf.StringValue\n            value: |\n              {}\n          other:\n            configuration: {{value: \"not ours\"}}\n---\nkind: Second\n",
            settings()
        );
        let pins = Pins::parse(&yaml).unwrap();
        assert_eq!(pins.configs.len(), 1);
        assert_eq!(pins.pinned(), (vec!["legal"], vec!["key_1"]));
        // The dynamic module's filter_config too.
        let native = yaml.replace(
            "configuration:\n            \"@type\"",
            "filter_config:\n            \"@type\"",
        );
        assert_eq!(Pins::parse(&native).unwrap().configs.len(), 1);
        // The filter's JSON itself too; and a file without it says so.
        assert_eq!(
            Pins::parse(&settings().to_string()).unwrap().configs.len(),
            1
        );
        assert!(Pins::parse("a: {b: ${X}}\n")
            .unwrap_err()
            .contains("give the rendered file"));
        // An Istio WasmPlugin carries it as an object.
        let plugin = json!({"kind": "WasmPlugin", "spec": {"pluginConfig": settings()}});
        assert_eq!(Pins::parse(&plugin.to_string()).unwrap().configs.len(), 1);
        assert!(Pins::parse("a: 1\n")
            .unwrap_err()
            .contains("no Tollgate filter configuration"));
        // An invalid filter configuration is reported as the filter would.
        let mut bad = settings();
        bad["residency"]["teams"]["legal"] = json!(["ue"]);
        assert!(Pins::parse(&bad.to_string())
            .unwrap_err()
            .contains("no model is served from ue"));
    }

    #[test]
    fn a_pinned_team_or_key_needs_a_model_served_in_its_regions() {
        let pins = Pins::parse(&settings().to_string()).unwrap();
        assert_eq!(pins.team_problem("legal", &[]), None);
        assert_eq!(pins.team_problem("legal", &list(&["azure-*"])), None);
        assert_eq!(
            pins.team_problem("legal", &list(&["gpt-4o"])).unwrap(),
            "team legal is pinned to eu where the gateway serves azure-gpt-4o; its models (gpt-4o) allow none of them, so every request of the team would be refused"
        );
        assert_eq!(pins.team_problem("ops", &list(&["gpt-4o"])), None);
        // A key: its own pin, its team's, and both model lists.
        assert_eq!(pins.key_problem("key_1", &list(&["gpt-4o"]), None), None);
        assert!(pins
            .key_problem("key_1", &list(&["azure-*"]), None)
            .is_some());
        let team: &[String] = &list(&["azure-*"]);
        assert!(pins
            .key_problem("key_2", &list(&["gpt-*"]), Some(("legal", team)))
            .unwrap()
            .starts_with("key key_2 is pinned to eu"));
        assert!(pins
            .key_problem("key_1", &[], Some(("legal", &[])))
            .unwrap()
            .contains("regions its team's pin does not allow"));
    }
}
