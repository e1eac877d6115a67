//! Budgets, rate limits and reservations.
//!
//! A budget limits spend (USD), tokens or requests of a key, a team or a
//! user per calendar period (UTC); `minute` budgets of tokens or requests
//! are rate limits. `hard` budgets block, `tracking` budgets only warn.
//!
//! A reservation checks every budget matching the key, its team and its
//! user, then holds the request's estimate (cost at the model's price for
//! the estimated input and the maximum output, those tokens, one request)
//! against each of them, all in one write transaction. The rule: a hard
//! budget allows a request while `used + reserved < limit`, checked before
//! the request's own hold is added. So concurrent requests overshoot by at
//! most one reservation (the one that crosses the limit), and a request
//! budget of N allows exactly N. Holds expire after ten minutes unless
//! settled first (`ledger.rs`), and only count in the period they were made.
//!
//! A lease (`leases.rs`) checks the same budgets the same way and holds an
//! amount of each hard budget for many requests at once; its holds are
//! `reserved` like a reservation's.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::keys;
use crate::periods::{iso8601, Period};
use crate::pricing::PriceTable;
use crate::store::sql::{params, Row, Tx};
use crate::store::Store;

/// How long an unsettled reservation holds budget.
pub const RESERVATION_TTL_S: i64 = 600;
/// Retry hint when only in-flight reservations block a request: they settle soon.
const IN_FLIGHT_RETRY_S: i64 = 60;
/// Retry hint for an exhausted lifetime budget, which never resets.
const LIFETIME_RETRY_S: i64 = 86_400;

string_enum! {
    pub enum Scope("scope") {
        Key = "key",
        Team = "team",
        User = "user",
    }
}

string_enum! {
    pub enum Kind("kind") {
        /// USD at the model's price.
        Spend = "spend",
        /// Input plus output tokens.
        Tokens = "tokens",
        Requests = "requests",
    }
}

string_enum! {
    #[derive(Default)]
    pub enum Mode("mode") {
        #[default]
        Hard = "hard",
        Tracking = "tracking",
    }
}

string_enum! {
    pub enum Reason("reason") {
        Budget = "budget",
        RateLimit = "rate_limit",
    }
}

/// `POST /admin/budgets`, `budgets create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    pub scope: Scope,
    pub scope_id: String,
    pub kind: Kind,
    pub limit: f64,
    pub period: Period,
    #[serde(default)]
    pub mode: Mode,
}

/// `PATCH /admin/budgets/{id}`: the limit, the mode or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetUpdate {
    pub limit: Option<f64>,
    pub mode: Option<Mode>,
}

/// A budget with its current period's standing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub id: String,
    pub scope: Scope,
    pub scope_id: String,
    pub kind: Kind,
    pub limit: f64,
    pub period: Period,
    pub mode: Mode,
    pub created_at: i64,
    /// Settled usage in the current period.
    pub used: f64,
    /// Held by unsettled, unexpired reservations in the current period.
    pub reserved: f64,
    pub period_start: i64,
    /// When the current period ends; null for lifetime budgets.
    pub resets_at: Option<i64>,
}

/// `POST /v1/reserve` and its answer: wire types, shared with the filter.
/// Scope, kind, period and reason travel as these enums' words.
pub use tollgate_protocol::{Allowed, Denial, Overage, ReserveAnswer, ReserveRequest};

/// A budget row.
#[derive(Debug, Clone)]
pub(crate) struct BudgetDef {
    pub id: String,
    pub scope: Scope,
    pub scope_id: String,
    pub kind: Kind,
    pub limit: f64,
    pub period: Period,
    pub mode: Mode,
    pub created_at: i64,
}

const BUDGET_COLUMNS: &str = "id, scope, scope_id, kind, lim, period, mode, created_at";
const DROP_EXPIRED_HOLDS: &str =
    "DELETE FROM reservation_holds WHERE budget_id = $1 AND expires_at <= $2";
const INSERT_HOLD: &str = "INSERT INTO reservation_holds
    (reservation_id, budget_id, period_start, amount, expires_at) VALUES ($1, $2, $3, $4, $5)";

impl BudgetDef {
    fn from_row(r: &Row) -> Result<BudgetDef> {
        let word = |i: usize| r.text(i);
        Ok(BudgetDef {
            id: r.text(0)?,
            scope: word(1)?.parse().map_err(Error::Decode)?,
            scope_id: r.text(2)?,
            kind: word(3)?.parse().map_err(Error::Decode)?,
            limit: r.real(4)?,
            period: word(5)?.parse().map_err(Error::Decode)?,
            mode: word(6)?.parse().map_err(Error::Decode)?,
            created_at: r.int(7)?,
        })
    }

