#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Drives the axum router in-process, as the Envoy filter and admins would
//! (SQLite, manual clock): keys and teams here, budgets in `http_budgets.rs`.

mod common;

use axum::http::{Method, StatusCode};
use common::app::{app, error_type, App, MASTER, SERVICE};
use common::T0;
use serde_json::{json, Value};
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::model::NewKey;

/// The key calls these tests make, as the filter and admins would.
trait KeyCalls {
    async fn authorize(&self, key_hash: &str) -> (StatusCode, Value);
    async fn create_key(&self, body: Value) -> Value;
}

impl KeyCalls for App {
    async fn authorize(&self, key_hash: &str) -> (StatusCode, Value) {
        let body = json!({ "key_hash": key_hash }).to_string();
        self.filter("/v1/authorize", &body).await
    }

    async fn create_key(&self, body: Value) -> Value {
        let (status, created) = self.admin(Method::POST, "/admin/keys", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app();
    assert_eq!(
        app.send(Method::GET, "/healthz", None, "").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        app.send(Method::GET, "/readyz", None, "").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
}

#[tokio::test]
async fn authorize_valid_key_created_through_admin_api() {
    let app = app();
    let (status, _) = app
        .admin(
            Method::POST,
            "/admin/teams",
            json!({"name": "ml", "models": ["gpt-*", "claude-*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let created = app
        .create_key(json!({
            "team": "ml", "user": "alice", "models": ["gpt-4o*"], "expires_in": "1h",
            "metadata": {"purpose": "test"}
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("tg-") && key.len() == 46, "{key}");
    assert!(
        created.get("key_hash").is_none(),
        "hash must not be exposed"
    );
    let expires_at = created["expires_at"].as_i64().unwrap();
    assert_eq!(
        expires_at,
        T0 + 3_600,
        "expires_in counts from the sidecar's clock"
    );

    let (status, body) = app.authorize(&hash_key(key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "valid": true,
            "key_id": created["id"],
            "team": "ml",
            "user": "alice",
            "models": ["gpt-4o*"],
            "team_models": ["gpt-*", "claude-*"],
            "expires_at": expires_at,
        })
    );
    // The filter sends lowercase hex, but uppercase is the same hash.
    let (_, body) = app.authorize(&hash_key(key).to_uppercase()).await;
    assert_eq!(body["valid"], json!(true));
}

#[tokio::test]
async fn authorize_denials() {
    let app = app();
    let (_, unknown) = app.authorize(&"ab".repeat(32)).await;
    assert_eq!(unknown, json!({"valid": false, "reason": "unknown"}));

    let revoked = app.create_key(json!({})).await;
    let id = revoked["id"].as_str().unwrap();
    let (status, _) = app
        .admin(Method::POST, &format!("/admin/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .authorize(&hash_key(revoked["key"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"valid": false, "reason": "revoked"}));

    let inactive = app.create_key(json!({})).await;
    let id = inactive["id"].as_str().unwrap();
    let (_, record) = app
        .admin(
            Method::POST,
            &format!("/admin/keys/{id}/deactivate"),
            json!({}),
        )
        .await;
    assert_eq!(record["status"], "inactive");
    let hash = hash_key(inactive["key"].as_str().unwrap());
    assert_eq!(
        app.authorize(&hash).await.1,
        json!({"valid": false, "reason": "inactive"})
    );
    app.admin(
        Method::POST,
        &format!("/admin/keys/{id}/activate"),
        json!({}),
    )
    .await;
    assert_eq!(app.authorize(&hash).await.1["valid"], json!(true));

    // Keys can only be created already expired through the store directly.
    let expired = app
        .store
        .create_key(NewKey {
            expires_at: Some(T0 - 10),
            ..NewKey::default()
        })
        .unwrap();
    assert_eq!(
        app.authorize(&hash_key(&expired.key)).await.1,
        json!({"valid": false, "reason": "expired"})
    );
}

#[tokio::test]
async fn authorize_rejects_malformed_requests() {
    let app = app();
    for hash in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
        let (status, body) = app.authorize(hash).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "hash {hash:?}");
        assert_eq!(error_type(&body), "invalid_request");
    }
    for raw in ["{not json", "{}", r#"{"key_hash": 5}"#, "[]"] {
        let (status, body) = app.filter("/v1/authorize", raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "body {raw:?}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn admin_requires_master_key() {
    let app = app();
    let cases = [
        None,
        Some("Bearer wrong-key"),
        Some("Bearer "),
        Some("Basic dGVzdC1tYXN0ZXIta2V5"),
        Some(MASTER),
    ];
    for auth in cases {
        let (status, body) = app.send(Method::GET, "/admin/keys", auth, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "auth {auth:?}");
        assert_eq!(error_type(&body), "unauthorized");
        let (status, _) = app.send(Method::POST, "/admin/keys", auth, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        app.store.list_keys(None).unwrap().is_empty(),
        "no key may be created"
    );
    let (status, _) = app
        .send(
            Method::GET,
            "/admin/keys",
            Some(&format!("bearer {MASTER}")),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "scheme is case-insensitive");
}

#[tokio::test]
async fn activating_revoked_key_conflicts() {
    let app = app();
    let created = app.create_key(json!({"name": "x"})).await;
    let id = created["id"].as_str().unwrap();
    app.admin(Method::POST, &format!("/admin/keys/{id}/revoke"), json!({}))
        .await;
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/admin/keys/{id}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_type(&body), "conflict");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let (_, record) = app
        .admin(Method::GET, &format!("/admin/keys/{id}"), json!({}))
        .await;
    assert_eq!(record["status"], "revoked");
}

#[tokio::test]
async fn key_admin_crud() {
    let app = app();
    let created = app
        .create_key(json!({"team": "ml", "models": ["a*"], "expires_at": 4_000_000_000_i64}))
        .await;
    let id = created["id"].as_str().unwrap();
    app.create_key(json!({"team": "ops"})).await;

    let (status, record) = app
        .admin(Method::GET, &format!("/admin/keys/{id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("key");
    assert_eq!(record, expected, "record equals create response minus key");

    let (_, list) = app
        .admin(Method::GET, "/admin/keys?team=ml", json!({}))
        .await;
    let ids: Vec<_> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(ids, vec![&created["id"]]);
    let (_, all) = app.admin(Method::GET, "/admin/keys", json!({})).await;
    assert_eq!(all["keys"].as_array().unwrap().len(), 2);

    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            json!({"expires_at": null, "models": [], "user": "bob", "metadata": {"a": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["expires_at"], Value::Null);
    assert_eq!(patched["models"], json!([]));
    assert_eq!(patched["user"], "bob");
    assert_eq!(patched["team"], "ml", "absent fields stay unchanged");

    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            json!({"models": ["a b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&body), "invalid_request");

    let (status, body) = app
        .admin(Method::GET, "/admin/keys/key_doesnotexist", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), "not_found");
    let (status, _) = app
        .admin(
            Method::POST,
            "/admin/keys/key_doesnotexist/revoke",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_key_validation() {
    let app = app();
    let bad = [
        json!({"models": ["gpt 4"]}),
        json!({"models": [""]}),
        json!({"expires_in": "30x"}),
        json!({"metadata": "nope"}),
        json!({"team": "bad/name"}),
        json!({"unknown_field": 1}),
    ];
    for body in bad {
        let (status, resp) = app.admin(Method::POST, "/admin/keys", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        assert_eq!(error_type(&resp), "invalid_request");
    }
    assert!(app.store.list_keys(None).unwrap().is_empty());
}

#[tokio::test]
async fn team_admin_crud() {
    let app = app();
    let (status, team) = app
        .admin(
            Method::POST,
            "/admin/teams",
            json!({"name": "ml", "models": ["gpt-*"], "metadata": {"owner": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(team["models"], json!(["gpt-*"]));

    let (status, body) = app
        .admin(Method::POST, "/admin/teams", json!({"name": "ml"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_type(&body), "conflict");

    let (status, patched) = app
        .admin(
            Method::PATCH,
            "/admin/teams/ml",
            json!({"models": ["claude-*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["models"], json!(["claude-*"]));
    assert_eq!(patched["metadata"], json!({"owner": "x"}));

    let (_, got) = app.admin(Method::GET, "/admin/teams/ml", json!({})).await;
    assert_eq!(got, patched);
    let (_, list) = app.admin(Method::GET, "/admin/teams", json!({})).await;
    assert_eq!(list, json!({"teams": [patched]}));

    let (status, _) = app.admin(Method::GET, "/admin/teams/nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .admin(Method::PATCH, "/admin/teams/nope", json!({"models": []}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_routes_get_json_errors() {
    let app = app();
    let (status, body) = app.send(Method::GET, "/nope", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), "not_found");
    let (status, body) = app.send(Method::GET, "/v1/authorize", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_type(&body), "method_not_allowed");
}

/// The filter's endpoints take the service token and nothing else: without
/// it (or with the master key) nobody on the host can probe key hashes,
/// hold budget or forge settlements.
#[tokio::test]
async fn filter_endpoints_require_the_service_token() {
    let app = app();
    let created = app.create_key(json!({"team": "ml"})).await;
    let key_id = created["id"].as_str().unwrap();
    let (status, budget) = app
        .admin(
            Method::POST,
            "/admin/budgets",
            json!({"scope": "team", "scope_id": "ml", "kind": "requests", "limit": 5,
                   "period": "lifetime"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    let report = json!({
        "request_id": "forged", "reservation_id": null, "key_id": key_id, "team": "ml",
        "user": null, "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
        "api": "chat_completions", "input_tokens": 1_000_000, "output_tokens": 1_000_000,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 1,
        "estimated": false, "stream": false, "ts": T0
    });
    let calls = [
        (
            "/v1/authorize",
            json!({"key_hash": hash_key(created["key"].as_str().unwrap())}),
        ),
        (
            "/v1/reserve",
            json!({"request_id": "forged", "key_id": key_id, "team": "ml", "user": null,
                   "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
                   "estimated_input_tokens": 10, "max_output_tokens": 10}),
        ),
        (
            "/v1/lease",
            json!({"key_id": key_id, "team": "ml", "user": null, "model": "gpt-4o",
                   "upstream_model": "gpt-4o", "provider": "openai",
                   "estimated_input_tokens": 10, "max_output_tokens": 10}),
        ),
        ("/v1/settle", report.clone()),
        ("/v1/settle/batch", json!({ "reports": [report] })),
    ];
    let master = format!("Bearer {MASTER}");
    let lowercase_master = format!("bearer {MASTER}");
    let basic = format!("Basic {SERVICE}");
    let wrong = format!("Bearer {}", SERVICE.replace('0', "1"));
    let rejected = [
        None,
        Some(SERVICE),
        Some(basic.as_str()),
        Some("Bearer "),
        Some(wrong.as_str()),
        Some(master.as_str()),
        Some(lowercase_master.as_str()),
    ];
    for (path, body) in &calls {
        for auth in rejected {
            let (status, err) = app.send(Method::POST, path, auth, &body.to_string()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
            assert_eq!(error_type(&err), "unauthorized", "{err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.contains("service token"), "{message}");
            assert!(!message.contains(SERVICE), "{message}");
        }
    }
    assert!(
        app.store.ledger(None, 10).unwrap().is_empty(),
        "no settlement forged"
    );
    let id = budget["id"].as_str().unwrap();
    let b = app.store.get_budget(id).unwrap();
    assert_eq!(
        (b.used, b.reserved),
        (0.0, 0.0),
        "no budget held or charged"
    );

    // The service token opens the filter's endpoints only, never the admin API.
    let service = format!("Bearer {SERVICE}");
    let (status, _) = app
        .send(Method::GET, "/admin/keys", Some(&service), "")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (path, body) in &calls {
        let (status, answer) = app.filter(path, &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    let lowercase = format!("bearer {SERVICE}");
    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/authorize",
            Some(&lowercase),
            &calls[0].1.to_string(),
        )
        .await;
    assert_eq!((status, &answer["valid"]), (StatusCode::OK, &json!(true)));
    assert_eq!(app.store.ledger(None, 10).unwrap().len(), 1);
}

#[test]
fn service_token_must_be_long_printable_and_not_the_master_key() {
    use tollgate_sidecar::http::{check_service_token, MIN_SERVICE_TOKEN_LEN};
    let long = "x".repeat(MIN_SERVICE_TOKEN_LEN);
    assert_eq!(check_service_token(&long, MASTER), Ok(()));
    assert_eq!(check_service_token(SERVICE, MASTER), Ok(()));
    let short = check_service_token(&long[1..], MASTER).unwrap_err();
    assert!(
        short.contains("31 characters") && short.contains("32"),
        "{short}"
    );
    let spaced = format!("{} {}", long, long);
    assert!(check_service_token(&spaced, MASTER)
        .unwrap_err()
        .contains("printable ASCII"));
    assert!(check_service_token(&format!("{long}\n"), MASTER).is_err());
    assert!(check_service_token(&long, &long)
        .unwrap_err()
        .contains("master key"));
}
