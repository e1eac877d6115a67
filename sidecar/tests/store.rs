#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Store-level behaviour of keys and teams: the rules both the HTTP API and
//! the CLI rely on, on SQLite and on PostgreSQL.

mod common;

use std::sync::Arc;

use common::{Backend, PgServer, TestDb, TestStore};
use serde_json::json;
use tollgate_sidecar::clock::Clock;
use tollgate_sidecar::error::Error;
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::ledger::UsageReport;
use tollgate_sidecar::model::{
    Authorization, DenyReason, KeyStatus, KeyUpdate, NewKey, NewTeam, StatusChange, TeamUpdate,
};
use tollgate_sidecar::store::Store;
use tollgate_sidecar::usage::{GroupBy, UsageQuery};

on_both_backends!(
    create_key_returns_record_and_auto_creates_team,
    list_keys_filters_by_team_in_creation_order,
    authorize_reports_grant_and_each_denial_reason,
    key_without_team_gets_empty_team_models,
    status_transitions,
    update_key_changes_only_given_fields,
    teams_create_conflict_update_and_list,
    data_survives_reopen,
    newer_schema_is_refused,
    ledger_rows_from_before_forwarded_and_counts_read_as_forwarded_once,
    guardrail_tallies_are_rebuilt_from_the_ledger,
);

fn key_for_team(team: &str) -> NewKey {
    NewKey {
        team: Some(team.to_owned()),
        ..NewKey::default()
    }
}

fn create_key_returns_record_and_auto_creates_team(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let created = store
        .create_key(NewKey {
            team: Some("ml".into()),
            user: Some("alice".into()),
            name: Some("notebook".into()),
            models: vec!["gpt-4o*".into()],
            expires_at: Some(4_000_000_000),
            metadata: json!({"cost_center": "42"}).as_object().unwrap().clone(),
        })
        .unwrap();
    assert!(created.team_created);
    assert!(created.key.starts_with("tg-"));
    assert_eq!(created.record.key_prefix, &created.key[..8]);
    assert_eq!(created.record.status, KeyStatus::Active);
    assert_eq!(store.get_key(&created.record.id).unwrap(), created.record);

    let team = store.get_team("ml").unwrap();
    assert!(
        team.models.is_empty(),
        "auto-created team must allow all models"
    );

    let second = store.create_key(key_for_team("ml")).unwrap();
    assert!(!second.team_created);
}

