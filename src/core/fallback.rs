//! Fallback chains. A model entry's `fallbacks` (exact names of other
//! entries, each followed by its own) expand at start-up into the entry's
//! ordered targets. Envoy does the trying: an aggregate cluster over the
//! targets' provider clusters, retried with `previous_priorities`, so each
//! attempt lands on the next provider. The attempt stage (an upstream
//! filter on that cluster) tells the target by the provider that Envoy
//! picked, which is why a chain names each provider once. A request
//! prepared for the first target may take the model's direct cluster
//! instead: the first attempt with no upstream filter, the others behind
//! the relay listener (`Retries::relay`).

use super::api::{Api, APIS};
use super::config::{Config, ModelRoute, Provider, ProviderAuth};
use super::error::GatewayError;
use super::glob;
use super::routing::{self, Route};
use std::collections::HashMap;

/// Filter state the request stage hands the attempt stage (`Handoff`).
pub const HANDOFF: &str = "tollgate.fallback";

/// Filter state where the attempt stage records the attempts
/// (`fallback::attempts`): how the request stage learns which target
/// answered, and what the trace shows of the others.
pub const ATTEMPTS: &str = "tollgate.attempts";
/// The response header in which the relay listener's route returns its
/// attempt stages' record to the gateway listener (which removes it).
pub const ATTEMPTS_HEADER: &str = "x-tollgate-attempts";
/// Filter state: the request stage prepared this request for one target
/// itself (a pinned request sent to one target of a chain), so an attempt
/// stage on that target's cluster lets it go as it is.
pub const DIRECT: &str = "tollgate.direct";

/// The response header naming the target that answered (`provider/model`).
pub const TARGET_HEADER: &str = "x-tollgate-target";

/// The most attempts one request may make: each is a provider call.
pub const MAX_ATTEMPTS: u32 = 10;

/// Fills in every entry's `targets` (itself first, then its fallbacks'
/// chains in order, each target once) and returns what is wrong with the
/// chains: unknown or pattern names, cycles, a provider twice in a chain, a
/// chain without its cluster, a target whose key Envoy would inject, and
/// attempt settings out of range.
pub fn expand(models: &mut [ModelRoute], providers: &[Provider]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut exact: HashMap<&str, usize> = HashMap::new();
    for (i, m) in models.iter().enumerate() {
        if !glob::is_pattern(&m.name) {
            exact.entry(m.name.as_str()).or_insert(i);
        }
    }
    let mut chains = Vec::with_capacity(models.len());
    for (i, m) in models.iter().enumerate() {
        let at = format!("models[{i}] (`{}`)", m.name);
        match &m.cluster {
            None if !m.fallbacks.is_empty() => problems.push(format!(
                "{at}: fallbacks need cluster, an Envoy aggregate cluster over the targets' provider clusters in order"
            )),
            None if m.max_attempts.is_some() || m.attempt_timeout_ms.is_some() => {
                problems.push(format!(
                    "{at}: max_attempts and attempt_timeout_ms need cluster (the attempts are made there)"
                ))
            }
            Some(c) if c.trim().is_empty() => {
                problems.push(format!("{at}: cluster must name an Envoy cluster"))
            }
            _ => {}
        }
        problems.extend(direct_problems(models, i, &at));
        if m.max_attempts
            .is_some_and(|n| !(1..=MAX_ATTEMPTS).contains(&n))
        {
            problems.push(format!(
                "{at}: max_attempts must be between 1 and {MAX_ATTEMPTS}"
            ));
        }
        if m.attempt_timeout_ms == Some(0) {
            problems.push(format!("{at}: attempt_timeout_ms must be greater than 0"));
        }
        for f in &m.fallbacks {
            if !exact.contains_key(f.as_str()) {
                problems.push(format!(
                    "{at}: fallback `{f}` is not the exact name of another entry in models"
                ));
            }
        }
        let mut chain = Vec::new();
        let mut path = Vec::new();
        if let Err(cycle) = walk(models, &exact, i, &mut path, &mut chain) {
            // Reported once, by the entry the cycle starts from.
            if cycle.first() == Some(&i) {
                let names: Vec<&str> = cycle.iter().filter_map(|&j| name(models, j)).collect();
                problems.push(format!(
                    "{at}: fallbacks form a cycle: {}",
                    names.join(" -> ")
                ));
            }
        } else if m.cluster.is_some() || !m.fallbacks.is_empty() {
            problems.extend(chain_problems(models, providers, &at, &chain));
        }
        chains.push(chain);
    }
    if problems.is_empty() {
        for (m, chain) in models.iter_mut().zip(chains) {
            m.targets = chain;
        }
    }
    problems
}