    /// Whether a request of this key, team and user counts against the budget.
    pub fn applies_to(&self, key_id: Option<&str>, team: Option<&str>, user: Option<&str>) -> bool {
        let id = match self.scope {
            Scope::Key => key_id,
            Scope::Team => team,
            Scope::User => user,
        };
        id == Some(self.scope_id.as_str())
    }

    /// What one request adds to this budget.
    pub fn amount(&self, cost_usd: f64, tokens: u64) -> f64 {
        match self.kind {
            Kind::Spend => cost_usd,
            Kind::Tokens => tokens as f64,
            Kind::Requests => 1.0,
        }
    }
}

/// A budget's current period, as read in a transaction.
pub(crate) struct Standing {
    pub def: BudgetDef,
    pub start: i64,
    pub end: Option<i64>,
    pub used: f64,
    pub reserved: f64,
}

impl Standing {
    fn read(tx: &mut dyn Tx, def: BudgetDef, now: i64) -> Result<Standing> {
        let (start, end) = def.period.bounds(now);
        let row = tx.query_one(
            "SELECT (SELECT COALESCE(SUM(used), 0) FROM budget_usage
                     WHERE budget_id = $1 AND period_start = $2),
                    (SELECT COALESCE(SUM(amount), 0) FROM reservation_holds
                     WHERE budget_id = $1 AND period_start = $2 AND expires_at > $3)",
            &params![&def.id, start, now],
        )?;
        Ok(Standing {
            used: row.real(0)?,
            reserved: row.real(1)?,
            def,
            start,
            end,
        })
    }

    pub fn exhausted(&self) -> bool {
        self.used + self.reserved >= self.def.limit
    }

    fn budget(self) -> Budget {
        let d = self.def;
        Budget {
            id: d.id,
            scope: d.scope,
            scope_id: d.scope_id,
            kind: d.kind,
            limit: d.limit,
            period: d.period,
            mode: d.mode,
            created_at: d.created_at,
            used: self.used,
            reserved: self.reserved,
            period_start: self.start,
            resets_at: self.end,
        }
    }

    pub fn overage(&self) -> Overage {
        Overage {
            budget_id: self.def.id.clone(),
            scope: self.def.scope.to_string(),
            scope_id: self.def.scope_id.clone(),
            kind: self.def.kind.to_string(),
            period: self.def.period.to_string(),
            limit: self.def.limit,
            used: self.used,
            reserved: self.reserved,
            period_start: self.start,
        }
    }

    fn denial(&self, now: i64) -> Denial {
        let d = &self.def;
        let only_in_flight = self.used < d.limit;
        let retry = match (self.end, only_in_flight) {
            (Some(end), true) => (end - now).clamp(1, IN_FLIGHT_RETRY_S),
            (Some(end), false) => (end - now).max(1),
            (None, true) => IN_FLIGHT_RETRY_S,
            (None, false) => LIFETIME_RETRY_S,
        };
        Denial {
            allowed: false,
            reason: if d.period == Period::Minute {
                Reason::RateLimit
            } else {
                Reason::Budget
            }
            .to_string(),
            budget_id: d.id.clone(),
            scope: d.scope.to_string(),
            scope_id: d.scope_id.clone(),
            kind: d.kind.to_string(),
            period: d.period.to_string(),
            limit: d.limit,
            used: self.used,
            reserved: self.reserved,
            resets_at: self.end,
            retry_after_s: u64::try_from(retry).unwrap_or(1),
            message: self.message(),
        }
    }

    /// e.g. `Team ml has used $10.02 of its $10.00 monthly budget; resets 2026-12-01T00:00:00Z`
    fn message(&self) -> String {
        let d = &self.def;
        let who = match d.scope {
            Scope::Key => "Key",
            Scope::Team => "Team",
            Scope::User => "User",
        };
        let amount = |v: f64| match d.kind {
            Kind::Spend => usd(v),
            Kind::Tokens | Kind::Requests => format!("{v}"),
        };
        let what = match (d.kind, d.period) {
            (Kind::Spend, p) => format!("{} budget", p.adjective()),
            (Kind::Tokens, Period::Minute) => "tokens per minute".to_owned(),
            (Kind::Requests, Period::Minute) => "requests per minute".to_owned(),
            (kind, p) => format!("{} {kind}", p.adjective()),
        };
        let in_flight = if self.reserved > 0.0 {
            format!(" (plus {} in flight)", amount(self.reserved))
        } else {
            String::new()
        };
        let reset = match self.end {
            Some(end) => format!("resets {}", iso8601(end)),
            None => "it does not reset".to_owned(),
        };
        format!(
            "{who} {} has used {}{in_flight} of its {} {what}; {reset}",
            d.scope_id,
            amount(self.used),
            amount(d.limit),
        )
    }
}

