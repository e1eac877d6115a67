#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What the web console needs from the sidecar, on SQLite and PostgreSQL:
//! its pages and their headers, key search, users, invite links, usage per
//! day (JSON and CSV) and guardrail event counts.

mod common;

use std::sync::{Arc, Barrier};

use axum::http::{Method, StatusCode};
use common::app::{app, app_on, block_on, error_type, App, MASTER};
use common::{Backend, PgServer, T0};
use serde_json::{json, Value};
use tollgate_sidecar::error::Error;
use tollgate_sidecar::keys::hash_key;
use tollgate_sidecar::model::NewInvite;

on_both_backends!(
    keys_are_searched_by_text_status_and_team,
    users_are_the_names_keys_carry,
    an_invite_link_creates_one_key_once,
    concurrent_redemptions_create_one_key,
    usage_per_day_by_group_as_json_and_csv,
    guardrail_events_are_counted_by_kind_and_direction,
);

/// A usage report as the filter sends it.
fn report(id: &str, ts: i64, team: &str, model: &str, events: Value, forwarded: bool) -> Value {
    json!({
        "request_id": id, "key_id": format!("key_{team}"), "team": team, "user": "alice",
        "model": model, "upstream_model": model, "provider": "openai",
        "api": "chat_completions", "input_tokens": 1000, "output_tokens": 500,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 10,
        "estimated": false, "stream": false, "guardrail_events": events,
        "forwarded": forwarded, "ts": ts
    })
}

