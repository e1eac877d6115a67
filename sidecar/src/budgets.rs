//! Budgets, pricing and the usage ledger.
//!
//! A reservation holds the estimated cost, tokens and one request against
//! every budget that matches the key, its team and its user, in one write
//! transaction, so concurrent requests cannot all slip under a limit: a hard
//! budget allows a request while `used + reserved < limit` (so at most one
//! reservation straddles the limit). Settling releases the hold, writes one
//! ledger row (idempotent by request id) and adds the real usage. Periods are
//! calendar-aligned in UTC and need no reset job: usage rows are keyed by
//! period start.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Error, Result};
use crate::keys;
use crate::store::Store;

/// Reservations not settled after this long stop holding budget.
const RESERVATION_TTL_S: i64 = 600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    pub scope: String,
    pub scope_id: String,
    pub kind: String,
    pub limit: f64,
    pub period: String,
    #[serde(default = "hard")]
    pub mode: String,
}

fn hard() -> String {
    "hard".into()
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub id: String,
    pub scope: String,
    pub scope_id: String,
    pub kind: String,
    pub limit: f64,
    pub period: String,
    pub mode: String,
    pub used: f64,
    pub reserved: f64,
    pub resets_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReserveRequest {
    pub request_id: String,
    pub key_id: String,
    pub team: Option<String>,
    pub user: Option<String>,
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    pub estimated_input_tokens: u64,
    pub max_output_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardrailEvent {
    pub guardrail: String,
    pub kind: String,
    pub direction: String,
    pub action: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UsageReport {
    pub request_id: String,
    pub reservation_id: Option<String>,
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
    pub status: u32,
    pub latency_ms: u64,
    pub estimated: bool,
    pub stream: bool,
    #[serde(default)]
    pub guardrail_events: Vec<GuardrailEvent>,
    pub ts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub request_id: String,
    pub cost_usd: f64,
    pub priced: bool,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ReserveAnswer {
    Allowed {
        allowed: bool,
        reservation_id: String,
        estimated_cost_usd: f64,
        priced: bool,
    },
    Denied {
        allowed: bool,
        reason: &'static str,
        scope: String,
        scope_id: String,
        kind: String,
        period: String,
        limit: f64,
        used: f64,
        resets_at: Option<i64>,
        retry_after_s: i64,
        message: String,
    },
}

/// USD per 1M tokens: (input, output, cached input). Matched by longest prefix.
const PRICES: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60, 0.075),
    ("gpt-4o", 2.50, 10.00, 1.25),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10),
    ("gpt-4.1", 2.00, 8.00, 0.50),
    ("gpt-5-nano", 0.05, 0.40, 0.005),
    ("gpt-5-mini", 0.25, 2.00, 0.025),
    ("gpt-5", 1.25, 10.00, 0.125),
    ("o4-mini", 1.10, 4.40, 0.275),
    ("o3", 2.00, 8.00, 0.50),
    ("claude-opus-4", 15.00, 75.00, 1.50),
    ("claude-sonnet-4", 3.00, 15.00, 0.30),
    ("claude-haiku-4", 1.00, 5.00, 0.10),
    ("claude-3-5-haiku", 0.80, 4.00, 0.08),
];

/// (input, output, cached) price per token, or `None` for an unknown model.
pub fn price(model: &str) -> Option<(f64, f64, f64)> {
    PRICES
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|(_, i, o, c)| (i / 1e6, o / 1e6, c / 1e6))
}

pub fn cost(model: &str, input: u64, output: u64, cached: u64) -> (f64, bool) {
    match price(model) {
        Some((i, o, c)) => (
            input.saturating_sub(cached) as f64 * i + cached as f64 * c + output as f64 * o,
            true,
        ),
        None => (0.0, false),
    }
}

// ---- calendar periods (UTC), from days since 1970-01-01 ----

fn civil_from_days(z: i64) -> (i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m)
}

fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (start, next start) of the period containing `now`; lifetime has no end.
pub fn period_bounds(period: &str, now: i64) -> (i64, Option<i64>) {
    let day = now.div_euclid(86_400);
    match period {
        "minute" => {
            let s = now - now.rem_euclid(60);
            (s, Some(s + 60))
        }
        "daily" => (day * 86_400, Some((day + 1) * 86_400)),
        "weekly" => {
            // 1970-01-01 was a Thursday; weeks start on Monday.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * 86_400, Some((monday + 7) * 86_400))
        }
        "monthly" => {
            let (y, m) = civil_from_days(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                days_from_civil(y, m) * 86_400,
                Some(days_from_civil(ny, nm) * 86_400),
            )
        }
        _ => (0, None),
    }
}

fn iso(ts: i64) -> String {
    let (y, m) = civil_from_days(ts.div_euclid(86_400));
    let d = ts.div_euclid(86_400) - days_from_civil(y, m) + 1;
    let secs = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

struct Matching {
    id: String,
    scope: String,
    scope_id: String,
    kind: String,
    limit: f64,
    period: String,
    mode: String,
}

fn matching_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Matching> {
    Ok(Matching {
        id: r.get(0)?,
        scope: r.get(1)?,
        scope_id: r.get(2)?,
        kind: r.get(3)?,
        limit: r.get(4)?,
        period: r.get(5)?,
        mode: r.get(6)?,
    })
}

fn matching(
    tx: &Transaction<'_>,
    key_id: Option<&str>,
    team: Option<&str>,
    user: Option<&str>,
) -> Result<Vec<Matching>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, scope, scope_id, kind, lim, period, mode FROM budgets
         WHERE (scope = 'key' AND scope_id = ?1) OR (scope = 'team' AND scope_id = ?2) OR (scope = 'user' AND scope_id = ?3)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![key_id, team, user], matching_row)?;
    Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn usage_row(tx: &Transaction<'_>, budget: &str, start: i64) -> Result<(f64, f64)> {
    Ok(tx
        .query_row(
            "SELECT used, reserved FROM budget_usage WHERE budget_id = ?1 AND period_start = ?2",
            params![budget, start],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0.0, 0.0)))
}

fn add_usage(
    tx: &Transaction<'_>,
    budget: &str,
    start: i64,
    used: f64,
    reserved: f64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO budget_usage (budget_id, period_start, used, reserved) VALUES (?1, ?2, ?3, MAX(?4, 0))
         ON CONFLICT (budget_id, period_start) DO UPDATE SET used = used + ?3, reserved = MAX(reserved + ?4, 0)",
        params![budget, start, used, reserved],
    )?;
    Ok(())
}

fn amount(kind: &str, cost: f64, tokens: u64) -> f64 {
    match kind {
        "spend" => cost,
        "tokens" => tokens as f64,
        _ => 1.0,
    }
}

fn validate(b: &NewBudget) -> Result<()> {
    let ok = ["key", "team", "user"].contains(&b.scope.as_str())
        && ["spend", "tokens", "requests"].contains(&b.kind.as_str())
        && ["minute", "daily", "weekly", "monthly", "lifetime"].contains(&b.period.as_str())
        && ["hard", "tracking"].contains(&b.mode.as_str());
    if !ok {
        return Err(Error::Invalid(
            "budget needs scope key|team|user, kind spend|tokens|requests, period minute|daily|weekly|monthly|lifetime, mode hard|tracking".into(),
        ));
    }
    if b.limit.is_nan() || b.limit < 0.0 || b.scope_id.is_empty() {
        return Err(Error::Invalid(
            "budget limit must be >= 0 and scope_id non-empty".into(),
        ));
    }
    Ok(())
}

impl Store {
    pub fn create_budget(&self, b: NewBudget, now: i64) -> Result<Budget> {
        validate(&b)?;
        let id = format!("bud_{}", keys::new_key_id()?.trim_start_matches("key_"));
        self.write(|tx| {
            tx.execute(
                "INSERT INTO budgets (id, scope, scope_id, kind, lim, period, mode, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, b.scope, b.scope_id, b.kind, b.limit, b.period, b.mode, now],
            )?;
            Ok(())
        })?;
        self.list_budgets(now)?
            .into_iter()
            .find(|x| x.id == id)
            .ok_or(Error::NotFound { what: "budget", id })
    }