/// Dollars with cents, or with the digits a sub-cent amount needs.
fn usd(v: f64) -> String {
    if v == 0.0 || v.abs() >= 0.01 {
        format!("${v:.2}")
    } else {
        let s = format!("{v:.8}");
        format!("${}", s.trim_end_matches('0'))
    }
}

/// Ids of the budgets of this key, team and user.
pub(crate) fn matching_ids(
    tx: &mut dyn Tx,
    key_id: Option<&str>,
    team: Option<&str>,
    user: Option<&str>,
) -> Result<Vec<String>> {
    tx.query(
        "SELECT id FROM budgets
         WHERE (scope = 'key' AND scope_id = $1) OR (scope = 'team' AND scope_id = $2)
            OR (scope = 'user' AND scope_id = $3)",
        &params![key_id, team, user],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// Reads (and on PostgreSQL locks until commit) the given budgets in id
/// order. Every transaction that writes a budget's usage or holds locks it
/// here first, in the same order, so they serialize per budget and cannot
/// deadlock. Budgets deleted meanwhile are skipped.
pub(crate) fn lock_budgets(tx: &mut dyn Tx, ids: &BTreeSet<String>) -> Result<Vec<BudgetDef>> {
    let sql = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1{}",
        tx.dialect().for_update()
    );
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = tx.query_opt(&sql, &params![id])? {
            out.push(BudgetDef::from_row(&row)?);
        }
    }
    Ok(out)
}

/// The current standings of locked budgets (`lock_budgets`), their expired
/// holds dropped first.
pub(crate) fn current_standings(
    tx: &mut dyn Tx,
    defs: impl IntoIterator<Item = BudgetDef>,
    now: i64,
) -> Result<Vec<Standing>> {
    defs.into_iter()
        .map(|def| {
            // Expired holds no longer count; drop them while the budget is locked.
            tx.execute(DROP_EXPIRED_HOLDS, &params![&def.id, now])?;
            Standing::read(tx, def, now)
        })
        .collect()
}

/// The refusal of a request, if a hard budget is used up: it names the
/// budget that stays closed longest, when several are.
pub(crate) fn refusal(standings: &[Standing], now: i64) -> Option<Denial> {
    standings
        .iter()
        .filter(|s| s.def.mode == Mode::Hard && s.exhausted())
        .min_by_key(|s| Reverse(s.end.unwrap_or(i64::MAX)))
        .map(|s| s.denial(now))
}

/// Budgets that are used up but let the request through (tracking-only).
pub(crate) fn warnings(standings: &[Standing]) -> Vec<Overage> {
    standings
        .iter()
        .filter(|s| s.exhausted())
        .map(Standing::overage)
        .collect()
}

/// Holds a request's or a lease's amount against a budget's current period.
pub(crate) fn hold(
    tx: &mut dyn Tx,
    holder: &str,
    s: &Standing,
    amount: f64,
    expires_at: i64,
) -> Result<()> {
    tx.execute(
        INSERT_HOLD,
        &params![holder, &s.def.id, s.start, amount, expires_at],
    )?;
    Ok(())
}

/// Adds settled usage to a budget's period.
pub(crate) fn charge(
    tx: &mut dyn Tx,
    budget_id: &str,
    period_start: i64,
    amount: f64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO budget_usage (budget_id, period_start, used) VALUES ($1, $2, $3)
         ON CONFLICT (budget_id, period_start)
         DO UPDATE SET used = budget_usage.used + excluded.used",
        &params![budget_id, period_start, amount],
    )?;
    Ok(())
}

fn validate_limit(limit: f64) -> Result<()> {
    if limit.is_finite() && limit >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("limit must be a finite number >= 0"))
    }
}

