//! Command-line interface. Commands other than `serve` work directly on the
//! database through the same `Store` and validation as the HTTP API, so no
//! server needs to be running. Budgets, prices and usage are in `billing.rs`;
//! the audit log's commands in `audit.rs`.

mod audit;
mod billing;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

pub use audit::{run_audit, AuditArgs, AuditCommand, AuditKeyArg};
pub use billing::{run_budgets, run_prices, run_usage, BudgetsCommand, PricesCommand, UsageArgs};

use crate::model::{
    CreateKeyRequest, CreateTeamRequest, KeyList, KeyRecord, StatusChange, Team, TeamList,
    UpdateKeyRequest, UpdateTeamRequest,
};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate-sidecar",
    version,
    about = "Tollgate sidecar: keys, teams, budgets and the usage ledger for the Tollgate Envoy filter"
)]
pub struct Cli {
    /// SQLite database file (created if missing), or a PostgreSQL URL
    /// (postgres://user:password@host:port/dbname)
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_DB",
        hide_env_values = true,
        default_value = "tollgate.db"
    )]
    pub db: String,
    /// The gateway's configuration (envoy/gateway.yaml, an Istio manifest,
    /// or the filter's JSON): team and key model lists are then checked
    /// against its residency pins, and `serve` does not start while a
    /// pinned team's models leave it nothing in its regions
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_GATEWAY_CONFIG",
        value_name = "FILE"
    )]
    pub gateway_config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the filter's endpoints, health probes, admin API)
    Serve(ServeArgs),
    /// Manage virtual keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage teams
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Manage budgets and rate limits
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// Manage model prices (USD per 1M tokens)
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Usage totals per key, team, user, model or day
    Usage(UsageArgs),
    /// The verifiable audit log: verify, prove, export, sign, HMAC secrets
    Audit(AuditArgs),
    /// Data residency: check teams and keys against the gateway's pins
    #[command(subcommand)]
    Residency(ResidencyCommand),
}

