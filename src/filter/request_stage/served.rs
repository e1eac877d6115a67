//! A request on a fallback chain: which target served it, told as the
//! response starts by the attempt stage's record of the attempts. On a
//! model's direct cluster the first attempt runs no attempt stage and the
//! others run behind the relay, whose record comes back in a response
//! header (`fallback::ATTEMPTS_HEADER`). The answer is then translated
//! from that target's API and billed at its model, and the client learns
//! the target from `x-tollgate-target`.

use super::RequestStage;
use crate::core::fallback::{self, Attempt, Handoff, Skipped};
use crate::core::fallback::{ATTEMPTS, ATTEMPTS_HEADER, TARGET_HEADER};
use crate::core::header_map::Headers;
use crate::core::telemetry::FailedAttempt;
use crate::core::wire::Translation;
use crate::filter::env::Host;
use crate::filter::stats;

/// What the response side needs to know about a request on a chain.
pub struct Fallback {
    pub handoff: Handoff,
    /// The request went to the model's direct cluster (`Retries::relay`).
    pub relay: bool,
    /// The client asked for a usage report in its stream (read from its
    /// body, before the gateway asked on its own behalf).
    pub client_wants_usage: bool,
    /// The attempts Envoy made, as the attempt stage recorded them.
    pub attempts: Vec<Attempt>,
}

impl<H: Host> RequestStage<H> {
    /// Points the response side, answered with `headers`, at the target
    /// that answered: the last attempt, if a response came from it
    /// (otherwise Envoy answered itself, and no target served).
    pub(super) fn follow_served_target(&mut self, headers: &Headers) {
        let Some(fallback) = &self.fallback else {
            return;
        };
        let (attempts, skipped) = match fallback.handoff.prepared.filter(|_| fallback.relay) {
            Some(target) => self.direct_attempts(headers, target),
            None => {
                let recorded = self.host.property(ATTEMPTS);
                (fallback::attempts(&recorded.unwrap_or_default()), 0)
            }
        };
        let Some(fallback) = &mut self.fallback else {
            return;
        };
        // The attempt stage counts the attempts it ran that got an
        // answer; the others are counted here.
        let config = &self.shared.config;
        for (i, a) in attempts.iter().enumerate() {
            if i < skipped || a.status == 0 {
                if let Some(provider) = fallback.handoff.provider(config, a.target) {
                    self.shared
                        .stats
                        .count_attempt(&self.host, provider, a.status);
                }
            }
        }
        fallback.attempts = attempts;
        let Some(served) = fallback.attempts.last().filter(|a| a.status != 0) else {
            return;
        };
        let h = &fallback.handoff;
        if h.prepared != Some(served.target) {
            // Not the target the request stage routed for: its answer is
            // read in its own API and billed at its model.
            let Ok(route) = h.target(&self.shared.config, served.target) else {
                return;
            };
            let translation = Translation {
                client: h.api,
                upstream: route.upstream_api,
                stream: h.stream,
                client_wants_usage: fallback.client_wants_usage,
            };
            self.response.apis = Some((h.api, route.upstream_api));
            self.response.translation = translation.rewrites().then_some(translation);
            if let Some(f) = &mut self.forwarded {
                f.provider.clone_from(&route.provider.name);
                f.provider_kind = route.provider.kind;
                f.upstream_api = route.upstream_api;
                f.region = route.region.map(Into::into);
                f.upstream_model = route.upstream_model;
            }
        }
        let Some(f) = &self.forwarded else {
            return;
        };
        let mut target = String::with_capacity(f.provider.len() + f.upstream_model.len() + 1);
        target.push_str(&f.provider);
        target.push('/');
        target.push_str(&f.upstream_model);
        self.host.set_response_header(TARGET_HEADER, Some(&target));
        if served.target > 0 {
            let name = format!("tollgate.fallbacks.provider.{}", stats::tag(&f.provider));
            self.shared.stats.count(&self.host, &name, 1);
        }
    }

    /// The attempts of a request on a direct cluster, and how many of them
    /// (the first, or none) ran no attempt stage: the first attempt on the
    /// prepared `target`, then the relay's, recorded in its answer.
    fn direct_attempts(&self, headers: &Headers, target: usize) -> (Vec<Attempt>, usize) {
        let status = headers.status();
        let record = headers.get(ATTEMPTS_HEADER);
        if record.is_some() {
            // The gateway's to read, not the client's.
            self.host.set_response_header(ATTEMPTS_HEADER, None);
        }
        // Only the relay's record counts: a provider could send one too.
        let relayed = record.is_some()
            && self
                .host
                .upstream_address()
                .is_some_and(|a| a.starts_with("envoy://"));
        let recorded = match record.filter(|_| relayed) {
            Some(r) => fallback::attempts(r.as_bytes()),
            None => Vec::new(),
        };
        let recorded_len = recorded.len();
        let answered = (200..300).contains(&status);
        // The common case, told without asking Envoy more: the first
        // attempt answered.
        let (total, answer) = if answered && !relayed {
            (Some(1), Some(status))
        } else {
            // Not the relay's answer: the first attempt's, unless Envoy
            // replied itself.
            let upstream =
                !relayed && self.host.response_code_details().as_deref() == Some("via_upstream");
            (self.host.attempt_count(), upstream.then_some(status))
        };
        let skipped = Skipped {
            target,
            start_ns: self.forwarded.as_ref().map_or(0, |f| f.upstream_start_ns),
            total,
            answer,
            relayed,
        };
        let all = fallback::with_skipped(recorded, &skipped);
        let skipped = all.len() - recorded_len;
        (all, skipped)
    }

    /// The attempts before the one that answered, for the trace; each
    /// ends where the next began.
    pub(super) fn failed_attempts(&self, end_ns: u64) -> Vec<FailedAttempt<'_>> {
        let Some(fallback) = &self.fallback else {
            return Vec::new();
        };
        let h = &fallback.handoff;
        let config = &self.shared.config;
        let attempts = &fallback.attempts;
        attempts
            .iter()
            .zip(attempts.iter().skip(1).map(|next| next.start_ns))
            .filter_map(|(a, next_start)| {
                let route = h.target(config, a.target).ok()?;
                Some(FailedAttempt {
                    provider: &route.provider.name,
                    provider_kind: route.provider.kind,
                    upstream_api: route.upstream_api,
                    status: a.status,
                    start_ns: a.start_ns,
                    end_ns: next_start.min(end_ns),
                })
            })
            .collect()
    }
}
