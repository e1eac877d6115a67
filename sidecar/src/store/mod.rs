//! Storage: SQLite (a file, WAL mode) or PostgreSQL (a `postgres://` URL),
//! behind one `Store`. Statements are written once in the SQL both share
//! (`sql.rs`); each backend supplies connections, transactions and its
//! schema. All methods are blocking: async callers use `spawn_blocking`.
//!
//! Every write runs in one transaction that serializes with other writers
//! where it matters: SQLite takes the database write lock up front
//! (`BEGIN IMMEDIATE`); on PostgreSQL, writes that read-then-update budgets
//! lock the budget rows (`SELECT ... FOR UPDATE`) in id order first, which
//! also keeps concurrent transactions from deadlocking.

mod invites;
mod keys_teams;
mod postgres;
pub mod sql;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

pub use invites::INVITE_PREFIX;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::leases::DEFAULT_LEASE_TTL_S;
use crate::notices::Notices;
use crate::residency::Pins;
use sql::Tx;

pub struct Store {
    backend: Backend,
    clock: Arc<Clock>,
    notices: Notices,
    /// How long a budget lease may be used, at most (`leases.rs`).
    lease_ttl_s: i64,
    /// The gateway's residency pins, when known: team and key model lists
    /// are checked against them (`residency.rs`).
    pins: Option<Arc<Pins>>,
    /// Whether settles and lease calls write the audit log (`audit/`).
    audit_log: bool,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens `db` and brings its schema up to date: a `postgres://` or
    /// `postgresql://` URL selects PostgreSQL, anything else is a SQLite file
    /// (created if missing).
    pub fn open(db: &str, clock: Arc<Clock>) -> Result<Store> {
        let backend = if is_postgres_url(db) {
            Backend::Postgres(postgres::Postgres::open(db)?)
        } else {
            Backend::Sqlite(sqlite::Sqlite::open(Path::new(db))?)
        };
        Ok(Store {
            backend,
            clock,
            notices: Notices::default(),
            lease_ttl_s: DEFAULT_LEASE_TTL_S,
            pins: None,
            audit_log: true,
        })
    }

    pub fn has_pins(&self) -> bool {
        self.pins.is_some()
    }

    /// Checks team and key model lists against the gateway's pins from now on.
    pub fn with_pins(mut self, pins: Arc<Pins>) -> Store {
        self.pins = Some(pins);
        self
    }

    /// Sets how long a budget lease may be used (seconds, at least 1;
    /// `serve --lease-ttl-s`).
    pub fn with_lease_ttl_s(mut self, ttl_s: i64) -> Result<Store> {
        if ttl_s < 1 {
            return Err(Error::invalid(format!(
                "the lease TTL must be at least 1 second, got {ttl_s}"
            )));
        }
        self.lease_ttl_s = ttl_s;
        Ok(self)
    }

    pub fn lease_ttl_s(&self) -> i64 {
        self.lease_ttl_s
    }

    /// Turns the audit log on (the default) or off (`serve --audit-log`):
    /// off, settles append no entries and lease calls queue none, so the
    /// log holds nothing this store settled or leased.
    pub fn with_audit_log(mut self, on: bool) -> Store {
        self.audit_log = on;
        self
    }

    pub fn audit_log(&self) -> bool {
        self.audit_log
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub(crate) fn notices(&self) -> &Notices {
        &self.notices
    }

    /// A trivial query that reaches the database, for readiness checks.
    pub fn ping(&self) -> Result<()> {
        self.read(|c| c.query("SELECT 1", &[]).map(drop))
    }

    /// Runs `f` on a connection without a transaction (each statement on
    /// its own), for lookups.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(db) => db.read(&mut f),
            Backend::Postgres(db) => db.read(&mut f),
        }
    }

    /// Runs `f` in one write transaction, committed if `f` succeeds. On
    /// PostgreSQL `f` may run again after a serialization failure or a
    /// deadlock, so it must not have effects outside the transaction.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(db) => db.write(&mut f),
            Backend::Postgres(db) => db.write(&mut f),
        }
    }
}

pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `db` fit for logs: a URL's password is masked.
pub fn display_db(db: &str) -> String {
    let Some((scheme, rest)) = db.split_once("://").filter(|_| is_postgres_url(db)) else {
        return db.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => db.to_owned(),
        },
        None => db.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_postgres_and_hide_passwords() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("tollgate.db"));
        assert!(!is_postgres_url("/var/lib/postgres/tollgate.db"));
        assert_eq!(
            display_db("postgres://app:s3cret@db.internal:5432/tollgate"),
            "postgres://app:***@db.internal:5432/tollgate"
        );
        assert_eq!(display_db("postgres://app@h/db"), "postgres://app@h/db");
        assert_eq!(display_db("build/t.db"), "build/t.db");
    }
}