    pub fn delete_budget(&self, id: &str) -> Result<()> {
        let n = self.write(|tx| Ok(tx.execute("DELETE FROM budgets WHERE id = ?1", [id])?))?;
        if n == 0 {
            return Err(Error::NotFound {
                what: "budget",
                id: id.into(),
            });
        }
        Ok(())
    }

    pub fn list_budgets(&self, now: i64) -> Result<Vec<Budget>> {
        self.write(|tx| {
            let all: Vec<Matching> = {
                let mut stmt = tx.prepare("SELECT id, scope, scope_id, kind, lim, period, mode FROM budgets ORDER BY created_at, id")?;
                let rows = stmt.query_map([], matching_row)?;
                rows.collect::<std::result::Result<Vec<_>, _>>()?
            };
            all.into_iter()
                .map(|m| {
                    let (start, end) = period_bounds(&m.period, now);
                    let (used, reserved) = usage_row(tx, &m.id, start)?;
                    Ok(Budget {
                        id: m.id,
                        scope: m.scope,
                        scope_id: m.scope_id,
                        kind: m.kind,
                        limit: m.limit,
                        period: m.period,
                        mode: m.mode,
                        used,
                        reserved,
                        resets_at: end,
                    })
                })
                .collect()
        })
    }

    /// Reserves a request against every matching budget, or says which one refuses it.
    pub fn reserve(&self, r: &ReserveRequest, now: i64) -> Result<ReserveAnswer> {
        let (input_price, output_price, _) = price(&r.upstream_model).unwrap_or((0.0, 0.0, 0.0));
        let est_cost = r.estimated_input_tokens as f64 * input_price
            + r.max_output_tokens as f64 * output_price;
        let est_tokens = r.estimated_input_tokens + r.max_output_tokens;
        self.write(|tx| {
            expire_reservations(tx, now)?;
            let budgets = matching(tx, Some(&r.key_id), r.team.as_deref(), r.user.as_deref())?;
            let mut holds = Vec::new();
            for b in &budgets {
                let (start, end) = period_bounds(&b.period, now);
                let (used, reserved) = usage_row(tx, &b.id, start)?;
                if used + reserved >= b.limit {
                    if b.mode == "hard" {
                        let retry = end.map_or(86_400, |e| (e - now).max(1));
                        let (shown_used, unit) = if b.kind == "spend" { (format!("${used:.2}"), format!("${:.2}", b.limit)) } else { (format!("{used}"), format!("{} {}", b.limit, b.kind)) };
                        let message = format!(
                            "The {} budget of {} `{}` is used up ({} of {}){}.",
                            b.period,
                            b.scope,
                            b.scope_id,
                            shown_used,
                            unit,
                            end.map_or(String::new(), |e| format!("; it resets at {}", iso(e)))
                        );
                        return Ok(ReserveAnswer::Denied {
                            allowed: false,
                            reason: if b.period == "minute" { "rate_limit" } else { "budget" },
                            scope: b.scope.clone(),
                            scope_id: b.scope_id.clone(),
                            kind: b.kind.clone(),
                            period: b.period.clone(),
                            limit: b.limit,
                            used,
                            resets_at: end,
                            retry_after_s: retry,
                            message,
                        });
                    }
                    warn!(budget = %b.id, scope = %b.scope, scope_id = %b.scope_id, "tracking-only budget exceeded");
                }
                holds.push((b.id.clone(), start, amount(&b.kind, est_cost, est_tokens)));
            }
            for (id, start, held) in &holds {
                add_usage(tx, id, *start, 0.0, *held)?;
            }
            let reservation_id = format!("res_{}", keys::new_key_id()?.trim_start_matches("key_"));
            let holds_json = serde_json::to_string(&holds).map_err(|e| Error::Invalid(e.to_string()))?;
            tx.execute("INSERT INTO reservations (id, created_at, holds) VALUES (?1, ?2, ?3)", params![reservation_id, now, holds_json])?;
            Ok(ReserveAnswer::Allowed { allowed: true, reservation_id, estimated_cost_usd: est_cost, priced: price(&r.upstream_model).is_some() })
        })
    }

