//! Input guardrails (block, or redact the body in place) and the events of
//! both directions: counted in stats, merged for the usage report.

use super::RequestStage;
use crate::core::api::Api;
use crate::core::auth::KeyCheck;
use crate::core::error::GatewayError;
use crate::core::guard::{self, GuardEvent};
use crate::core::request::LlmRequest;
use crate::filter::env::Host;
use crate::filter::stats;
use std::sync::Arc;

impl<H: Host> RequestStage<H> {
    /// Blocks, or redacts the body in place; records events and sets up the
    /// output guardrails for the answer.
    pub(super) fn check_input(
        &mut self,
        api: Api,
        request: &mut LlmRequest,
    ) -> Result<(), GatewayError> {
        let shared = Arc::clone(&self.shared);
        let Some(guardrails) = &shared.guardrails else {
            return Ok(());
        };
        let (team, key_id) = match self.key.as_deref() {
            Some(KeyCheck::Valid(info)) => (info.team.clone(), Some(info.key_id.clone())),
            _ => (None, None),
        };
        let policy = guardrails.policy(team.as_deref(), key_id.as_deref());
        let outcome = guardrails.check_request(api, &mut request.body, &policy);
        request.modified |= outcome.changed;
        self.record_guard_events(&outcome.events);
        if let Some(b) = outcome.blocked {
            return Err(GatewayError::GuardrailBlocked {
                guardrail: b.guardrail,
                kind: b.kind,
            });
        }
        if policy.any_output() {
            self.response.output_policy = Some(policy);
        }
        Ok(())
    }

    /// Counts events by guardrail, kind, direction and action (never text).
    pub(super) fn record_guard_events(&mut self, events: &[GuardEvent]) {
        for e in events {
            let (guardrail, kind, direction, action) = (
                e.guardrail,
                stats::tag(&e.kind),
                e.direction.name(),
                e.action.name(),
            );
            self.count(
                &format!("tollgate.guardrail_events.guardrail.{guardrail}.kind.{kind}.direction.{direction}.action.{action}"),
                e.count,
            );
        }
        guard::merge_events(&mut self.guard_events, events);
    }
}
