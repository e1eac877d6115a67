//! PostgreSQL backend: a small pool of synchronous connections (the store is
//! blocking by design), prepared statements cached per connection.
//!
//! Transactions run at READ COMMITTED; writes that must not race lock the
//! rows they read (`FOR UPDATE`, see `budgets.rs`). A transaction that still
//! fails with a serialization failure or a deadlock is retried.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};
use tracing::{info, warn};

use super::sql::{Dialect, Param, Row, Tx, Value};
use crate::error::{Error, Result};

/// Connections opened at most; callers beyond wait for a free one.
const POOL_SIZE: usize = 8;
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: usize = 5;
/// Serializes concurrent migrations from sidecars starting together.
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// Schema migrations; entry N brings `schema_version` from N to N+1. The
/// first is the SQLite schema as of its migration 3, in PostgreSQL types;
/// entry N > 0 matches SQLite's migration N + 3.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE teams (
    name       TEXT PRIMARY KEY,
    models     TEXT NOT NULL DEFAULT '[]',
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE keys (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    name       TEXT,
    team       TEXT REFERENCES teams(name),
    "user"     TEXT,
    models     TEXT NOT NULL DEFAULT '[]',
    metadata   TEXT NOT NULL DEFAULT '{}',
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'revoked')),
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX keys_team ON keys (team);
CREATE TABLE budgets (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL CHECK (scope IN ('key', 'team', 'user')),
    scope_id   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('spend', 'tokens', 'requests')),
    lim        DOUBLE PRECISION NOT NULL,
    period     TEXT NOT NULL CHECK (period IN ('minute', 'daily', 'weekly', 'monthly', 'lifetime')),
    mode       TEXT NOT NULL CHECK (mode IN ('hard', 'tracking')),
    created_at BIGINT NOT NULL
);
CREATE INDEX budgets_scope ON budgets (scope, scope_id);
CREATE TABLE budget_usage (
    budget_id    TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    used         DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, period_start)
);
CREATE TABLE reservation_holds (
    reservation_id TEXT NOT NULL,
    budget_id      TEXT NOT NULL,
    period_start   BIGINT NOT NULL,
    amount         DOUBLE PRECISION NOT NULL,
    expires_at     BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, budget_id)
);
CREATE INDEX reservation_holds_budget ON reservation_holds (budget_id, period_start);
CREATE TABLE usage_ledger (
    request_id       TEXT PRIMARY KEY,
    ts               BIGINT NOT NULL,
    key_id           TEXT,
    team             TEXT,
    "user"           TEXT,
    model            TEXT NOT NULL,
    upstream_model   TEXT NOT NULL,
    provider         TEXT NOT NULL,
    api              TEXT NOT NULL,
    input_tokens     BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    cached_tokens    BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd         DOUBLE PRECISION NOT NULL,
    priced           BOOLEAN NOT NULL,
    status           BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    estimated        BOOLEAN NOT NULL,
    stream           BOOLEAN NOT NULL,
    guardrail_events TEXT NOT NULL
);
CREATE INDEX usage_ledger_key ON usage_ledger (key_id, ts);
CREATE INDEX usage_ledger_ts ON usage_ledger (ts);
CREATE TABLE usage_daily (
    day                TEXT NOT NULL,
    scope              TEXT NOT NULL CHECK (scope IN ('key', 'team', 'user', 'model')),
    scope_id           TEXT NOT NULL,
    requests           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    estimated_requests BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL,
    PRIMARY KEY (day, scope, scope_id)
);
CREATE TABLE prices (
    model        TEXT PRIMARY KEY,
    input        DOUBLE PRECISION NOT NULL,
    output       DOUBLE PRECISION NOT NULL,
    cached_input DOUBLE PRECISION NOT NULL,
    updated_at   BIGINT NOT NULL
);
"#,
    // Requests the gateway answered itself (guardrail blocks) are recorded
    // too; every earlier row reached a provider.
    r#"
