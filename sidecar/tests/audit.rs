#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The audit log end to end: reports settled and leases granted through the
//! store append entries; `audit` commands (parsed and run as the binary
//! does) sign, verify, prove and export it; and each way of tampering with
//! the stored log is caught by `audit verify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::Parser;
use common::{hard_budget, Backend, PgServer, TestStore};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tollgate_sidecar::audit::checkpoint::Signer;
use tollgate_sidecar::audit::merkle::leaf_hash;
use tollgate_sidecar::budgets::{Kind, Scope};
use tollgate_sidecar::cli::{run_audit, Cli, Command};
use tollgate_sidecar::leases::{LeaseAmount, LeaseAnswer, LeaseRelease, LeaseRequest};
use tollgate_sidecar::ledger::UsageReport;
use tollgate_sidecar::periods::Period;
use tollgate_sidecar::store::Store;

on_both_backends!(
    settles_and_leases_append_once_and_verify,
    an_edited_entry_is_caught_where_it_is,
    an_edited_entry_with_a_new_leaf_hash_breaks_the_checkpoint,
    a_deleted_entry_is_caught,
    reordered_entries_are_caught,
    an_inserted_entry_is_caught_even_when_the_rest_is_renumbered,
    entries_cut_from_the_end_are_caught,
    history_rewritten_and_resigned_with_another_key_is_caught,
    proofs_check_with_only_the_public_key,
    forgetting_a_team_erases_its_hmacs_and_keeps_the_log_verifiable,
    concurrent_settles_append_a_dense_log,
    refusals_are_logged_once_and_never_billed,
    with_the_log_off_settles_and_leases_log_nothing,
);

/// A log under test: the store, its key file and a scratch directory.
struct Log {
    store: TestStore,
    dir: tempfile::TempDir,
}