fn name(models: &[ModelRoute], i: usize) -> Option<&str> {
    models.get(i).map(|m| m.name.as_str())
}

/// Depth first through the fallbacks: `path` holds the entries being
/// expanded, so meeting one again is a cycle (returned, closed); an entry
/// already in `chain` and off the path was expanded whole, so it is not
/// walked again (each entry once: linear in the fallbacks, however they
/// share targets).
fn walk(
    models: &[ModelRoute],
    exact: &HashMap<&str, usize>,
    i: usize,
    path: &mut Vec<usize>,
    chain: &mut Vec<usize>,
) -> Result<(), Vec<usize>> {
    if let Some(start) = path.iter().position(|&j| j == i) {
        let mut cycle = path.get(start..).map(<[usize]>::to_vec).unwrap_or_default();
        cycle.push(i);
        return Err(cycle);
    }
    if chain.contains(&i) {
        return Ok(());
    }
    chain.push(i);
    path.push(i);
    for f in models
        .get(i)
        .map(|m| m.fallbacks.as_slice())
        .unwrap_or_default()
    {
        if let Some(&j) = exact.get(f.as_str()) {
            walk(models, exact, j, path, chain)?;
        }
    }
    path.pop();
    Ok(())
}

/// What is wrong with entry `i`'s direct and relay clusters.
fn direct_problems(models: &[ModelRoute], i: usize, at: &str) -> Vec<String> {
    let Some(m) = models.get(i) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    fn named(c: &Option<String>) -> Option<&str> {
        c.as_deref().map(str::trim)
    }
    match (named(&m.direct_cluster), named(&m.relay_cluster)) {
        (None, None) => return out,
        (Some(_), None) => out.push(format!(
            "{at}: direct_cluster needs relay_cluster, the aggregate cluster of the targets after the first that its relay tries (the relay endpoint's hostname)"
        )),
        (None, Some(_)) => out.push(format!("{at}: relay_cluster needs direct_cluster")),
        (Some(d), Some(r)) => {
            let cluster = named(&m.cluster);
            if d.is_empty() || Some(d) == cluster {
                out.push(format!(
                    "{at}: direct_cluster must name an Envoy cluster other than cluster"
                ));
            }
            if r.is_empty() || Some(r) == cluster || r == d {
                out.push(format!(
                    "{at}: relay_cluster must name an Envoy cluster other than cluster and direct_cluster"
                ));
            }
            let shared = models
                .iter()
                .take(i)
                .any(|o| named(&o.relay_cluster) == Some(r));
            if shared {
                out.push(format!(
                    "{at}: relay_cluster `{r}` is another model's too; the relay tells the model by it"
                ));
            }
        }
    }
    if m.fallbacks.is_empty() {
        out.push(format!(
            "{at}: direct_cluster needs fallbacks (its relay tries the targets after the first)"
        ));
    }
    out
}

fn chain_problems(
    models: &[ModelRoute],
    providers: &[Provider],
    at: &str,
    chain: &[usize],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in chain.iter().filter_map(|&j| models.get(j)) {
        if seen.contains(&m.provider.as_str()) {
            out.push(format!(
                "{at}: provider `{}` serves two targets of the chain (`{}` and another); a chain names each provider once, since the attempt stage tells targets by provider",
                m.provider, m.name
            ));
        }
        seen.push(&m.provider);
        let Some(p) = providers.iter().find(|p| p.name == m.provider) else {
            continue; // reported with the entry itself
        };
        if p.auth == ProviderAuth::Envoy {
            out.push(format!(
                "{at}: target `{}` is on provider `{}`, whose key Envoy injects; behind an aggregate cluster the provider cluster's own upstream filters do not run, so give it auth type env",
                m.name, p.name
            ));
        }
    }
    out
}

