//! Settling usage: one ledger row per request (never prompt or response
//! text), the real cost and tokens added to every matching budget, per-day
//! tallies of usage and of guardrail events (counts only) for reports, and
//! the reservation's holds released. A request admitted on a budget lease
//! (`leases.rs`) takes its debits off the lease's holds instead: the rest of
//! the lease stays held for the filter.
//!
//! Settling is idempotent by request id: the ledger's primary key decides,
//! so a report retried after a timeout or a sidecar restart is answered as
//! a duplicate and changes nothing (its lease debits are not taken twice).
//!
//! Each newly settled request appends its entry to the audit log
//! (`audit/`) at the end of the same transaction, so a duplicate appends
//! nothing and the filter waits on no more than it did: settling is
//! already off its request path. With the log off (`serve --audit-log
//! off`) nothing is appended.
//!
//! A request the gateway answered itself (`forwarded: false`, e.g. a
//! guardrail block, or a response cache hit with `cache_hit` and the
//! tokens it saved) gets its ledger row too, at cost 0, but charges no
//! budget and is not a provider request in the daily usage tallies (its
//! guardrail events are counted).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::audit::log::Appender;
use crate::budgets::{charge, lock_budgets, matching_ids, BudgetDef};
use crate::error::{Error, Result};
use crate::leases::{shrink_hold, takes};
use crate::periods::day;
use crate::pricing::PriceTable;
use crate::store::sql::{params, Row, Tx};
use crate::store::Store;

/// The filter's usage reports and the sidecar's answers: wire types, shared
/// with the filter. A report without `forwarded` (an older filter) counts as
/// forwarded; guardrail events without `count` (older filters, older rows)
/// mean one.
pub use tollgate_protocol::{GuardrailEvent, Settled, UsageReport};

/// A ledger row as `GET /admin/usage/requests` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerRow {
    pub request_id: String,
    pub ts: i64,
    pub key_id: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    pub api: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub priced: bool,
    pub status: i64,
    pub latency_ms: u64,
    pub estimated: bool,
    pub stream: bool,
    pub guardrail_events: Vec<GuardrailEvent>,
    /// `false` for requests the gateway answered itself (never charged).
    pub forwarded: bool,
    /// Answered from the response cache; its tokens are the ones it saved.
    pub cache_hit: bool,
}

/// One day's counters for one key, team, user or model.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    reasoning_tokens: u64,
    cost_usd: f64,
    estimated: u64,
    unpriced: u64,
}

/// What a batch adds to the daily tallies, summed before it is written.
#[derive(Default)]
struct Tallies {
    /// Lease and budget → what the batch's requests took off the hold.
    holds: BTreeMap<(String, String), f64>,
    /// Budget and period start → what the batch's requests used.
    charges: BTreeMap<(String, i64), f64>,
    /// Day, scope and id → counters.
    usage: BTreeMap<(String, &'static str, String), Tally>,
    /// Day, guardrail, kind, direction and action → findings.
    guardrails: BTreeMap<(String, String, String, String, String), u64>,
}

impl Tally {
    /// One report's counters.
    fn of(r: &UsageReport, cost_usd: f64, priced: bool) -> Tally {
        Tally {
            requests: 1,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost_usd,
            estimated: u64::from(r.estimated),
            unpriced: u64::from(!priced),
        }
    }