#[derive(Debug, Subcommand)]
pub enum ResidencyCommand {
    /// List the pinned teams and keys whose models leave them no model
    /// served in their regions (needs --gateway-config; exit status 1 if
    /// there are any)
    Check,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,
    /// Master key for the admin API (prefer the env var: flags show up in `ps`)
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Environment variable holding the service token: the Envoy filter's
    /// /v1/* calls must send it as `Authorization: Bearer <token>` (at least
    /// 32 characters, not the master key; Envoy needs the same variable)
    #[arg(long, value_name = "NAME", default_value = "TOLLGATE_SERVICE_TOKEN")]
    pub service_token_env: String,
    /// Let `POST /admin/clock` move the sidecar's time (for tests only)
    #[arg(long)]
    pub test_clock: bool,
    /// How long the filter may use a budget lease (/v1/lease), in seconds;
    /// a lease never outlasts the period of a budget it covers
    #[arg(
        long,
        env = "TOLLGATE_LEASE_TTL_S",
        value_name = "SECONDS",
        default_value_t = crate::leases::DEFAULT_LEASE_TTL_S,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub lease_ttl_s: i64,
    /// Memory for the response cache's answers, in bytes (0: keep none)
    #[arg(
        long,
        env = "TOLLGATE_CACHE_MAX_BYTES",
        value_name = "BYTES",
        default_value_t = crate::answer_cache::DEFAULT_MAX_BYTES
    )]
    pub cache_max_bytes: u64,
    /// The verifiable audit log: on, or off (no entries for settled
    /// requests or leases, no checkpoints; for measuring what it costs)
    #[arg(
        long,
        env = "TOLLGATE_AUDIT_LOG",
        value_name = "on|off",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub audit_log: bool,
    #[command(flatten)]
    pub audit_key: AuditKeyArg,
    /// How often to sign an audit checkpoint when the log grew (also one
    /// at shutdown), such as 60s or 5m
    #[arg(
        long,
        env = "TOLLGATE_AUDIT_CHECKPOINT_INTERVAL",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_interval
    )]
    pub audit_checkpoint_interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than 0s".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key itself is printed once and never again
    Create {
        /// Team to attach the key to (created if it does not exist)
        #[arg(long)]
        team: Option<String>,
        /// Comma-separated model glob patterns, e.g. 'gpt-4o*,claude-*' (default: all models)
        #[arg(long)]
        models: Option<String>,
        /// Owner user id
        #[arg(long)]
        user: Option<String>,
        /// Human-readable label
        #[arg(long)]
        name: Option<String>,
        /// Lifetime such as 30d, 12h, 45m or 3600s
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Absolute expiry in unix seconds
        #[arg(long)]
        expires_at: Option<i64>,
        /// JSON object, e.g. '{"cost_center":"r&d"}'
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List keys
    List {
        /// Only keys of this team
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Show one key
    Show {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a key permanently
    Revoke {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Re-activate an inactive key (revoked keys cannot be re-activated)
    Activate {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Temporarily disable a key
    Deactivate {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Change a key's settings
    Update {
        id: String,
        /// Move the key to this team (created if it does not exist)
        #[arg(long)]
        team: Option<String>,
        /// Comma-separated model glob patterns; '' allows all models
        #[arg(long)]
        models: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// New lifetime counted from now, such as 30d, 12h, 45m or 3600s
        #[arg(long, conflicts_with_all = ["expires_at", "no_expiry"])]
        expires_in: Option<String>,
        /// New absolute expiry in unix seconds
        #[arg(long, conflicts_with = "no_expiry")]
        expires_at: Option<i64>,
        /// Remove the expiry
        #[arg(long)]
        no_expiry: bool,
        /// Replacement metadata JSON object
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Create a team
    Create {
        name: String,
        /// Comma-separated model glob patterns (default: all models)
        #[arg(long)]
        models: Option<String>,
        /// JSON object
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List teams
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Show one team
    Show {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Change a team's models or metadata
    Update {
        name: String,
        /// Comma-separated model glob patterns; '' allows all models
        #[arg(long)]
        models: Option<String>,
        /// Replacement metadata JSON object
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON (one line, same shape as the admin API) instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run_keys(store: &Store, cmd: KeysCommand, w: &mut dyn Write) -> Result<()> {
    match cmd {
        KeysCommand::Create {
            team,
            models,
            user,
            name,
            expires_in,
            expires_at,
            metadata,
            out,
        } => {
            let req = CreateKeyRequest {
                team,
                user,
                name,
                models: models.as_deref().map(split_models),
                expires_at,
                expires_in,
                metadata: metadata.as_deref().map(parse_metadata).transpose()?,
            };
            let created = store.create_key(req.validate(store.clock().now())?)?;
            if out.json {
                return print_json(w, &created);
            }
            if let (true, Some(team)) = (created.team_created, &created.record.team) {
                writeln!(
                    w,
                    "Team {team} did not exist; created it with no model restriction."
                )?;
            }
            write_key(w, &created.record)?;
            writeln!(w, "\nkey: {}\n", created.key)?;
            writeln!(
                w,
                "Save this key now: it will not be shown again (only its hash is stored)."
            )?;
            Ok(())
        }
        KeysCommand::List { team, out } => {
            let keys = store.list_keys(team.as_deref())?;
            if out.json {
                return print_json(w, &KeyList { keys: &keys });
            }
            let mut rows = vec![[
                "ID", "PREFIX", "STATUS", "TEAM", "USER", "NAME", "MODELS", "EXPIRES",
            ]
            .map(String::from)];
            rows.extend(keys.iter().map(|k| {
                [
                    k.id.clone(),
                    k.key_prefix.clone(),
                    k.status.to_string(),
                    or_dash(k.team.as_deref()),
                    or_dash(k.user.as_deref()),
                    or_dash(k.name.as_deref()),
                    models_text(&k.models),
                    k.expires_at.map_or_else(|| "never".to_owned(), format_time),
                ]
            }));
            write_table(w, &rows)
        }
        KeysCommand::Show { id, out } => show_key(w, &store.get_key(&id)?, out),
        KeysCommand::Revoke { id, out } => {
            show_key(w, &store.set_key_status(&id, StatusChange::Revoke)?, out)
        }
        KeysCommand::Activate { id, out } => {
            show_key(w, &store.set_key_status(&id, StatusChange::Activate)?, out)
        }
        KeysCommand::Deactivate { id, out } => show_key(
            w,
            &store.set_key_status(&id, StatusChange::Deactivate)?,
            out,
        ),
        KeysCommand::Update {
            id,
            team,
            models,
            user,
            name,
            expires_in,
            expires_at,
            no_expiry,
            metadata,
            out,
        } => {
            let req = UpdateKeyRequest {
                team: team.map(Some),
                user: user.map(Some),
                name: name.map(Some),
                models: models.as_deref().map(split_models),
                expires_at: if no_expiry {
                    Some(None)
                } else {
                    expires_at.map(Some)
                },
                expires_in,
                metadata: metadata.as_deref().map(parse_metadata).transpose()?,
            };
            show_key(
                w,
                &store.update_key(&id, req.validate(store.clock().now())?)?,
                out,
            )
        }
    }
}

pub fn run_residency(store: &Store, cmd: ResidencyCommand, w: &mut dyn Write) -> Result<()> {
    match cmd {
        ResidencyCommand::Check => {
            if !store.has_pins() {
                bail!("give the gateway's configuration with --gateway-config (or TOLLGATE_GATEWAY_CONFIG)");
            }
            let problems = store.residency_problems()?;
            for p in &problems {
                writeln!(w, "{p}")?;
            }
            if !problems.is_empty() {
                bail!(
                    "{} pinned team or key model list(s) leave no model in their regions",
                    problems.len()
                );
            }
            writeln!(
                w,
                "OK: every pinned team and key has a model served in its regions"
            )?;
            Ok(())
        }
    }
}

pub fn run_teams(store: &Store, cmd: TeamsCommand, w: &mut dyn Write) -> Result<()> {
    match cmd {
        TeamsCommand::Create {
            name,
            models,
            metadata,
            out,
        } => {
            let req = CreateTeamRequest {
                name,
                models: models.as_deref().map(split_models),
                metadata: metadata.as_deref().map(parse_metadata).transpose()?,
            };
            show_team(w, &store.create_team(req.validate()?)?, out)
        }
        TeamsCommand::List { out } => {
            let teams = store.list_teams()?;
            if out.json {
                return print_json(w, &TeamList { teams: &teams });
            }
            let mut rows = vec![["NAME", "MODELS", "METADATA", "CREATED"].map(String::from)];
            rows.extend(teams.iter().map(|t| {
                [
                    t.name.clone(),
                    models_text(&t.models),
                    Value::Object(t.metadata.clone()).to_string(),
                    format_time(t.created_at),
                ]
            }));
            write_table(w, &rows)
        }
        TeamsCommand::Show { name, out } => show_team(w, &store.get_team(&name)?, out),
        TeamsCommand::Update {
            name,
            models,
            metadata,
            out,
        } => {
            let req = UpdateTeamRequest {
                models: models.as_deref().map(split_models),
                metadata: metadata.as_deref().map(parse_metadata).transpose()?,
            };
            show_team(w, &store.update_team(&name, req.validate()?)?, out)
        }
    }
}

/// `'gpt-4o*, claude-*'` → `["gpt-4o*", "claude-*"]`; an empty string means
/// no restriction.
fn split_models(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect()
}

fn parse_metadata(s: &str) -> Result<Value> {
    serde_json::from_str(s).context("--metadata must be a JSON object, e.g. '{\"k\":\"v\"}'")
}

pub(crate) fn print_json(w: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *w, value)?;
    writeln!(w)?;
    Ok(())
}

fn show_key(w: &mut dyn Write, key: &KeyRecord, out: Output) -> Result<()> {
    if out.json {
        print_json(w, key)
    } else {
        write_key(w, key)
    }
}

fn write_key(w: &mut dyn Write, k: &KeyRecord) -> Result<()> {
    let expires = k.expires_at.map_or_else(
        || "never".to_owned(),
        |at| format!("{} ({at})", format_time(at)),
    );
    write_fields(
        w,
        &[
            ("id", k.id.clone()),
            ("prefix", k.key_prefix.clone()),
            ("status", k.status.to_string()),
            ("name", or_dash(k.name.as_deref())),
            ("team", or_dash(k.team.as_deref())),
            ("user", or_dash(k.user.as_deref())),
            ("models", models_text(&k.models)),
            ("expires", expires),
            ("metadata", Value::Object(k.metadata.clone()).to_string()),
            ("created", format_time(k.created_at)),
            ("updated", format_time(k.updated_at)),
        ],
    )
}

fn show_team(w: &mut dyn Write, t: &Team, out: Output) -> Result<()> {
    if out.json {
        return print_json(w, t);
    }
    write_fields(
        w,
        &[
            ("name", t.name.clone()),
            ("models", models_text(&t.models)),
            ("metadata", Value::Object(t.metadata.clone()).to_string()),
            ("created", format_time(t.created_at)),
            ("updated", format_time(t.updated_at)),
        ],
    )
}

pub(crate) fn write_fields(w: &mut dyn Write, fields: &[(&str, String)]) -> Result<()> {
    for (label, value) in fields {
        writeln!(w, "{label:<9} {value}")?;
    }
    Ok(())
}

/// Left-aligned columns sized to their widest cell.
pub(crate) fn write_table<const N: usize>(w: &mut dyn Write, rows: &[[String; N]]) -> Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

fn models_text(models: &[String]) -> String {
    if models.is_empty() {
        "(all)".to_owned()
    } else {
        models.join(",")
    }
}

pub(crate) fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_owned()
}

pub(crate) fn format_time(unix: i64) -> String {
    let secs = u64::try_from(unix).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}
