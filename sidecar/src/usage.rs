//! Usage reports: totals per key, team, user, model or day over a range of
//! days, read from the per-day tallies that settling keeps (never a scan of
//! the ledger), as JSON or CSV.

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

impl UsageQuery {
    fn validate(&self) -> Result<()> {
        for (name, value) in [("from", &self.from), ("to", &self.to)] {
            if let Some(v) = value {
                if parse_day(v).is_none() {
                    return Err(Error::invalid(format!(
                        "{name} must be a date YYYY-MM-DD, got {v:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Totals {
    fn from_row(r: &Row) -> Result<Totals> {
        Ok(Totals {
            requests: r.count(1)?,
            input_tokens: r.count(2)?,
            output_tokens: r.count(3)?,
            cached_tokens: r.count(4)?,
            reasoning_tokens: r.count(5)?,
            cost_usd: r.real(6)?,
            estimated_requests: r.count(7)?,
            unpriced_requests: r.count(8)?,
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
        q.validate()?;
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
        let from = q.from.as_deref().unwrap_or("0000-00-00");
        let to = q.to.as_deref().unwrap_or("9999-99-99");
        let mut rows = self.read(|c| {
            c.query(&sql, &params![scope, from, to])?
                .iter()
                .map(|r| {
                    Ok(UsageRow {
                        group: r.opt_text(0)?.filter(|g| !g.is_empty()),
                        totals: Totals::from_row(r)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // Sorted here, bytewise, so both backends agree whatever PostgreSQL's collation.
        rows.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(rows)
    }
}

/// `{"group_by": "team", "rows": [{"team": "ml", "requests": 3, ...}]}`
pub fn to_json(group_by: GroupBy, rows: &[UsageRow]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            obj.insert(group_by.as_str().into(), json!(row.group));
            if let Ok(Value::Object(totals)) = serde_json::to_value(row.totals) {
                obj.extend(totals);
            }
            Value::Object(obj)
        })
        .collect();
    json!({ "group_by": group_by, "rows": rows })
}

/// A header line, then one line per row (RFC 4180 quoting).
pub fn to_csv(group_by: GroupBy, rows: &[UsageRow]) -> String {
    let mut out = format!("{},{}\n", group_by, COLUMNS.join(","));
    for row in rows {
        out.push_str(&csv_cell(row.group.as_deref().unwrap_or_default()));
        for cell in row.totals.cells() {
            out.push(',');
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
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
