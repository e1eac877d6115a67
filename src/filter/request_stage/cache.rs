//! The response cache on the request path. A request a cache rule covers
//! gets its key once its body is checked (input guardrails applied, so the
//! key is of what the provider would see). When the index
//! (`filter::cache_index`) lists the key, the stage asks the sidecar for the
//! answer and, on a hit, answers the client itself: no provider call, no
//! budget taken. Anything else (not listed, not found, the sidecar slow or
//! down) is a miss: the request goes on as if there were no cache, and its
//! answer, as the client got it, is stored when it is whole.

use super::{Phase, RequestStage};
use crate::core::budget::LeaseRequest;
use crate::core::cache::{self, CacheRule, ClientWish, KeyParts};
use crate::core::error::GatewayError;
use crate::core::request::LlmRequest;
use crate::core::routing::Route;
use crate::core::usage::Usage;
use crate::filter::background::CacheStore;
use crate::filter::cache_index;
use crate::filter::env::Host;
use crate::filter::sidecar;
use std::time::Duration;
use tollgate_protocol::{CacheGet, CachePut, CachedAnswer};

/// The header that tells the client what the cache did.
pub const CACHE_HEADER: &str = "x-tollgate-cache";

/// What the cache did for a request a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    /// The client's `cache-control: no-store`.
    Bypass,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

pub struct CacheState {
    pub outcome: Outcome,
    key: [u8; 32],
    ttl_s: u64,
    stores: bool,
    /// The budget lease the plan asked for, taken only on a miss.
    pending_lease: Option<LeaseRequest>,
}

impl CacheState {
    /// The key as the sidecar knows it.
    fn key_hex(&self) -> String {
        let mut key = String::with_capacity(64);
        crate::core::hex::push(&mut key, &self.key);
        key
    }

    #[cfg(test)]
    pub fn key_for_tests(&self) -> [u8; 32] {
        self.key
    }
}

impl<H: Host> RequestStage<H> {
    /// The cache's view of a checked request; `None` when no rule covers it.
    pub(super) fn cache_state(&self, request: &LlmRequest, route: &Route) -> Option<CacheState> {
        let config = self.shared.config.cache.as_ref()?;
        let key = self.key_info().ok().flatten();
        let rule: &CacheRule = config.rule_for(&request.model, key)?;
        let wish = self.cache_wish;
        let scope = rule.scope(key?);
        let outcome = if wish == ClientWish::Bypass {
            Outcome::Bypass
        } else {
            Outcome::Miss
        };
        let parts = KeyParts {
            scope: &scope,
            api: self.api_name(),
            provider: &route.provider.name,
            upstream_model: &route.upstream_model,
        };
        Some(CacheState {
            outcome,
            key: cache::key(&parts, &request.body),
            ttl_s: rule.ttl_s,
            stores: wish.stores(),
            pending_lease: None,
        })
    }

    /// After the plan is carried out: looks the answer up when the index
    /// lists it (the request then waits in `Phase::CacheLookup`), else
    /// takes the budget and goes on.
    pub(super) fn look_up_or_lease(
        &mut self,
        lease: Option<LeaseRequest>,
    ) -> Result<(), GatewayError> {
        let now_s = self.callback_ms() / 1000;
        let listed = match (&self.cache, &self.shared.config.cache) {
            (Some(state), Some(config)) if self.cache_wish.reads() => {
                cache_index::contains(&self.host, &state.key, config.index_slots, now_s)
            }
            _ => false,
        };
        if listed && self.ask_for_answer() {
            if let Some(state) = &mut self.cache {
                state.pending_lease = lease;
            }
            self.phase = Phase::CacheLookup;
            return Ok(());
        }
        self.count_outcome();
        match lease {
            Some(need) => self.lease(need),
            None => Ok(()),
        }
    }