#[test]
fn plaintext_key_is_never_written_to_disk() {
    let TestStore { store, db, .. } = TestStore::open(Backend::Sqlite).unwrap();
    let created = store.create_key(NewKey::default()).unwrap();
    drop(store);
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(db.sqlite_path().parent().unwrap()).unwrap() {
        on_disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let hash = hash_key(&created.key);
    let contains = |needle: &[u8]| on_disk.windows(needle.len()).any(|w| w == needle);
    assert!(contains(hash.as_bytes()), "sanity: the hash is stored");
    assert!(
        !contains(created.key.as_bytes()),
        "plaintext key leaked to disk"
    );
}

fn list_keys_filters_by_team_in_creation_order(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let a = store.create_key(key_for_team("ml")).unwrap().record.id;
    let b = store.create_key(key_for_team("ops")).unwrap().record.id;
    let c = store.create_key(key_for_team("ml")).unwrap().record.id;
    let ids = |team| {
        store
            .list_keys(team)
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(None), vec![a.clone(), b, c.clone()]);
    assert_eq!(ids(Some("ml")), vec![a, c]);
    assert!(ids(Some("nobody")).is_empty());
}

fn authorize_reports_grant_and_each_denial_reason(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    store
        .create_team(NewTeam {
            name: "ml".into(),
            models: vec!["gpt-*".into()],
            ..NewTeam::default()
        })
        .unwrap();
    let created = store
        .create_key(NewKey {
            team: Some("ml".into()),
            user: Some("alice".into()),
            models: vec!["gpt-4o*".into()],
            expires_at: Some(2_000),
            ..NewKey::default()
        })
        .unwrap();
    let hash = hash_key(&created.key);

    store.clock.set(1_000);
    match store.authorize(&hash).unwrap() {
        Authorization::Granted(g) => {
            assert_eq!(g.key_id, created.record.id);
            assert_eq!(g.team.as_deref(), Some("ml"));
            assert_eq!(g.user.as_deref(), Some("alice"));
            assert_eq!(g.models, vec!["gpt-4o*"]);
            assert_eq!(g.team_models, vec!["gpt-*"]);
            assert_eq!(g.expires_at, Some(2_000));
        }
        other => panic!("expected a grant, got {other:?}"),
    }
    // Expiry is inclusive: at the expiry second the key is no longer valid.
    store.clock.set(2_000);
    assert_eq!(
        store.authorize(&hash).unwrap(),
        Authorization::Denied(DenyReason::Expired)
    );
    store.clock.set(1_000);
    assert_eq!(
        store.authorize(&"0".repeat(64)).unwrap(),
        Authorization::Denied(DenyReason::Unknown)
    );

    store
        .set_key_status(&created.record.id, StatusChange::Deactivate)
        .unwrap();
    assert_eq!(
        store.authorize(&hash).unwrap(),
        Authorization::Denied(DenyReason::Inactive)
    );
    store
        .set_key_status(&created.record.id, StatusChange::Revoke)
        .unwrap();
    // Revocation wins over expiry when both apply.
    store.clock.set(5_000);
    assert_eq!(
        store.authorize(&hash).unwrap(),
        Authorization::Denied(DenyReason::Revoked)
    );
}

fn key_without_team_gets_empty_team_models(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let created = store.create_key(NewKey::default()).unwrap();
    match store.authorize(&hash_key(&created.key)).unwrap() {
        Authorization::Granted(g) => {
            assert_eq!(g.team, None);
            assert!(g.team_models.is_empty());
            assert!(g.models.is_empty());
            assert_eq!(g.expires_at, None);
        }
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn status_transitions(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let id = store.create_key(NewKey::default()).unwrap().record.id;

    let k = store.set_key_status(&id, StatusChange::Deactivate).unwrap();
    assert_eq!(k.status, KeyStatus::Inactive);
    let k = store.set_key_status(&id, StatusChange::Activate).unwrap();
    assert_eq!(k.status, KeyStatus::Active);
    // Repeating a change is harmless.
    let k = store.set_key_status(&id, StatusChange::Activate).unwrap();
    assert_eq!(k.status, KeyStatus::Active);

    let k = store.set_key_status(&id, StatusChange::Revoke).unwrap();
    assert_eq!(k.status, KeyStatus::Revoked);
    assert!(matches!(
        store.set_key_status(&id, StatusChange::Activate),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.set_key_status(&id, StatusChange::Deactivate),
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.get_key(&id).unwrap().status, KeyStatus::Revoked);
    assert!(matches!(
        store.set_key_status("key_missing", StatusChange::Revoke),
        Err(Error::NotFound { .. })
    ));
}

fn update_key_changes_only_given_fields(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let before = store
        .create_key(NewKey {
            user: Some("alice".into()),
            name: Some("n".into()),
            models: vec!["a*".into()],
            expires_at: Some(9_999_999_999),
            ..NewKey::default()
        })
        .unwrap()
        .record;

    let after = store
        .update_key(
            &before.id,
            KeyUpdate {
                models: Some(vec!["b*".into(), "c".into()]),
                expires_at: Some(None),
                team: Some(Some("new-team".into())),
                metadata: Some(json!({"x": 1}).as_object().unwrap().clone()),
                ..KeyUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(after.models, vec!["b*", "c"]);
    assert_eq!(after.expires_at, None);
    assert_eq!(after.team.as_deref(), Some("new-team"));
    assert_eq!(after.metadata.get("x"), Some(&json!(1)));
    assert_eq!(after.user, before.user);
    assert_eq!(after.name, before.name);
    assert_eq!(store.get_key(&before.id).unwrap(), after);
    store
        .get_team("new-team")
        .expect("team auto-created by update");

    let cleared = store
        .update_key(
            &before.id,
            KeyUpdate {
                team: Some(None),
                user: Some(None),
                ..KeyUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(cleared.team, None);
    assert_eq!(cleared.user, None);

    assert!(matches!(
        store.update_key("key_missing", KeyUpdate::default()),
        Err(Error::NotFound { .. })
    ));
}

fn teams_create_conflict_update_and_list(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let t = store
        .create_team(NewTeam {
            name: "zeta".into(),
            models: vec!["claude-*".into()],
            metadata: json!({"owner": "x"}).as_object().unwrap().clone(),
        })
        .unwrap();
    assert_eq!(store.get_team("zeta").unwrap(), t);
    assert!(matches!(
        store.create_team(NewTeam {
            name: "zeta".into(),
            ..NewTeam::default()
        }),
        Err(Error::Conflict(_))
    ));
    store
        .create_team(NewTeam {
            name: "alpha".into(),
            ..NewTeam::default()
        })
        .unwrap();

    let updated = store
        .update_team(
            "zeta",
            TeamUpdate {
                models: Some(vec![]),
                metadata: None,
            },
        )
        .unwrap();
    assert!(updated.models.is_empty());
    assert_eq!(updated.metadata, t.metadata);

    let names: Vec<_> = store
        .list_teams()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["alpha", "zeta"]);
    assert!(matches!(
        store.get_team("nope"),
        Err(Error::NotFound { .. })
    ));
}

fn data_survives_reopen(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let id = store.create_key(key_for_team("ml")).unwrap().record.id;
    let again = store.reopen();
    assert_eq!(again.get_key(&id).unwrap().team.as_deref(), Some("ml"));
    assert_eq!(again.backend_name(), format!("{backend:?}").to_lowercase());
}

fn newer_schema_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    match backend {
        Backend::Sqlite => rusqlite::Connection::open(&db.url)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap(),
        Backend::Postgres => PgServer::connect(&db.url)
            .batch_execute(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version VALUES (99)",
            )
            .unwrap(),
    }
    match Store::open(&db.url, Arc::new(Clock::system())) {
        Err(Error::Schema(msg)) => assert!(msg.contains("99"), "{msg}"),
        Err(other) => panic!("expected a schema error, got {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

/// What a downgrade below the audit log's migration drops first.
const AUDIT_TABLES: &str =
    "DROP TABLE audit_entries; DROP TABLE audit_checkpoints; DROP TABLE audit_pending;
     DROP TABLE audit_secrets;";

#[test]
fn sqlite_is_in_wal_mode_at_the_latest_schema() {
    let store = TestStore::open(Backend::Sqlite).unwrap();
    let conn = rusqlite::Connection::open(store.db.sqlite_path()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 7,
        "keys and teams; budgets and the ledger; holds, tallies and prices; forwarded; \
         guardrail tallies and invites; cache hits; the audit log"
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A database written by the previous release (schema 2) keeps its keys,
/// budgets and ledger, and gets its daily tallies rebuilt from the ledger.
#[test]
fn sqlite_schema_2_is_migrated() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    rusqlite::Connection::open(&db.url)
        .unwrap()
        .execute_batch(include_str!("fixtures/schema2.sql"))
        .unwrap();
    let store = Store::open(&db.url, Arc::new(Clock::manual(common::T0))).unwrap();
    assert_eq!(
        store.get_key("key_old").unwrap().team.as_deref(),
        Some("ml")
    );
    let budgets = store.list_budgets(None, None).unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(
        (budgets[0].used, budgets[0].reserved),
        (3.0, 0.0),
        "usage kept, the old reservation dropped"
    );
    let rows = store
        .usage(&UsageQuery {
            group_by: GroupBy::Team,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].group.as_deref(), Some("ml"));
    let t = rows[0].totals;
    assert_eq!(
        (t.requests, t.input_tokens, t.unpriced_requests),
        (2, 30, 1)
    );
    assert_eq!(store.ledger(Some("key_old"), 10).unwrap().len(), 2);
}

/// A database from before `forwarded` and guardrail event counts (SQLite
/// schema 3, PostgreSQL schema 1) is migrated: its rows reached a provider,
/// and each stored event is one finding.
fn ledger_rows_from_before_forwarded_and_counts_read_as_forwarded_once(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let report = |id: &str, forwarded: bool| -> UsageReport {
        serde_json::from_value(json!({
            "request_id": id, "reservation_id": null, "key_id": "key_a", "team": null,
            "user": null, "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
            "api": "chat_completions", "input_tokens": 10, "output_tokens": 10,
            "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 5,
            "estimated": false, "stream": false, "ts": common::T0, "forwarded": forwarded,
            "guardrail_events": [{"guardrail": "pii", "kind": "email", "direction": "input",
                                  "action": "redact", "count": 5}]
        }))
        .unwrap()
    };
    store.settle(&[report("old", true)]).unwrap();
    // Back to the previous schema, with the event as older sidecars stored it.
    let old_events =
        r#"[{"guardrail":"pii","kind":"email","direction":"input","action":"redact"}]"#;
    let downgrade = format!(
        "{AUDIT_TABLES} DROP TABLE guardrail_daily; DROP TABLE invites;
         ALTER TABLE usage_ledger DROP COLUMN cache_hit;
         ALTER TABLE usage_ledger DROP COLUMN forwarded;
         UPDATE usage_ledger SET guardrail_events = '{old_events}';"
    );
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&store.db.url).unwrap();
            conn.execute_batch(&downgrade).unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        Backend::Postgres => PgServer::connect(&store.db.url)
            .batch_execute(&format!(
                "{downgrade} UPDATE schema_version SET version = 1;"
            ))
            .unwrap(),
    }
    let again = store.reopen();
    again.settle(&[report("new", false)]).unwrap();
    let rows = again.ledger(Some("key_a"), 10).unwrap();
    let shape: Vec<(&str, bool, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.request_id.as_str(),
                r.forwarded,
                r.guardrail_events[0].count,
            )
        })
        .collect();
    assert_eq!(shape, vec![("new", false, 5), ("old", true, 1)]);
    let events = again.guardrail_events(None, None).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].count, 6,
        "the old row's one finding, rebuilt, and the new five"
    );
}

/// A database from before guardrail tallies (SQLite schema 4, PostgreSQL
/// schema 2) gets them rebuilt from its ledger rows.
fn guardrail_tallies_are_rebuilt_from_the_ledger(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let report = |id: &str, ts: i64, events: serde_json::Value| -> UsageReport {
        serde_json::from_value(json!({
            "request_id": id, "key_id": "key_a", "model": "gpt-4o", "upstream_model": "gpt-4o",
            "provider": "openai", "api": "chat_completions", "input_tokens": 1,
            "output_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "status": 200,
            "latency_ms": 5, "estimated": false, "stream": false, "ts": ts,
            "guardrail_events": events
        }))
        .unwrap()
    };
    let email = |count: u64| {
        json!({"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact",
               "count": count})
    };
    let phone = json!({"guardrail": "pii", "kind": "phone", "direction": "output",
                       "action": "monitor", "count": 1});
    store
        .settle(&[
            report("a", common::T0 - 86_400, json!([email(2)])),
            report("b", common::T0, json!([email(3), phone])),
            report("c", common::T0, json!([])),
        ])
        .unwrap();
    let before = store.guardrail_events(None, None).unwrap();
    let today = store.guardrail_events(Some("2026-11-22"), None).unwrap();
    let downgrade = format!(
        "{AUDIT_TABLES} DROP TABLE guardrail_daily; DROP TABLE invites; ALTER TABLE usage_ledger DROP COLUMN cache_hit;"
    );
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&store.db.url).unwrap();
            conn.execute_batch(&downgrade).unwrap();
            conn.pragma_update(None, "user_version", 4).unwrap();
        }
        Backend::Postgres => PgServer::connect(&store.db.url)
            .batch_execute(&format!(
                "{downgrade} UPDATE schema_version SET version = 2;"
            ))
            .unwrap(),
    }
    let again = store.reopen();
    assert_eq!(again.guardrail_events(None, None).unwrap(), before);
    assert_eq!(
        again.guardrail_events(Some("2026-11-22"), None).unwrap(),
        today
    );
    let counts: Vec<(&str, u64)> = before.iter().map(|e| (e.kind.as_str(), e.count)).collect();
    assert_eq!(counts, [("email", 5), ("phone", 1)]);
}
