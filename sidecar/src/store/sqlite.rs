//! SQLite backend (WAL mode).
//!
//! One writer connection serializes writes (SQLite allows a single writer
//! anyway) while a few read-only connections serve lookups, so the authorize
//! hot path never queues behind a write.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql, TransactionBehavior};
use tracing::{info, warn};

use super::sql::{Dialect, Param, Row, Tx, Value};
use crate::error::{Error, Result};

const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 64;

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
    // Reservations become one row per budget hold with its own expiry (so
    // expiry needs no sweep: expired holds simply stop counting), daily
    // tallies gain model and user scopes and the counters reports need
    // (rebuilt from the ledger), and operator prices get a table.
    r#"
DROP TABLE reservations;
ALTER TABLE budget_usage DROP COLUMN reserved;
CREATE TABLE reservation_holds (
    reservation_id TEXT NOT NULL,
    budget_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    amount REAL NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (reservation_id, budget_id)
) STRICT;
CREATE INDEX reservation_holds_budget ON reservation_holds (budget_id, period_start);
CREATE INDEX usage_ledger_ts ON usage_ledger (ts);
DROP TABLE usage_daily;
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('key', 'team', 'user', 'model')),
    scope_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    estimated_requests INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL,
    PRIMARY KEY (day, scope, scope_id)
) STRICT;
INSERT INTO usage_daily
SELECT strftime('%Y-%m-%d', ts, 'unixepoch'), s.scope,
       CASE s.scope WHEN 'key' THEN COALESCE(key_id, '') WHEN 'team' THEN COALESCE(team, '')
                    WHEN 'user' THEN COALESCE(user, '') ELSE model END,
       COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens),
       SUM(cost_usd), SUM(estimated), SUM(1 - priced)
FROM usage_ledger,
     (SELECT 'key' AS scope UNION ALL SELECT 'team' UNION ALL SELECT 'user'
      UNION ALL SELECT 'model') s
GROUP BY 1, 2, 3;
CREATE TABLE prices (
    model TEXT PRIMARY KEY NOT NULL,
    input REAL NOT NULL,
    output REAL NOT NULL,
    cached_input REAL NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
"#,
    // Requests the gateway answered itself (guardrail blocks) are recorded
    // too; every earlier row reached a provider.
    r#"
ALTER TABLE usage_ledger ADD COLUMN forwarded INTEGER NOT NULL DEFAULT 1;
"#,
    // The console: guardrail events tallied per day (rebuilt from the
    // ledger, counts only), and invite links, kept by token hash.
    r#"
CREATE TABLE guardrail_daily (
    day       TEXT NOT NULL,
    guardrail TEXT NOT NULL,
    kind      TEXT NOT NULL,
    direction TEXT NOT NULL,
    action    TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (day, guardrail, kind, direction, action)
) STRICT;
INSERT INTO guardrail_daily
SELECT strftime('%Y-%m-%d', l.ts, 'unixepoch'),
       COALESCE(json_extract(e.value, '$.guardrail'), ''), COALESCE(json_extract(e.value, '$.kind'), ''),
       COALESCE(json_extract(e.value, '$.direction'), ''), COALESCE(json_extract(e.value, '$.action'), ''),
       SUM(COALESCE(json_extract(e.value, '$.count'), 1))
FROM usage_ledger l, json_each(l.guardrail_events) e
GROUP BY 1, 2, 3, 4, 5;
CREATE TABLE invites (
    id          TEXT PRIMARY KEY NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    team        TEXT NOT NULL REFERENCES teams(name),
    user        TEXT NOT NULL,
    models      TEXT NOT NULL DEFAULT '[]',
    key_ttl_s   INTEGER,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    redeemed_at INTEGER,
    key_id      TEXT
) STRICT;
"#,
    // Requests answered from the response cache: no cost, the tokens saved.
    r#"
ALTER TABLE usage_ledger ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0;
"#,
    // The audit log (`audit/log.rs`): append-only entries and checkpoints,
    // and the per-team secrets its body HMACs are under.
    r#"
CREATE TABLE audit_entries (
    seq        INTEGER PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    ts         INTEGER NOT NULL,
    body       TEXT NOT NULL,
    leaf_hash  TEXT NOT NULL
) STRICT;
CREATE INDEX audit_entries_request ON audit_entries (request_id);
CREATE TABLE audit_checkpoints (
    size     INTEGER PRIMARY KEY NOT NULL,
    ts       INTEGER NOT NULL,
    root     TEXT NOT NULL,
    note     TEXT NOT NULL,
    frontier TEXT NOT NULL
) STRICT;
CREATE TABLE audit_pending (
    id         INTEGER PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    ts         INTEGER NOT NULL,
    fields     TEXT NOT NULL
) STRICT;
CREATE TABLE audit_secrets (
    scope      TEXT PRIMARY KEY NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
"#,
];

pub struct Sqlite {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let mut writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.pragma_update(None, "foreign_keys", true)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(journal_mode = %mode, "database did not switch to WAL mode");
        }
        // In WAL mode NORMAL keeps every commit across a crash or kill of the
        // sidecar and skips the fsync per commit (a reserve and a settle per
        // request); only a power loss can drop the last commits.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        // The ledger's statements and the audit log's multi-row ones (a few
        // sizes each) stay prepared together.
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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
        Ok(Sqlite {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        // Round-robin spreads concurrent lookups over the reader connections;
        // the writer is only a fallback should the pool be empty.
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let conn = match self.readers.get(n % READERS) {
            Some(reader) => lock(reader),
            None => lock(&self.writer),
        };
        f(&mut Conn(&conn))
    }

    /// Runs `f` in an IMMEDIATE transaction: taking the write lock up front
    /// avoids the deadlock-prone read-then-upgrade pattern under concurrency.
    pub fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut Conn(&tx))?;
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
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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

/// A connection or transaction (which derefs to one) as a `Tx`.
struct Conn<'c>(&'c Connection);

impl Tx for Conn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(&placeholders(sql))?;
        let changed = stmt.execute(params_from_iter(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(&placeholders(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Real(v) => Value::Real(v),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(_) => {
                            return Err(Error::Decode(format!("column {i} is a blob")))
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }
}

/// `$1` → `?1`: SQLite reads `$1` as a named parameter, numbered by first
/// appearance rather than by its digits.
fn placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    // Every statement passes here: copy the runs between `$`s whole.
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some((before, after)) = rest.split_once('$') {
        out.push_str(before);
        out.push(if after.starts_with(|c: char| c.is_ascii_digit()) {
            '?'
        } else {
            '$'
        });
        rest = after;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(v) => ValueRef::Integer(v),
            Param::Real(v) => ValueRef::Real(v),
            Param::Bool(v) => ValueRef::Integer(i64::from(v)),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_by_number() {
        assert_eq!(
            placeholders("SELECT $2, $1 WHERE a = $10"),
            "SELECT ?2, ?1 WHERE a = ?10"
        );
        assert!(matches!(placeholders("SELECT 1"), Cow::Borrowed(_)));
        assert_eq!(placeholders("SELECT '$x', $3$"), "SELECT '$x', ?3$");
    }
}
