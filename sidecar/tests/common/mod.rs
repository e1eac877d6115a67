//! Test support: a store on either backend, and a throwaway PostgreSQL
//! server started on first use when PostgreSQL is installed (Debian:
//! `apt-get install postgresql`). Without it, PostgreSQL tests print why
//! and pass as skipped, unless `TOLLGATE_REQUIRE_POSTGRES` is set (CI sets
//! it); with it installed, a server that fails to start fails the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod app;

use std::io::Write;
use std::net::TcpListener;
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tollgate_sidecar::budgets::{Budget, Kind, Mode, NewBudget, Scope};
use tollgate_sidecar::clock::Clock;
use tollgate_sidecar::periods::Period;
use tollgate_sidecar::store::Store;

/// 2026-11-22T12:00:00Z, a Sunday: where manual test clocks start.
pub const T0: i64 = 1_795_348_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `sqlite::name` and `postgres::name` tests calling `name(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::common::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::common::Backend::Postgres) })*
        }
    };
}

/// A database for one test: a SQLite file in a temp dir or a fresh
/// PostgreSQL database on the shared throwaway server.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// `None` (the test then returns early) when PostgreSQL is not installed.
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("t.db").to_string_lossy().into_owned();
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => Some(TestDb {
                url: postgres_server()?.create_database(),
                _dir: None,
            }),
        }
    }

    pub fn sqlite_path(&self) -> &Path {
        Path::new(&self.url)
    }
}

/// A store on a manual clock starting at `T0`.
pub struct TestStore {
    pub store: Arc<Store>,
    pub clock: Arc<Clock>,
    pub db: TestDb,
}

impl TestStore {
    pub fn open(backend: Backend) -> Option<TestStore> {
        let db = TestDb::new(backend)?;
        let clock = Arc::new(Clock::manual(T0));
        let store = Arc::new(Store::open(&db.url, Arc::clone(&clock)).unwrap());
        Some(TestStore { store, clock, db })
    }

    /// Another store on the same database and clock (a restart, or a second sidecar).
    pub fn reopen(&self) -> Store {
        Store::open(&self.db.url, Arc::clone(&self.clock)).unwrap()
    }
}

impl Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub struct PgServer {
    port: u16,
    databases: AtomicUsize,
    /// A shell that stops the server and removes its directory when its
    /// stdin closes, i.e. when this test process exits, however it exits.
    _keeper: Child,
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();

/// The shared server, started on first use; `None` if PostgreSQL is not installed.
pub fn postgres_server() -> Option<&'static PgServer> {
    SERVER
        .get_or_init(|| match postgres_bin_dir() {
            Some(bin) => Some(PgServer::start(&bin).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is installed ({}) but a throwaway server did not start: {e}",
                    bin.display()
                )
            })),
            None if std::env::var_os("TOLLGATE_REQUIRE_POSTGRES").is_some() => panic!(
                "TOLLGATE_REQUIRE_POSTGRES is set but PostgreSQL is not installed \
                 (apt-get install postgresql)"
            ),
            None => {
                eprintln!(
                    "SKIPPED PostgreSQL tests: PostgreSQL is not installed \
                     (no /usr/lib/postgresql/*/bin/initdb or initdb on PATH; \
                     apt-get install postgresql)"
                );
                None
            }
        })
        .as_ref()
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("postgres").exists())
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `program` as the `postgres` user when we are root (initdb refuses root).
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    fn start(bin: &Path) -> Result<PgServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        if running_as_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?
                .success();
            if !ok {
                return Err(format!("chown postgres {} failed", dir.display()));
            }
        }
        let data = dir.join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The unix socket goes to the temp dir too, so nothing outside it is touched.
        let port = free_port();
        let script = format!(
            "'{postgres}' -D '{data}' -k '{dir}' -h 127.0.0.1 -p {port} \
               -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
               -c max_connections=300 >'{dir}/server.log' 2>&1 &
             pid=$!
             read _
             kill -INT $pid; wait $pid; rm -rf '{dir}'",
            postgres = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let mut keeper = as_server_user(Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = postgres::Client::connect(
                &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                postgres::NoTls,
            );
            match attempt {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    if let Some(stdin) = keeper.stdin.as_mut() {
                        let _ = stdin.write_all(b"\n");
                    }
                    return Err(format!(
                        "no connection after 30 s ({e}); server log:\n{log}"
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        eprintln!(
            "throwaway PostgreSQL on 127.0.0.1:{port} ({})",
            bin.display()
        );
        Ok(PgServer {
            port,
            databases: AtomicUsize::new(0),
            _keeper: keeper,
        })
    }

    /// A new, empty database; returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A direct connection to `url`, for tests that inspect or tamper with the schema.
    pub fn connect(url: &str) -> postgres::Client {
        postgres::Client::connect(url, postgres::NoTls).unwrap()
    }
}

/// A hard budget created through the store.
pub fn hard_budget(
    store: &Store,
    scope: Scope,
    id: &str,
    kind: Kind,
    limit: f64,
    period: Period,
) -> Budget {
    create_budget(store, scope, id, kind, limit, period, Mode::Hard)
}

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// A request id no other test of this process uses.
pub fn request_id(prefix: &str) -> String {
    format!("{prefix}-{}", REQUESTS.fetch_add(1, Ordering::Relaxed))
}

/// A budget created through the store.
pub fn create_budget(
    store: &Store,
    scope: Scope,
    id: &str,
    kind: Kind,
    limit: f64,
    period: Period,
    mode: Mode,
) -> Budget {
    store
        .create_budget(NewBudget {
            scope,
            scope_id: id.into(),
            kind,
            limit,
            period,
            mode,
        })
        .unwrap()
}
