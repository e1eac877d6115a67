#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Runs the real binary against a temp database, then checks that what the
//! CLI wrote is what the authorize path sees.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::model::{unix_now, Authorization, DenyReason};
use tollgate_sidecar::store::Store;

fn cli(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate-sidecar"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TOLLGATE_DB")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
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

    let store = Store::open(&db).unwrap();
    match store.authorize(&hash_key(key), unix_now()).unwrap() {
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
        store.authorize(&hash_key(key), unix_now()).unwrap(),
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
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_MASTER_KEY"));
}