ALTER TABLE usage_ledger ADD COLUMN forwarded BOOLEAN NOT NULL DEFAULT TRUE;
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
    count     BIGINT NOT NULL,
    PRIMARY KEY (day, guardrail, kind, direction, action)
);
INSERT INTO guardrail_daily
SELECT to_char(to_timestamp(l.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
       COALESCE(e->>'guardrail', ''), COALESCE(e->>'kind', ''),
       COALESCE(e->>'direction', ''), COALESCE(e->>'action', ''),
       CAST(SUM(COALESCE(CAST(e->>'count' AS BIGINT), 1)) AS BIGINT)
FROM usage_ledger l, json_array_elements(CAST(l.guardrail_events AS JSON)) e
GROUP BY 1, 2, 3, 4, 5;
CREATE TABLE invites (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    team        TEXT NOT NULL REFERENCES teams(name),
    "user"      TEXT NOT NULL,
    models      TEXT NOT NULL DEFAULT '[]',
    key_ttl_s   BIGINT,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    redeemed_at BIGINT,
    key_id      TEXT
);
"#,
    // Requests answered from the response cache: no cost, the tokens saved.
    r#"
ALTER TABLE usage_ledger ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT FALSE;
"#,
    // The audit log (`audit/log.rs`): append-only entries and checkpoints,
    // and the per-team secrets its body HMACs are under.
    r#"
CREATE TABLE audit_entries (
    seq        BIGINT PRIMARY KEY,
    kind       TEXT NOT NULL,
    request_id TEXT,
    ts         BIGINT NOT NULL,
    body       TEXT NOT NULL,
    leaf_hash  TEXT NOT NULL
);
CREATE INDEX audit_entries_request ON audit_entries (request_id);
CREATE TABLE audit_checkpoints (
    size     BIGINT PRIMARY KEY,
    ts       BIGINT NOT NULL,
    root     TEXT NOT NULL,
    note     TEXT NOT NULL,
    frontier TEXT NOT NULL
);
CREATE TABLE audit_pending (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT NOT NULL,
    request_id TEXT,
    ts         BIGINT NOT NULL,
    fields     TEXT NOT NULL
);
CREATE TABLE audit_secrets (
    scope      TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
];

pub struct Postgres {
    config: Config,
    pool: Mutex<Pool>,
    freed: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    open: usize,
}

impl Postgres {
    pub fn open(url: &str) -> Result<Postgres> {
        let mut config = Config::from_str(url)
            .map_err(|e| Error::invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("tollgate-sidecar");
        let db = Postgres {
            config,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
        };
        db.checkout()?.conn()?.migrate()?;
        Ok(db)
    }

    pub fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        f(self.checkout()?.conn()?).map_err(lost_connection)
    }

    pub fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match self.checkout()?.conn()?.transaction(|c| f(c)) {
                Err(Error::Postgres(e)) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    warn!(attempt, error = %e, "transaction conflict; retrying");
                    attempt += 1;
                }
                other => return other.map_err(lost_connection),
            }
        }
    }

    fn checkout(&self) -> Result<Pooled<'_>> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(conn) = pool.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(Pooled {
                        db: self,
                        conn: Some(conn),
                    });
                }
                pool.open -= 1;
                continue;
            }
            if pool.open < POOL_SIZE {
                pool.open += 1;
                drop(pool);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Pooled {
                        db: self,
                        conn: Some(Conn {
                            client,
                            statements: HashMap::new(),
                            in_transaction: false,
                        }),
                    }),
                    Err(e) => {
                        lock(&self.pool).open -= 1;
                        self.freed.notify_one();
                        Err(Error::Unavailable(format!(
                            "cannot connect to PostgreSQL: {e}"
                        )))
                    }
                };
            }
            let (guard, wait) = self
                .freed
                .wait_timeout(pool, CHECKOUT_TIMEOUT)
                .unwrap_or_else(PoisonError::into_inner);
            pool = guard;
            if wait.timed_out() && pool.idle.is_empty() && pool.open >= POOL_SIZE {
                return Err(Error::Unavailable(format!(
                    "all {POOL_SIZE} PostgreSQL connections stayed busy for {}s",
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
        }
    }
}

impl Drop for Postgres {
    /// Each connection owns a small tokio runtime, and tokio refuses to drop
    /// a runtime on an async worker thread, where the last `Arc<Store>` of a
    /// server may well go. So the connections are closed on a thread of
    /// their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut lock(&self.pool).idle);
        if !idle.is_empty() {
            let closing = std::thread::spawn(move || drop(idle));
            if closing.join().is_err() {
                warn!("closing PostgreSQL connections failed");
            }
        }
    }
}

fn lock(m: &Mutex<Pool>) -> MutexGuard<'_, Pool> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A dropped connection is an outage (503), not a bug (500). It is not
/// retried: a COMMIT may have reached the server before the connection died.
fn lost_connection(e: Error) -> Error {
    match e {
        Error::Postgres(e) if e.is_closed() => {
            Error::Unavailable(format!("lost the PostgreSQL connection: {e}"))
        }
        other => other,
    }
}