async fn create_key(app: &App, body: Value) -> Value {
    let (status, created) = app.admin(Method::POST, "/admin/keys", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn key_ids(app: &App, query: &str) -> Vec<String> {
    let (status, body) = app
        .admin(Method::GET, &format!("/admin/keys{query}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn console_pages_are_embedded_and_locked_down() {
    let app = app();
    let (status, _, _) = app.send_raw(Method::GET, "/console", None, "").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/invite", "text/html"),
        ("/console/invite.js", "text/javascript"),
    ] {
        let (status, headers, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path} needs no key");
        let header = |name: &str| headers[name].to_str().unwrap();
        assert!(
            header("content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-store");
        // Data reaches the page as text only: no HTML parsing of API answers.
        let body = String::from_utf8(body.to_vec()).unwrap();
        for unsafe_sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!body.contains(unsafe_sink), "{path} uses {unsafe_sink}");
        }
        assert!(
            !body.contains("style=\""),
            "{path}: inline styles break the CSP"
        );
    }
    let (status, body) = app.send(Method::GET, "/console/nope", None, "").await;
    assert_eq!(
        (status, error_type(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // The admin API behind the console still wants the master key.
    let (status, _) = app.send(Method::GET, "/admin/users", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn keys_are_searched_by_text_status_and_team(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    block_on(async {
        create_key(
            &app,
            json!({"name": "Notebook", "team": "ml", "user": "Alice"}),
        )
        .await;
        create_key(
            &app,
            json!({"name": "ci_bot", "team": "ops", "metadata": {"cost_center": "X-42"}}),
        )
        .await;
        let revoked = create_key(&app, json!({"name": "old 100%", "team": "ml"})).await;
        let id = revoked["id"].as_str().unwrap();
        app.admin(Method::POST, &format!("/admin/keys/{id}/revoke"), json!({}))
            .await;

        assert_eq!(key_ids(&app, "").await, ["Notebook", "ci_bot", "old 100%"]);
        assert_eq!(
            key_ids(&app, "?search=NOTE").await,
            ["Notebook"],
            "any case"
        );
        assert_eq!(
            key_ids(&app, "?search=alice").await,
            ["Notebook"],
            "by user"
        );
        assert_eq!(
            key_ids(&app, "?search=x-42").await,
            ["ci_bot"],
            "by metadata"
        );
        assert_eq!(
            key_ids(&app, "?search=100%25").await,
            ["old 100%"],
            "% is literal"
        );
        assert_eq!(
            key_ids(&app, "?search=i_b").await,
            ["ci_bot"],
            "_ is literal"
        );
        assert!(
            key_ids(&app, "?search=c_b").await.is_empty(),
            "_ is no wildcard"
        );
        let prefix = revoked["key_prefix"].as_str().unwrap();
        assert_eq!(
            key_ids(&app, &format!("?search={}", &prefix[3..])).await,
            ["old 100%"]
        );
        assert_eq!(key_ids(&app, &format!("?search={id}")).await, ["old 100%"]);
        assert_eq!(key_ids(&app, "?status=revoked").await, ["old 100%"]);
        assert_eq!(key_ids(&app, "?status=active&team=ml").await, ["Notebook"]);
        assert_eq!(
            key_ids(&app, "?search=&status=&team=").await.len(),
            3,
            "empty fields of the console's form mean any"
        );
        let (status, body) = app
            .admin(Method::GET, "/admin/keys?status=gone", json!({}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    });
}

fn users_are_the_names_keys_carry(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    block_on(async {
        create_key(&app, json!({"team": "ml", "user": "bob"})).await;
        create_key(&app, json!({"team": "ops", "user": "bob"})).await;
        let gone = create_key(&app, json!({"team": "ml", "user": "bob"})).await;
        let id = gone["id"].as_str().unwrap();
        app.admin(
            Method::POST,
            &format!("/admin/keys/{id}/deactivate"),
            json!({}),
        )
        .await;
        create_key(&app, json!({"user": "alice", "expires_at": T0 - 1})).await;
        create_key(&app, json!({"team": "ml"})).await;
        let (status, body) = app.admin(Method::GET, "/admin/users", json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"users": [
                {"user": "alice", "teams": [], "keys": 1, "active_keys": 0},
                {"user": "bob", "teams": ["ml", "ops"], "keys": 3, "active_keys": 2},
            ]})
        );
    });
}

async fn redeem(app: &App, token: &str) -> (StatusCode, Value) {
    let body = json!({ "token": token, "name": "laptop" }).to_string();
    app.send(Method::POST, "/console/invite/redeem", None, &body)
        .await
}

/// The invites table as stored: (token_hash, redeemed) per row.
fn stored_invites(app: &App, backend: Backend) -> Vec<(String, bool)> {
    let sql = "SELECT token_hash, redeemed_at IS NOT NULL FROM invites ORDER BY created_at";
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(app.store.db.sqlite_path()).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        // The sync client runs its own runtime: not inside the test's.
        Backend::Postgres => {
            let url = app.store.db.url.clone();
            std::thread::spawn(move || {
                PgServer::connect(&url)
                    .query(sql, &[])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            })
            .join()
            .unwrap()
        }
    }
}

fn an_invite_link_creates_one_key_once(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    block_on(async {
        let (status, team) = app
            .admin(
                Method::POST,
                "/admin/teams",
                json!({"name": "ml", "models": ["gpt-*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{team}");
        let (status, created) = app
            .admin(
                Method::POST,
                "/admin/invites",
                json!({"team": "ml", "user": "carol", "models": ["gpt-4o*"],
                       "key_expires_in": "30d"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let token = created["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("tgi-") && token.len() == 47, "{token}");
        assert_eq!(created["status"], "pending");
        assert_eq!(
            created["expires_at"],
            T0 + 7 * 86_400,
            "links last 7 days by default"
        );
        // Only the token's hash is stored, and listings never show either.
        assert_eq!(stored_invites(&app, backend), [(hash_key(&token), false)]);
        let (_, listed) = app.admin(Method::GET, "/admin/invites", json!({})).await;
        let invite = &listed["invites"][0];
        assert!(invite.get("token").is_none() && invite.get("token_hash").is_none());
        assert_eq!(invite["user"], "carol");

        // Redeeming needs no master key: the token is the credential.
        let (status, key) = redeem(&app, &token).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let secret = key["key"].as_str().unwrap();
        assert!(secret.starts_with("tg-"));
        assert_eq!(
            (
                &key["team"],
                &key["user"],
                &key["name"],
                &key["models"],
                &key["expires_at"]
            ),
            (
                &json!("ml"),
                &json!("carol"),
                &json!("laptop"),
                &json!(["gpt-4o*"]),
                &json!(T0 + 30 * 86_400)
            )
        );
        assert_eq!(key["metadata"], json!({"invite": created["id"]}));
        let check = json!({ "key_hash": hash_key(secret) }).to_string();
        let (_, grant) = app.filter("/v1/authorize", &check).await;
        assert_eq!(
            (&grant["valid"], &grant["team_models"]),
            (&json!(true), &json!(["gpt-*"]))
        );
        let (_, listed) = app
            .admin(Method::GET, "/admin/invites?team=ml", json!({}))
            .await;
        assert_eq!(listed["invites"][0]["status"], "redeemed");
        assert_eq!(listed["invites"][0]["key_id"], key["id"]);

        // Once only.
        let (status, again) = redeem(&app, &token).await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        assert!(again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"));
        assert_eq!(key_ids(&app, "?team=ml").await, ["laptop"]);
        let (status, unknown) = redeem(&app, "tgi-nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
        assert!(
            !unknown.to_string().contains("tgi-nope"),
            "the token is never echoed"
        );

        // Expired and withdrawn links create nothing.
        let invite = |user: &str| json!({"team": "ml", "user": user, "expires_in": "1h"});
        let (_, late) = app
            .admin(Method::POST, "/admin/invites", invite("dan"))
            .await;
        let (_, withdrawn) = app
            .admin(Method::POST, "/admin/invites", invite("eve"))
            .await;
        app.store.clock.advance(3_600);
        let (status, body) = redeem(&app, late["token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"));
        let id = withdrawn["id"].as_str().unwrap();
        let (status, _) = app
            .admin(Method::DELETE, &format!("/admin/invites/{id}"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = redeem(&app, withdrawn["token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app
            .admin(Method::DELETE, &format!("/admin/invites/{id}"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, listed) = app.admin(Method::GET, "/admin/invites", json!({})).await;
        let statuses: Vec<&str> = listed["invites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["redeemed", "expired"]);

        for (body, status) in [
            (json!({"team": "nope", "user": "x"}), StatusCode::NOT_FOUND),
            (json!({"team": "ml", "user": " "}), StatusCode::BAD_REQUEST),
            (
                json!({"team": "ml", "user": "x", "expires_in": "soon"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"team": "ml", "user": "x", "models": ["a b"]}),
                StatusCode::BAD_REQUEST,
            ),
            (json!({"team": "ml"}), StatusCode::BAD_REQUEST),
        ] {
            let (got, answer) = app
                .admin(Method::POST, "/admin/invites", body.clone())
                .await;
            assert_eq!(got, status, "{body}: {answer}");
        }
        // Creating and listing invites is admin work.
        let (status, _) = app.send(Method::GET, "/admin/invites", None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app
            .send(
                Method::POST,
                "/admin/invites",
                None,
                r#"{"team":"ml","user":"x"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    });
}

fn concurrent_redemptions_create_one_key(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    let store = Arc::clone(&app.store.store);
    store
        .create_team(tollgate_sidecar::model::NewTeam {
            name: "ml".into(),
            ..Default::default()
        })
        .unwrap();
    let token = store
        .create_invite(NewInvite {
            team: "ml".into(),
            user: "carol".into(),
            models: vec![],
            expires_at: T0 + 60,
            key_ttl_s: None,
        })
        .unwrap()
        .token;
    let barrier = Arc::new(Barrier::new(8));
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier, token) = (Arc::clone(&store), Arc::clone(&barrier), token.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.redeem_invite(&token, None)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict(_))))
        .count();
    assert_eq!((won, refused), (1, 7), "{results:?}");
    assert_eq!(store.list_keys(Some("ml")).unwrap().len(), 1);
}

fn usage_per_day_by_group_as_json_and_csv(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    block_on(async {
        let yesterday = T0 - 86_400;
        let reports = [
            report("u1", yesterday, "ml", "gpt-4o", json!([]), true),
            report("u2", T0, "ml", "gpt-4o", json!([]), true),
            report("u3", T0, "ml", "gpt-4o-mini", json!([]), true),
            report("u4", T0, "ops", "gpt-4o", json!([]), true),
            // Answered by the gateway itself: not a provider request.
            report("u5", T0, "ops", "gpt-4o", json!([]), false),
        ];
        let (status, _) = app
            .filter(
                "/v1/settle/batch",
                &json!({ "reports": reports }).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = app
            .admin(Method::GET, "/admin/usage/daily?group_by=team", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let rows: Vec<(&str, &str, u64)> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["day"].as_str().unwrap(),
                    r["team"].as_str().unwrap(),
                    r["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-11-21", "ml", 1),
                ("2026-11-22", "ml", 2),
                ("2026-11-22", "ops", 1)
            ]
        );
        // gpt-4o: 1000 in at $2.50 and 500 out at $10 per 1M.
        assert_eq!(body["rows"][0]["cost_usd"], 0.0075);
        assert_eq!(body["rows"][0]["input_tokens"], 1000);

        let (_, by_model) = app
            .admin(
                Method::GET,
                "/admin/usage/daily?group_by=model&from=2026-11-22&to=2026-11-22",
                json!({}),
            )
            .await;
        let models: Vec<(&str, u64)> = by_model["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["model"].as_str().unwrap(),
                    r["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(models, [("gpt-4o", 2), ("gpt-4o-mini", 1)]);

        let (status, content_type, csv) = app
            .send_raw(
                Method::GET,
                "/admin/usage/daily?group_by=team&format=csv",
                Some(&format!("Bearer {MASTER}")),
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        let csv = String::from_utf8(csv.to_vec()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "day,team,requests,input_tokens,output_tokens,cached_tokens,reasoning_tokens,\
             cost_usd,estimated_requests,unpriced_requests"
        );
        assert_eq!(lines[1], "2026-11-21,ml,1,1000,500,0,0,0.0075,0,0");
        assert_eq!(lines.len(), 4);

        for bad in ["group_by=day", "group_by=team&from=yesterday", "format=xml"] {
            let (status, body) = app
                .admin(Method::GET, &format!("/admin/usage/daily?{bad}"), json!({}))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
    });
}

fn guardrail_events_are_counted_by_kind_and_direction(backend: Backend) {
    let Some(app) = app_on(backend) else { return };
    block_on(async {
        let event = |kind: &str, direction: &str, action: &str, count: u64| {
            json!({"guardrail": "pii", "kind": kind, "direction": direction,
                   "action": action, "count": count})
        };
        let reports = [
            report(
                "g1",
                T0 - 86_400,
                "ml",
                "gpt-4o",
                json!([event("email", "input", "redact", 2)]),
                true,
            ),
            report(
                "g2",
                T0,
                "ml",
                "gpt-4o",
                json!([
                    event("email", "input", "redact", 3),
                    event("phone", "output", "redact", 1)
                ]),
                true,
            ),
            // A blocked request: its events count, though nothing was forwarded.
            report(
                "g3",
                T0,
                "ml",
                "gpt-4o",
                json!([{"guardrail": "secrets", "kind": "aws_access_key", "direction": "input",
                        "action": "block"}]),
                false,
            ),
        ];
        let batch = json!({ "reports": reports }).to_string();
        app.filter("/v1/settle/batch", &batch).await;
        // A retried batch is a duplicate and counts nothing twice.
        app.filter("/v1/settle/batch", &batch).await;
        let (status, body) = app.admin(Method::GET, "/admin/guardrails", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"events": [
                {"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact", "count": 5},
                {"guardrail": "pii", "kind": "phone", "direction": "output", "action": "redact", "count": 1},
                {"guardrail": "secrets", "kind": "aws_access_key", "direction": "input", "action": "block",
                 "count": 1},
            ]})
        );
        let (_, today) = app
            .admin(Method::GET, "/admin/guardrails?from=2026-11-22", json!({}))
            .await;
        assert_eq!(today["events"][0]["count"], 3);
        let (status, _) = app
            .admin(Method::GET, "/admin/guardrails?to=11/22", json!({}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
}
