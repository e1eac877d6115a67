//! The budget the plan asks for, from a lease (`filter::leases`): debited
//! from the slot in shared data with no callout when a lease covers the
//! request; otherwise a `/v1/lease` callout the request waits for (handing
//! back what expired leases left), its grant debited and the rest stored,
//! or on a refusal one more look at the slot, then 429. A debit that leaves
//! the slot low queues a refill for the root context. When the sidecar
//! cannot answer, the budget failure mode applies.

use super::{Phase, RequestStage};
use crate::core::budget::{self, LeaseAnswer, LeaseGrant, LeaseRequest};
use crate::core::error::GatewayError;
use crate::core::lease::{Debit, Lease};
use crate::filter::env::Host;
use crate::filter::leases;
use crate::filter::sidecar;

impl<H: Host> RequestStage<H> {
    /// Admits the request from a lease, or asks the sidecar for one (the
    /// request then waits in `Phase::Reserving`).
    pub(super) fn lease(&mut self, need: LeaseRequest) -> Result<(), GatewayError> {
        let now = self.callback_ms();
        if self.admit_from_slot(&need, now) {
            return Ok(());
        }
        let mut request = need.clone();
        request.release = leases::take_releases(&self.host, &need, now);
        let body = serde_json::to_vec(&request)
            .map_err(|_| GatewayError::Internal("could not encode the lease request"))?;
        self.count("tollgate.leases.callouts", 1);
        if self.call_sidecar(tollgate_protocol::LEASE_PATH, &body) {
            self.lease_need = Some(need);
            self.phase = Phase::Reserving;
            Ok(())
        } else {
            self.budget_unavailable()
        }
    }

    /// Debits the request from a lease in its slot; false when none covers it.
    fn admit_from_slot(&mut self, need: &LeaseRequest, now: u64) -> bool {
        let Some((debit, refill)) = leases::debit(&self.host, &self.shared.drawn, need, now) else {
            return false;
        };
        self.count("tollgate.leases.admitted_from_slot", 1);
        self.admitted(debit);
        if refill {
            self.refill(need, now);
        }
        true
    }

    /// The request goes upstream, its debit recorded for the usage report.
    fn admitted(&mut self, debit: Debit) {
        if let Some(f) = &mut self.forwarded {
            f.lease_id = Some(debit.lease_id);
            f.lease_debits = debit.amounts;
        }
        self.phase = Phase::Forwarded;
    }

    fn refill(&self, need: &LeaseRequest, now: u64) {
        if leases::queue_refill(&self.host, &self.shared.background, need, now) {
            self.count("tollgate.leases.refills", 1);
        }
    }

    /// Applies the budget failure mode when no lease can be had.
    fn budget_unavailable(&mut self) -> Result<(), GatewayError> {
        let config = &self.shared.config;
        let mode = config
            .budgets
            .as_ref()
            .and_then(|b| b.failure_mode)
            .unwrap_or(config.sidecar.failure_mode);
        self.unavailable(mode, "a budget lease")?;
        self.phase = Phase::Forwarded;
        Ok(())
    }

    /// The sidecar answered the lease callout: forward, or refuse with 429.
    pub(super) fn leased(
        &mut self,
        status: Option<String>,
        body: &[u8],
    ) -> Result<(), GatewayError> {
        let answer = match self.lease_need.take() {
            None => Err("a lease answer with no request waiting".to_string()),
            Some(need) => sidecar::answer(status.as_deref(), body, budget::parse_lease_response)
                .map(|a| (a, need)),
        };
        match answer {
            Ok((LeaseAnswer::Granted(grant), need)) => {
                self.granted(&need, &grant);
                Ok(())
            }
            Ok((LeaseAnswer::Denied(error), need)) => {
                // Another request's grant may have left room meanwhile.
                if self.admit_from_slot(&need, self.callback_ms()) {
                    return Ok(());
                }
                self.forwarded = None;
                self.count(
                    &format!("tollgate.budget_denials.reason.{}", error.code()),
                    1,
                );
                Err(error)
            }
            Err(why) => {
                log::warn!("tollgate: budget lease failed: {why}");
                self.budget_unavailable()
            }
        }
    }

    /// Takes the request from a fresh grant and keeps the rest in the slot.
    fn granted(&mut self, need: &LeaseRequest, grant: &LeaseGrant) {
        let now = self.callback_ms();
        let mut lease = Lease::from_grant(grant, now);
        // The sidecar sized it for at least this request.
        let debit = lease.take(leases::size(need));
        let refill = leases::store(&self.host, need, lease, now);
        self.admitted(debit);
        if refill == Some(true) {
            self.refill(need, now);
        }
    }
}