impl Log {
    fn new(backend: Backend) -> Option<Log> {
        Some(Log {
            store: TestStore::open(backend)?,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("audit.key")
    }

    /// `tollgate-sidecar --db <db> audit --audit-key <key> <args>`, run in
    /// process: what it printed, and whether it succeeded.
    fn audit(&self, args: &[&str]) -> (String, Result<(), String>) {
        let key = self.key();
        let mut argv = vec![
            "tollgate-sidecar",
            "--db",
            &self.store.db.url,
            "audit",
            "--audit-key",
            key.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let Command::Audit(cmd) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not an audit command")
        };
        let mut out = Vec::new();
        let result = run_audit(&self.store.db.url, cmd, &mut std::io::empty(), &mut out);
        (
            String::from_utf8(out).unwrap(),
            result.map_err(|e| format!("{e:#}")),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (out, result) = self.audit(args);
        result.unwrap_or_else(|e| panic!("audit {args:?} failed: {e}\n{out}"));
        out
    }

    /// `audit verify` fails; answers its output.
    fn fails(&self, args: &[&str]) -> String {
        let (out, result) = self.audit(args);
        let err = result.expect_err(&out);
        assert!(err.contains("did not verify"), "{err}");
        out
    }

    fn public_key(&self) -> String {
        self.ok(&["public-key"]).trim().to_owned()
    }

    /// Runs SQL on the database behind the sidecar's back.
    fn sql(&self, statement: &str) {
        if self.store.db.url.starts_with("postgres") {
            PgServer::connect(&self.store.db.url)
                .batch_execute(statement)
                .unwrap();
        } else {
            rusqlite::Connection::open(&self.store.db.url)
                .unwrap()
                .execute_batch(statement)
                .unwrap();
        }
    }

    fn body(&self, seq: u64) -> String {
        self.store.audit_entry(seq).unwrap().unwrap().body
    }

    /// Replaces entry `seq`'s bytes, and its leaf hash unless `keep_hash`.
    fn rewrite(&self, seq: u64, body: &str, keep_hash: bool) {
        let hash = if keep_hash {
            String::new()
        } else {
            format!(", leaf_hash = '{}'", hex(&leaf_hash(body.as_bytes())))
        };
        self.sql(&format!(
            "UPDATE audit_entries SET body = '{}'{hash} WHERE seq = {seq}",
            body.replace('\'', "''")
        ));
    }

    fn entries(&self) -> Vec<Value> {
        let mut out = vec![];
        self.store
            .audit_scan(|e| {
                out.push(serde_json::from_str(&e.body).unwrap());
                Ok(())
            })
            .unwrap();
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn report(id: &str, team: Option<&str>) -> UsageReport {
    serde_json::from_value(json!({
        "request_id": id, "key_id": "key_a", "team": team, "user": "alice",
        "model": "gpt-4o", "upstream_model": "gpt-4o-2024-08-06", "provider": "openai",
        "api": "chat_completions", "input_tokens": 120, "output_tokens": 30,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 80,
        "estimated": false, "stream": false, "ts": common::T0,
        "guardrail_events": [{"guardrail": "pii", "kind": "email", "direction": "input",
                              "action": "redact", "count": 2}]
    }))
    .unwrap()
}

/// A report whose bodies were `prompt` and `answer`.
fn audited(id: &str, team: Option<&str>, prompt: &str, answer: &str) -> UsageReport {
    UsageReport {
        request_digest: Some(sha256_hex(prompt)),
        response_digest: Some(sha256_hex(answer)),
        ..report(id, team)
    }
}

/// A lease for key_a of team eng, handing nothing back.
fn lease_request() -> LeaseRequest {
    LeaseRequest {
        key_id: "key_a".into(),
        team: Some("eng".into()),
        user: None,
        model: "gpt-4o".into(),
        upstream_model: "gpt-4o".into(),
        provider: "openai".into(),
        estimated_input_tokens: 100,
        max_output_tokens: 100,
        release: vec![],
    }
}

/// Ten settled requests and two checkpoints (at 4 and 8 entries).
fn ten_entries(backend: Backend) -> Option<Log> {
    let log = Log::new(backend)?;
    for i in 0..4 {
        log.store
            .settle(&[report(&format!("r{i}"), Some("eng"))])
            .unwrap();
    }
    log.ok(&["checkpoint"]);
    let batch: Vec<UsageReport> = (4..8).map(|i| report(&format!("r{i}"), None)).collect();
    log.store.settle(&batch).unwrap();
    log.ok(&["checkpoint"]);
    log.store
        .settle(&[report("r8", None), report("r9", None)])
        .unwrap();
    let out = log.ok(&["verify"]);
    assert!(out.contains("OK:"), "{out}");
    assert!(
        out.contains("Not signed yet: 2 entries after the latest checkpoint."),
        "{out}"
    );
    Some(log)
}

fn settles_and_leases_append_once_and_verify(backend: Backend) {
    let Some(log) = Log::new(backend) else { return };
    let store = &log.store;
    // An empty log has nothing to sign (the key is made on first use) and verifies.
    assert!(log.ok(&["checkpoint"]).contains("empty"));
    assert!(log.ok(&["verify"]).contains("OK:"));

    let first = store
        .settle(&[
            audited("req-1", Some("eng"), "hello", "hi there"),
            audited("req-2", None, "x", "y"),
        ])
        .unwrap();
    assert!(first.iter().all(|s| !s.duplicate));
    // Retried reports are duplicates: the log does not grow.
    let again = store.settle(&[report("req-1", Some("eng"))]).unwrap();
    assert!(again[0].duplicate);
    assert_eq!(log.entries().len(), 2);

    // A blocked request is logged with its reason.
    let mut blocked = report("req-3", Some("eng"));
    blocked.forwarded = false;
    blocked.status = 400;
    blocked.guardrail_events[0].action = "block".into();
    store.settle(&[blocked]).unwrap();

    // A lease: its grant, then the release of its rest.
    hard_budget(
        store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let request = lease_request();
    let LeaseAnswer::Granted(grant) = store.lease(&request).unwrap() else {
        panic!("no lease")
    };
    let release = LeaseRequest {
        release: vec![LeaseRelease {
            lease_id: grant.lease_id.clone(),
            unused: vec![LeaseAmount {
                budget_id: grant.budgets[0].budget_id.clone(),
                amount: 11.0,
            }],
        }],
        ..request
    };
    store.lease(&release).unwrap();
    // Lease calls only queue their entries; the next append (a settle or,
    // here, a checkpoint) takes them.
    assert_eq!(log.entries().len(), 3);
    let note = log.ok(&["checkpoint"]);
    assert!(note.starts_with("tollgate-audit\n6\n"), "{note}");

    let entries = log.entries();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "request",
            "request",
            "lease_grant",
            "lease_settle",
            "lease_grant"
        ]
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], json!(i));
    }
    let r1 = &entries[0];
    assert_eq!(r1["request_id"], "req-1");
    assert_eq!(r1["decision"], "forwarded");
    assert_eq!(
        r1["tokens"],
        json!({"input": 120, "output": 30, "cached": 0, "reasoning": 0})
    );
    assert_eq!(
        r1["guardrails"],
        json!([{"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact", "count": 2}])
    );
    // Only HMACs: neither the digest nor the text is stored.
    let stored = serde_json::to_string(&entries).unwrap();
    assert!(!stored.contains(&sha256_hex("hello")));
    assert_eq!(r1["request_hmac"].as_str().unwrap().len(), 64);
    assert_ne!(
        r1["request_hmac"], entries[1]["request_hmac"],
        "team and key secrets differ"
    );
    assert_eq!(entries[2]["decision"], "blocked");
    assert_eq!(entries[2]["reason"], "guardrail pii blocked email (input)");
    assert_eq!(entries[3]["lease_id"], json!(grant.lease_id));
    assert_eq!(
        entries[3]["budgets"][0]["granted"],
        json!(grant.budgets[0].granted)
    );
    assert_eq!(entries[4]["released"][0]["amount"], json!(11.0));

    assert!(log.ok(&["checkpoint"]).contains("has not grown"));
    // A settle batch takes the queue first.
    store.lease(&release).unwrap();
    store.settle(&[report("req-4", Some("eng"))]).unwrap();
    let kinds: Vec<Value> = log.entries().iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(
        kinds[6..],
        [
            json!("lease_settle"),
            json!("lease_grant"),
            json!("request")
        ]
    );
    log.ok(&["checkpoint"]);
    let out = log.ok(&["verify"]);
    assert!(out.contains("entries      9"), "{out}");
    assert!(out.contains("OK:"), "{out}");
    // The key's own text is the public key, not the private one.
    assert!(!log.public_key().contains("PRIVATE"));
    assert!(out.contains(&log.public_key()), "{out}");
}

fn an_edited_entry_is_caught_where_it_is(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    let body = log.body(2).replace("\"input\":120", "\"input\":12");
    log.rewrite(2, &body, true);
    let out = log.fails(&["verify"]);
    assert!(
        out.contains("entry 2: its bytes do not hash to its stored leaf hash"),
        "{out}"
    );
}

fn an_edited_entry_with_a_new_leaf_hash_breaks_the_checkpoint(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    let body = log.body(5).replace("\"status\":200", "\"status\":500");
    log.rewrite(5, &body, false);
    let out = log.fails(&["verify"]);
    assert!(
        out.contains(
            "checkpoint at size 8 (signed ")
            && out.contains("the log's first 8 entries do not hash to its root: the change lies in entries 4 to 7"),
        "{out}"
    );
    assert!(
        !out.contains("checkpoint at size 4"),
        "the first checkpoint still holds: {out}"
    );
}

fn a_deleted_entry_is_caught(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    log.sql("DELETE FROM audit_entries WHERE seq = 6");
    let out = log.fails(&["verify"]);
    assert!(out.contains("entry 6: its row is numbered 7"), "{out}");
    assert!(out.contains("entry 6: it says it is entry 7"), "{out}");
    assert!(out.contains("checkpoint at size 8"), "{out}");
    // Reported where it starts, not once per later entry.
    assert_eq!(out.matches("its row is numbered").count(), 1, "{out}");
}

fn reordered_entries_are_caught(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    let (one, three) = (log.body(1), log.body(3));
    log.rewrite(1, &three, false);
    log.rewrite(3, &one, false);
    let out = log.fails(&["verify"]);
    assert!(out.contains("entry 1: it says it is entry 3"), "{out}");
    assert!(out.contains("entry 3: it says it is entry 1"), "{out}");
    assert!(out.contains("checkpoint at size 4"), "{out}");
}

fn an_inserted_entry_is_caught_even_when_the_rest_is_renumbered(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    // A forger without the key: a fake entry at 3, every later entry moved
    // up with its seq and leaf hash made consistent again.
    let mut bodies: Vec<Value> = log.entries();
    let mut fake = bodies[3].clone();
    fake["request_id"] = json!("forged");
    bodies.insert(3, fake);
    log.sql("DELETE FROM audit_entries");
    for (i, body) in bodies.iter_mut().enumerate() {
        body["seq"] = json!(i);
        let text = tollgate_sidecar::audit::entry::canonical(body);
        log.sql(&format!(
            "INSERT INTO audit_entries (seq, kind, request_id, ts, body, leaf_hash)
             VALUES ({i}, 'request', NULL, 0, '{}', '{}')",
            text.replace('\'', "''"),
            hex(&leaf_hash(text.as_bytes()))
        ));
    }
    let out = log.fails(&["verify"]);
    assert!(out.contains("checkpoint at size 4"), "{out}");
    assert!(out.contains("checkpoint at size 8"), "{out}");
    assert!(!out.contains("leaf hash"), "{out}");
}

fn entries_cut_from_the_end_are_caught(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    log.sql("DELETE FROM audit_entries WHERE seq >= 7");
    let out = log.fails(&["verify"]);
    assert!(
        out.contains("checkpoint at size 8") && out.contains("the log has only 7 entries"),
        "{out}"
    );
    // Cutting entries nobody signed yet is what checkpoints cannot catch:
    // publish them often (--audit-checkpoint-interval).
    let Some(log) = ten_entries(backend) else {
        return;
    };
    log.sql("DELETE FROM audit_entries WHERE seq >= 8");
    assert!(log.ok(&["verify"]).contains("OK:"));
}

fn history_rewritten_and_resigned_with_another_key_is_caught(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    let trusted = log.public_key();
    // Rewrite an entry, drop the checkpoints and sign new ones with a key
    // of the forger's.
    let body = log.body(1).replace("\"input\":120", "\"input\":1");
    log.rewrite(1, &body, false);
    log.sql("DELETE FROM audit_checkpoints");
    let forger = Signer::load_or_create(&log.dir.path().join("forger.key")).unwrap();
    log.store.audit_checkpoint(&forger).unwrap().unwrap();
    let out = log.fails(&["verify"]);
    assert!(out.contains("not signed by key"), "{out}");
    assert!(out.contains("no checkpoint signed by key"), "{out}");

    // With the forger's key swapped into the key file too, the log looks
    // whole to the key file; the public key published elsewhere is what
    // catches it.
    std::fs::copy(log.dir.path().join("forger.key"), log.key()).unwrap();
    assert!(log.ok(&["verify"]).contains("OK:"));
    let out = log.fails(&["verify", "--public-key", &trusted]);
    assert!(out.contains("not signed by key"), "{out}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn proofs_check_with_only_the_public_key(backend: Backend) {
    let Some(log) = ten_entries(backend) else {
        return;
    };
    let key = log.public_key();
    let key_file = write(log.dir.path(), "public.key", &key);
    let dir = log.dir.path();

    let proof = log.ok(&["prove", "--request-id", "r5"]);
    let parsed: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(parsed["type"], "inclusion");
    assert_eq!(parsed["leaf_index"], 5);
    assert_eq!(parsed["tree_size"], 8);
    assert_eq!(parsed["entry"]["request_id"], "r5");
    let file = write(dir, "inclusion.json", &proof);
    let out = log.ok(&["check-proof", "--proof", &file, "--public-key", &key]);
    assert!(
        out.starts_with("OK: entry 5 is in the log of 8 entries"),
        "{out}"
    );
    // The key may be a file too.
    log.ok(&["check-proof", "--proof", &file, "--public-key", &key_file]);

    // Not yet covered by a checkpoint.
    let (_, result) = log.audit(&["prove", "--request-id", "r9"]);
    assert!(result.unwrap_err().contains("not covered"));

    // A proof for an edited entry, a wrong index or another key fails.
    let mut edited = parsed.clone();
    edited["entry"]["cost_usd"] = json!(0.0001);
    let file = write(dir, "edited.json", &edited.to_string());
    let (_, result) = log.audit(&["check-proof", "--proof", &file, "--public-key", &key]);
    assert!(result.unwrap_err().contains("does not lead"));
    let mut moved = parsed.clone();
    moved["leaf_index"] = json!(4);
    let file = write(dir, "moved.json", &moved.to_string());
    assert!(log
        .audit(&["check-proof", "--proof", &file, "--public-key", &key])
        .1
        .is_err());
    let other = Signer::load_or_create(&dir.join("other.key"))
        .unwrap()
        .verifier()
        .to_string();
    let file = write(dir, "inclusion.json", &proof);
    let (_, result) = log.audit(&["check-proof", "--proof", &file, "--public-key", &other]);
    assert!(result.unwrap_err().contains("not signed by key"));

    let proof = log.ok(&["consistency", "4", "8"]);
    let parsed: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(parsed["type"], "consistency");
    let file = write(dir, "consistency.json", &proof);
    let out = log.ok(&["check-proof", "--proof", &file, "--public-key", &key]);
    assert!(
        out.contains("the log of 4 entries is the first 4 entries of the log of 8"),
        "{out}"
    );
    let mut swapped = parsed.clone();
    swapped["old_checkpoint"] = parsed["new_checkpoint"].clone();
    let file = write(dir, "swapped.json", &swapped.to_string());
    assert!(log
        .audit(&["check-proof", "--proof", &file, "--public-key", &key])
        .1
        .is_err());
    let (_, result) = log.audit(&["consistency", "4", "9"]);
    assert!(result.unwrap_err().contains("checkpoints have sizes 4, 8"));
}

fn forgetting_a_team_erases_its_hmacs_and_keeps_the_log_verifiable(backend: Backend) {
    let Some(log) = Log::new(backend) else { return };
    let prompt = "What is our Q3 revenue forecast?";
    log.store
        .settle(&[audited("secret-1", Some("eng"), prompt, "no idea")])
        .unwrap();
    log.ok(&["checkpoint"]);
    let logged = log.entries()[0]["request_hmac"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = write(log.dir.path(), "prompt.txt", prompt);
    let hmac = log.ok(&["hmac", "--team", "eng", "--text-file", &text]);
    assert_eq!(
        hmac.trim(),
        logged,
        "the auditor's HMAC matches the logged one"
    );
    let other = write(log.dir.path(), "other.txt", "something else");
    assert_ne!(
        log.ok(&["hmac", "--team", "eng", "--text-file", &other])
            .trim(),
        logged
    );

    assert!(log.ok(&["forget-team", "eng"]).contains("Deleted"));
    let (_, result) = log.audit(&["hmac", "--team", "eng", "--text-file", &text]);
    assert!(result.unwrap_err().contains("no HMAC secret"));
    assert!(log.ok(&["verify"]).contains("OK:"));
    assert!(log
        .ok(&["forget-team", "eng"])
        .contains("nothing to delete"));

    // The team's next request gets a new secret: the old HMAC stays unmatched.
    log.store
        .settle(&[audited("secret-2", Some("eng"), prompt, "no idea")])
        .unwrap();
    let hmac = log.ok(&["hmac", "--team", "eng", "--text-file", &text]);
    assert_ne!(hmac.trim(), logged);
    assert_eq!(
        hmac.trim(),
        log.entries()[1]["request_hmac"].as_str().unwrap()
    );
    // A team-less key has its own secret.
    log.store
        .settle(&[audited("secret-3", None, prompt, "no idea")])
        .unwrap();
    let hmac = log.ok(&["hmac", "--key", "key_a", "--text-file", &text]);
    assert_eq!(
        hmac.trim(),
        log.entries()[2]["request_hmac"].as_str().unwrap()
    );
    assert!(log.ok(&["forget-key", "key_a"]).contains("Deleted"));
}

fn concurrent_settles_append_a_dense_log(backend: Backend) {
    let Some(log) = Log::new(backend) else { return };
    hard_budget(
        &log.store,
        Scope::Team,
        "eng",
        Kind::Requests,
        1e9,
        Period::Daily,
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &log.store;
            s.spawn(move || {
                for b in 0..10 {
                    let batch: Vec<UsageReport> = (0..3)
                        .map(|i| report(&format!("t{t}-b{b}-{i}"), Some("eng")))
                        .collect();
                    store.settle(&batch).unwrap();
                }
            });
        }
    });
    let entries = log.entries();
    assert_eq!(entries.len(), 120);
    log.ok(&["checkpoint"]);
    assert!(log.ok(&["verify"]).contains("OK:"));
}

fn refusals_are_logged_once_and_never_billed(backend: Backend) {
    let Some(log) = Log::new(backend) else { return };
    hard_budget(
        &log.store,
        Scope::Team,
        "eng",
        Kind::Requests,
        1.0,
        Period::Daily,
    );
    let refusal = |id: &str, code: &str| UsageReport {
        refused: Some(code.into()),
        forwarded: false,
        status: 429,
        input_tokens: 0,
        output_tokens: 0,
        guardrail_events: vec![],
        ..report(id, Some("eng"))
    };
    let batch = [
        refusal("x1", "budget_exceeded"),
        report("r1", Some("eng")),
        refusal("x2", "invalid_api_key"),
    ];
    let settled = log.store.settle(&batch).unwrap();
    assert!(settled.iter().all(|s| !s.duplicate), "{settled:?}");
    // Sent again (an answer lost on the way): nothing more.
    let again = log.store.settle(&batch[..1]).unwrap();
    assert!(again[0].duplicate);
    let entries = log.entries();
    let reasons: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["request_id"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("r1", "forwarded"), ("x1", "refused"), ("x2", "refused")]
    );
    assert_eq!(entries[1]["reason"], "budget_exceeded");
    assert_eq!(entries[2]["cost_usd"], 0.0);
    // One ledger row: the forwarded request's.
    let rows = log.store.ledger(None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_id, "r1");
    log.ok(&["checkpoint"]);
    assert!(log.ok(&["verify"]).contains("OK:"));
}

/// `serve --audit-log off`: settles still write ledger rows, but neither
/// they nor lease calls leave anything in the log, not even queued; the
/// same calls with the log on (the default) do.
fn with_the_log_off_settles_and_leases_log_nothing(backend: Backend) {
    let Some(log) = Log::new(backend) else { return };
    hard_budget(
        &log.store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let lease = lease_request();
    // Settles, a grant, and a grant that hands the first one's rest back.
    let traffic = |store: &Store, prefix: &str| {
        store
            .settle(&[
                audited(&format!("{prefix}-1"), Some("eng"), "hello", "hi"),
                report(&format!("{prefix}-2"), None),
            ])
            .unwrap();
        let LeaseAnswer::Granted(grant) = store.lease(&lease).unwrap() else {
            panic!("no lease")
        };
        let release = LeaseRequest {
            release: vec![LeaseRelease {
                lease_id: grant.lease_id,
                unused: vec![LeaseAmount {
                    budget_id: grant.budgets[0].budget_id.clone(),
                    amount: 1.0,
                }],
            }],
            ..lease.clone()
        };
        store.lease(&release).unwrap();
    };

    let off = log.store.reopen().with_audit_log(false);
    assert!(!off.audit_log());
    traffic(&off, "off");
    assert_eq!(off.ledger(None, 10).unwrap().len(), 2);
    assert!(log.entries().is_empty());
    // Nothing was queued either: appending the queue appends nothing.
    assert!(log.ok(&["checkpoint"]).contains("empty"));
    assert!(log.entries().is_empty());

    assert!(log.store.audit_log(), "on by default");
    traffic(&log.store, "on");
    assert_eq!(log.store.ledger(None, 10).unwrap().len(), 4);
    log.ok(&["checkpoint"]);
    let kinds: Vec<String> = log
        .entries()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "request",
            "lease_grant",
            "lease_settle",
            "lease_grant"
        ]
    );
    assert!(log.ok(&["verify"]).contains("OK:"));
}