impl NewBudget {
    fn validate(&self) -> Result<()> {
        validate_limit(self.limit)?;
        if self.scope_id.trim().is_empty() {
            return Err(Error::invalid("scope_id must not be empty"));
        }
        if self.period == Period::Minute && self.kind == Kind::Spend {
            return Err(Error::invalid(
                "period minute is for rate limits: use kind requests or tokens",
            ));
        }
        Ok(())
    }
}

impl Store {
    pub fn create_budget(&self, new: NewBudget) -> Result<Budget> {
        new.validate()?;
        let id = keys::new_id("bud_")?;
        let now = self.clock().now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO budgets (id, scope, scope_id, kind, lim, period, mode, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &params![
                    &id,
                    new.scope.as_str(),
                    &new.scope_id,
                    new.kind.as_str(),
                    new.limit,
                    new.period.as_str(),
                    new.mode.as_str(),
                    now,
                ],
            )
        })?;
        self.get_budget(&id)
    }

    pub fn get_budget(&self, id: &str) -> Result<Budget> {
        let now = self.clock().now();
        self.read(|c| {
            let sql = format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1");
            let row = c
                .query_opt(&sql, &params![id])?
                .ok_or_else(|| Error::not_found("budget", id))?;
            Ok(Standing::read(c, BudgetDef::from_row(&row)?, now)?.budget())
        })
    }

    /// Budgets in creation order, optionally of one scope and/or scope id.
    pub fn list_budgets(
        &self,
        scope: Option<Scope>,
        scope_id: Option<&str>,
    ) -> Result<Vec<Budget>> {
        let now = self.clock().now();
        self.read(|c| {
            // The CASTs tell PostgreSQL the type of parameters that may be NULL.
            let sql = format!(
                "SELECT {BUDGET_COLUMNS} FROM budgets
                 WHERE (CAST($1 AS TEXT) IS NULL OR scope = $1)
                   AND (CAST($2 AS TEXT) IS NULL OR scope_id = $2)
                 ORDER BY created_at, {}",
                c.dialect().insertion_order()
            );
            let defs = c
                .query(&sql, &params![scope.map(Scope::as_str), scope_id])?
                .iter()
                .map(BudgetDef::from_row)
                .collect::<Result<Vec<_>>>()?;
            defs.into_iter()
                .map(|d| Ok(Standing::read(c, d, now)?.budget()))
                .collect()
        })
    }

    pub fn update_budget(&self, id: &str, update: BudgetUpdate) -> Result<Budget> {
        if update.limit.is_none() && update.mode.is_none() {
            return Err(Error::invalid(
                "nothing to update: give limit, mode or both",
            ));
        }
        if let Some(limit) = update.limit {
            validate_limit(limit)?;
        }
        let changed = self.write(|tx| {
            tx.execute(
                "UPDATE budgets SET lim = COALESCE($2, lim), mode = COALESCE($3, mode)
                 WHERE id = $1",
                &params![id, update.limit, update.mode.map(Mode::as_str)],
            )
        })?;
        if changed == 0 {
            return Err(Error::not_found("budget", id));
        }
        self.get_budget(id)
    }

    /// Deletes a budget with its usage and holds.
    pub fn delete_budget(&self, id: &str) -> Result<()> {
        let deleted = self.write(|tx| {
            let n = tx.execute("DELETE FROM budgets WHERE id = $1", &params![id])?;
            tx.execute(
                "DELETE FROM budget_usage WHERE budget_id = $1",
                &params![id],
            )?;
            tx.execute(
                "DELETE FROM reservation_holds WHERE budget_id = $1",
                &params![id],
            )?;
            Ok(n)
        })?;
        if deleted == 0 {
            return Err(Error::not_found("budget", id));
        }
        Ok(())
    }

    /// Reserves a request against every matching budget, or names the one
    /// that refuses it (the one that stays closed longest, when several do).
    pub fn reserve(&self, r: &ReserveRequest) -> Result<ReserveAnswer> {
        if r.request_id.is_empty() || r.key_id.is_empty() {
            return Err(Error::invalid("request_id and key_id must not be empty"));
        }
        let now = self.clock().now();
        let reservation_id = keys::new_id("res_")?;
        let tokens = r.estimated_input_tokens.saturating_add(r.max_output_tokens);
        let answer = self.write(|tx| {
            let price = PriceTable::load(tx)?.for_request(&r.upstream_model, &r.model);
            let cost = price.map_or(0.0, |p| {
                p.cost(r.estimated_input_tokens, r.max_output_tokens, 0)
            });
            let ids = matching_ids(tx, Some(&r.key_id), r.team.as_deref(), r.user.as_deref())?;
            let locked = lock_budgets(tx, &ids.into_iter().collect())?;
            let standings = current_standings(tx, locked, now)?;
            if let Some(denial) = refusal(&standings, now) {
                return Ok(ReserveAnswer::Denied(denial));
            }
            let expires_at = now + RESERVATION_TTL_S;
            for s in &standings {
                hold(
                    tx,
                    &reservation_id,
                    s,
                    s.def.amount(cost, tokens),
                    expires_at,
                )?;
            }
            Ok(ReserveAnswer::Allowed(Allowed {
                allowed: true,
                reservation_id: reservation_id.clone(),
                estimated_cost_usd: cost,
                priced: price.is_some(),
                warnings: warnings(&standings),
            }))
        })?;
        match &answer {
            ReserveAnswer::Allowed(a) => {
                if !a.priced {
                    self.note_unpriced(&r.upstream_model);
                }
                self.log_warnings(&a.warnings);
            }
            ReserveAnswer::Denied(d) => debug!(
                request_id = %r.request_id, budget = %d.budget_id, reason = %d.reason,
                "request refused by budget"
            ),
        }
        Ok(answer)
    }
}

