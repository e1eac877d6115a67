//! `budgets`, `prices` and `usage` commands.

use std::io::Write;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{format_time, or_dash, print_json, write_fields, write_table, Output};
use crate::budgets::{Budget, BudgetUpdate, Kind, Mode, NewBudget, Scope};
use crate::periods::Period;
use crate::pricing::{Price, PriceEntry};
use crate::store::Store;
use crate::usage::{self, GroupBy, UsageQuery, COLUMNS};

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Create a budget, e.g. `--scope team --id ml --kind spend --limit 10 --period monthly`
    Create {
        /// key, team or user
        #[arg(long)]
        scope: Scope,
        /// The key id, team name or user the budget applies to
        #[arg(long = "id")]
        scope_id: String,
        /// spend (USD), tokens or requests
        #[arg(long)]
        kind: Kind,
        #[arg(long)]
        limit: f64,
        /// minute (rate limit), daily, weekly, monthly or lifetime
        #[arg(long)]
        period: Period,
        /// hard (block) or tracking (count and warn only)
        #[arg(long, default_value = "hard")]
        mode: Mode,
        #[command(flatten)]
        out: Output,
    },
    /// List budgets with their current period's usage
    List {
        #[arg(long)]
        scope: Option<Scope>,
        #[arg(long = "id")]
        scope_id: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Change a budget's limit or mode
    Update {
        id: String,
        #[arg(long)]
        limit: Option<f64>,
        #[arg(long)]
        mode: Option<Mode>,
        #[command(flatten)]
        out: Output,
    },
    /// Delete a budget and its usage counters
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Set the price of a model (and its dated or variant names)
    Set {
        model: String,
        /// USD per 1M input tokens
        #[arg(long)]
        input: f64,
        /// USD per 1M output tokens
        #[arg(long)]
        output: f64,
        /// USD per 1M cached input tokens (default: the input price)
        #[arg(long)]
        cached_input: Option<f64>,
        #[command(flatten)]
        out: Output,
    },
    /// List the effective prices: defaults and overrides
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Remove an override (a shipped default for the name applies again)
    Delete { model: String },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// key, team, user, model or day
    #[arg(long, default_value = "key")]
    group_by: GroupBy,
    /// First day, YYYY-MM-DD (UTC)
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC), inclusive
    #[arg(long)]
    to: Option<String>,
    /// table, csv or json
    #[arg(long, default_value = "table")]
    format: String,
}

pub fn run_budgets(store: &Store, cmd: BudgetsCommand, w: &mut dyn Write) -> Result<()> {
    match cmd {
        BudgetsCommand::Create {
            scope,
            scope_id,
            kind,
            limit,
            period,
            mode,
            out,
        } => {
            let budget = store.create_budget(NewBudget {
                scope,
                scope_id,
                kind,
                limit,
                period,
                mode,
            })?;
            show_budget(w, &budget, &out)
        }
        BudgetsCommand::List {
            scope,
            scope_id,
            out,
        } => {
            let budgets = store.list_budgets(scope, scope_id.as_deref())?;
            if out.json {
                return print_json(w, &json!({ "budgets": budgets }));
            }
            let mut rows = vec![[
                "ID", "SCOPE", "SCOPE_ID", "KIND", "LIMIT", "PERIOD", "MODE", "USED", "RESERVED",
                "RESETS",
            ]
            .map(String::from)];
            rows.extend(budgets.iter().map(|b| {
                [
                    b.id.clone(),
                    b.scope.to_string(),
                    b.scope_id.clone(),
                    b.kind.to_string(),
                    amount(b.kind, b.limit),
                    b.period.to_string(),
                    b.mode.to_string(),
                    amount(b.kind, b.used),
                    amount(b.kind, b.reserved),
                    or_dash(b.resets_at.map(format_time).as_deref()),
                ]
            }));
            write_table(w, &rows)
        }
        BudgetsCommand::Update {
            id,
            limit,
            mode,
            out,
        } => show_budget(
            w,
            &store.update_budget(&id, BudgetUpdate { limit, mode })?,
            &out,
        ),
        BudgetsCommand::Delete { id } => {
            store.delete_budget(&id)?;
            writeln!(w, "Deleted budget {id}.")?;
            Ok(())
        }
    }
}

pub fn run_prices(store: &Store, cmd: PricesCommand, w: &mut dyn Write) -> Result<()> {
    match cmd {
        PricesCommand::Set {
            model,
            input,
            output,
            cached_input,
            out,
        } => {
            let price = Price {
                input,
                output,
                cached_input,
            };
            let entry = store.set_price(&model, price)?;
            if out.json {
                return print_json(w, &entry);
            }
            write_prices(w, &[entry])
        }
        PricesCommand::List { out } => {
            let prices = store.list_prices()?;
            if out.json {
                return print_json(w, &json!({ "prices": prices }));
            }
            write_prices(w, &prices)
        }
        PricesCommand::Delete { model } => {
            store.delete_price(&model)?;
            writeln!(w, "Deleted the price override for {model}.")?;
            Ok(())
        }
    }
}

pub fn run_usage(store: &Store, args: UsageArgs, w: &mut dyn Write) -> Result<()> {
    let group_by = args.group_by;
    let rows = store.usage(&UsageQuery {
        group_by,
        from: args.from,
        to: args.to,
    })?;
    match args.format.as_str() {
        "json" => print_json(w, &usage::to_json(group_by, &rows)),
        "csv" => Ok(w.write_all(usage::to_csv(group_by, &rows).as_bytes())?),
        "table" => {
            let line = |group: String, [a, b, c, d, e, f, g, h]: [String; 8]| {
                [group, a, b, c, d, e, f, g, h]
            };
            let header = line(
                group_by.as_str().to_uppercase(),
                COLUMNS.map(str::to_uppercase),
            );
            let mut table = vec![header];
            table.extend(rows.iter().map(|r| {
                let mut cells = r.totals.cells();
                cells[5] = format!("{:.6}", r.totals.cost_usd);
                line(or_dash(r.group.as_deref()), cells)
            }));
            write_table(w, &table)
        }
        other => bail!("--format must be table, csv or json, got {other:?}"),
    }
}

fn show_budget(w: &mut dyn Write, b: &Budget, out: &Output) -> Result<()> {
    if out.json {
        return print_json(w, b);
    }
    write_fields(
        w,
        &[
            ("id", b.id.clone()),
            ("scope", format!("{} {}", b.scope, b.scope_id)),
            (
                "limit",
                format!("{} {} ({})", amount(b.kind, b.limit), b.kind, b.period),
            ),
            ("mode", b.mode.to_string()),
            ("used", amount(b.kind, b.used)),
            ("reserved", amount(b.kind, b.reserved)),
            ("resets", or_dash(b.resets_at.map(format_time).as_deref())),
        ],
    )
}

fn write_prices(w: &mut dyn Write, prices: &[PriceEntry]) -> Result<()> {
    let mut rows = vec![["MODEL", "INPUT", "OUTPUT", "CACHED_INPUT", "SOURCE"].map(String::from)];
    rows.extend(prices.iter().map(|p| {
        [
            p.model.clone(),
            p.input.to_string(),
            p.output.to_string(),
            p.cached_input.to_string(),
            p.source.to_string(),
        ]
    }));
    writeln!(w, "USD per 1M tokens")?;
    write_table(w, &rows)
}

fn amount(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Spend => format!("{v:.4}"),
        Kind::Tokens | Kind::Requests => v.to_string(),
    }
}
