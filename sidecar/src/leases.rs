//! Budget leases (`POST /v1/lease`): instead of reserving every request
//! (`budgets.rs`), the filter takes an amount of each of a key's hard
//! budgets and admits requests against it locally, with no callout, until
//! it runs out or its time is up.
//!
//! A lease is granted in one write transaction that locks the budgets in
//! the same order as a reservation: first the `release`d rests of leases
//! the filter dropped are handed back, then the key's budgets are checked
//! like a reservation's (a used-up hard budget refuses with the same
//! `Denial`), then each hard budget grants
//!
//! - `need` (`request_need`: one request, its tokens or its estimated cost)
//!   when no more than that is left: the one request that crosses the
//!   limit, as with reservations;
//! - otherwise an eighth of what is left (`limit - used - reserved`;
//!   whole requests for request budgets), at least `need` and at most
//!   what is left.
//!
//! The grant is held like a reservation (a `reservation_holds` row whose
//! `reservation_id` is the lease id), so budget standings count it as
//! `reserved`. The lease lasts the configured TTL (`serve --lease-ttl-s`,
//! 10 s), cut to the end of the earliest period of its budgets (at least
//! 1 s); its holds expire `LEASE_GRACE_S` later, so requests still in
//! flight keep counting after the filter stops using the lease. Settling a
//! request admitted on a lease (`ledger.rs`) takes its debits off the
//! lease's holds as its real usage is charged; a release takes off the
//! unused rest. So `reserved` is the unused rest of live leases plus the
//! debits of requests in flight.
//!
//! Overshoot bound, per hard budget: grants never exceed what is left but
//! for the crossing grant of one request, so a budget is overshot by at
//! most one request's estimate plus, for requests in flight, their actual
//! usage beyond their estimate (as with reservations). Request budgets
//! with whole limits are never overshot. Tracking budgets are not leased:
//! they warn, as with reservations, and are charged at settle. A lease the
//! filter loses (an Envoy restart) counts as reserved until its holds
//! expire.
//!
//! Each grant, and each release of a lease's rest, queues its entry for
//! the audit log in the lease's transaction (`audit/log.rs`: queuing takes
//! no lock, since a request may be waiting on the lease); with the log
//! off (`serve --audit-log off`), none.

use std::collections::BTreeSet;

use tracing::debug;

use crate::audit::entry::Entry;
use crate::audit::log::queue;
use crate::budgets::{
    current_standings, hold, lock_budgets, matching_ids, refusal, warnings, Kind, Mode,
};
use crate::error::{Error, Result};
use crate::keys;
use crate::pricing::PriceTable;
use crate::store::sql::{params, Tx};
use crate::store::Store;

/// `POST /v1/lease`, its answer and `request_need`: wire types, shared with
/// the filter.
pub use tollgate_protocol::{
    request_need, LeaseAmount, LeaseAnswer, LeaseGrant, LeasePrice, LeaseRelease, LeaseRequest,
    LeasedBudget,
};

/// How long a lease may be used unless `serve --lease-ttl-s` says otherwise.
pub const DEFAULT_LEASE_TTL_S: i64 = 10;
/// How long a lease's holds outlive its TTL: requests admitted near its end
/// stay counted until they settle.
pub const LEASE_GRACE_S: i64 = 120;
/// A lease takes this share of what is left of a budget.
const GRANT_DIVISOR: f64 = 8.0;

/// What a lease grants of a hard budget of `kind` with `available` left
/// (`limit - used - reserved`, above 0), for requests needing `need` each.
pub fn grant_size(kind: Kind, need: f64, available: f64) -> f64 {
    if available <= need {
        // The one request that crosses the limit, as with reservations.
        return need;
    }
    let share = available / GRANT_DIVISOR;
    let share = match kind {
        Kind::Requests => share.floor(),
        Kind::Spend | Kind::Tokens => share,
    };
    share.max(need).min(available)
}