/// What the attempt stages need to know about a request whose model has a
/// fallback chain (filter state `tollgate.fallback`): set by the request
/// stage, or behind the relay rebuilt by the relay stage (`relayed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Index of the client's model entry in `models`.
    pub entry: usize,
    pub api: Api,
    pub stream: bool,
    /// The target the forwarded body and headers are already right for
    /// (the first one tried, when it speaks the client's API); `None`: the
    /// body is the client's, checked, and every attempt translates it.
    pub prepared: Option<usize>,
    /// The client's model name.
    pub model: String,
}

impl Handoff {
    /// The hand-over of a request a model's direct cluster relayed, rebuilt
    /// from what reaches the relay, so that a healthy first attempt hands
    /// nothing over: the first attempt went as the request stage prepared
    /// it for the first target, which speaks the client's API. So the relay
    /// cluster (`authority`, the relay endpoint's hostname) names the
    /// model, the `path` prepared for the first target the API (the one it
    /// ends in), and the body whether it streams. `None` when they do not
    /// fit a model's direct cluster.
    pub fn relayed(config: &Config, authority: &str, path: &str, stream: bool) -> Option<Handoff> {
        let entry = config
            .models
            .iter()
            .position(|m| m.relay_cluster.as_deref() == Some(authority))?;
        let model = config.models.get(entry)?.name.clone();
        let path = path.split('?').next().unwrap_or_default();
        let api = APIS.into_iter().find(|&api| {
            let tail = api.inbound().path().trim_start_matches("/v1");
            path.ends_with(tail)
                && routing::target(config, api, entry, 0, &model, stream)
                    .is_ok_and(|first| first.upstream_api == api.wire())
        })?;
        Some(Handoff {
            entry,
            api,
            stream,
            prepared: Some(0),
            // Only the first target, never the relay's, reads it.
            model,
        })
    }

    /// The route to the `k`-th target of the request's chain.
    pub fn target<'a>(&self, config: &'a Config, k: usize) -> Result<Route<'a>, GatewayError> {
        routing::target(config, self.api, self.entry, k, &self.model, self.stream)
    }

    /// The name of the `k`-th target's provider (cheaper than its route).
    pub fn provider<'a>(&self, config: &'a Config, k: usize) -> Option<&'a str> {
        let first = config.models.get(self.entry)?;
        let i = *first.targets.get(k)?;
        Some(config.models.get(i)?.provider.as_str())
    }

    pub fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.entry,
            self.api.name(),
            u8::from(self.stream),
            self.prepared
                .map_or_else(|| "-".to_string(), |k| k.to_string()),
            self.model
        )
    }

    pub fn decode(bytes: &[u8]) -> Option<Handoff> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut f = text.splitn(5, '\t');
        let entry = f.next()?.parse().ok()?;
        let api = f.next()?;
        let api = APIS.into_iter().find(|a| a.name() == api)?;
        let flag = |v: Option<&str>| match v {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        Some(Handoff {
            entry,
            api,
            stream: flag(f.next())?,
            prepared: match f.next()? {
                "-" => None,
                k => Some(k.parse().ok()?),
            },
            model: f.next()?.to_string(),
        })
    }
}

/// One attempt as the attempt stage records it for the request stage
/// (filter state `tollgate.attempts`: `0@<start ns>=429,2@<start ns>=200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The target's index in the chain.
    pub target: usize,
    pub start_ns: u64,
    /// The response status; 0 when none came (reset, timeout).
    pub status: u32,
}

/// Appends the start of an attempt on `target` to `record`.
pub fn push_attempt(record: &mut String, target: usize, start_ns: u64) {
    if !record.is_empty() {
        record.push(',');
    }
    record.push_str(&target.to_string());
    record.push('@');
    record.push_str(&start_ns.to_string());
}

/// Notes the response status of the last attempt in `record`.
pub fn push_status(record: &mut String, status: u32) {
    record.push('=');
    record.push_str(&status.to_string());
}

/// The attempts in `record`, oldest first; unreadable entries are skipped.
pub fn attempts(record: &[u8]) -> Vec<Attempt> {
    let text = std::str::from_utf8(record).unwrap_or_default();
    text.split(',')
        .filter_map(|entry| {
            let (start, status) = match entry.split_once('=') {
                Some((head, status)) => (head, status.parse().ok()?),
                None => (entry, 0),
            };
            let (target, start_ns) = start.split_once('@')?;
            Some(Attempt {
                target: target.parse().ok()?,
                start_ns: start_ns.parse().ok()?,
                status,
            })
        })
        .collect()
}

