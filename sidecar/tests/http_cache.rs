#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response cache over HTTP: the filter's `/v1/cache/put` and
//! `/v1/cache/get` with their exact JSON and TTLs, and a cache hit's usage
//! report in the ledger: the tokens it saved, at no cost, no budget taken.

mod common;

use axum::http::{Method, StatusCode};
use common::app::{app, App};
use common::T0;
use serde_json::{json, Value};

async fn post(app: &App, path: &str, body: Value) -> (StatusCode, Value) {
    app.filter(path, &body.to_string()).await
}

fn answer() -> Value {
    json!({
        "content_type": "text/event-stream",
        "body": "data: {\"x\":1}\n\ndata: [DONE]\n\n",
        "provider": "openai", "upstream_model": "gpt-4o",
        "input_tokens": 12, "output_tokens": 30, "cached_tokens": 0, "reasoning_tokens": 0
    })
}

#[tokio::test]
async fn answers_are_kept_by_key_until_their_ttl() {
    let app = app();
    let (status, _) = post(&app, "/v1/cache/get", json!({"key": "k1"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = post(
        &app,
        "/v1/cache/put",
        json!({"entries": [
            {"key": "k1", "ttl_s": 60, "answer": answer()},
            {"key": "k3", "ttl_s": 1, "answer": answer()}
        ]}),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"stored": [true, true]}))
    );
    let (status, got) = post(&app, "/v1/cache/get", json!({"key": "k1"})).await;
    assert_eq!((status, got), (StatusCode::OK, answer()));
    let (status, _) = post(&app, "/v1/cache/get", json!({"key": "k2"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.store.clock.advance(1).unwrap();
    let (status, _) = post(&app, "/v1/cache/get", json!({"key": "k3"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "its own TTL");
    app.store.clock.advance(59).unwrap();
    let (status, _) = post(&app, "/v1/cache/get", json!({"key": "k1"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "expired");
    // The service token is required, like every filter call.
    let (status, _) = app
        .send(Method::POST, "/v1/cache/get", None, r#"{"key": "k1"}"#)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hit_is_listed_with_the_tokens_it_saved_and_charges_nothing() {
    let app = app();
    let (status, budget) = app
        .admin(
            Method::POST,
            "/admin/budgets",
            json!({"scope": "key", "scope_id": "key_a", "kind": "tokens", "limit": 100,
                   "period": "daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    let hit = json!({
        "request_id": "hit-1", "key_id": "key_a", "team": "ml", "user": null,
        "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
        "api": "chat_completions", "input_tokens": 12, "output_tokens": 30,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 1,
        "estimated": false, "stream": true, "guardrail_events": [], "ts": T0,
        "forwarded": false, "cache_hit": true
    });
    let (status, settled) = post(&app, "/v1/settle", hit).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled["cost_usd"], 0.0);
    let (_, rows) = app
        .admin(Method::GET, "/admin/usage/requests?key_id=key_a", json!({}))
        .await;
    let row = &rows["requests"][0];
    assert_eq!(
        (
            &row["cache_hit"],
            &row["forwarded"],
            &row["input_tokens"],
            &row["output_tokens"]
        ),
        (&json!(true), &json!(false), &json!(12), &json!(30))
    );
    let (_, b) = app
        .admin(
            Method::GET,
            &format!("/admin/budgets/{}", budget["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(b["used"], json!(0.0), "a hit takes nothing from budgets");
}