/// Whether a debit of `amount` takes anything off a hold: a positive number.
pub(crate) fn takes(amount: f64) -> bool {
    amount.is_finite() && amount > 0.0
}

/// Takes `amount` off a lease's hold on a budget (not below 0; a hold that
/// reaches 0 is deleted). The caller holds the budget's lock. Amounts that
/// are not positive numbers change nothing.
pub(crate) fn shrink_hold(
    tx: &mut dyn Tx,
    lease_id: &str,
    budget_id: &str,
    amount: f64,
) -> Result<()> {
    if !takes(amount) {
        return Ok(());
    }
    // No two-argument MAX on PostgreSQL: the CASE floors at 0 on both.
    tx.execute(
        "UPDATE reservation_holds
         SET amount = CASE WHEN amount > $3 THEN amount - $3 ELSE 0.0 END
         WHERE reservation_id = $1 AND budget_id = $2",
        &params![lease_id, budget_id, amount],
    )?;
    tx.execute(
        "DELETE FROM reservation_holds
         WHERE reservation_id = $1 AND budget_id = $2 AND amount <= 0",
        &params![lease_id, budget_id],
    )?;
    Ok(())
}

/// Queues the audit log's entries for a lease call: the releases it
/// handed back, then its grant; none with the log off.
fn log_entries(
    store: &Store,
    tx: &mut dyn Tx,
    now: i64,
    r: &LeaseRequest,
    grant: Option<&LeaseGrant>,
) -> Result<()> {
    if !store.audit_log() {
        return Ok(());
    }
    let mut entries: Vec<Entry> = r
        .release
        .iter()
        .map(|rel| Entry::lease_settle(&rel.lease_id, &rel.unused))
        .collect();
    entries.extend(grant.map(|g| Entry::lease_grant(r, g)));
    queue(tx, &entries, now)
}