/// What Envoy tells of the first attempt on a direct cluster, which runs
/// no attempt stage (and leaves no record); the relay's attempts do. The
/// status of a failed one is not told: Envoy counts it
/// (`retry.upstream_rq_<code>` of the direct cluster), and noting it per
/// request would cost every healthy one.
#[derive(Debug, Clone, Copy)]
pub struct Skipped {
    /// The prepared target's index in the chain.
    pub target: usize,
    /// When the request was forwarded, the start of the first attempt.
    pub start_ns: u64,
    /// How many attempts Envoy made in all, when known.
    pub total: Option<u32>,
    /// The answer's status, when no attempt stage ran and the answer came
    /// from the prepared target (not from Envoy itself).
    pub answer: Option<u32>,
    /// The answer came through the relay (one of Envoy's attempts), whose
    /// attempts are the recorded ones.
    pub relayed: bool,
}

/// Every attempt of a request, oldest first: the first one if it went
/// without an attempt stage, then the `recorded` ones (the relay's). It did
/// if it answered, or if Envoy counts an attempt besides the relay's (one
/// that failed, with no status the gateway saw).
pub fn with_skipped(recorded: Vec<Attempt>, skipped: &Skipped) -> Vec<Attempt> {
    let answer = skipped.answer.filter(|_| !skipped.relayed);
    let unrecorded = skipped
        .total
        .is_some_and(|n| n > u32::from(skipped.relayed));
    if answer.is_none() && !unrecorded {
        return recorded;
    }
    let first = Attempt {
        target: skipped.target,
        start_ns: skipped.start_ns,
        status: answer.unwrap_or(0),
    };
    std::iter::once(first).chain(recorded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;

    fn skipped(total: Option<u32>, answer: Option<u32>) -> Skipped {
        Skipped {
            target: 0,
            start_ns: 5,
            total,
            answer,
            relayed: false,
        }
    }

    /// The relay answered, with the record of its attempts.
    fn relayed(total: Option<u32>) -> Skipped {
        Skipped {
            relayed: true,
            ..skipped(total, None)
        }
    }

    fn statuses(attempts: &[Attempt]) -> Vec<(usize, u32)> {
        attempts.iter().map(|a| (a.target, a.status)).collect()
    }

    #[test]
    fn a_prepared_target_that_answers_at_once_is_one_attempt() {
        let all = with_skipped(Vec::new(), &skipped(None, Some(200)));
        assert_eq!(
            all,
            vec![Attempt {
                target: 0,
                start_ns: 5,
                status: 200
            }]
        );
    }

    #[test]
    fn a_failed_first_attempt_comes_before_the_relays_told_by_the_count() {
        let recorded = attempts(b"1@9=500,2@12=200");
        let all = with_skipped(recorded.clone(), &relayed(Some(2)));
        // Its status unseen: Envoy's stats have it.
        assert_eq!(statuses(&all), [(0, 0), (1, 500), (2, 200)]);
        assert_eq!(all[0].start_ns, 5);
        // Without the count, only what the relay recorded is known.
        assert_eq!(
            statuses(&with_skipped(recorded, &relayed(None))),
            [(1, 500), (2, 200)]
        );
    }

    #[test]
    fn a_failed_answer_of_the_prepared_target_is_one_attempt() {
        // Retries exhausted or not retried: the client gets its 500.
        let all = with_skipped(Vec::new(), &skipped(Some(1), Some(500)));
        assert_eq!(statuses(&all), [(0, 500)]);
        // Envoy answered itself (a reset, the retry budget spent).
        let all = with_skipped(Vec::new(), &skipped(Some(1), None));
        assert_eq!(statuses(&all), [(0, 0)]);
        // With no count and no answer, nothing is known of it.
        assert!(with_skipped(Vec::new(), &skipped(None, None)).is_empty());
    }

    #[test]
    fn at_most_the_first_attempt_is_added_whatever_envoy_tells() {
        let all = with_skipped(Vec::new(), &skipped(Some(u32::MAX), None));
        assert_eq!(statuses(&all), [(0, 0)]);
        let recorded = attempts(b"1@9=200");
        // The relay's attempt alone adds nothing (the first target was
        // ejected, so Envoy went to the relay at once), nor does its
        // answer's status.
        for total in [0, 1] {
            assert_eq!(
                statuses(&with_skipped(
                    recorded.clone(),
                    &Skipped {
                        answer: Some(200),
                        ..relayed(Some(total))
                    }
                )),
                [(1, 200)]
            );
        }
    }

    const PROVIDERS: &str = r#""providers": [
        {"name": "openai", "kind": "openai", "cluster": "c_openai", "auth": {"type": "env", "var": "O"}},
        {"name": "azure", "kind": "azure", "cluster": "c_azure", "api_version": "2024-10-21", "auth": {"type": "env", "var": "A"}},
        {"name": "anthropic", "kind": "anthropic", "cluster": "c_anthropic", "auth": {"type": "env", "var": "C"}},
        {"name": "injected", "kind": "openai", "cluster": "c_injected"}
    ]"#;

    fn load(models: &str) -> Result<Config, String> {
        Config::parse(format!(r#"{{{PROVIDERS}, "models": [{models}]}}"#).as_bytes())
    }

    fn names(c: &Config, model: &str) -> Vec<String> {
        let m = c.models.iter().find(|m| m.name == model).unwrap();
        m.targets
            .iter()
            .map(|&i| c.models[i].name.clone())
            .collect()
    }

    #[test]
    fn chains_expand_in_order_each_target_once() {
        let c = load(
            r#"{"name": "gpt-4o", "provider": "openai", "fallbacks": ["az", "claude"], "cluster": "fb"},
               {"name": "az", "provider": "azure", "deployment": "gpt-4o", "fallbacks": ["claude"], "cluster": "fb2"},
               {"name": "claude", "provider": "anthropic"},
               {"name": "gpt-*", "provider": "openai", "fallbacks": ["claude"], "cluster": "fb3"}"#,
        )
        .unwrap();
        assert_eq!(names(&c, "gpt-4o"), ["gpt-4o", "az", "claude"]);
        assert_eq!(names(&c, "az"), ["az", "claude"]);
        assert_eq!(names(&c, "claude"), ["claude"]);
        assert_eq!(names(&c, "gpt-*"), ["gpt-*", "claude"]);
        let pool = load(
            r#"{"name": "gpt-4o", "provider": "openai", "cluster": "pool", "max_attempts": 3}"#,
        );
        assert_eq!(names(&pool.unwrap(), "gpt-4o"), ["gpt-4o"]);
    }

    #[test]
    fn every_chain_mistake_is_reported_at_start_up() {
        let err = load(
            r#"{"name": "a", "provider": "openai", "fallbacks": ["b"], "cluster": "fa"},
               {"name": "b", "provider": "azure", "fallbacks": ["a"], "cluster": "fb"},
               {"name": "c", "provider": "openai", "fallbacks": ["nope", "claude-*"], "cluster": "fc"},
               {"name": "claude-*", "provider": "anthropic"},
               {"name": "d", "provider": "openai", "fallbacks": ["e"]},
               {"name": "e", "provider": "openai", "cluster": "fe", "max_attempts": 11},
               {"name": "h", "provider": "openai", "max_attempts": 2},
               {"name": "i", "provider": "openai", "cluster": "fi", "attempt_timeout_ms": 0},
               {"name": "f", "provider": "anthropic", "fallbacks": ["g"], "cluster": "ff"},
               {"name": "g", "provider": "injected"},
               {"name": "j", "provider": "openai", "cluster": "fj", "direct_cluster": "dj", "relay_cluster": "rj"},
               {"name": "k", "provider": "azure", "fallbacks": ["claude-*"], "cluster": "fk", "direct_cluster": "fk", "relay_cluster": "fk"},
               {"name": "l", "provider": "azure", "fallbacks": ["claude-*"], "cluster": "fl", "direct_cluster": " ", "relay_cluster": "rj"},
               {"name": "m", "provider": "azure", "fallbacks": ["claude-*"], "cluster": "fm", "direct_cluster": "dm"},
               {"name": "n", "provider": "azure", "fallbacks": ["claude-*"], "cluster": "fn", "relay_cluster": "rn"}"#,
        )
        .unwrap_err();
        for needle in [
            "models[0] (`a`): fallbacks form a cycle: a -> b -> a",
            "models[1] (`b`): fallbacks form a cycle: b -> a -> b",
            "fallback `nope` is not the exact name",
            "fallback `claude-*` is not the exact name",
            "models[4] (`d`): fallbacks need cluster",
            "models[4] (`d`): provider `openai` serves two targets",
            "models[5] (`e`): max_attempts must be between 1 and 10",
            "models[6] (`h`): max_attempts and attempt_timeout_ms need cluster",
            "models[7] (`i`): attempt_timeout_ms must be greater than 0",
            "models[8] (`f`): target `g` is on provider `injected`, whose key Envoy injects",
            "models[10] (`j`): direct_cluster needs fallbacks",
            "models[11] (`k`): direct_cluster must name an Envoy cluster other than cluster",
            "models[12] (`l`): direct_cluster must name an Envoy cluster other than cluster",
            "models[11] (`k`): relay_cluster must name an Envoy cluster other than cluster and direct_cluster",
            "models[12] (`l`): relay_cluster `rj` is another model's too",
            "models[13] (`m`): direct_cluster needs relay_cluster",
            "models[14] (`n`): relay_cluster needs direct_cluster",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn shared_targets_are_expanded_once() {
        // Each entry falls back to the next two: walked without the visited
        // check, the paths double with every entry.
        let n = 40;
        let models: Vec<String> = (0..n)
            .map(|i| {
                let next: Vec<String> = (i + 1..(i + 3).min(n)).map(|j| format!(r#""m{j}""#)).collect();
                format!(
                    r#"{{"name": "m{i}", "provider": "p{i}", "fallbacks": [{}], "cluster": "c{i}"}}"#,
                    next.join(", ")
                )
            })
            .collect();
        let providers: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name": "p{i}", "kind": "openai", "cluster": "k{i}", "auth": {{"type": "env", "var": "V"}}}}"#))
            .collect();
        let c = Config::parse(
            format!(
                r#"{{"providers": [{}], "models": [{}]}}"#,
                providers.join(", "),
                models.join(", ")
            )
            .as_bytes(),
        )
        .unwrap();
        let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        assert_eq!(names(&c, "m0"), expected);
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let err =
            load(r#"{"name": "a", "provider": "openai", "fallbacks": ["a"], "cluster": "f"}"#)
                .unwrap_err();
        assert!(err.contains("fallbacks form a cycle: a -> a"), "{err}");
    }

    #[test]
    fn handoff_round_trips() {
        let h = Handoff {
            entry: 3,
            api: Api::Messages,
            stream: true,
            prepared: None,
            model: "gpt-4o\tx".into(),
        };
        assert_eq!(Handoff::decode(h.encode().as_bytes()), Some(h.clone()));
        let h = Handoff {
            prepared: Some(2),
            ..h
        };
        assert_eq!(Handoff::decode(h.encode().as_bytes()), Some(h));
        assert_eq!(Handoff::decode(b"1\tmessages\t2\t0\tm"), None);
        assert_eq!(Handoff::decode(b"1\tmessages\t1\tx\tm"), None);
        assert_eq!(Handoff::decode(b"1\tnope\t1\t0\tm"), None);
        assert_eq!(Handoff::decode(b"x"), None);
    }

    #[test]
    fn attempts_round_trip() {
        let mut record = String::new();
        push_attempt(&mut record, 0, 100);
        push_status(&mut record, 429);
        push_attempt(&mut record, 1, 250);
        push_attempt(&mut record, 2, 900);
        push_status(&mut record, 200);
        assert_eq!(record, "0@100=429,1@250,2@900=200");
        let a = |target, start_ns, status| Attempt {
            target,
            start_ns,
            status,
        };
        assert_eq!(
            attempts(record.as_bytes()),
            [a(0, 100, 429), a(1, 250, 0), a(2, 900, 200)]
        );
        assert_eq!(attempts(b"x,1@y,3@5=z,4@6=503"), [a(4, 6, 503)]);
        assert_eq!(attempts(b""), []);
    }
}
