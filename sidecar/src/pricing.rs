//! Model prices (USD per 1M tokens) and the cost of a request.
//!
//! A default table ships for common OpenAI and Anthropic models; operators
//! override or add entries (stored in the `prices` table). A model name is
//! priced by the longest entry it starts with, where the entry must end at a
//! separator (`-`, `@`, `:`, `/`, ...), so dated and variant names such as
//! `gpt-4o-2024-08-06` or `claude-sonnet-4-5-20250929` find their family while
//! `gpt-5.3` does not fall back to `gpt-5`. A model with no entry is
//! unpriced: cost 0, flagged, never silently free.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::sql::{params, Row, Tx};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached (prompt cache read) input tokens; defaults to the input price.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

impl Price {
    const fn new(input: f64, output: f64, cached_input: f64) -> Price {
        Price {
            input,
            output,
            cached_input: Some(cached_input),
        }
    }

    fn cached(&self) -> f64 {
        self.cached_input.unwrap_or(self.input)
    }

    fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if ok(self.input) && ok(self.output) && ok(self.cached()) {
            Ok(())
        } else {
            Err(Error::invalid(
                "prices must be finite, non-negative USD per 1M tokens",
            ))
        }
    }

    /// USD for one request: cached input tokens are part of `input` and
    /// billed at the cached rate instead.
    pub fn cost(&self, input: u64, output: u64, cached: u64) -> f64 {
        let cached = cached.min(input);
        ((input - cached) as f64 * self.input
            + cached as f64 * self.cached()
            + output as f64 * self.output)
            / 1e6
    }
}

/// The shipped defaults, USD per 1M tokens (input, output, cached input).
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    ("gpt-5.5", Price::new(5.00, 30.00, 0.50)),
    ("gpt-5.4", Price::new(2.50, 15.00, 0.25)),
    ("gpt-5.4-mini", Price::new(0.75, 4.50, 0.075)),
    ("gpt-5.4-nano", Price::new(0.20, 1.25, 0.02)),
    ("gpt-5.2", Price::new(1.75, 14.00, 0.175)),
    ("gpt-5.1", Price::new(1.25, 10.00, 0.125)),
    ("gpt-5", Price::new(1.25, 10.00, 0.125)),
    ("gpt-5-pro", Price::new(15.00, 120.00, 15.00)),
    ("gpt-5-mini", Price::new(0.25, 2.00, 0.025)),
    ("gpt-5-nano", Price::new(0.05, 0.40, 0.005)),
    ("gpt-4.1", Price::new(2.00, 8.00, 0.50)),
    ("gpt-4.1-mini", Price::new(0.40, 1.60, 0.10)),
    ("gpt-4.1-nano", Price::new(0.10, 0.40, 0.025)),
    ("gpt-4o", Price::new(2.50, 10.00, 1.25)),
    ("gpt-4o-mini", Price::new(0.15, 0.60, 0.075)),
    ("o1", Price::new(15.00, 60.00, 7.50)),
    ("o3", Price::new(2.00, 8.00, 0.50)),
    ("o3-pro", Price::new(20.00, 80.00, 20.00)),
    ("o3-mini", Price::new(1.10, 4.40, 0.55)),
    ("o4-mini", Price::new(1.10, 4.40, 0.275)),
    ("claude-opus-4", Price::new(15.00, 75.00, 1.50)),
    ("claude-opus-4-1", Price::new(15.00, 75.00, 1.50)),
    ("claude-opus-4-5", Price::new(5.00, 25.00, 0.50)),
    ("claude-opus-4-6", Price::new(5.00, 25.00, 0.50)),
    ("claude-opus-4-7", Price::new(5.00, 25.00, 0.50)),
    ("claude-sonnet-4", Price::new(3.00, 15.00, 0.30)),
    ("claude-haiku-4-5", Price::new(1.00, 5.00, 0.10)),
    ("claude-3-7-sonnet", Price::new(3.00, 15.00, 0.30)),
    ("claude-3-5-haiku", Price::new(0.80, 4.00, 0.08)),
    ("claude-3-haiku", Price::new(0.25, 1.25, 0.03)),
];

string_enum! {
    pub enum Source("price source") {
        Default = "default",
        Override = "override",
    }
}

/// One row of the effective price table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceEntry {
    pub model: String,
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    pub source: Source,
}

/// Defaults merged with the operator's overrides, for one transaction.
pub struct PriceTable {
    overrides: Vec<(String, Price)>,
}

impl PriceTable {
    pub(crate) fn load(tx: &mut dyn Tx) -> Result<PriceTable> {
        let overrides = tx
            .query("SELECT model, input, output, cached_input FROM prices", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, price_from_row(r, 1)?)))
            .collect::<Result<_>>()?;
        Ok(PriceTable { overrides })
    }

    /// Overrides first, then the defaults they do not replace.
    fn entries(&self) -> impl Iterator<Item = (&str, &Price, Source)> {
        let overridden = |m: &str| self.overrides.iter().any(|(o, _)| o == m);
        self.overrides
            .iter()
            .map(|(m, p)| (m.as_str(), p, Source::Override))
            .chain(
                DEFAULT_PRICES
                    .iter()
                    .filter(move |(m, _)| !overridden(m))
                    .map(|(m, p)| (*m, p, Source::Default)),
            )
    }

    /// Prices a request by its upstream model, else by its client-facing name.
    pub fn for_request(&self, upstream_model: &str, model: &str) -> Option<Price> {
        self.lookup(upstream_model).or_else(|| self.lookup(model))
    }

    /// The price of `model`, by the longest matching entry.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.entries()
            .filter(|(entry, ..)| covers(entry, model))
            .max_by_key(|(entry, ..)| entry.len())
            .map(|(_, p, _)| *p)
    }
}

