#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Runs the real binary against a temp database, then checks that what the
//! CLI wrote is what the store sees.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestDb};
use serde_json::{json, Value};
use tempfile::TempDir;
use tollgate_sidecar::clock::Clock;
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::ledger::UsageReport;
use tollgate_sidecar::model::{Authorization, DenyReason};
use tollgate_sidecar::store::Store;

on_both_backends!(cli_budgets_prices_and_usage);

fn cli(db: impl AsRef<OsStr>, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate-sidecar"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TOLLGATE_DB")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn open(db: &str) -> Store {
    Store::open(db, Arc::new(Clock::system())).unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cli_created_key_authorizes_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let created = stdout_json(&cli(
        &db,
        &[
            "keys",
            "create",
            "--team",
            "ml",
            "--models",
            "gpt-4o*, claude-*",
            "--user",
            "alice",
            "--expires-in",
            "30d",
            "--metadata",
            r#"{"k":"v"}"#,
            "--json",
        ],
    ));
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["models"],
        serde_json::json!(["gpt-4o*", "claude-*"])
    );
    assert_eq!(created["metadata"]["k"], "v");

    let store = open(db.to_str().unwrap());
    match store.authorize(&hash_key(key)).unwrap() {
        Authorization::Granted(g) => {
            assert_eq!(g.key_id, id);
            assert_eq!(g.team.as_deref(), Some("ml"));
            assert_eq!(g.user.as_deref(), Some("alice"));
            assert_eq!(g.models, vec!["gpt-4o*", "claude-*"]);
            assert!(g.team_models.is_empty());
            assert_eq!(g.expires_at, created["expires_at"].as_i64());
        }
        other => panic!("expected a grant, got {other:?}"),
    }

    let shown = stdout_json(&cli(&db, &["keys", "show", id, "--json"]));
    assert_eq!(shown["id"], created["id"]);
    assert!(
        shown.get("key").is_none(),
        "the key is only shown at creation"
    );

    let listed = stdout_json(&cli(&db, &["keys", "list", "--team", "ml", "--json"]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);

    let out = cli(&db, &["keys", "revoke", id]);
    assert!(out.status.success());
    assert_eq!(
        store.authorize(&hash_key(key)).unwrap(),
        Authorization::Denied(DenyReason::Revoked)
    );

    let out = cli(&db, &["keys", "activate", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
}

#[test]
fn cli_human_output_shows_key_once_with_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let out = cli(&db, &["keys", "create", "--name", "laptop"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("key: tg-"), "{text}");
    assert!(text.contains("will not be shown again"), "{text}");
}

#[test]
fn cli_errors_are_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    for args in [
        &["keys", "show", "key_missing"][..],
        &["keys", "create", "--expires-in", "forever"],
        &["keys", "create", "--metadata", "{oops"],
        &["keys", "update", "key_missing", "--models", "x"],
        &["teams", "show", "nope"],
    ] {
        let out = cli(&db, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let out = cli(&db, &["keys", "show", "key_missing"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("key not found: key_missing"));
}

#[test]
fn cli_teams() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let team = stdout_json(&cli(
        &db,
        &["teams", "create", "ml", "--models", "gpt-*", "--json"],
    ));
    assert_eq!(team["models"], serde_json::json!(["gpt-*"]));
    let dup = cli(&db, &["teams", "create", "ml"]);
    assert!(!dup.status.success());
    let list = stdout_json(&cli(&db, &["teams", "list", "--json"]));
    assert_eq!(list["teams"][0]["name"], "ml");
}

#[test]
fn serve_refuses_to_start_without_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate-sidecar"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("t.db"))
        .env_remove("TOLLGATE_MASTER_KEY")
        .env("TOLLGATE_SERVICE_TOKEN", SERVICE_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_MASTER_KEY"));
}

const MASTER_KEY: &str = "cli-test-master-key-0123456789abcdef";
const SERVICE_TOKEN: &str = "cli-test-service-token-0123456789abcdef";

/// `serve` on a database in `dir` with the master key set and
/// `service_token` (if any) in the environment variable `var`, plus the
/// extra arguments.
fn serve(dir: &TempDir, var: &str, service_token: Option<&str>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate-sidecar"));
    cmd.arg("--db")
        .arg(dir.path().join("t.db"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("TOLLGATE_MASTER_KEY", MASTER_KEY)
        .env_remove("TOLLGATE_SERVICE_TOKEN")
        .env_remove("TOLLGATE_LEASE_TTL_S")
        .env_remove("TOLLGATE_AUDIT_LOG")
        .env_remove("RUST_LOG");
    match service_token {
        Some(token) => cmd.env(var, token),
        None => cmd.env_remove(var),
    };
    cmd
}

/// Like a missing master key, a missing or weak service token stops `serve`
/// with a message naming the variable.
#[test]
fn serve_refuses_to_start_without_a_usable_service_token() {
    let short = "x".repeat(31);
    let spaced = format!("{SERVICE_TOKEN} {SERVICE_TOKEN}");
    let cases: [(&str, Option<&str>, &[&str], &str); 6] = [
        (
            "TOLLGATE_SERVICE_TOKEN",
            None,
            &[],
            "no service token configured",
        ),
        (
            "TOLLGATE_SERVICE_TOKEN",
            Some(""),
            &[],
            "no service token configured",
        ),
        ("TOLLGATE_SERVICE_TOKEN", Some(&short), &[], "at least 32"),
        (
            "TOLLGATE_SERVICE_TOKEN",
            Some(&spaced),
            &[],
            "printable ASCII",
        ),
        (
            "TOLLGATE_SERVICE_TOKEN",
            Some(MASTER_KEY),
            &[],
            "master key",
        ),
        (
            "MY_FILTER_TOKEN",
            None,
            &["--service-token-env", "MY_FILTER_TOKEN"],
            "no service token configured",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (var, token, extra, expected) in cases {
        let out = serve(&dir, var, token, extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={token:?} started");
        assert!(
            stderr.contains(var) && stderr.contains(expected),
            "{var}={token:?}: {stderr}"
        );
        assert!(!stderr.contains(MASTER_KEY), "{stderr}");
    }
}

/// A running sidecar answers the filter's calls with the token from the
/// variable `--service-token-env` names, and only with that one.
#[test]
fn serve_takes_the_service_token_from_the_named_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(
        &dir,
        "MY_FILTER_TOKEN",
        Some(SERVICE_TOKEN),
        &["--service-token-env", "MY_FILTER_TOKEN"],
    )
    .env(
        "TOLLGATE_SERVICE_TOKEN",
        "another-token-another-token-another-token",
    )
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let addr = listening_address(&mut child);
    let body = format!(r#"{{"key_hash": "{}"}}"#, "a".repeat(64));
    let call = |token: &str| http_post(&addr, "/v1/authorize", token, &body);
    let ok = call(SERVICE_TOKEN);
    let default_var = call("another-token-another-token-another-token");
    let master = call(MASTER_KEY);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.ends_with(r#"{"valid":false,"reason":"unknown"}"#),
        "{ok}"
    );
    for refused in [default_var, master] {
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    }
}

/// One POST with a bearer token over a fresh connection; the raw response.
fn http_post(addr: &str, path: &str, token: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The same commands on a SQLite file and on a `postgres://` URL.
fn cli_budgets_prices_and_usage(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let db = db.url.as_str();
    let created = stdout_json(&cli(
        db,
        &[
            "budgets", "create", "--scope", "team", "--id", "ml", "--kind", "spend", "--limit",
            "10", "--period", "monthly", "--json",
        ],
    ));
    assert_eq!(created["mode"], "hard");
    let id = created["id"].as_str().unwrap();
    let tracking = stdout_json(&cli(
        db,
        &[
            "budgets", "create", "--scope", "key", "--id", "key_a", "--kind", "requests",
            "--limit", "60", "--period", "minute", "--mode", "tracking", "--json",
        ],
    ));
    assert_eq!(tracking["mode"], "tracking");
    let table = stdout(&cli(db, &["budgets", "list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(id) && table.contains("monthly") && table.contains("10.0000"),
        "{table}"
    );
    let listed = stdout_json(&cli(db, &["budgets", "list", "--scope", "key", "--json"]));
    assert_eq!(listed["budgets"], json!([tracking]));
    let updated = stdout_json(&cli(
        db,
        &["budgets", "update", id, "--limit", "20", "--json"],
    ));
    assert_eq!(updated["limit"], 20.0);
    assert!(stdout(&cli(db, &["budgets", "delete", id])).contains(id));
    let gone = cli(db, &["budgets", "delete", id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("budget not found"));
    let bad = cli(
        db,
        &[
            "budgets", "create", "--scope", "org", "--id", "x", "--kind", "spend", "--limit", "1",
            "--period", "daily",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("key, team, user"));

    let set = stdout_json(&cli(
        db,
        &[
            "prices", "set", "my-model", "--input", "1.5", "--output", "3", "--json",
        ],
    ));
    assert_eq!(
        set,
        json!({"model": "my-model", "input": 1.5, "output": 3.0, "cached_input": 1.5,
               "source": "override"})
    );
    let prices = stdout(&cli(db, &["prices", "list"]));
    let row = |start: &str, end: &str| {
        prices
            .lines()
            .any(|l| l.starts_with(start) && l.ends_with(end))
    };
    assert!(
        row("my-model ", "override") && row("gpt-4o ", "default"),
        "{prices}"
    );
    stdout(&cli(db, &["prices", "delete", "my-model"]));
    assert!(!cli(db, &["prices", "delete", "my-model"]).status.success());

    // Usage written by a sidecar shows in every format.
    let report: UsageReport = serde_json::from_value(json!({
        "request_id": "r1", "reservation_id": null, "key_id": "key_a", "team": "ml",
        "user": null, "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
        "api": "responses", "input_tokens": 1000, "output_tokens": 100, "cached_tokens": 0,
        "reasoning_tokens": 0, "status": 200, "latency_ms": 10, "estimated": true,
        "stream": false, "ts": common::T0
    }))
    .unwrap();
    open(db).settle(&[report]).unwrap();
    let table = stdout(&cli(db, &["usage", "--group-by", "team"]));
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("TEAM  REQUESTS  INPUT_TOKENS"),
        "{table}"
    );
    assert!(
        lines.next().unwrap().starts_with("ml    1         1000"),
        "{table}"
    );
    let csv = stdout(&cli(
        db,
        &[
            "usage",
            "--group-by",
            "day",
            "--format",
            "csv",
            "--from",
            "2026-11-22",
        ],
    ));
    assert_eq!(
        csv.lines().nth(1),
        Some("2026-11-22,1,1000,100,0,0,0.0035,1,0")
    );
    let empty = stdout_json(&cli(
        db,
        &[
            "usage",
            "--group-by",
            "model",
            "--format",
            "json",
            "--to",
            "2026-11-21",
        ],
    ));
    assert_eq!(empty, json!({"group_by": "model", "rows": []}));
    assert!(!cli(db, &["usage", "--format", "xml"]).status.success());
}

/// `serve --test-clock` mounts `POST /admin/clock`; plain `serve` does not.
#[test]
fn serve_with_test_clock_lets_tests_move_time() {
    for (flag, expected) in [(&["--test-clock"][..], 200), (&[][..], 404)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = serve(&dir, "TOLLGATE_SERVICE_TOKEN", Some(SERVICE_TOKEN), flag)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = listening_address(&mut child);
        let body = r#"{"now": 4102444800}"#;
        let response = http_post(&addr, "/admin/clock", MASTER_KEY, body);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {expected}")),
            "{flag:?}: {response}"
        );
        if expected == 200 {
            assert!(response.ends_with(r#"{"now":4102444800}"#), "{response}");
        }
    }
}

/// A lease TTL below a second stops `serve`, from the flag or the variable.
#[test]
fn serve_refuses_a_lease_ttl_below_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let token = Some(SERVICE_TOKEN);
    for value in ["0", "-5", "ten"] {
        let flag = format!("--lease-ttl-s={value}");
        let out = serve(&dir, "TOLLGATE_SERVICE_TOKEN", token, &[&flag])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--lease-ttl-s {value} started");
        assert!(stderr.contains("--lease-ttl-s"), "{value}: {stderr}");
        let out = serve(&dir, "TOLLGATE_SERVICE_TOKEN", token, &[])
            .env("TOLLGATE_LEASE_TTL_S", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "TOLLGATE_LEASE_TTL_S={value} started"
        );
        assert!(stderr.contains("--lease-ttl-s"), "{value}: {stderr}");
    }
}

/// `TOLLGATE_AUDIT_LOG=off` (or `--audit-log off`): `serve` warns at
/// start-up, makes no signing key, and a settled report is in the ledger
/// but not in the audit log; on by default, it is in both.
#[test]
fn serve_with_the_audit_log_off_warns_and_logs_nothing() {
    let report = json!({
        "request_id": "r1", "key_id": "key_a", "team": "ml", "user": null,
        "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
        "api": "chat_completions", "input_tokens": 10, "output_tokens": 5, "cached_tokens": 0,
        "reasoning_tokens": 0, "status": 200, "latency_ms": 10, "estimated": false,
        "stream": false, "ts": common::T0
    })
    .to_string();
    for off in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = serve(&dir, "TOLLGATE_SERVICE_TOKEN", Some(SERVICE_TOKEN), &[]);
        if off {
            cmd.env("TOLLGATE_AUDIT_LOG", "off");
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (addr, before) = start_up(&mut child);
        let response = http_post(&addr, "/v1/settle", SERVICE_TOKEN, &report);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert_eq!(before.contains("audit log off"), off, "{before}");
        let db = dir.path().join("t.db");
        assert_eq!(dir.path().join("t.db.audit-key").exists(), !off);
        let store = open(db.to_str().unwrap());
        assert_eq!(store.ledger(None, 10).unwrap().len(), 1);
        let entry = store.audit_entry_of_request("r1").unwrap();
        assert_eq!(entry.is_some(), !off, "audit log off: {off}");
    }
}

/// What `serve` logged up to its listening line, and the address it names.
fn start_up(child: &mut Child) -> (String, String) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        logged.push_str(&line);
        logged.push('\n');
        if let Some(rest) = line.split("listen=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            // Keep draining, so the sidecar never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (addr.to_owned(), logged);
        }
    }
    panic!("the sidecar did not say where it listens:\n{logged}")
}

/// `serve` grants leases for `--lease-ttl-s` (or `TOLLGATE_LEASE_TTL_S`),
/// 10 s by default; the flag wins over the variable.
#[test]
fn serve_grants_leases_for_the_configured_ttl() {
    let lease = r#"{"key_id": "key_a", "model": "gpt-4o", "upstream_model": "gpt-4o",
        "provider": "openai", "estimated_input_tokens": 1, "max_output_tokens": 1}"#;
    let cases: [(&[&str], Option<&str>, &str); 4] = [
        (&[], None, r#""ttl_ms":10000"#),
        (&["--lease-ttl-s", "3"], None, r#""ttl_ms":3000"#),
        (&[], Some("4"), r#""ttl_ms":4000"#),
        (&["--lease-ttl-s", "5"], Some("4"), r#""ttl_ms":5000"#),
    ];
    for (flag, var, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = serve(&dir, "TOLLGATE_SERVICE_TOKEN", Some(SERVICE_TOKEN), flag);
        if let Some(v) = var {
            cmd.env("TOLLGATE_LEASE_TTL_S", v);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = listening_address(&mut child);
        let response = http_post(&addr, "/v1/lease", SERVICE_TOKEN, lease);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(expected), "{flag:?} {var:?}: {response}");
    }
}

/// Reads the sidecar's log until it says where it listens, and keeps
/// draining it (a sidecar whose stderr is closed fails its log writes).
fn listening_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listen=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = found.send(addr.to_owned());
            }
        }
    });
    address
        .recv_timeout(Duration::from_secs(20))
        .expect("the sidecar did not say where it listens")
}

/// Waits for a `serve` expected to stop at start-up; one that keeps
/// running fails the test instead of hanging it.
fn exits(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("serve kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A key named with --audit-key or TOLLGATE_AUDIT_KEY (a mounted Secret in
/// Kubernetes) is required: missing or open to other users, `serve` stops.
#[cfg(unix)]
#[test]
fn serve_refuses_to_start_with_an_unusable_audit_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted").join("key");
    let out = exits(
        serve(&dir, "TOLLGATE_SERVICE_TOKEN", Some(SERVICE_TOKEN), &[])
            .env("TOLLGATE_AUDIT_KEY", &missing),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("TOLLGATE_AUDIT_KEY")
            && stderr.contains(&format!("no audit key at {}", missing.display())),
        "{stderr}"
    );

    let open_key = dir.path().join("audit.key");
    tollgate_sidecar::audit::checkpoint::Signer::load_or_create(&open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = exits(
        serve(
            &dir,
            "TOLLGATE_SERVICE_TOKEN",
            Some(SERVICE_TOKEN),
            &["--audit-key"],
        )
        .arg(&open_key)
        .env_remove("TOLLGATE_AUDIT_KEY"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("open to other users (mode 644)"),
        "{stderr}"
    );
}

/// The operator's steps for Kubernetes: `audit public-key` makes the key
/// (no database needed) and prints what to publish; mounted read-only and
/// group-readable, as a Secret with the pod's fsGroup is, `serve` signs
/// with it.
#[cfg(unix)]
#[test]
fn audit_public_key_makes_the_key_serve_then_reads_from_a_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tollgate-audit.key");
    let public_key = || {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate-sidecar"))
            .current_dir(dir.path())
            .args(["audit", "public-key", "--audit-key"])
            .arg(&key)
            .env_remove("TOLLGATE_DB")
            .env_remove("TOLLGATE_AUDIT_KEY")
            .output()
            .unwrap();
        stdout(&out).trim().to_owned()
    };
    let printed = public_key();
    assert!(printed.starts_with("tollgate-audit+"), "{printed}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "no database was created");
    assert_eq!(public_key(), printed, "the existing key is kept");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o440)).unwrap();
    let mut child = serve(&dir, "TOLLGATE_SERVICE_TOKEN", Some(SERVICE_TOKEN), &[])
        .env("TOLLGATE_AUDIT_KEY", &key)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("listen=")) {
        match logged.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.join("\n");
    assert!(
        log.contains("audit checkpoints on")
            && log.contains(&format!("audit_public_key={printed}")),
        "{log}"
    );
}
