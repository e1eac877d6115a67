//! Data residency: teams and keys pinned to regions, and the targets a
//! pinned request may reach. Providers (and model entries, for a
//! deployment elsewhere) name their region; a target without one is outside
//! every pin. A pinned request whose target is outside its regions is
//! refused before anything leaves. On a fallback chain with targets outside
//! them it falls back among its allowed targets on the aggregate cluster
//! the model names for their regions (`region_clusters`), or goes to its
//! one allowed target alone: Envoy picks among a chain's targets by
//! priority and health, and an upstream filter's refusal is not retried,
//! so the full chain cannot be asked to skip one.

use super::api::Api;
use super::auth::KeyInfo;
use super::config::Config;
use super::config::ModelRoute;
use super::error::GatewayError;
use super::glob;
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
    /// (a typo would otherwise refuse every request of the team), and
    /// chains a pin leaves with several targets but no cluster over them.
    pub fn problems(&self, config: &Config) -> Vec<String> {
        let served: Vec<&str> = config
            .models
            .iter()
            .filter_map(|m| m.region_in(config.provider(&m.provider)?))
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
                out.extend(uncovered_chains(
                    config,
                    &format!("residency.{what}.{name}"),
                    regions,
                ));
            }
        }
        out
    }
}

/// For a team or key pinned to `regions` whose allow-lists are `lists`
/// (each empty: every model; a model must pass every list): `Err` with the
/// model entries served there when the lists allow none of them, since
/// every request of it would be refused. Patterns count when some name
/// matches both (`glob::overlap`). The sidecar checks team and key model
/// lists with this, where they are edited.
pub fn usable_within(
    config: &Config,
    regions: &[&str],
    lists: &[&[String]],
) -> Result<(), Vec<String>> {
    let served: Vec<&ModelRoute> = config
        .models
        .iter()
        .filter(|m| {
            m.targets
                .iter()
                .any(|&t| target_region(config, t).is_some_and(|r| regions.contains(&r)))
        })
        .collect();
    let usable = served.iter().any(|m| {
        lists
            .iter()
            .all(|list| list.is_empty() || list.iter().any(|p| glob::overlap(p, &m.name)))
    });
    if usable {
        Ok(())
    } else {
        Err(served.iter().map(|m| m.name.clone()).collect())
    }
}

/// Chains a pin to `regions` leaves with several allowed targets (but not
/// all) and no `region_clusters` entry for them: their requests would get
/// no fallback. (A key pinned inside a pinned team gets the intersection,
/// which is not checked here: without a cluster it goes to its first
/// allowed target alone.)
fn uncovered_chains(config: &Config, at: &str, regions: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for m in config.models.iter().filter(|m| m.targets.len() > 1) {
        let served: Vec<&str> = m
            .targets
            .iter()
            .filter_map(|&i| target_region(config, i))
            .filter(|r| regions.iter().any(|p| p == r))
            .collect();
        if served.len() < 2 || served.len() == m.targets.len() {
            continue;
        }
        let key = region_key(served.iter().copied());
        if !m.region_clusters.contains_key(&key) {
            out.push(format!(
                "{at}: {} of the {} targets of model `{}` serve from {key}; name an aggregate cluster over them (in chain order) as region_clusters.\"{key}\" so its requests can fall back among them",
                served.len(),
                m.targets.len(),
                m.name
            ));
        }
    }
    out
}

/// Where the entry at `i` in `models` serves from.
fn target_region(config: &Config, i: usize) -> Option<&str> {
    let m = config.models.get(i)?;
    m.region_in(config.provider(&m.provider)?)
}

/// A set of regions as `region_clusters` names it: sorted, once each,
/// joined by `+`.
fn region_key<'a>(regions: impl Iterator<Item = &'a str>) -> String {
    let mut all: Vec<&str> = regions.collect();
    all.sort_unstable();
    all.dedup();
    all.join("+")
}

/// `region_clusters` that cannot work: on a model without a chain, with an
/// empty cluster, or naming a set of regions written otherwise than sorted
/// and once each, or one its chain has no target in.
pub fn region_cluster_problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in config.models.iter().enumerate() {
        if m.region_clusters.is_empty() {
            continue;
        }
        let at = format!("models[{i}] (`{}`)", m.name);
        if m.cluster.is_none() {
            out.push(format!("{at}: region_clusters need cluster (a chain)"));
        }
        let served: Vec<&str> = m
            .targets
            .iter()
            .filter_map(|&t| target_region(config, t))
            .collect();
        for (key, cluster) in &m.region_clusters {
            let regions: Vec<&str> = key.split('+').collect();
            if region_key(regions.iter().copied()) != *key || regions.contains(&"") {
                out.push(format!(
                    "{at}: region_clusters key `{key}` must list regions sorted, once each, joined by + (e.g. eu+uk)"
                ));
            } else if let Some(r) = regions.iter().find(|r| !served.contains(r)) {
                out.push(format!(
                    "{at}: region_clusters.{key}: no target of the chain serves from {r}"
                ));
            }
            if cluster.trim().is_empty() {
                out.push(format!(
                    "{at}: region_clusters.{key} must name an Envoy cluster"
                ));
            }
        }
    }
    out
}

