#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Budgets over HTTP: the filter's reserve, lease and settle calls with
//! their exact JSON, the admin API for budgets, prices, usage and the test clock, and
//! 50 concurrent reserves against a real bound server on both backends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};

use axum::http::{Method, StatusCode};
use common::app::{app, app_on_system_clock, error_type, App, MASTER, SERVICE};
use common::{Backend, TestStore, T0};
use serde_json::{json, Value};
use tollgate_sidecar::http::{router, AppState};

on_both_backends!(fifty_concurrent_reserves_over_http_pass_a_budget_of_ten);

fn reserve_body(request_id: &str, key: &str, model: &str) -> Value {
    json!({
        "request_id": request_id, "key_id": key, "team": "ml", "user": null,
        "model": model, "upstream_model": model, "provider": "openai",
        "estimated_input_tokens": 1000, "max_output_tokens": 500
    })
}

fn report(request_id: &str, reservation: Option<&str>, key: &str, model: &str, ts: i64) -> Value {
    json!({
        "request_id": request_id, "reservation_id": reservation, "key_id": key,
        "team": "ml", "user": null, "model": model, "upstream_model": model,
        "provider": "openai", "api": "chat_completions",
        "input_tokens": 1000, "output_tokens": 200, "cached_tokens": 0, "reasoning_tokens": 0,
        "status": 200, "latency_ms": 900, "estimated": false, "stream": true,
        "guardrail_events": [
            {"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact"}
        ],
        "ts": ts
    })
}

async fn post(app: &App, path: &str, body: Value) -> (StatusCode, Value) {
    app.filter(path, &body.to_string()).await
}