impl Store {
    /// Logs tracking-only budgets over their limit, once per budget and period.
    pub(crate) fn log_warnings(&self, warnings: &[Overage]) {
        for w in warnings {
            if self.notices().first_in_period(&w.budget_id, w.period_start) {
                warn!(
                    budget = %w.budget_id, scope = %w.scope, scope_id = %w.scope_id,
                    kind = %w.kind, period = %w.period, limit = w.limit, used = w.used,
                    "tracking-only budget exceeded (not blocking)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(kind: Kind, period: Period, limit: f64, used: f64, reserved: f64) -> Standing {
        let (start, end) = period.bounds(1_795_355_110);
        Standing {
            def: BudgetDef {
                id: "bud_x".into(),
                scope: Scope::Team,
                scope_id: "ml".into(),
                kind,
                limit,
                period,
                mode: Mode::Hard,
                created_at: 0,
            },
            start,
            end,
            used,
            reserved,
        }
    }

    #[test]
    fn messages_name_the_budget_and_the_reset() {
        let s = standing(Kind::Spend, Period::Monthly, 10.0, 10.02, 0.0);
        assert_eq!(
            s.message(),
            "Team ml has used $10.02 of its $10.00 monthly budget; resets 2026-12-01T00:00:00Z"
        );
        let s = standing(Kind::Requests, Period::Minute, 10.0, 7.0, 3.0);
        assert_eq!(
            s.message(),
            "Team ml has used 7 (plus 3 in flight) of its 10 requests per minute; \
             resets 2026-11-22T13:46:00Z"
        );
        let s = standing(Kind::Tokens, Period::Lifetime, 1000.0, 1200.0, 0.0);
        assert_eq!(
            s.message(),
            "Team ml has used 1200 of its 1000 lifetime tokens; it does not reset"
        );
        assert_eq!(usd(0.000_001), "$0.000001");
    }

    #[test]
    fn retry_hints() {
        let now = 1_795_355_110;
        // Used up: wait for the reset.
        let s = standing(Kind::Requests, Period::Daily, 10.0, 10.0, 0.0);
        let d = s.denial(now);
        assert_eq!(d.reason, "budget");
        assert_eq!(d.retry_after_s as i64, s.end.unwrap_or_default() - now);
        // Blocked only by in-flight reservations: try again soon.
        let s = standing(Kind::Requests, Period::Daily, 10.0, 4.0, 6.0);
        assert_eq!(s.denial(now).retry_after_s, 60);
        let s = standing(Kind::Requests, Period::Minute, 10.0, 10.0, 0.0);
        let d = s.denial(now);
        assert_eq!((d.reason.as_str(), d.retry_after_s), ("rate_limit", 50));
        // The filter tells rate limits from budgets by these words.
        assert_eq!(
            Reason::RateLimit.as_str(),
            tollgate_protocol::REASON_RATE_LIMIT
        );
        assert_eq!(Reason::Budget.as_str(), tollgate_protocol::REASON_BUDGET);
        let s = standing(Kind::Spend, Period::Lifetime, 1.0, 2.0, 0.0);
        assert_eq!(s.denial(now).retry_after_s, 86_400);
    }
}