fn retryable(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// A checked-out connection; goes back to the pool on drop unless broken.
struct Pooled<'a> {
    db: &'a Postgres,
    conn: Option<Conn>,
}

impl Pooled<'_> {
    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Unavailable("connection already returned to the pool".into()))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut pool = lock(&self.db.pool);
        if conn.client.is_closed() || conn.in_transaction {
            pool.open -= 1;
        } else {
            pool.idle.push(conn);
        }
        drop(pool);
        self.db.freed.notify_one();
    }
}

struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Set while a transaction is open; a connection dropped in that state
    /// (its rollback failed) is discarded rather than reused.
    in_transaction: bool,
}

impl Conn {
    /// Runs `f` between BEGIN and COMMIT, rolling back if it fails.
    fn transaction<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.client.batch_execute("BEGIN")?;
        self.in_transaction = true;
        match f(self) {
            Ok(v) => {
                self.client.batch_execute("COMMIT")?;
                self.in_transaction = false;
                Ok(v)
            }
            Err(e) => {
                if self.client.batch_execute("ROLLBACK").is_ok() {
                    self.in_transaction = false;
                }
                Err(e)
            }
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let latest = MIGRATIONS.len() as i64;
        let current = self.transaction(|c| {
            // Sidecars starting together migrate one after the other.
            c.client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            c.client.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            )?;
            let row = c
                .client
                .query_opt("SELECT version FROM schema_version", &[])?;
            let current: i64 = match row {
                Some(row) => row.try_get(0)?,
                None => {
                    c.client
                        .execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
                    0
                }
            };
            if current > latest {
                return Err(Error::Schema(format!(
                    "database schema version {current} is newer than this tollgate-sidecar \
                     supports ({latest}); upgrade tollgate-sidecar"
                )));
            }
            for sql in MIGRATIONS
                .iter()
                .skip(usize::try_from(current).unwrap_or(0))
            {
                c.client.batch_execute(sql)?;
            }
            c.client
                .execute("UPDATE schema_version SET version = $1", &[&latest])?;
            Ok(current)
        })?;
        if current < latest {
            info!(from = current, to = latest, "database schema migrated");
        }
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

impl Tx for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(self.client.execute(&stmt, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        self.client
            .query(&stmt, &refs)?
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| decode(row, i))
                    .collect::<Result<_>>()
                    .map(Row)
            })
            .collect()
    }
}

fn decode(row: &postgres::Row, i: usize) -> Result<Value> {
    let ty = row
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| Error::Decode(format!("no column {i}")))?;
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
    Ok(if ty == Type::INT8 {
        int(row.try_get(i)?)
    } else if ty == Type::INT4 {
        int(row.try_get::<_, Option<i32>>(i)?.map(i64::from))
    } else if ty == Type::INT2 {
        int(row.try_get::<_, Option<i16>>(i)?.map(i64::from))
    } else if ty == Type::BOOL {
        int(row.try_get::<_, Option<bool>>(i)?.map(i64::from))
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real)
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)?
            .map_or(Value::Null, |v| Value::Real(f64::from(v)))
    } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(&ty) {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    } else {
        return Err(Error::Decode(format!(
            "column {i} has type {ty}, which the store does not read"
        )));
    })
}

/// Binds by the type PostgreSQL inferred for the placeholder, so one
/// parameter type serves BIGINT, INTEGER, BOOLEAN and DOUBLE PRECISION columns.
impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let int = |v: i64, out: &mut BytesMut| {
            if *ty == Type::INT8 {
                v.to_sql(ty, out)
            } else if *ty == Type::INT4 {
                i32::try_from(v)?.to_sql(ty, out)
            } else if *ty == Type::INT2 {
                i16::try_from(v)?.to_sql(ty, out)
            } else if *ty == Type::FLOAT8 {
                (v as f64).to_sql(ty, out)
            } else if *ty == Type::BOOL {
                (v != 0).to_sql(ty, out)
            } else {
                Err(format!("cannot bind an integer to a {ty} parameter").into())
            }
        };
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => int(v, out),
            Param::Bool(v) if *ty == Type::BOOL => v.to_sql(ty, out),
            Param::Bool(v) => int(i64::from(v), out),
            Param::Real(v) if *ty == Type::FLOAT4 => (v as f32).to_sql(ty, out),
            Param::Real(v) => v.to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