    fn add(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(o.reasoning_tokens);
        self.cost_usd += o.cost_usd;
        self.estimated += o.estimated;
        self.unpriced += o.unpriced;
    }
}

const LEDGER_COLUMNS: &str = r#"request_id, ts, key_id, team, "user", model, upstream_model,
    provider, api, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, priced,
    status, latency_ms, estimated, stream, guardrail_events, forwarded, cache_hit"#;

impl Store {
    /// Settles reports in one transaction; answers in the reports' order.
    pub fn settle(&self, reports: &[UsageReport]) -> Result<Vec<Settled>> {
        if reports.iter().any(|r| r.request_id.is_empty()) {
            return Err(Error::invalid("every report needs a request_id"));
        }
        let now = self.clock().now();
        // Rows are written in request id order, so two batches sharing
        // requests take their row locks in the same order.
        let mut order: Vec<(usize, &UsageReport)> = reports.iter().enumerate().collect();
        order.sort_by(|a, b| a.1.request_id.cmp(&b.1.request_id));
        let settled = self.write(|tx| {
            let prices = PriceTable::load(tx)?;
            let touched = budgets_touched(tx, reports.iter())?;
            let budgets = lock_budgets(tx, &touched)?;
            let mut tallies = Tallies::default();
            let mut out: Vec<Option<Settled>> = vec![None; reports.len()];
            let mut audited = Vec::new();
            let mut refusals = Vec::new();
            for &(i, r) in &order {
                // Reports carry the filter's clock; one from the future counts as now.
                let ts = self.clock().from_real(r.ts).min(now);
                if r.refused.is_some() {
                    refusals.push((i, r, ts));
                    continue;
                }
                // Nothing reached a provider: the cost is known to be 0.
                let price = if r.forwarded {
                    prices.for_request(&r.upstream_model, &r.model)
                } else {
                    None
                };
                let cost = price.map_or(0.0, |p| {
                    p.cost(r.input_tokens, r.output_tokens, r.cached_tokens)
                });
                let priced = price.is_some() || !r.forwarded;
                let settled = match record(tx, r, ts, cost, priced)? {
                    Some(previous) => previous,
                    None => {
                        apply(tx, r, ts, cost, priced, &budgets, &mut tallies)?;
                        audited.push((r, ts, cost, priced));
                        Settled {
                            request_id: r.request_id.clone(),
                            cost_usd: cost,
                            priced,
                            duplicate: false,
                        }
                    }
                };
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(settled);
                }
            }
            // Summed per hold and per budget period: one statement each per
            // batch instead of per request (sums of the same amounts, in
            // one transaction that has locked the budgets).
            for ((lease, budget), amount) in &tallies.holds {
                shrink_hold(tx, lease, budget, *amount)?;
            }
            for ((budget, period_start), amount) in &tallies.charges {
                charge(tx, budget, *period_start, *amount)?;
            }
            for ((day, scope, id), t) in &tallies.usage {
                add_tally(tx, day, scope, id, t)?;
            }
            for ((day, guardrail, kind, direction, action), count) in &tallies.guardrails {
                tx.execute(
                    "INSERT INTO guardrail_daily (day, guardrail, kind, direction, action, count)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (day, guardrail, kind, direction, action)
                     DO UPDATE SET count = guardrail_daily.count + excluded.count",
                    &params![day, guardrail, kind, direction, action, *count],
                )?;
            }
            // Last, so the log's lock is never held while waiting on another.
            let mut log = if self.audit_log() {
                Some(Appender::begin(tx, now)?)
            } else {
                None
            };
            if let Some(log) = &mut log {
                for (r, ts, cost, priced) in audited {
                    let digests = [r.request_digest.as_deref(), r.response_digest.as_deref()];
                    log.push_request(r, digests, ts, cost, priced)?;
                }
            }
            // Refusals: an audit entry each (once), nothing else; with the
            // log off, nothing at all.
            let entries: Vec<_> = refusals.iter().map(|&(_, r, ts)| (r, ts)).collect();
            let appended = match &mut log {
                Some(log) => log.push_refusals(&entries)?,
                None => vec![false; entries.len()],
            };
            for ((i, r, _), appended) in refusals.into_iter().zip(appended) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(Settled {
                        request_id: r.request_id.clone(),
                        cost_usd: 0.0,
                        priced: true,
                        duplicate: !appended,
                    });
                }
            }
            if let Some(log) = log {
                log.finish()?;
            }
            Ok(out.into_iter().flatten().collect::<Vec<_>>())
        })?;
        for (r, s) in reports.iter().zip(&settled) {
            if !s.priced && !s.duplicate {
                self.note_unpriced(&r.upstream_model);
            }
        }
        Ok(settled)
    }

    /// Raw ledger rows, newest first.
    pub fn ledger(&self, key_id: Option<&str>, limit: u32) -> Result<Vec<LedgerRow>> {
        self.read(|c| {
            // The CAST tells PostgreSQL the type of a parameter that may be NULL.
            let sql = format!(
                "SELECT {LEDGER_COLUMNS} FROM usage_ledger
                 WHERE CAST($1 AS TEXT) IS NULL OR key_id = $1
                 ORDER BY ts DESC, request_id LIMIT $2"
            );
            c.query(&sql, &params![key_id, i64::from(limit)])?
                .iter()
                .map(ledger_row)
                .collect()
        })
    }
}

/// The budgets a batch may touch: those matching its keys, teams and users,
/// and those its reservations and leases hold.
fn budgets_touched<'r>(
    tx: &mut dyn Tx,
    reports: impl Iterator<Item = &'r UsageReport>,
) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut holders = BTreeSet::new();
    // A batch holds many requests of few keys: one lookup per key, team
    // and user, not per request.
    let mut owners = BTreeSet::new();
    for r in reports {
        if r.forwarded {
            owners.insert((r.key_id.as_deref(), r.team.as_deref(), r.user.as_deref()));
        }
        holders.extend(r.reservation_id.as_deref());
        holders.extend(r.lease_id.as_deref());
    }
    for (key, team, user) in owners {
        ids.extend(matching_ids(tx, key, team, user)?);
    }
    for holder in holders {
        for row in tx.query(
            "SELECT budget_id FROM reservation_holds WHERE reservation_id = $1",
            &params![holder],
        )? {
            ids.insert(row.text(0)?);
        }
    }
    Ok(ids)
}

