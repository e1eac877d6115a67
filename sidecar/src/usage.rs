//! Usage reports: totals per key, team, user, model or day over a range of
//! days, or per day and key, team, user or model (the console's charts),
//! read from the per-day tallies that settling keeps (never a scan of the
//! ledger), as JSON or CSV; and guardrail event counts, from their own
//! daily tallies.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::periods::parse_day;
use crate::store::sql::{params, Row};
use crate::store::Store;

string_enum! {
    #[derive(Default)]
    pub enum GroupBy("group_by") {
        #[default]
        Key = "key",
        Team = "team",
        User = "user",
        Model = "model",
        Day = "day",
    }
}

/// Inclusive range of UTC days (`YYYY-MM-DD`); open ends are unbounded.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub group_by: GroupBy,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    /// Requests whose tokens were estimated (the provider sent no usage).
    pub estimated_requests: u64,
    /// Requests for models without a price, recorded at cost 0.
    pub unpriced_requests: u64,
}

/// One day's totals for one key, team, user or model.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub day: String,
    /// As in `UsageRow`.
    pub group: Option<String>,
    pub totals: Totals,
}

/// How often a guardrail found one kind of thing in one direction, and
/// what it did: counts only, never text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GuardrailCount {
    pub guardrail: String,
    pub kind: String,
    pub direction: String,
    pub action: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The key id, team, user, model or day; `None` for requests without one
    /// (e.g. no team).
    pub group: Option<String>,
    pub totals: Totals,
}

/// CSV and table columns after the group column.
pub const COLUMNS: [&str; 8] = [
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "estimated_requests",
    "unpriced_requests",
];

/// The bounds of an inclusive range of days, open ends unbounded, as the
/// `day` columns compare.
fn day_bounds<'a>(from: Option<&'a str>, to: Option<&'a str>) -> Result<(&'a str, &'a str)> {
    for (name, value) in [("from", from), ("to", to)] {
        if let Some(v) = value {
            if parse_day(v).is_none() {
                return Err(Error::invalid(format!(
                    "{name} must be a date YYYY-MM-DD, got {v:?}"
                )));
            }
        }
    }
    Ok((from.unwrap_or("0000-00-00"), to.unwrap_or("9999-99-99")))
}

impl UsageQuery {
    fn bounds(&self) -> Result<(&str, &str)> {
        day_bounds(self.from.as_deref(), self.to.as_deref())
    }
}

impl Totals {
    /// The counters in `COLUMNS` order, from column `first` on.
    fn from_row(r: &Row, first: usize) -> Result<Totals> {
        Ok(Totals {
            requests: r.count(first)?,
            input_tokens: r.count(first + 1)?,
            output_tokens: r.count(first + 2)?,
            cached_tokens: r.count(first + 3)?,
            reasoning_tokens: r.count(first + 4)?,
            cost_usd: r.real(first + 5)?,
            estimated_requests: r.count(first + 6)?,
            unpriced_requests: r.count(first + 7)?,
        })
    }

    /// The values in `COLUMNS` order.
    pub fn cells(&self) -> [String; 8] {
        [
            self.requests.to_string(),
            self.input_tokens.to_string(),
            self.output_tokens.to_string(),
            self.cached_tokens.to_string(),
            self.reasoning_tokens.to_string(),
            self.cost_usd.to_string(),
            self.estimated_requests.to_string(),
            self.unpriced_requests.to_string(),
        ]
    }
}