#[tokio::test]
async fn reserve_and_settle_answer_the_documented_json() {
    let app = app();
    let (status, budget) = app
        .admin(
            Method::POST,
            "/admin/budgets",
            json!({"scope": "team", "scope_id": "ml", "kind": "requests", "limit": 1,
                   "period": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    assert_eq!(budget["mode"], "hard", "mode defaults to hard");

    // gpt-4o: 1000 in at $2.50 + 500 out at $10 per 1M.
    let (status, ok) = post(&app, "/v1/reserve", reserve_body("r1", "key_a", "gpt-4o")).await;
    assert_eq!(status, StatusCode::OK);
    let reservation = ok["reservation_id"].as_str().unwrap().to_owned();
    assert!(reservation.starts_with("res_"));
    assert_eq!(
        ok,
        json!({"allowed": true, "reservation_id": reservation, "estimated_cost_usd": 0.0075,
               "priced": true, "warnings": []})
    );

    let (status, no) = post(&app, "/v1/reserve", reserve_body("r2", "key_a", "gpt-4o")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        no,
        json!({
            "allowed": false, "reason": "budget", "budget_id": budget["id"],
            "scope": "team", "scope_id": "ml", "kind": "requests", "period": "monthly",
            "limit": 1.0, "used": 0.0, "reserved": 1.0,
            "resets_at": 1_796_083_200, "retry_after_s": 60,
            "message": "Team ml has used 0 (plus 1 in flight) of its 1 monthly requests; \
                        resets 2026-12-01T00:00:00Z"
        })
    );

    let one = report("r1", Some(&reservation), "key_a", "gpt-4o", T0);
    let (status, settled) = post(&app, "/v1/settle", one.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        settled,
        json!({"request_id": "r1", "cost_usd": 0.0045, "priced": true, "duplicate": false})
    );
    let (_, again) = post(&app, "/v1/settle", one.clone()).await;
    assert_eq!(again["duplicate"], true);

    let mystery = report("r3", None, "key_b", "mystery", T0);
    let (status, batch) = post(&app, "/v1/settle/batch", json!({"reports": [one, mystery]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        batch,
        json!({"results": [
            {"request_id": "r1", "cost_usd": 0.0045, "priced": true, "duplicate": true},
            {"request_id": "r3", "cost_usd": 0.0, "priced": false, "duplicate": false}
        ]})
    );

    let (_, rows) = app
        .admin(
            Method::GET,
            "/admin/usage/requests?key_id=key_a&limit=10",
            json!({}),
        )
        .await;
    let rows = rows["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["guardrail_events"],
        json!([{"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact",
                "count": 1}]),
        "a report without counts: one finding each"
    );
    assert_eq!(
        (
            &rows[0]["stream"],
            &rows[0]["latency_ms"],
            &rows[0]["forwarded"]
        ),
        (&json!(true), &json!(900), &json!(true))
    );
    let (_, all) = app
        .admin(Method::GET, "/admin/usage/requests", json!({}))
        .await;
    assert_eq!(all["requests"].as_array().unwrap().len(), 2);

    for (path, body) in [
        ("/v1/reserve", json!({"request_id": "x"})),
        ("/v1/settle", json!({"request_id": "x"})),
        ("/v1/settle/batch", json!({"reports": [{"request_id": ""}]})),
    ] {
        let (status, err) = post(&app, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
        assert_eq!(error_type(&err), "invalid_request");
    }
}

fn lease_body(key: &str, release: Value) -> Value {
    json!({
        "key_id": key, "team": "ml", "user": null, "model": "gpt-4o",
        "upstream_model": "gpt-4o", "provider": "openai",
        "estimated_input_tokens": 1000, "max_output_tokens": 500, "release": release
    })
}

#[tokio::test]
async fn lease_and_settle_on_it_answer_the_documented_json() {
    let app = app();
    let (status, budget) = app
        .admin(
            Method::POST,
            "/admin/budgets",
            json!({"scope": "team", "scope_id": "ml", "kind": "requests", "limit": 100,
                   "period": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    let id = budget["id"].as_str().unwrap().to_owned();
    let budget_path = format!("/admin/budgets/{id}");

    let (status, lease) = post(&app, "/v1/lease", lease_body("key_a", json!([]))).await;
    assert_eq!(status, StatusCode::OK, "{lease}");
    let lease_id = lease["lease_id"].as_str().unwrap().to_owned();
    assert!(lease_id.starts_with("lse_"), "{lease_id}");
    assert_eq!(
        lease,
        json!({"allowed": true, "lease_id": lease_id, "ttl_ms": 10_000,
               "budgets": [{"budget_id": id, "kind": "requests", "granted": 12.0}],
               "price": {"input": 2.5, "output": 10.0}, "warnings": []})
    );
    let (_, b) = app.admin(Method::GET, &budget_path, json!({})).await;
    assert_eq!((&b["used"], &b["reserved"]), (&json!(0.0), &json!(12.0)));

    // A request admitted on the lease: its report names the lease and the debit.
    let mut one = report("r1", None, "key_a", "gpt-4o", T0);
    one["lease_id"] = json!(lease_id);
    one["lease_debits"] = json!([{"budget_id": id, "amount": 1.0}]);
    let (status, settled) = post(&app, "/v1/settle", one.clone()).await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(settled["duplicate"], false);
    let (_, again) = post(&app, "/v1/settle/batch", json!({"reports": [one]})).await;
    assert_eq!(again["results"][0]["duplicate"], true);
    let (_, b) = app.admin(Method::GET, &budget_path, json!({})).await;
    assert_eq!((&b["used"], &b["reserved"]), (&json!(1.0), &json!(11.0)));

    // The next lease hands back the rest of this one.
    let release = json!([{"lease_id": lease_id, "unused": [{"budget_id": id, "amount": 11.0}]}]);
    let (_, next) = post(&app, "/v1/lease", lease_body("key_a", release)).await;
    assert_eq!(
        next["budgets"][0]["granted"],
        json!(12.0),
        "99 left: {next}"
    );
    let (_, b) = app.admin(Method::GET, &budget_path, json!({})).await;
    assert_eq!((&b["used"], &b["reserved"]), (&json!(1.0), &json!(12.0)));

    // Refused: the reserve refusal, word for word.
    let (status, _) = app
        .admin(Method::PATCH, &budget_path, json!({"limit": 13}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, no) = post(&app, "/v1/lease", lease_body("key_a", json!([]))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, no_reserve) = post(&app, "/v1/reserve", reserve_body("r2", "key_a", "gpt-4o")).await;
    assert_eq!(no, no_reserve);
    assert_eq!(
        no,
        json!({
            "allowed": false, "reason": "budget", "budget_id": id,
            "scope": "team", "scope_id": "ml", "kind": "requests", "period": "monthly",
            "limit": 13.0, "used": 1.0, "reserved": 12.0,
            "resets_at": 1_796_083_200, "retry_after_s": 60,
            "message": "Team ml has used 1 (plus 12 in flight) of its 13 monthly requests; \
                        resets 2026-12-01T00:00:00Z"
        })
    );

    // No hard budget for another team's key: an empty lease, no callouts for its TTL.
    let mut other = lease_body("key_b", json!([]));
    other["team"] = json!("ops");
    let (_, free) = post(&app, "/v1/lease", other).await;
    assert_eq!(
        (&free["budgets"], &free["ttl_ms"]),
        (&json!([]), &json!(10_000))
    );

    for bad in [
        json!({"key_id": "key_a"}),
        lease_body("", json!([])),
        lease_body("key_a", json!([{"lease_id": "l"}])),
        lease_body("key_a", json!({"lease_id": "l"})),
    ] {
        let (status, err) = post(&app, "/v1/lease", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert_eq!(error_type(&err), "invalid_request");
    }
}

#[tokio::test]
async fn budget_admin_api() {
    let app = app();
    let create = |body: Value| app.admin(Method::POST, "/admin/budgets", body);
    let (_, a) = create(
        json!({"scope": "key", "scope_id": "key_a", "kind": "tokens",
                               "limit": 5000, "period": "minute", "mode": "tracking"}),
    )
    .await;
    let (_, b) = create(
        json!({"scope": "team", "scope_id": "ml", "kind": "spend", "limit": 10,
                               "period": "weekly"}),
    )
    .await;
    assert_eq!(a["resets_at"], T0 + 60);
    assert_eq!(
        b["resets_at"],
        T0 + 12 * 3600,
        "weekly budgets reset Monday 00:00 UTC"
    );

    let (status, list) = app.admin(Method::GET, "/admin/budgets", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["budgets"].as_array().unwrap().len(), 2);
    let (_, teams) = app
        .admin(
            Method::GET,
            "/admin/budgets?scope=team&scope_id=ml",
            json!({}),
        )
        .await;
    assert_eq!(teams["budgets"], json!([b]));
    let (status, _) = app
        .admin(Method::GET, "/admin/budgets?scope=org", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let path = format!("/admin/budgets/{}", b["id"].as_str().unwrap());
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &path,
            json!({"limit": 25.5, "mode": "tracking"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (&patched["limit"], &patched["mode"]),
        (&json!(25.5), &json!("tracking"))
    );
    let (_, got) = app.admin(Method::GET, &path, json!({})).await;
    assert_eq!(got, patched);
    let (status, _) = app.admin(Method::PATCH, &path, json!({"limit": -1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = app.admin(Method::DELETE, &path, json!({})).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, err) = app.admin(Method::DELETE, &path, json!({})).await;
    assert_eq!(
        (status, error_type(&err)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    for bad in [
        json!({"scope": "org", "scope_id": "x", "kind": "spend", "limit": 1, "period": "daily"}),
        json!({"scope": "key", "scope_id": "x", "kind": "spend", "limit": 1, "period": "minute"}),
        json!({"scope": "key", "scope_id": "x", "kind": "spend", "limit": 1, "period": "daily",
               "extra": 1}),
        json!({"scope": "key", "scope_id": "", "kind": "spend", "limit": 1, "period": "daily"}),
    ] {
        let (status, err) = create(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {err}");
    }
    let (status, _) = app
        .send(Method::GET, "/admin/budgets", Some("Bearer wrong"), "")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn prices_admin_api() {
    let app = app();
    let (status, list) = app.admin(Method::GET, "/admin/prices", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let prices = list["prices"].as_array().unwrap();
    let find = |m: &str| prices.iter().find(|p| p["model"] == m).cloned().unwrap();
    assert_eq!(
        find("gpt-4o"),
        json!({"model": "gpt-4o", "input": 2.5, "output": 10.0, "cached_input": 1.25,
               "source": "default"})
    );
    assert_eq!(find("claude-sonnet-4")["cached_input"], 0.3);

    let (status, set) = app
        .admin(
            Method::PUT,
            "/admin/prices/gpt-4o",
            json!({"input": 2, "output": 8, "cached_input": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(set["source"], "override");
    // Model names may contain slashes (openai-compatible servers).
    let llama = "/admin/prices/meta-llama/Llama-3.1-8B";
    let (status, slashed) = app
        .admin(Method::PUT, llama, json!({"input": 0.1, "output": 0.1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{slashed}");
    assert_eq!(
        (&slashed["model"], &slashed["cached_input"]),
        (&json!("meta-llama/Llama-3.1-8B"), &json!(0.1))
    );

    let body = reserve_body("r1", "key_a", "gpt-4o-2024-11-20");
    let (_, ok) = post(&app, "/v1/reserve", body).await;
    assert_eq!(
        ok["estimated_cost_usd"], 0.006,
        "1000 x $2 + 500 x $8 per 1M"
    );

    let (status, _) = app.admin(Method::DELETE, llama, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.admin(Method::DELETE, llama, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        json!({"input": -1, "output": 1}),
        json!({"input": 1}),
        json!({"input": 1, "output": 1, "x": 1}),
    ] {
        let (status, _) = app.admin(Method::PUT, "/admin/prices/m", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn usage_reports_in_json_and_csv() {
    let app = app();
    for (id, key, model, ts) in [
        ("a", "key_a", "gpt-4o", T0 - 86_400),
        ("b", "key_a", "gpt-4o-mini", T0),
        ("c", "key_b", "gpt-4o", T0),
    ] {
        let (status, _) = post(&app, "/v1/settle", report(id, None, key, model, ts)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, by_key) = app
        .admin(Method::GET, "/admin/usage?group_by=key", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_key["group_by"], "key");
    assert_eq!(by_key["rows"][0]["key"], "key_a");
    assert_eq!(by_key["rows"][0]["requests"], 2);
    assert_eq!(by_key["rows"][0]["output_tokens"], 400);
    assert_eq!(by_key["rows"][1]["key"], "key_b");

    let (_, by_team) = app
        .admin(
            Method::GET,
            "/admin/usage?group_by=team&from=2026-11-22&to=2026-11-22",
            json!({}),
        )
        .await;
    assert_eq!(
        by_team["rows"],
        json!([{"team": "ml", "requests": 2, "input_tokens": 2000, "output_tokens": 400,
                "cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.00027 + 0.0045,
                "estimated_requests": 0, "unpriced_requests": 0}])
    );

    let bearer = format!("Bearer {MASTER}");
    let (status, content_type, csv) = app
        .send_raw(
            Method::GET,
            "/admin/usage?group_by=day&format=csv",
            Some(&bearer),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("day,requests,"));
    assert!(lines[1].starts_with("2026-11-21,1,1000,200,"), "{csv}");
    assert!(lines[2].starts_with("2026-11-22,2,2000,400,"), "{csv}");
    let (_, models) = app
        .admin(
            Method::GET,
            "/admin/usage?group_by=model&format=json",
            json!({}),
        )
        .await;
    assert_eq!(models["rows"][0]["model"], "gpt-4o");
    assert_eq!(models["rows"][0]["requests"], 2);

    for bad in [
        "group_by=org",
        "format=xml",
        "from=yesterday",
        "to=2026-13-01",
    ] {
        let uri = format!("/admin/usage?{bad}");
        let (status, err) = app.admin(Method::GET, &uri, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }
}

#[tokio::test]
async fn clock_moves_only_with_the_test_clock() {
    let app = app();
    let (status, now) = app
        .admin(Method::POST, "/admin/clock", json!({"advance_s": 90}))
        .await;
    assert_eq!((status, now), (StatusCode::OK, json!({"now": T0 + 90})));
    let (_, now) = app
        .admin(Method::POST, "/admin/clock", json!({"now": 1_800_000_000}))
        .await;
    assert_eq!(now["now"], 1_800_000_000);
    assert_eq!(app.store.clock.now(), 1_800_000_000);
    let (_, read) = app.admin(Method::POST, "/admin/clock", json!({})).await;
    assert_eq!(read["now"], 1_800_000_000);
    let (status, _) = app
        .admin(
            Method::POST,
            "/admin/clock",
            json!({"now": 1, "advance_s": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .send(Method::POST, "/admin/clock", None, r#"{"advance_s": 1}"#)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let real = app_on_system_clock();
    let (status, err) = real
        .admin(Method::POST, "/admin/clock", json!({"advance_s": 90}))
        .await;
    assert_eq!(
        (status, error_type(&err)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

/// Minimal HTTP/1.1 client: one request per connection, as the filter
/// (with the service token).
fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
         authorization: Bearer {SERVICE}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn fifty_concurrent_reserves_over_http_pass_a_budget_of_ten(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let budget = json!({"scope": "key", "scope_id": "key_a", "kind": "requests", "limit": 10,
                        "period": "daily"});
    store
        .create_budget(serde_json::from_value(budget).unwrap())
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(AppState::new(Arc::clone(&store.store), MASTER, SERVICE));
    let server = runtime.spawn(async move { axum::serve(listener, app).await });

    let start = Barrier::new(50);
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..50)
            .map(|i| {
                let start = &start;
                s.spawn(move || {
                    let body = reserve_body(&format!("req-{i}"), "key_a", "gpt-4o").to_string();
                    start.wait();
                    http_post(addr, "/v1/reserve", &body)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    server.abort();
    drop(runtime);

    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let passed = answers.iter().filter(|(_, a)| a["allowed"] == true).count();
    assert_eq!(
        passed, 10,
        "{passed} of 50 concurrent requests passed a request budget of 10"
    );
    let refused = answers.iter().find(|(_, a)| a["allowed"] == false).unwrap();
    assert_eq!(refused.1["reason"], "budget");
    assert_eq!(refused.1["scope_id"], "key_a");
}

/// A guardrail block as the filter reports it: no reservation, no tokens,
/// `forwarded: false`, events aggregated with counts. Listed in the ledger,
/// never charged or counted as a provider request.
#[tokio::test]
async fn blocked_reports_are_listed_but_never_charged() {
    let app = app();
    let (status, budget) = app
        .admin(
            Method::POST,
            "/admin/budgets",
            json!({"scope": "key", "scope_id": "key_a", "kind": "requests", "limit": 1,
                   "period": "daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    let mut blocked = report("blocked-1", None, "key_a", "gpt-4o", T0);
    for field in ["input_tokens", "output_tokens", "latency_ms"] {
        blocked[field] = json!(0);
    }
    blocked["status"] = json!(400);
    blocked["stream"] = json!(false);
    blocked["forwarded"] = json!(false);
    blocked["guardrail_events"] = json!([
        {"guardrail": "secrets", "kind": "github_token", "direction": "input", "action": "block",
         "count": 2},
        {"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact",
         "count": 7}
    ]);
    for duplicate in [false, true] {
        let (status, settled) = post(&app, "/v1/settle", blocked.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            settled,
            json!({"request_id": "blocked-1", "cost_usd": 0.0, "priced": true,
                   "duplicate": duplicate})
        );
    }
    let (_, rows) = app
        .admin(Method::GET, "/admin/usage/requests?key_id=key_a", json!({}))
        .await;
    let rows = rows["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0]["forwarded"],
            &rows[0]["status"],
            &rows[0]["cost_usd"]
        ),
        (&json!(false), &json!(400), &json!(0.0))
    );
    assert_eq!(rows[0]["guardrail_events"], blocked["guardrail_events"]);
    let (_, usage) = app
        .admin(Method::GET, "/admin/usage?group_by=key", json!({}))
        .await;
    assert_eq!(usage["rows"], json!([]), "no provider request");
    let (_, b) = app
        .admin(
            Method::GET,
            &format!("/admin/budgets/{}", budget["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!((&b["used"], &b["reserved"]), (&json!(0.0), &json!(0.0)));
    let (_, ok) = post(&app, "/v1/reserve", reserve_body("r1", "key_a", "gpt-4o")).await;
    assert_eq!(
        ok["allowed"], true,
        "the day's one request is still there: {ok}"
    );
}
