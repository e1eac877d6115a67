//! SQLite-backed store for keys and teams; the only place that speaks SQL.
//!
//! One writer connection serializes writes (SQLite allows a single writer
//! anyway) while a few read-only connections serve lookups, so the authorize
//! hot path never queues behind an admin write in WAL mode. All methods are
//! blocking: async callers run them on `spawn_blocking`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, ToSql, Transaction};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::keys;
use crate::model::{
    unix_now, Authorization, CreatedKey, DenyReason, Grant, KeyRecord, KeyStatus, KeyUpdate,
    NewKey, NewTeam, StatusChange, Team, TeamUpdate,
};

const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry N brings `user_version` from N to N+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE teams (
    name       TEXT PRIMARY KEY NOT NULL,
    models     TEXT NOT NULL DEFAULT '[]',
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE keys (
    id         TEXT PRIMARY KEY NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    name       TEXT,
    team       TEXT REFERENCES teams(name),
    user       TEXT,
    models     TEXT NOT NULL DEFAULT '[]',
    metadata   TEXT NOT NULL DEFAULT '{}',
    status     TEXT NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'inactive', 'revoked')),
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX keys_team ON keys(team);
"#,
    r#"
CREATE TABLE budgets (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('key', 'team', 'user')),
    scope_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('spend', 'tokens', 'requests')),
    lim REAL NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('minute', 'daily', 'weekly', 'monthly', 'lifetime')),
    mode TEXT NOT NULL CHECK (mode IN ('hard', 'tracking')),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX budgets_scope ON budgets (scope, scope_id);
CREATE TABLE budget_usage (
    budget_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    used REAL NOT NULL DEFAULT 0,
    reserved REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, period_start)
) STRICT;
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    holds TEXT NOT NULL
) STRICT;
CREATE TABLE usage_ledger (
    request_id TEXT PRIMARY KEY,
    ts INTEGER NOT NULL,
    key_id TEXT,
    team TEXT,
    user TEXT,
    model TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    provider TEXT NOT NULL,
    api TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    priced INTEGER NOT NULL,
    status INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    guardrail_events TEXT NOT NULL
) STRICT;
CREATE INDEX usage_ledger_key ON usage_ledger (key_id, ts);
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (day, scope, scope_id)
) STRICT;
"#,
];

const KEY_COLUMNS: &str =
    "id, key_prefix, name, team, user, models, metadata, status, expires_at, created_at, updated_at";
const TEAM_COLUMNS: &str = "name, models, metadata, created_at, updated_at";

pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        let mut writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.pragma_update(None, "foreign_keys", true)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(journal_mode = %mode, "database did not switch to WAL mode");
        }
        migrate(&mut writer)?;

        // Read-only connections are opened after migration so they see the schema.
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Store {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// A trivial query that touches the database file, for readiness checks.
    pub fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.prepare_cached("SELECT EXISTS(SELECT 1 FROM keys)")?
                .query_row([], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Looks up a key by hash and decides whether it may be used at `now`.
    pub fn authorize(&self, key_hash: &str, now: i64) -> Result<Authorization> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT k.id, k.team, k.user, k.models, k.status, k.expires_at, t.models
                 FROM keys k LEFT JOIN teams t ON t.name = k.team
                 WHERE k.key_hash = ?1",
            )?;
            let found = stmt
                .query_row([key_hash], |row| {
                    // Decide on status and expiry before decoding anything else,
                    // so refusals cost no allocations.
                    match row.get::<_, KeyStatus>(4)? {
                        KeyStatus::Revoked => {
                            return Ok(Authorization::Denied(DenyReason::Revoked))
                        }
                        KeyStatus::Inactive => {
                            return Ok(Authorization::Denied(DenyReason::Inactive))
                        }
                        KeyStatus::Active => {}
                    }
                    let expires_at: Option<i64> = row.get(5)?;
                    if expires_at.is_some_and(|at| at <= now) {
                        return Ok(Authorization::Denied(DenyReason::Expired));
                    }
                    let team_models: Option<Vec<String>> = match row.get_ref(6)? {
                        ValueRef::Null => None,
                        _ => Some(json_column(row, 6)?),
                    };
                    Ok(Authorization::Granted(Grant {
                        key_id: row.get(0)?,
                        team: row.get(1)?,
                        user: row.get(2)?,
                        models: json_column(row, 3)?,
                        team_models: team_models.unwrap_or_default(),
                        expires_at,
                    }))
                })
                .optional()?;
            Ok(found.unwrap_or(Authorization::Denied(DenyReason::Unknown)))
        })
    }

    pub fn create_key(&self, new: NewKey) -> Result<CreatedKey> {
        let generated = keys::generate_key()?;
        let id = keys::new_key_id()?;
        let now = unix_now();
        let models = serde_json::to_string(&new.models)?;
        let metadata = serde_json::to_string(&new.metadata)?;
        let team_created = self.write(|tx| {
            let created = match &new.team {
                Some(team) => ensure_team(tx, team, now)?,
                None => false,
            };
            tx.execute(
                "INSERT INTO keys (id, key_hash, key_prefix, name, team, user, models, metadata,
                                   status, expires_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                params![
                    id,
                    generated.hash,
                    generated.prefix,
                    new.name,
                    new.team,
                    new.user,
                    models,
                    metadata,
                    KeyStatus::Active,
                    new.expires_at,
                    now,
                ],
            )?;
            Ok(created)
        })?;
        Ok(CreatedKey {
            key: generated.plaintext,
            record: KeyRecord {
                id,
                key_prefix: generated.prefix,
                name: new.name,
                team: new.team,
                user: new.user,
                models: new.models,
                metadata: new.metadata,
                status: KeyStatus::Active,
                expires_at: new.expires_at,
                created_at: now,
                updated_at: now,
            },
            team_created,
        })
    }

    pub fn get_key(&self, id: &str) -> Result<KeyRecord> {
        self.read(|c| load_key(c, id))
    }

    /// All keys in creation order, optionally only those of one team.
    pub fn list_keys(&self, team: Option<&str>) -> Result<Vec<KeyRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE ?1 IS NULL OR team = ?1 ORDER BY created_at, rowid"
            ))?;
            let rows = stmt.query_map([team], key_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Applies a partial update; naming a team that does not exist creates it.
    pub fn update_key(&self, id: &str, update: KeyUpdate) -> Result<KeyRecord> {
        let now = unix_now();
        self.write(|tx| {
            let mut key = load_key(tx, id)?;
            if let Some(team) = update.team {
                if let Some(name) = &team {
                    ensure_team(tx, name, now)?;
                }
                key.team = team;
            }
            if let Some(user) = update.user {
                key.user = user;
            }
            if let Some(name) = update.name {
                key.name = name;
            }
            if let Some(models) = update.models {
                key.models = models;
            }
            if let Some(expires_at) = update.expires_at {
                key.expires_at = expires_at;
            }
            if let Some(metadata) = update.metadata {
                key.metadata = metadata;
            }
            key.updated_at = now;
            tx.execute(
                "UPDATE keys SET team = ?2, user = ?3, name = ?4, models = ?5, expires_at = ?6,
                                 metadata = ?7, updated_at = ?8
                 WHERE id = ?1",
                params![
                    key.id,
                    key.team,
                    key.user,
                    key.name,
                    serde_json::to_string(&key.models)?,
                    key.expires_at,
                    serde_json::to_string(&key.metadata)?,
                    key.updated_at,
                ],
            )?;
            Ok(key)
        })
    }

    /// Revoke (permanent), deactivate (temporary) or re-activate a key.
    /// Repeating a change is a no-op; leaving `revoked` is a conflict.
    pub fn set_key_status(&self, id: &str, change: StatusChange) -> Result<KeyRecord> {
        let now = unix_now();
        self.write(|tx| {
            let mut key = load_key(tx, id)?;
            let target = match (change, key.status) {
                (StatusChange::Revoke, _) => KeyStatus::Revoked,
                (StatusChange::Activate, KeyStatus::Revoked) => {
                    return Err(Error::Conflict(format!(
                        "key {id} is revoked and cannot be activated again; revocation is permanent, create a new key instead"
                    )))
                }
                (StatusChange::Deactivate, KeyStatus::Revoked) => {
                    return Err(Error::Conflict(format!(
                        "key {id} is revoked; revocation is permanent, so it cannot be deactivated"
                    )))
                }
                (StatusChange::Activate, _) => KeyStatus::Active,
                (StatusChange::Deactivate, _) => KeyStatus::Inactive,
            };
            if target != key.status {
                key.status = target;
                key.updated_at = now;
                tx.execute(
                    "UPDATE keys SET status = ?2, updated_at = ?3 WHERE id = ?1",
                    params![key.id, key.status, key.updated_at],
                )?;
            }
            Ok(key)
        })
    }

    pub fn create_team(&self, new: NewTeam) -> Result<Team> {
        let now = unix_now();
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO teams (name, models, metadata, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
                params![
                    new.name,
                    serde_json::to_string(&new.models)?,
                    serde_json::to_string(&new.metadata)?,
                    now,
                ],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("team {} already exists", new.name)));
            }
            Ok(())
        })?;
        Ok(Team {
            name: new.name,
            models: new.models,
            metadata: new.metadata,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn get_team(&self, name: &str) -> Result<Team> {
        self.read(|c| load_team(c, name))
    }

    pub fn list_teams(&self) -> Result<Vec<Team>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY name"))?;
            let rows = stmt.query_map([], team_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn update_team(&self, name: &str, update: TeamUpdate) -> Result<Team> {
        let now = unix_now();
        self.write(|tx| {
            let mut team = load_team(tx, name)?;
            if let Some(models) = update.models {
                team.models = models;
            }
            if let Some(metadata) = update.metadata {
                team.metadata = metadata;
            }
            team.updated_at = now;
            tx.execute(
                "UPDATE teams SET models = ?2, metadata = ?3, updated_at = ?4 WHERE name = ?1",
                params![
                    team.name,
                    serde_json::to_string(&team.models)?,
                    serde_json::to_string(&team.metadata)?,
                    team.updated_at,
                ],
            )?;
            Ok(team)
        })
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        // Round-robin spreads concurrent lookups over the reader connections;
        // the writer is only a fallback should the pool be empty.
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed);
        match self.readers.get(n % READERS) {
            Some(reader) => f(&lock(reader)),
            None => f(&lock(&self.writer)),
        }
    }

    /// Runs `f` in an IMMEDIATE transaction: taking the write lock up front
    /// avoids the deadlock-prone read-then-upgrade pattern under concurrency.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// A panic while a connection was locked cannot leave half-applied writes
/// (an uncommitted transaction rolls back on drop), so poisoning is ignored.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if current > latest {
        return Err(Error::Schema(format!(
            "database schema version {current} is newer than this tollgate-sidecar supports ({latest}); upgrade tollgate-sidecar"
        )));
    }
    for sql in MIGRATIONS
        .iter()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
    }
    if current < latest {
        tx.pragma_update(None, "user_version", latest)?;
        info!(from = current, to = latest, "database schema migrated");
    }
    tx.commit()?;
    Ok(())
}