impl Store {
    pub fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>> {
        let (from, to) = q.bounds()?;
        // Every request is tallied once per scope, so the day totals are the
        // model rows added up.
        let (scope, column) = match q.group_by {
            GroupBy::Key => ("key", "scope_id"),
            GroupBy::Team => ("team", "scope_id"),
            GroupBy::User => ("user", "scope_id"),
            GroupBy::Model => ("model", "scope_id"),
            GroupBy::Day => ("model", "day"),
        };
        let sql = format!(
            "SELECT {column}, CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
                    CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_tokens) AS BIGINT),
                    CAST(SUM(reasoning_tokens) AS BIGINT), SUM(cost_usd),
                    CAST(SUM(estimated_requests) AS BIGINT), CAST(SUM(unpriced_requests) AS BIGINT)
             FROM usage_daily WHERE scope = $1 AND day >= $2 AND day <= $3
             GROUP BY {column}"
        );
        let mut rows = self.read(|c| {
            c.query(&sql, &params![scope, from, to])?
                .iter()
                .map(|r| {
                    Ok(UsageRow {
                        group: r.opt_text(0)?.filter(|g| !g.is_empty()),
                        totals: Totals::from_row(r, 1)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // Sorted here, bytewise, so both backends agree whatever PostgreSQL's collation.
        rows.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(rows)
    }

    /// Per day and key, team, user or model (not `day`: that is `usage`).
    pub fn usage_daily(&self, q: &UsageQuery) -> Result<Vec<DailyRow>> {
        let (from, to) = q.bounds()?;
        let scope = match q.group_by {
            GroupBy::Key => "key",
            GroupBy::Team => "team",
            GroupBy::User => "user",
            GroupBy::Model => "model",
            GroupBy::Day => {
                return Err(Error::invalid(
                    "group_by must be key, team, user or model here (days are always the rows)",
                ))
            }
        };
        let mut rows = self.read(|c| {
            c.query(
                "SELECT day, scope_id, requests, input_tokens, output_tokens, cached_tokens,
                        reasoning_tokens, cost_usd, estimated_requests, unpriced_requests
                 FROM usage_daily WHERE scope = $1 AND day >= $2 AND day <= $3",
                &params![scope, from, to],
            )?
            .iter()
            .map(|r| {
                Ok(DailyRow {
                    day: r.text(0)?,
                    group: r.opt_text(1)?.filter(|g| !g.is_empty()),
                    totals: Totals::from_row(r, 2)?,
                })
            })
            .collect::<Result<Vec<_>>>()
        })?;
        rows.sort_by(|a, b| (&a.day, &a.group).cmp(&(&b.day, &b.group)));
        Ok(rows)
    }

    /// Guardrail events over a range of days, per guardrail, kind,
    /// direction and action.
    pub fn guardrail_events(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<GuardrailCount>> {
        let (from, to) = day_bounds(from, to)?;
        let mut rows = self.read(|c| {
            c.query(
                "SELECT guardrail, kind, direction, action, CAST(SUM(count) AS BIGINT)
                 FROM guardrail_daily WHERE day >= $1 AND day <= $2
                 GROUP BY guardrail, kind, direction, action",
                &params![from, to],
            )?
            .iter()
            .map(|r| {
                Ok(GuardrailCount {
                    guardrail: r.text(0)?,
                    kind: r.text(1)?,
                    direction: r.text(2)?,
                    action: r.text(3)?,
                    count: r.count(4)?,
                })
            })
            .collect::<Result<Vec<_>>>()
        })?;
        rows.sort();
        Ok(rows)
    }
}

/// `{"group_by": "team", "rows": [{"team": "ml", "requests": 3, ...}]}`
pub fn to_json(group_by: GroupBy, rows: &[UsageRow]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| row_json(None, group_by, &row.group, &row.totals))
        .collect();
    json!({ "group_by": group_by, "rows": rows })
}

/// One row: its day (daily rows), its group and its totals.
fn row_json(
    day: Option<&str>,
    group_by: GroupBy,
    group: &Option<String>,
    totals: &Totals,
) -> Value {
    let mut obj = Map::new();
    if let Some(day) = day {
        obj.insert("day".into(), json!(day));
    }
    obj.insert(group_by.as_str().into(), json!(group));
    if let Ok(Value::Object(totals)) = serde_json::to_value(totals) {
        obj.extend(totals);
    }
    Value::Object(obj)
}

/// A header line, then one line per row (RFC 4180 quoting).
pub fn to_csv(group_by: GroupBy, rows: &[UsageRow]) -> String {
    let mut out = format!("{},{}\n", group_by, COLUMNS.join(","));
    for row in rows {
        out.push_str(&csv_cell(row.group.as_deref().unwrap_or_default()));
        push_cells(&mut out, &row.totals);
    }
    out
}

/// `{"group_by": "team", "rows": [{"day": "2026-11-22", "team": "ml", "requests": 3, ...}]}`
pub fn daily_to_json(group_by: GroupBy, rows: &[DailyRow]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| row_json(Some(&row.day), group_by, &row.group, &row.totals))
        .collect();
    json!({ "group_by": group_by, "rows": rows })
}

/// `day,<group_by>,requests,...`, one line per day and group.
pub fn daily_to_csv(group_by: GroupBy, rows: &[DailyRow]) -> String {
    let mut out = format!("day,{},{}\n", group_by, COLUMNS.join(","));
    for row in rows {
        out.push_str(&row.day);
        out.push(',');
        out.push_str(&csv_cell(row.group.as_deref().unwrap_or_default()));
        push_cells(&mut out, &row.totals);
    }
    out
}

/// `,` and each counter, then the line's end.
fn push_cells(out: &mut String, totals: &Totals) {
    for cell in totals.cells() {
        out.push(',');
        out.push_str(&cell);
    }
    out.push('\n');
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let rows = [
            UsageRow {
                group: Some("a,\"b\"".into()),
                totals: Totals {
                    requests: 2,
                    cost_usd: 0.5,
                    ..Totals::default()
                },
            },
            UsageRow {
                group: None,
                totals: Totals::default(),
            },
        ];
        assert_eq!(
            to_csv(GroupBy::Team, &rows),
            "team,requests,input_tokens,output_tokens,cached_tokens,reasoning_tokens,cost_usd,\
             estimated_requests,unpriced_requests\n\
             \"a,\"\"b\"\"\",2,0,0,0,0,0.5,0,0\n\
             ,0,0,0,0,0,0,0,0\n"
        );
        let j = to_json(GroupBy::Team, &rows);
        assert_eq!(j["rows"][0]["team"], "a,\"b\"");
        assert_eq!(j["rows"][1]["team"], Value::Null);
        assert_eq!(j["rows"][0]["requests"], 2);
    }
}
