//! The budget reservation the plan asks for: the callout, the sidecar's
//! answer (forward, or 429) and the failure mode when it cannot answer.

use super::{Phase, RequestStage};
use crate::core::budget::{self, ReserveAnswer};
use crate::core::error::GatewayError;
use crate::filter::env::Host;

impl<H: Host> RequestStage<H> {
    /// Sends the plan's reservation; the request waits for the answer.
    pub(super) fn reserve(&mut self, body: &[u8]) -> Result<(), GatewayError> {
        if self.call_sidecar(tollgate_protocol::RESERVE_PATH, body) {
            self.phase = Phase::Reserving;
            Ok(())
        } else {
            self.budget_unavailable()
        }
    }

    /// Applies the budget failure mode when a reservation cannot be made.
    fn budget_unavailable(&mut self) -> Result<(), GatewayError> {
        let config = &self.shared.config;
        let mode = config
            .budgets
            .as_ref()
            .and_then(|b| b.failure_mode)
            .unwrap_or(config.sidecar.failure_mode);
        self.unavailable(mode, "a budget reservation")?;
        self.phase = Phase::Forwarded;
        Ok(())
    }

    /// The sidecar answered a reservation: forward, or refuse with 429.
    pub(super) fn reserved(
        &mut self,
        status: Option<String>,
        body: &[u8],
    ) -> Result<(), GatewayError> {
        let answer = match status.as_deref() {
            Some("200") => budget::parse_reserve_response(body),
            Some(other) => Err(format!("sidecar answered HTTP {other}")),
            None => Err("sidecar unreachable or timed out".to_string()),
        };
        match answer {
            Ok(ReserveAnswer::Allowed { reservation_id }) => {
                if let Some(f) = &mut self.forwarded {
                    f.reservation_id = Some(reservation_id);
                }
                self.phase = Phase::Forwarded;
                Ok(())
            }
            Ok(ReserveAnswer::Denied(error)) => {
                self.forwarded = None;
                self.count(
                    format!("tollgate.budget_denials.reason.{}", error.code()),
                    1,
                );
                Err(error)
            }
            Err(why) => {
                log::warn!("tollgate: budget reservation failed: {why}");
                self.budget_unavailable()
            }
        }
    }
}