    fn ask_for_answer(&self) -> bool {
        let (Some(state), Some(config)) = (&self.cache, &self.shared.config.cache) else {
            return false;
        };
        let Ok(body) = serde_json::to_vec(&CacheGet {
            key: state.key_hex(),
        }) else {
            return false;
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        self.shared
            .sidecar
            .post(
                &self.host,
                tollgate_protocol::CACHE_GET_PATH,
                &body,
                timeout,
            )
            .is_some()
    }

    /// The sidecar's answer to the lookup: answer the client, or go on as a
    /// miss (`Ok(true)`: the request may move now).
    pub(super) fn looked_up(
        &mut self,
        status: Option<String>,
        body: &[u8],
    ) -> Result<bool, GatewayError> {
        let found = match status.as_deref() {
            Some("404") => None,
            _ => match sidecar::answer(status.as_deref(), body, |b| {
                serde_json::from_slice::<CachedAnswer>(b).map_err(|e| e.to_string())
            }) {
                Ok(answer) => Some(answer),
                Err(why) => {
                    log::debug!("tollgate: cache lookup skipped: {why}");
                    self.count("tollgate.cache.lookup_failures", 1);
                    None
                }
            },
        };
        if let Some(answer) = found {
            self.answer_from_cache(&answer);
            return Ok(false);
        }
        self.count_outcome();
        let lease = self.cache.as_mut().and_then(|s| s.pending_lease.take());
        self.phase = Phase::Forwarded;
        if let Some(need) = lease {
            self.lease(need)?;
        }
        Ok(self.phase == Phase::Forwarded)
    }

    /// A hit: the kept answer, recorded like a request the gateway answered
    /// itself (no cost), with the tokens it saved.
    fn answer_from_cache(&mut self, answer: &CachedAnswer) {
        if let Some(state) = &mut self.cache {
            state.outcome = Outcome::Hit;
        }
        self.count_outcome();
        self.host.send_answer(
            &answer.content_type,
            &[(CACHE_HEADER, "hit"), ("x-tollgate", "gateway")],
            answer.body.as_bytes(),
        );
        let response = &mut self.response;
        response.sent(answer.body.as_bytes());
        response.status = 200;
        response.stream = answer.content_type.starts_with("text/event-stream");
        response.summary.usage = Some(Usage {
            input_tokens: answer.input_tokens,
            output_tokens: answer.output_tokens,
            cached_tokens: answer.cached_tokens,
            reasoning_tokens: answer.reasoning_tokens,
        });
        if let Some(f) = &mut self.forwarded {
            f.provider.clone_from(&answer.provider);
            f.upstream_model.clone_from(&answer.upstream_model);
        }
        self.answered = self.forwarded.take();
        self.phase = Phase::Done;
    }

    fn count_outcome(&self) {
        if let Some(state) = &self.cache {
            let name = match state.outcome {
                Outcome::Hit => "tollgate.cache.hits",
                Outcome::Miss => "tollgate.cache.misses",
                Outcome::Bypass => "tollgate.cache.bypassed",
            };
            self.count(name, 1);
        }
    }

    /// Tells the client what the cache did (a miss or a bypass; a hit's
    /// answer says so itself) and keeps the answer when it may be stored.
    pub(super) fn cache_on_response(&mut self) {
        let Some(state) = &self.cache else {
            return;
        };
        self.host
            .set_response_header(CACHE_HEADER, Some(state.outcome.name()));
        if state.stores {
            self.response.kept = Some(Vec::new());
            self.response.keep_limit = self
                .shared
                .config
                .cache
                .as_ref()
                .map_or(0, |c| c.max_entry_bytes);
        }
    }

    /// Queues a whole answer for the sidecar (the root context sends it),
    /// with the target that produced it and what it cost.
    pub(super) fn store_answer(&mut self, provider: &str, upstream_model: &str, usage: &Usage) {
        let Some(state) = &self.cache else {
            return;
        };
        if !state.stores || state.outcome == Outcome::Hit {
            return;
        }
        let Some(body) = self.response.complete_answer() else {
            return;
        };
        let Ok(body) = String::from_utf8(body) else {
            return;
        };
        let content_type = if self.response.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let put = CachePut {
            key: state.key_hex(),
            ttl_s: state.ttl_s,
            answer: CachedAnswer {
                content_type: content_type.into(),
                body,
                provider: provider.into(),
                upstream_model: upstream_model.into(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cached_tokens,
                reasoning_tokens: usage.reasoning_tokens,
            },
        };
        let Ok(put) = serde_json::to_vec(&put) else {
            return;
        };
        let store = CacheStore {
            key: state.key,
            expires_s: self.host.now_ms() / 1000 + state.ttl_s,
            put,
        };
        if self.shared.background.borrow_mut().push_store(store) {
            self.count("tollgate.cache.stores", 1);
        }
    }
}