/// Creates `name` with no model restriction unless it exists; true if created.
fn ensure_team(tx: &Transaction<'_>, name: &str, now: i64) -> Result<bool> {
    let created = tx.execute(
        "INSERT INTO teams (name, models, metadata, created_at, updated_at)
         VALUES (?1, '[]', '{}', ?2, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now],
    )? == 1;
    if created {
        info!(team = %name, "team auto-created for key (no model restriction)");
    }
    Ok(created)
}

fn load_key(c: &Connection, id: &str) -> Result<KeyRecord> {
    c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1"))?
        .query_row([id], key_from_row)
        .optional()?
        .ok_or_else(|| Error::key_not_found(id))
}

fn load_team(c: &Connection, name: &str) -> Result<Team> {
    c.prepare_cached(&format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name = ?1"))?
        .query_row([name], team_from_row)
        .optional()?
        .ok_or_else(|| Error::team_not_found(name))
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.get(0)?,
        key_prefix: row.get(1)?,
        name: row.get(2)?,
        team: row.get(3)?,
        user: row.get(4)?,
        models: json_column(row, 5)?,
        metadata: json_column(row, 6)?,
        status: row.get(7)?,
        expires_at: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

fn team_from_row(row: &Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        name: row.get(0)?,
        models: json_column(row, 1)?,
        metadata: json_column(row, 2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

/// Decodes a JSON-encoded TEXT column without copying it first.
fn json_column<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let conversion = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, e)
    };
    let text = row
        .get_ref(idx)?
        .as_str()
        .map_err(|e| conversion(Box::new(e)))?;
    serde_json::from_str(text).map_err(|e| conversion(Box::new(e)))
}

impl ToSql for KeyStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for KeyStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}