impl Store {
    /// Grants a lease on the key's hard budgets, or names the budget that
    /// refuses it (as `reserve` does); hands back `r.release` either way.
    pub fn lease(&self, r: &LeaseRequest) -> Result<LeaseAnswer> {
        if r.key_id.is_empty() {
            return Err(Error::invalid("key_id must not be empty"));
        }
        let now = self.clock().now();
        let lease_id = keys::new_id("lse_")?;
        let max_ttl = self.lease_ttl_s();
        let (input, output) = (r.estimated_input_tokens, r.max_output_tokens);
        let answer = self.write(|tx| {
            let price = PriceTable::load(tx)?
                .for_request(&r.upstream_model, &r.model)
                .map(|p| LeasePrice {
                    input: p.input,
                    output: p.output,
                });
            let matching: BTreeSet<String> =
                matching_ids(tx, Some(&r.key_id), r.team.as_deref(), r.user.as_deref())?
                    .into_iter()
                    .collect();
            // The released budgets are locked too, all in one id order.
            let mut ids = matching.clone();
            for rel in &r.release {
                ids.extend(rel.unused.iter().map(|u| u.budget_id.clone()));
            }
            let locked = lock_budgets(tx, &ids)?;
            for rel in &r.release {
                for u in &rel.unused {
                    shrink_hold(tx, &rel.lease_id, &u.budget_id, u.amount)?;
                }
            }
            let mine = locked.into_iter().filter(|d| matching.contains(&d.id));
            let standings = current_standings(tx, mine, now)?;
            if let Some(denial) = refusal(&standings, now) {
                log_entries(self, tx, now, r, None)?;
                return Ok(LeaseAnswer::Denied(denial));
            }
            let leased: Vec<_> = standings
                .iter()
                .filter(|s| s.def.mode == Mode::Hard)
                .collect();
            let ttl = leased
                .iter()
                .filter_map(|s| s.end)
                .map(|end| end - now)
                .fold(max_ttl, i64::min)
                .max(1);
            let expires_at = now + ttl + LEASE_GRACE_S;
            let mut budgets = Vec::with_capacity(leased.len());
            for s in leased {
                let kind = s.def.kind.as_str();
                let need = request_need(kind, price.as_ref(), input, output);
                let granted = grant_size(s.def.kind, need, s.def.limit - s.used - s.reserved);
                hold(tx, &lease_id, s, granted, expires_at)?;
                budgets.push(LeasedBudget {
                    budget_id: s.def.id.clone(),
                    kind: kind.to_owned(),
                    granted,
                });
            }
            let grant = LeaseGrant {
                allowed: true,
                lease_id: lease_id.clone(),
                ttl_ms: u64::try_from(ttl).unwrap_or(1).saturating_mul(1000),
                budgets,
                price,
                warnings: warnings(&standings),
            };
            log_entries(self, tx, now, r, Some(&grant))?;
            Ok(LeaseAnswer::Granted(grant))
        })?;
        match &answer {
            LeaseAnswer::Granted(g) => {
                if g.price.is_none() {
                    self.note_unpriced(&r.upstream_model);
                }
                self.log_warnings(&g.warnings);
                debug!(
                    lease = %g.lease_id, key = %r.key_id, model = %r.upstream_model,
                    ttl_ms = g.ttl_ms, budgets = g.budgets.len(), "lease granted"
                );
            }
            LeaseAnswer::Denied(d) => debug!(
                key = %r.key_id, budget = %d.budget_id, reason = %d.reason,
                "lease refused by budget"
            ),
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_an_eighth_of_what_is_left_within_need_and_available() {
        // Requests: whole numbers, down to one request.
        assert_eq!(grant_size(Kind::Requests, 1.0, 100.0), 12.0);
        assert_eq!(grant_size(Kind::Requests, 1.0, 15.0), 1.0);
        assert_eq!(grant_size(Kind::Requests, 1.0, 16.0), 2.0);
        assert_eq!(grant_size(Kind::Requests, 1.0, 1.5), 1.0);
        // The crossing grant: no more than one request's need left.
        assert_eq!(grant_size(Kind::Requests, 1.0, 1.0), 1.0);
        assert_eq!(grant_size(Kind::Requests, 1.0, 0.5), 1.0);
        assert_eq!(grant_size(Kind::Tokens, 1500.0, 100.0), 1500.0);
        // Tokens and spend: an eighth, unrounded, at least one request.
        assert_eq!(grant_size(Kind::Tokens, 1500.0, 80_000.0), 10_000.0);
        assert_eq!(grant_size(Kind::Tokens, 1500.0, 3000.0), 1500.0);
        assert_eq!(grant_size(Kind::Spend, 0.0075, 1.0), 0.125);
        assert_eq!(grant_size(Kind::Spend, 0.0075, 0.01), 0.0075);
        // Never more than is left, but for the crossing grant.
        for avail in [1.25, 2.0, 7.0, 9.0, 1000.0] {
            for kind in [Kind::Requests, Kind::Tokens, Kind::Spend] {
                let g = grant_size(kind, 1.0, avail);
                assert!((1.0..=avail).contains(&g), "{kind} {avail}: {g}");
            }
        }
    }

    #[test]
    fn the_kind_words_are_the_ones_request_need_reads() {
        let price = LeasePrice {
            input: 2.5,
            output: 10.0,
        };
        let p = Some(&price);
        assert_eq!(request_need(Kind::Requests.as_str(), p, 1000, 500), 1.0);
        assert_eq!(request_need(Kind::Tokens.as_str(), p, 1000, 500), 1500.0);
        // The reservation's estimate: the same cost the price table computes.
        let cost = crate::pricing::Price {
            input: 2.5,
            output: 10.0,
            cached_input: None,
        }
        .cost(1000, 500, 0);
        assert_eq!(request_need(Kind::Spend.as_str(), p, 1000, 500), cost);
    }
}