/// `serve --audit-log` takes on or off; on when not given.
#[test]
fn serve_parses_the_audit_log_switch() {
    let audit_log = |extra: &[&str]| {
        let argv = [&["tollgate-sidecar", "serve"][..], extra].concat();
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(args) => args.audit_log,
            _ => panic!("not serve"),
        })
    };
    assert!(audit_log(&[]).unwrap());
    assert!(audit_log(&["--audit-log", "on"]).unwrap());
    assert!(!audit_log(&["--audit-log", "off"]).unwrap());
    assert!(!audit_log(&["--audit-log=off"]).unwrap());
    assert!(audit_log(&["--audit-log", "sometimes"]).is_err());
}

/// The log copied to another machine: an export and the public key are
/// all `verify --from` needs (the real binary, with no database).
#[test]
fn an_export_verifies_elsewhere_with_the_public_key_only() {
    let log = ten_entries(Backend::Sqlite).unwrap();
    let export = log.dir.path().join("audit.jsonl");
    let out = log.ok(&["export", "--out", export.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        format!(
            "Wrote 10 entries and 2 checkpoints to {}.",
            export.display()
        )
    );
    let key = log.public_key();

    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.jsonl");
    std::fs::copy(&export, &copy).unwrap();
    let run = |args: &[&str]| {
        Process::new(env!("CARGO_BIN_EXE_tollgate-sidecar"))
            .current_dir(elsewhere.path())
            .args(["audit", "verify", "--from", copy.to_str().unwrap()])
            .args(args)
            .env_remove("TOLLGATE_DB")
            .env_remove("TOLLGATE_AUDIT_KEY")
            .output()
            .unwrap()
    };
    let out = run(&["--public-key", &key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("entries      10") && text.contains("OK:"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        1,
        "no database or key was created"
    );

    // One entry edited in the copy: exit status 1 and where.
    let edited = std::fs::read_to_string(&copy).unwrap().replacen(
        "\\\"input\\\":120",
        "\\\"input\\\":121",
        1,
    );
    std::fs::write(&copy, edited).unwrap();
    let out = run(&["--public-key", &key]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checkpoint at size 4") && text.contains("entries 0 to 3"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not verify"));

    // Another key than the one that signed: every checkpoint refused.
    std::fs::copy(&export, &copy).unwrap();
    let other = Signer::load_or_create(&log.dir.path().join("other.key")).unwrap();
    let out = run(&["--public-key", &other.verifier().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    // Without --public-key, the file's own key, with a warning.
    let out = run(&[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not who signed it"));
}

/// `serve`'s settle endpoints take the digests beside the report's fields.
#[test]
fn settle_batches_carry_digests_to_the_log() {
    use common::app::{app, block_on};
    let app = app();
    let mut report = serde_json::to_value(report("http-1", Some("eng"))).unwrap();
    report["request_digest"] = json!(sha256_hex("a prompt"));
    let batch = json!({"reports": [report]}).to_string();
    let (status, answer) = block_on(app.filter("/v1/settle/batch", &batch));
    assert_eq!(status, 200, "{answer}");
    let body = app.store.audit_entry(0).unwrap().unwrap().body;
    let entry: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["request_id"], "http-1");
    assert_eq!(entry["request_hmac"].as_str().unwrap().len(), 64);
    assert!(entry.get("response_hmac").is_none());
}
