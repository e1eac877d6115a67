//! Data residency: teams and keys pinned to regions, and the targets a
//! pinned request may reach. Providers (and model entries, for a
//! deployment elsewhere) name their region; a target without one is outside
//! every pin. A pinned request whose target is outside its regions is
//! refused before anything leaves; on a fallback chain with targets outside
//! them it goes to its first allowed target alone (Envoy picks among a
//! chain's targets by priority and health, and an upstream filter's refusal
//! is not retried, so the chain cannot be asked to skip one).

use super::api::Api;
use super::auth::KeyInfo;
use super::config::Config;
use super::error::GatewayError;
use super::routing::{self, Chain, Route};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `residency` in the filter configuration: regions per team and per key
/// id. A key in a pinned team that is pinned itself gets the regions both allow.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencyConfig {
    #[serde(default)]
    pub teams: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}

impl ResidencyConfig {
    /// The regions a request by `key` may be served from; `None`: unpinned.
    pub fn pins<'a>(&'a self, key: Option<&KeyInfo>) -> Option<Vec<&'a str>> {
        let key = key?;
        let team = key.team.as_ref().and_then(|t| self.teams.get(t));
        let own = self.keys.get(&key.key_id);
        match (team, own) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(one.iter().map(String::as_str).collect()),
            (Some(t), Some(k)) => Some(
                t.iter()
                    .filter(|r| k.contains(r))
                    .map(String::as_str)
                    .collect(),
            ),
        }
    }

    /// Pins naming no region, or only regions no model is served from
    /// (a typo would otherwise refuse every request of the team).
    pub fn problems(&self, config: &Config) -> Vec<String> {
        let served: Vec<&str> = config
            .models
            .iter()
            .filter_map(|m| {
                let provider = config.provider(&m.provider)?;
                m.region.as_deref().or(provider.region.as_deref())
            })
            .collect();
        let mut out = Vec::new();
        for (what, pins) in [("teams", &self.teams), ("keys", &self.keys)] {
            for (name, regions) in pins {
                if regions.is_empty() {
                    out.push(format!("residency.{what}.{name} names no region"));
                } else if !regions.iter().any(|r| served.contains(&r.as_str())) {
                    let mut known = served.clone();
                    known.sort_unstable();
                    known.dedup();
                    out.push(format!(
                        "residency.{what}.{name}: no model is served from {} (regions of the models: {})",
                        regions.join(", "),
                        if known.is_empty() { "none set".into() } else { known.join(", ") }
                    ));
                }
            }
        }
        out
    }
}

