#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Store-level behaviour: the rules both the HTTP API and the CLI rely on.

use serde_json::json;
use tempfile::TempDir;
use tollgate_sidecar::error::Error;
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::model::{
    unix_now, Authorization, DenyReason, KeyStatus, KeyUpdate, NewKey, NewTeam, StatusChange,
    TeamUpdate,
};
use tollgate_sidecar::store::Store;

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

fn key_for_team(team: &str) -> NewKey {
    NewKey {
        team: Some(team.to_owned()),
        ..NewKey::default()
    }
}

#[test]
fn create_key_returns_record_and_auto_creates_team() {
    let (_dir, store) = open();
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open(&path).unwrap();
    let created = store.create_key(NewKey::default()).unwrap();
    drop(store);
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
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

#[test]
fn list_keys_filters_by_team_in_creation_order() {
    let (_dir, store) = open();
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

#[test]
fn authorize_reports_grant_and_each_denial_reason() {
    let (_dir, store) = open();
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

    match store.authorize(&hash, 1_000).unwrap() {
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
    assert_eq!(
        store.authorize(&hash, 2_000).unwrap(),
        Authorization::Denied(DenyReason::Expired)
    );
    assert_eq!(
        store.authorize(&"0".repeat(64), 1_000).unwrap(),
        Authorization::Denied(DenyReason::Unknown)
    );

    store
        .set_key_status(&created.record.id, StatusChange::Deactivate)
        .unwrap();
    assert_eq!(
        store.authorize(&hash, 1_000).unwrap(),
        Authorization::Denied(DenyReason::Inactive)
    );
    store
        .set_key_status(&created.record.id, StatusChange::Revoke)
        .unwrap();
    // Revocation wins over expiry when both apply.
    assert_eq!(
        store.authorize(&hash, 5_000).unwrap(),
        Authorization::Denied(DenyReason::Revoked)
    );
}

#[test]
fn key_without_team_gets_empty_team_models() {
    let (_dir, store) = open();
    let created = store.create_key(NewKey::default()).unwrap();
    match store
        .authorize(&hash_key(&created.key), unix_now())
        .unwrap()
    {
        Authorization::Granted(g) => {
            assert_eq!(g.team, None);
            assert!(g.team_models.is_empty());
            assert!(g.models.is_empty());
            assert_eq!(g.expires_at, None);
        }
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn status_transitions() {
    let (_dir, store) = open();
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

#[test]
fn update_key_changes_only_given_fields() {
    let (_dir, store) = open();
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

#[test]
fn teams_create_conflict_update_and_list() {
    let (_dir, store) = open();
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

#[test]
fn data_survives_reopen_and_schema_version_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let id = Store::open(&path)
        .unwrap()
        .create_key(key_for_team("ml"))
        .unwrap()
        .record
        .id;
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_key(&id).unwrap().team.as_deref(), Some("ml"));

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "keys and teams, then budgets and the ledger");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    match Store::open(&path) {
        Err(Error::Schema(msg)) => assert!(msg.contains("99"), "{msg}"),
        Err(other) => panic!("expected a schema error, got {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}
