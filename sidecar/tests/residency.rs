#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Team and key model lists against the gateway's residency pins, on
//! SQLite and PostgreSQL: edits that would leave a pinned team or key no
//! model in its regions are refused, and `residency check` (what `serve`
//! runs at start-up) finds the ones already in the database.

mod common;

use std::sync::Arc;

use common::{Backend, TestStore};
use serde_json::json;
use tollgate_sidecar::cli::{run_residency, ResidencyCommand};
use tollgate_sidecar::error::Error;
use tollgate_sidecar::model::{KeyUpdate, NewKey, NewTeam, TeamUpdate};
use tollgate_sidecar::residency::Pins;
use tollgate_sidecar::store::Store;

on_both_backends!(
    edits_that_leave_a_pinned_team_nothing_are_refused,
    the_check_finds_what_was_written_without_the_pins,
);

/// Pins from a filter configuration: team `legal` to `eu`, where only
/// `azure-gpt-4o` serves; `gpt-*` is served in the US.
fn pins() -> Arc<Pins> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.json");
    let settings = json!({
        "providers": [
            {"name": "openai", "kind": "openai", "cluster": "c1", "region": "us"},
            {"name": "azure", "kind": "azure", "cluster": "c2", "region": "eu",
             "api_version": "2024-10-21", "auth": {"type": "env", "var": "K"}}
        ],
        "models": [
            {"name": "gpt-*", "provider": "openai"},
            {"name": "azure-gpt-4o", "provider": "azure", "deployment": "gpt-4o"}
        ],
        "residency": {"teams": {"legal": ["eu"]}}
    });
    std::fs::write(&path, settings.to_string()).unwrap();
    Arc::new(Pins::load(&path).unwrap())
}

fn models(list: &[&str]) -> Vec<String> {
    list.iter().map(|m| (*m).to_owned()).collect()
}

fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Invalid(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn edits_that_leave_a_pinned_team_nothing_are_refused(backend: Backend) {
    let Some(ts) = TestStore::open(backend) else {
        return;
    };
    let store = ts.reopen().with_pins(pins());
    let team = |m: &[&str]| NewTeam {
        name: "legal".into(),
        models: models(m),
        ..NewTeam::default()
    };
    let message = refused(store.create_team(team(&["gpt-4o"])));
    assert!(
        message.starts_with("team legal is pinned to eu where the gateway serves azure-gpt-4o"),
        "{message}"
    );
    store.create_team(team(&["azure-*", "gpt-4o"])).unwrap();
    // A key in the team whose own models leave it nothing in the EU.
    let key = |m: &[&str]| NewKey {
        team: Some("legal".into()),
        models: models(m),
        ..NewKey::default()
    };
    assert!(refused(store.create_key(key(&["gpt-4o"]))).contains("its models (gpt-4o)"));
    let id = store.create_key(key(&[])).unwrap().record.id;
    let narrow = KeyUpdate {
        models: Some(models(&["gpt-*"])),
        ..KeyUpdate::default()
    };
    refused(store.update_key(&id, narrow));
    // The team may not drop the EU model either, for itself or for its key.
    let update = |m: &[&str]| TeamUpdate {
        models: Some(models(m)),
        metadata: None,
    };
    refused(store.update_team("legal", update(&["gpt-4o"])));
    store
        .update_key(
            &id,
            KeyUpdate {
                models: Some(models(&["azure-gpt-4o"])),
                ..KeyUpdate::default()
            },
        )
        .unwrap();
    let message = refused(store.update_team("legal", update(&["azure-*-mini"])));
    assert!(message.starts_with("team legal"), "{message}");
    // Teams nobody pinned are not checked.
    store
        .create_team(NewTeam {
            name: "ops".into(),
            models: models(&["gpt-4o"]),
            ..NewTeam::default()
        })
        .unwrap();
    assert_eq!(store.residency_problems().unwrap(), Vec::<String>::new());
}

fn the_check_finds_what_was_written_without_the_pins(backend: Backend) {
    let Some(ts) = TestStore::open(backend) else {
        return;
    };
    // Written before the gateway pinned the team.
    ts.create_team(NewTeam {
        name: "legal".into(),
        models: models(&["gpt-*"]),
        ..NewTeam::default()
    })
    .unwrap();
    let pinned: Store = ts.reopen().with_pins(pins());
    let problems = pinned.residency_problems().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("team legal is pinned to eu"));
    let mut out = Vec::new();
    let err = run_residency(&pinned, ResidencyCommand::Check, &mut out).unwrap_err();
    assert!(err.to_string().contains("1 pinned team or key"), "{err}");
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("team legal is pinned to eu"));
    // Fixed: the check passes.
    pinned
        .update_team(
            "legal",
            TeamUpdate {
                models: Some(models(&["azure-gpt-4o"])),
                metadata: None,
            },
        )
        .unwrap();
    let mut out = Vec::new();
    run_residency(&pinned, ResidencyCommand::Check, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().starts_with("OK"));
    // Without the gateway's configuration there is nothing to check against.
    let err = run_residency(&ts.reopen(), ResidencyCommand::Check, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("--gateway-config"), "{err}");
}