/// How a request pinned to `pins` is routed: `None`, as resolved (every
/// target it may reach is allowed); `Some`, the first allowed target of its
/// chain alone (the chain has targets outside the pin); else `RegionNotAllowed`.
pub fn apply<'a>(
    config: &'a Config,
    pins: &[&str],
    (api, model, stream): (Api, &str, bool),
    route: &Route<'a>,
    chain: Option<&Chain<'a>>,
) -> Result<Option<Route<'a>>, GatewayError> {
    let allowed = |r: &Route| r.region.is_some_and(|region| pins.contains(&region));
    let refused = || GatewayError::RegionNotAllowed(model.into());
    let Some(c) = chain else {
        return if allowed(route) {
            Ok(None)
        } else {
            Err(refused())
        };
    };
    let count = config.models.get(c.entry).map_or(0, |m| m.targets.len());
    let mut first_allowed = None;
    let mut all = true;
    for k in 0..count {
        let target = routing::target(config, api, c.entry, k, model, stream)?;
        if allowed(&target) {
            first_allowed.get_or_insert(target);
        } else {
            all = false;
        }
    }
    match first_allowed {
        Some(_) if all => Ok(None),
        Some(target) => Ok(Some(target)),
        None => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(residency: serde_json::Value) -> Result<Config, String> {
        Config::parse(
            json!({
                "providers": [
                    {"name": "openai", "kind": "openai", "cluster": "c_openai", "region": "us",
                     "auth": {"type": "env", "var": "K1"}},
                    {"name": "azure", "kind": "azure", "cluster": "c_azure", "region": "eu",
                     "api_version": "2024-10-21", "auth": {"type": "env", "var": "K2"}},
                    {"name": "azure2", "kind": "azure", "cluster": "c_azure2", "region": "eu",
                     "api_version": "2024-10-21", "auth": {"type": "env", "var": "K4"}},
                    {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic",
                     "auth": {"type": "env", "var": "K3"}}
                ],
                "models": [
                    {"name": "gpt-4o", "provider": "openai"},
                    {"name": "azure-gpt-4o", "provider": "azure", "upstream_model": "gpt-4o"},
                    {"name": "azure-uk", "provider": "azure2", "upstream_model": "gpt-4o", "region": "uk"},
                    {"name": "claude", "provider": "anthropic"},
                    {"name": "ha", "provider": "openai", "upstream_model": "gpt-4o",
                     "fallbacks": ["azure-gpt-4o", "claude"], "cluster": "fb"},
                    {"name": "eu-first", "provider": "azure", "upstream_model": "gpt-4o",
                     "fallbacks": ["azure-uk"], "cluster": "fb2"}
                ],
                "residency": residency
            })
            .to_string()
            .as_bytes(),
        )
    }

    fn key(id: &str, team: Option<&str>) -> KeyInfo {
        KeyInfo {
            key_id: id.into(),
            team: team.map(Into::into),
            user: None,
            models: vec![],
            team_models: vec![],
            expires_at: None,
        }
    }

    fn route(c: &Config, model: &str, pins: &[&str]) -> Result<(String, bool), GatewayError> {
        let (r, chain) = routing::resolve(c, Api::ChatCompletions, model, false)?;
        let call = (Api::ChatCompletions, model, false);
        Ok(match apply(c, pins, call, &r, chain.as_ref())? {
            None => (r.provider.name.clone(), chain.is_some()),
            Some(target) => (target.provider.name.clone(), false),
        })
    }

    #[test]
    fn pins_of_teams_and_keys_intersect() {
        let c = config(json!({"teams": {"legal": ["eu", "uk"]}, "keys": {"k1": ["uk", "us"]}}))
            .unwrap();
        let r = c.residency.as_ref().unwrap();
        assert_eq!(r.pins(Some(&key("k1", Some("legal")))), Some(vec!["uk"]));
        assert_eq!(
            r.pins(Some(&key("k2", Some("legal")))),
            Some(vec!["eu", "uk"])
        );
        assert_eq!(r.pins(Some(&key("k2", Some("ops")))), None);
        assert_eq!(r.pins(None), None);
    }

    #[test]
    fn targets_outside_the_pin_are_refused_or_skipped() {
        let c = config(json!({})).unwrap();
        assert_eq!(
            route(&c, "azure-gpt-4o", &["eu"]).unwrap(),
            ("azure".into(), false)
        );
        assert!(matches!(
            route(&c, "gpt-4o", &["eu"]),
            Err(GatewayError::RegionNotAllowed(_))
        ));
        // A provider without a region is outside every pin.
        assert!(route(&c, "claude", &["eu", "us"]).is_err());
        // A chain with a target outside: its first allowed target alone.
        assert_eq!(route(&c, "ha", &["eu"]).unwrap(), ("azure".into(), false));
        assert_eq!(route(&c, "ha", &["us"]).unwrap(), ("openai".into(), false));
        // Every target inside: the chain as it is.
        assert_eq!(
            route(&c, "eu-first", &["eu", "uk"]).unwrap(),
            ("azure".into(), true)
        );
        // A deployment's own region wins over its provider's.
        assert_eq!(
            route(&c, "eu-first", &["uk"]).unwrap(),
            ("azure2".into(), false)
        );
        assert!(route(&c, "ha", &["uk2"]).is_err());
    }

    #[test]
    fn a_pin_no_model_can_serve_stops_start_up() {
        let e = config(json!({"teams": {"legal": ["ue"]}, "keys": {"k": []}})).unwrap_err();
        assert!(e.contains("residency.teams.legal: no model is served from ue (regions of the models: eu, uk, us)"), "{e}");
        assert!(e.contains("residency.keys.k names no region"), "{e}");
    }
}