/// Applies a newly recorded request: releases its reservation, adds its
/// lease debits and its budgets' charges (for the period it ended in) to
/// the batch's sums, and adds it to the day's tallies. A request the
/// gateway answered itself only releases what it held and counts its
/// guardrail events.
fn apply(
    tx: &mut dyn Tx,
    r: &UsageReport,
    ts: i64,
    cost: f64,
    priced: bool,
    budgets: &[BudgetDef],
    tallies: &mut Tallies,
) -> Result<()> {
    if let Some(res) = &r.reservation_id {
        tx.execute(
            "DELETE FROM reservation_holds WHERE reservation_id = $1",
            &params![res],
        )?;
    }
    if let Some(lease) = &r.lease_id {
        for d in r.lease_debits.iter().filter(|d| takes(d.amount)) {
            let slot = (lease.clone(), d.budget_id.clone());
            *tallies.holds.entry(slot).or_default() += d.amount;
        }
    }
    let day = day(ts);
    // Blocked requests count too: a block is the event admins most want to see.
    for e in &r.guardrail_events {
        let slot = (
            day.clone(),
            e.guardrail.clone(),
            e.kind.clone(),
            e.direction.clone(),
            e.action.clone(),
        );
        let count = tallies.guardrails.entry(slot).or_default();
        *count = count.saturating_add(e.count);
    }
    if !r.forwarded {
        return Ok(());
    }
    let (key, team, user) = (r.key_id.as_deref(), r.team.as_deref(), r.user.as_deref());
    let tokens = r.input_tokens.saturating_add(r.output_tokens);
    for b in budgets.iter().filter(|b| b.applies_to(key, team, user)) {
        let slot = (b.id.clone(), b.period.bounds(ts).0);
        *tallies.charges.entry(slot).or_default() += b.amount(cost, tokens);
    }
    let t = Tally::of(r, cost, priced);
    let model = Some(r.model.as_str());
    for (scope, id) in [
        ("key", key),
        ("team", team),
        ("user", user),
        ("model", model),
    ] {
        // Absent ids tally under '', so every grouping adds up to the same total.
        let slot = (day.clone(), scope, id.unwrap_or_default().to_owned());
        tallies.usage.entry(slot).or_default().add(&t);
    }
    Ok(())
}

/// Writes the ledger row; `Some` with the earlier answer if the request was
/// already settled.
fn record(
    tx: &mut dyn Tx,
    r: &UsageReport,
    ts: i64,
    cost: f64,
    priced: bool,
) -> Result<Option<Settled>> {
    let events = serde_json::to_string(&r.guardrail_events)?;
    let sql = format!(
        "INSERT INTO usage_ledger ({LEDGER_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
         ON CONFLICT (request_id) DO NOTHING"
    );
    let inserted = tx.execute(
        &sql,
        &params![
            &r.request_id,
            ts,
            r.key_id.as_deref(),
            r.team.as_deref(),
            r.user.as_deref(),
            &r.model,
            &r.upstream_model,
            &r.provider,
            &r.api,
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens,
            r.reasoning_tokens,
            cost,
            priced,
            r.status,
            r.latency_ms,
            r.estimated,
            r.stream,
            &events,
            r.forwarded,
            r.cache_hit,
        ],
    )?;
    if inserted == 1 {
        return Ok(None);
    }
    let row = tx.query_one(
        "SELECT cost_usd, priced FROM usage_ledger WHERE request_id = $1",
        &params![&r.request_id],
    )?;
    Ok(Some(Settled {
        request_id: r.request_id.clone(),
        cost_usd: row.real(0)?,
        priced: row.bool(1)?,
        duplicate: true,
    }))
}

fn add_tally(tx: &mut dyn Tx, day: &str, scope: &str, id: &str, t: &Tally) -> Result<()> {
    tx.execute(
        "INSERT INTO usage_daily (day, scope, scope_id, requests, input_tokens, output_tokens,
             cached_tokens, reasoning_tokens, cost_usd, estimated_requests, unpriced_requests)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (day, scope, scope_id) DO UPDATE SET
             requests = usage_daily.requests + excluded.requests,
             input_tokens = usage_daily.input_tokens + excluded.input_tokens,
             output_tokens = usage_daily.output_tokens + excluded.output_tokens,
             cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens,
             reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens,
             cost_usd = usage_daily.cost_usd + excluded.cost_usd,
             estimated_requests = usage_daily.estimated_requests + excluded.estimated_requests,
             unpriced_requests = usage_daily.unpriced_requests + excluded.unpriced_requests",
        &params![
            day,
            scope,
            id,
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cached_tokens,
            t.reasoning_tokens,
            t.cost_usd,
            t.estimated,
            t.unpriced,
        ],
    )?;
    Ok(())
}

fn ledger_row(r: &Row) -> Result<LedgerRow> {
    Ok(LedgerRow {
        request_id: r.text(0)?,
        ts: r.int(1)?,
        key_id: r.opt_text(2)?,
        team: r.opt_text(3)?,
        user: r.opt_text(4)?,
        model: r.text(5)?,
        upstream_model: r.text(6)?,
        provider: r.text(7)?,
        api: r.text(8)?,
        input_tokens: r.count(9)?,
        output_tokens: r.count(10)?,
        cached_tokens: r.count(11)?,
        reasoning_tokens: r.count(12)?,
        cost_usd: r.real(13)?,
        priced: r.bool(14)?,
        status: r.int(15)?,
        latency_ms: r.count(16)?,
        estimated: r.bool(17)?,
        stream: r.bool(18)?,
        guardrail_events: r.json(19)?,
        forwarded: r.bool(20)?,
        cache_hit: r.bool(21)?,
    })
}