    /// Settles usage reports; a request id seen before is a duplicate and changes nothing.
    pub fn settle(&self, reports: &[UsageReport], now: i64) -> Result<Vec<Settled>> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(reports.len());
            for r in reports {
                let (cost_usd, priced) = cost(&r.upstream_model, r.input_tokens, r.output_tokens, r.cached_tokens);
                if !priced {
                    warn!(model = %r.upstream_model, "no price for model; usage recorded with cost 0 and priced=false");
                }
                let events = serde_json::to_string(&r.guardrail_events).unwrap_or_else(|_| "[]".into());
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO usage_ledger (request_id, ts, key_id, team, user, model, upstream_model, provider, api,
                        input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, priced, status, latency_ms,
                        estimated, stream, guardrail_events)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
                    params![
                        r.request_id, r.ts, r.key_id, r.team, r.user, r.model, r.upstream_model, r.provider, r.api,
                        r.input_tokens as i64, r.output_tokens as i64, r.cached_tokens as i64, r.reasoning_tokens as i64,
                        cost_usd, priced, r.status, r.latency_ms as i64, r.estimated, r.stream, events
                    ],
                )?;
                if inserted == 0 {
                    out.push(Settled { request_id: r.request_id.clone(), cost_usd, priced, duplicate: true });
                    continue;
                }
                if let Some(res) = &r.reservation_id {
                    release(tx, res)?;
                }
                let tokens = r.input_tokens + r.output_tokens;
                for b in matching(tx, r.key_id.as_deref(), r.team.as_deref(), r.user.as_deref())? {
                    let (start, _) = period_bounds(&b.period, r.ts.min(now));
                    add_usage(tx, &b.id, start, amount(&b.kind, cost_usd, tokens), 0.0)?;
                }
                let day = iso(r.ts).get(..10).unwrap_or("").to_string();
                for (scope, id) in [("key", r.key_id.as_deref()), ("team", r.team.as_deref())] {
                    if let Some(id) = id {
                        tx.execute(
                            "INSERT INTO usage_daily (day, scope, scope_id, requests, input_tokens, output_tokens, cost_usd)
                             VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)
                             ON CONFLICT (day, scope, scope_id) DO UPDATE SET requests = requests + 1,
                                input_tokens = input_tokens + ?4, output_tokens = output_tokens + ?5, cost_usd = cost_usd + ?6",
                            params![day, scope, id, r.input_tokens as i64, r.output_tokens as i64, cost_usd],
                        )?;
                    }
                }
                out.push(Settled { request_id: r.request_id.clone(), cost_usd, priced, duplicate: false });
            }
            Ok(out)
        })
    }

    /// Raw ledger rows, newest first.
    pub fn ledger(&self, key_id: Option<&str>, limit: i64) -> Result<Vec<serde_json::Value>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT request_id, ts, key_id, team, user, model, upstream_model, provider, api, input_tokens, output_tokens,
                        cached_tokens, reasoning_tokens, cost_usd, priced, status, latency_ms, estimated, stream, guardrail_events
                 FROM usage_ledger WHERE ?1 IS NULL OR key_id = ?1 ORDER BY ts DESC, request_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![key_id, limit], |r| {
                Ok(serde_json::json!({
                    "request_id": r.get::<_, String>(0)?, "ts": r.get::<_, i64>(1)?, "key_id": r.get::<_, Option<String>>(2)?,
                    "team": r.get::<_, Option<String>>(3)?, "user": r.get::<_, Option<String>>(4)?, "model": r.get::<_, String>(5)?,
                    "upstream_model": r.get::<_, String>(6)?, "provider": r.get::<_, String>(7)?, "api": r.get::<_, String>(8)?,
                    "input_tokens": r.get::<_, i64>(9)?, "output_tokens": r.get::<_, i64>(10)?, "cached_tokens": r.get::<_, i64>(11)?,
                    "reasoning_tokens": r.get::<_, i64>(12)?, "cost_usd": r.get::<_, f64>(13)?, "priced": r.get::<_, bool>(14)?,
                    "status": r.get::<_, i64>(15)?, "latency_ms": r.get::<_, i64>(16)?, "estimated": r.get::<_, bool>(17)?,
                    "stream": r.get::<_, bool>(18)?,
                    "guardrail_events": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(19)?).unwrap_or_default(),
                }))
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }

    /// Spend and tokens grouped by key, team, user, model or day.
    pub fn usage_summary(
        &self,
        group_by: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let column = match group_by {
            "key" => "key_id",
            "team" => "team",
            "user" => "user",
            "model" => "model",
            "day" => "strftime('%Y-%m-%d', ts, 'unixepoch')",
            _ => {
                return Err(Error::Invalid(
                    "group_by must be key, team, user, model or day".into(),
                ))
            }
        };
        let sql = format!(
            "SELECT {column} AS g, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(cost_usd),
                    SUM(estimated), SUM(1 - priced)
             FROM usage_ledger
             WHERE (?1 IS NULL OR strftime('%Y-%m-%d', ts, 'unixepoch') >= ?1) AND (?2 IS NULL OR strftime('%Y-%m-%d', ts, 'unixepoch') <= ?2)
             GROUP BY g ORDER BY g"
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![from, to], |r| {
                Ok(serde_json::json!({
                    group_by: r.get::<_, Option<String>>(0)?, "requests": r.get::<_, i64>(1)?,
                    "input_tokens": r.get::<_, i64>(2)?, "output_tokens": r.get::<_, i64>(3)?, "cached_tokens": r.get::<_, i64>(4)?,
                    "cost_usd": r.get::<_, f64>(5)?, "estimated_requests": r.get::<_, i64>(6)?, "unpriced_requests": r.get::<_, i64>(7)?,
                }))
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }
}

fn release(tx: &Transaction<'_>, reservation: &str) -> Result<()> {
    let holds: Option<String> = tx
        .query_row(
            "SELECT holds FROM reservations WHERE id = ?1",
            [reservation],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(holds) = holds {
        let holds: Vec<(String, i64, f64)> = serde_json::from_str(&holds).unwrap_or_default();
        for (budget, start, held) in holds {
            add_usage(tx, &budget, start, 0.0, -held)?;
        }
        tx.execute("DELETE FROM reservations WHERE id = ?1", [reservation])?;
    }
    Ok(())
}

fn expire_reservations(tx: &Transaction<'_>, now: i64) -> Result<()> {
    let stale: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT id FROM reservations WHERE created_at < ?1")?;
        let rows = stmt.query_map([now - RESERVATION_TTL_S], |r| r.get(0))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()?
    };
    for id in stale {
        release(tx, &id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_aligned() {
        // 2026-11-22T13:45:10Z is a Sunday.
        let t = 1_795_355_110;
        assert_eq!(iso(period_bounds("daily", t).0), "2026-11-22T00:00:00Z");
        assert_eq!(iso(period_bounds("weekly", t).0), "2026-11-16T00:00:00Z");
        assert_eq!(iso(period_bounds("monthly", t).0), "2026-11-01T00:00:00Z");
        assert_eq!(
            period_bounds("monthly", t).1.map(iso).as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        assert_eq!(period_bounds("lifetime", t), (0, None));
        assert_eq!(
            iso(period_bounds("monthly", 1_798_761_600 - 1).1.unwrap_or(0)),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn prices_by_longest_prefix() {
        assert_eq!(
            price("gpt-4o-mini-2024-07-18").map(|p| (p.0 * 1e6 * 1000.0).round()),
            Some(150.0)
        );
        assert_eq!(price("gpt-4o").map(|p| (p.1 * 1e6).round()), Some(10.0));
        assert!(price("mystery-model").is_none());
        let (c, priced) = cost("claude-haiku-4-5", 1_000_000, 1_000_000, 0);
        assert!(priced && (c - 6.0).abs() < 1e-9);
    }
}