/// `entry` names `model` itself or a family it belongs to.
fn covers(entry: &str, model: &str) -> bool {
    match model.strip_prefix(entry) {
        Some(rest) => rest
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '.'),
        None => false,
    }
}

fn price_from_row(r: &Row, first: usize) -> Result<Price> {
    Ok(Price {
        input: r.real(first)?,
        output: r.real(first + 1)?,
        cached_input: Some(r.real(first + 2)?),
    })
}

fn validate_model(model: &str) -> Result<()> {
    if model.is_empty() || model.len() > 200 || model.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "model must be 1-200 characters without whitespace",
        ));
    }
    Ok(())
}

impl Store {
    /// Sets (or replaces) the operator's price for `model` and its variants.
    pub fn set_price(&self, model: &str, price: Price) -> Result<PriceEntry> {
        validate_model(model)?;
        price.validate()?;
        let now = self.clock().now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO prices (model, input, output, cached_input, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (model) DO UPDATE SET input = excluded.input, output = excluded.output,
                     cached_input = excluded.cached_input, updated_at = excluded.updated_at",
                &params![model, price.input, price.output, price.cached(), now],
            )
        })?;
        Ok(PriceEntry {
            model: model.to_owned(),
            input: price.input,
            output: price.output,
            cached_input: price.cached(),
            source: Source::Override,
        })
    }

    /// Removes the operator's price; a default for the same name applies again.
    pub fn delete_price(&self, model: &str) -> Result<()> {
        let n =
            self.write(|tx| tx.execute("DELETE FROM prices WHERE model = $1", &params![model]))?;
        if n == 0 {
            return Err(Error::not_found("price override", model));
        }
        Ok(())
    }

    /// The effective table (overrides and the defaults they leave), by model.
    pub fn list_prices(&self) -> Result<Vec<PriceEntry>> {
        let table = self.read(PriceTable::load)?;
        let mut entries: Vec<PriceEntry> = table
            .entries()
            .map(|(model, p, source)| PriceEntry {
                model: model.to_owned(),
                input: p.input,
                output: p.output,
                cached_input: p.cached(),
                source,
            })
            .collect();
        entries.sort_by(|a, b| a.model.cmp(&b.model));
        Ok(entries)
    }

    /// Logs an unpriced model at warn, once per model per process.
    pub(crate) fn note_unpriced(&self, model: &str) {
        if self.notices().first_unpriced(model) {
            tracing::warn!(
                model = %model,
                "no price for model: usage is recorded with cost 0 and priced=false; \
                 set one with PUT /admin/prices/{{model}} or `tollgate-sidecar prices set`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> PriceTable {
        PriceTable { overrides: vec![] }
    }

    #[test]
    fn longest_matching_family_wins() {
        let t = defaults();
        let input = |m: &str| t.lookup(m).map(|p| p.input);
        assert_eq!(input("gpt-4o"), Some(2.50));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2.50));
        assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(0.15));
        assert_eq!(input("gpt-5.4-mini"), Some(0.75));
        assert_eq!(input("claude-sonnet-4-5-20250929"), Some(3.00));
        assert_eq!(input("claude-opus-4-20250514"), Some(15.00));
        assert_eq!(input("claude-opus-4-5-20251101"), Some(5.00));
        assert_eq!(input("claude-haiku-4-5"), Some(1.00));
        // A family must end at a separator: gpt-5.3 is not gpt-5, gpt-4 is not gpt-4o.
        assert_eq!(input("gpt-5.3"), None);
        assert_eq!(input("gpt-4"), None);
        assert_eq!(input("gpt-4omega"), None);
        assert_eq!(input("mystery-model"), None);
    }

    #[test]
    fn overrides_replace_defaults_and_add_models() {
        let t = PriceTable {
            overrides: vec![
                ("gpt-4o".into(), Price::new(1.0, 2.0, 0.5)),
                ("local-llama".into(), Price::new(0.0, 0.0, 0.0)),
            ],
        };
        assert_eq!(t.lookup("gpt-4o-2024-08-06").map(|p| p.output), Some(2.0));
        assert_eq!(t.lookup("gpt-4o-mini").map(|p| p.input), Some(0.15));
        assert_eq!(t.lookup("local-llama-3").map(|p| p.input), Some(0.0));
        assert_eq!(
            t.for_request("unknown", "gpt-4o").map(|p| p.input),
            Some(1.0)
        );
    }

    #[test]
    fn cost_bills_cached_input_at_the_cached_rate() {
        let p = Price::new(3.0, 15.0, 0.30);
        // 1M input of which 400k cached, 100k output.
        let c = p.cost(1_000_000, 100_000, 400_000);
        assert!(
            (c - (0.6 * 3.0 + 0.4 * 0.30 + 0.1 * 15.0)).abs() < 1e-12,
            "{c}"
        );
        // More cached than input is clamped rather than negative.
        assert!((p.cost(10, 0, 50) - 10.0 * 0.30 / 1e6).abs() < 1e-15);
        let no_cache_price = Price {
            input: 2.0,
            output: 4.0,
            cached_input: None,
        };
        assert!((no_cache_price.cost(1_000_000, 0, 500_000) - 2.0).abs() < 1e-12);
    }
}