/// How a pinned request is routed.
#[derive(Debug)]
pub enum Pinned<'a> {
    /// As resolved: every target it may reach is allowed.
    AsResolved,
    /// To one target of its chain alone (the only one allowed).
    Alone(Route<'a>),
    /// Along its chain's allowed targets, on their region cluster; the
    /// route is the first of them.
    Chain(Route<'a>, Chain<'a>),
}

/// How a request pinned to `pins` is routed; `RegionNotAllowed` when no
/// target it may reach serves from them. A chain with targets outside the
/// pin keeps its allowed ones, in order, when the model names a cluster
/// over them (`region_clusters`), else the first alone.
pub fn apply<'a>(
    config: &'a Config,
    pins: &[&str],
    (api, model, stream): (Api, &str, bool),
    route: &Route<'a>,
    chain: Option<&Chain<'a>>,
) -> Result<Pinned<'a>, GatewayError> {
    let allowed = |r: &Route| r.region.is_some_and(|region| pins.contains(&region));
    let refused = || GatewayError::RegionNotAllowed(model.into());
    let Some(c) = chain else {
        return if allowed(route) {
            Ok(Pinned::AsResolved)
        } else {
            Err(refused())
        };
    };
    let entry: &'a ModelRoute = config
        .models
        .get(c.entry)
        .ok_or(GatewayError::Internal("chain entry out of range"))?;
    let mut kept = Vec::new();
    for k in 0..entry.targets.len() {
        let target = routing::target(config, api, c.entry, k, model, stream)?;
        if allowed(&target) {
            kept.push((k, target));
        }
    }
    let n = kept.len();
    let key = region_key(kept.iter().filter_map(|(_, t)| t.region));
    let Some((first, route)) = kept.into_iter().next() else {
        return Err(refused());
    };
    if n == entry.targets.len() {
        return Ok(Pinned::AsResolved);
    }
    match entry.region_clusters.get(&key).filter(|_| n > 1) {
        Some(cluster) => Ok(Pinned::Chain(
            route,
            Chain {
                entry: c.entry,
                cluster,
                // Its region cluster holds the allowed targets only.
                direct_cluster: None,
                max_attempts: entry
                    .max_attempts
                    .unwrap_or_else(|| routing::attempts_for(n)),
                attempt_timeout_ms: c.attempt_timeout_ms,
                first,
            },
        )),
        None => Ok(Pinned::Alone(route)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(residency: serde_json::Value) -> Result<Config, String> {
        Config::parse(settings(residency).to_string().as_bytes())
    }

    fn settings(residency: serde_json::Value) -> serde_json::Value {
        json!({
                "providers": [
                    {"name": "openai", "kind": "openai", "cluster": "c_openai", "region": "us",
                     "auth": {"type": "env", "var": "K1"}},
                    {"name": "azure", "kind": "azure", "cluster": "c_azure", "region": "eu",
                     "api_version": "2024-10-21", "auth": {"type": "env", "var": "K2"}},
                    {"name": "azure2", "kind": "azure", "cluster": "c_azure2", "region": "eu",
                     "api_version": "2024-10-21", "auth": {"type": "env", "var": "K4"}},
                    {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic",
                     "auth": {"type": "env", "var": "K3"}},
                    {"name": "azure3", "kind": "azure", "cluster": "c_azure3", "region": "eu",
                     "api_version": "2024-10-21", "auth": {"type": "env", "var": "K5"}}
                ],
                "models": [
                    {"name": "gpt-4o", "provider": "openai"},
                    {"name": "azure-gpt-4o", "provider": "azure", "upstream_model": "gpt-4o"},
                    {"name": "azure-uk", "provider": "azure2", "upstream_model": "gpt-4o", "region": "uk"},
                    {"name": "claude", "provider": "anthropic"},
                    {"name": "ha", "provider": "openai", "upstream_model": "gpt-4o",
                     "fallbacks": ["azure-gpt-4o", "claude"], "cluster": "fb"},
                    {"name": "eu-first", "provider": "azure", "upstream_model": "gpt-4o",
                     "fallbacks": ["azure-uk"], "cluster": "fb2"},
                    {"name": "azure-se", "provider": "azure3", "upstream_model": "gpt-4o"},
                    {"name": "tri", "provider": "openai", "upstream_model": "gpt-4o",
                     "fallbacks": ["azure-gpt-4o", "azure-se"], "cluster": "fb3",
                     "region_clusters": {"eu": "fb3_eu"}}
                ],
                "residency": residency
        })
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

    /// The provider tried first, and whether the request keeps a chain.
    fn route(c: &Config, model: &str, pins: &[&str]) -> Result<(String, bool), GatewayError> {
        let (r, chain) = routing::resolve(c, Api::ChatCompletions, model, false)?;
        let call = (Api::ChatCompletions, model, false);
        Ok(match apply(c, pins, call, &r, chain.as_ref())? {
            Pinned::AsResolved => (r.provider.name.clone(), chain.is_some()),
            Pinned::Alone(target) => (target.provider.name.clone(), false),
            Pinned::Chain(first, _) => (first.provider.name.clone(), true),
        })
    }

    #[test]
    fn a_chain_falls_back_among_its_allowed_targets_on_their_cluster() {
        let c = config(json!({})).unwrap();
        let (r, chain) = routing::resolve(&c, Api::ChatCompletions, "tri", false).unwrap();
        let call = (Api::ChatCompletions, "tri", false);
        let Pinned::Chain(first, eu) = apply(&c, &["eu"], call, &r, chain.as_ref()).unwrap() else {
            panic!("expected the eu targets' chain");
        };
        assert_eq!(first.provider.name, "azure");
        assert_eq!((eu.cluster, eu.first, eu.max_attempts), ("fb3_eu", 1, 2));
        // One allowed target: alone; all allowed: the chain as it is.
        assert_eq!(route(&c, "tri", &["us"]).unwrap(), ("openai".into(), false));
        assert_eq!(
            route(&c, "tri", &["us", "eu"]).unwrap(),
            ("openai".into(), true)
        );
    }

    #[test]
    fn a_pin_leaving_a_chain_several_targets_needs_their_cluster() {
        assert!(config(json!({"teams": {"legal": ["eu"]}})).is_ok());
        let mut without = settings(json!({"teams": {"legal": ["eu"]}}));
        let tri = without["models"]
            .as_array_mut()
            .unwrap()
            .last_mut()
            .unwrap();
        tri.as_object_mut().unwrap().remove("region_clusters");
        let e = Config::parse(without.to_string().as_bytes()).unwrap_err();
        assert!(e.contains("residency.teams.legal: 2 of the 3 targets of model `tri` serve from eu; name an aggregate cluster over them (in chain order) as region_clusters.\"eu\""), "{e}");
        // Model `ha` has one target in eu: it goes there alone, no cluster needed.
        assert!(!e.contains("`ha`"), "{e}");
    }

    #[test]
    fn a_model_list_must_leave_a_model_served_in_the_pin() {
        let c = config(json!({})).unwrap();
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all: Vec<String> = vec![];
        assert_eq!(usable_within(&c, &["eu"], &[&all]), Ok(()));
        // `ha` reaches Azure (eu) through its chain: a name or a pattern for it counts.
        assert_eq!(usable_within(&c, &["eu"], &[&list(&["ha"])]), Ok(()));
        assert_eq!(usable_within(&c, &["eu"], &[&list(&["azure-*"])]), Ok(()));
        let refused = usable_within(&c, &["eu"], &[&list(&["gpt-4o", "claude"])]).unwrap_err();
        assert_eq!(
            refused,
            ["azure-gpt-4o", "ha", "eu-first", "azure-se", "tri"]
        );
        // Every list must allow it: the key's and its team's.
        assert!(usable_within(&c, &["eu"], &[&list(&["azure-*"]), &list(&["ha"])]).is_err());
        assert!(usable_within(&c, &["uk"], &[&list(&["azure-uk", "eu-*"])]).is_ok());
    }

    #[test]
    fn region_clusters_are_checked_at_start_up() {
        let bad = |extra: serde_json::Value| {
            let mut m = json!({"name": "x", "provider": "openai", "upstream_model": "gpt-4o",
                               "fallbacks": ["azure-gpt-4o"], "cluster": "fbx"});
            if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
                m.extend(e.clone());
            }
            Config::parse(
                json!({
                    "providers": [
                        {"name": "openai", "kind": "openai", "cluster": "c1", "region": "us"},
                        {"name": "azure", "kind": "azure", "cluster": "c2", "region": "eu",
                         "api_version": "2024-10-21", "auth": {"type": "env", "var": "K2"}}
                    ],
                    "models": [
                        {"name": "azure-gpt-4o", "provider": "azure", "upstream_model": "gpt-4o"},
                        m
                    ]
                })
                .to_string()
                .as_bytes(),
            )
            .unwrap_err()
        };
        let e = bad(json!({"region_clusters": {"us+eu": "a", "apac": "b", "eu": " "}}));
        assert!(
            e.contains("region_clusters key `us+eu` must list regions sorted"),
            "{e}"
        );
        assert!(
            e.contains("region_clusters.apac: no target of the chain serves from apac"),
            "{e}"
        );
        assert!(
            e.contains("region_clusters.eu must name an Envoy cluster"),
            "{e}"
        );
        let e = bad(json!({"fallbacks": [], "cluster": null, "region_clusters": {"eu": "a"}}));
        assert!(e.contains("region_clusters need cluster"), "{e}");
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
