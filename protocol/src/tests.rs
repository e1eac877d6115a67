//! The wire format, pinned: what each side sent before the messages were
//! shared (so a filter or sidecar of either age still understands the
//! other), round trips, and what an absent field means.

use super::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Serialises `msg` (one side), parses it back (the other side) and
/// checks nothing was lost; answers the JSON that went over the wire.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msg: &T) -> Value {
    let bytes = serde_json::to_vec(msg).unwrap();
    let back: T = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&back, msg);
    serde_json::from_slice(&bytes).unwrap()
}

fn parse<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn grant() -> Grant {
    Grant {
        key_id: "key_1".into(),
        team: Some("ml".into()),
        user: None,
        models: vec!["gpt-*".into()],
        team_models: vec![],
        expires_at: Some(1_795_000_000),
    }
}

#[test]
fn authorize_request() {
    let req = AuthorizeRequest {
        key_hash: "ab".repeat(32),
    };
    assert_eq!(round_trip(&req), json!({"key_hash": "ab".repeat(32)}));
}

#[test]
fn authorize_answers_keep_their_shape() {
    // The sidecar's answers, field for field as before.
    assert_eq!(
        round_trip(&AuthorizeAnswer::granted(grant())),
        json!({"valid": true, "key_id": "key_1", "team": "ml", "user": null,
               "models": ["gpt-*"], "team_models": [], "expires_at": 1_795_000_000})
    );
    for (reason, word) in [
        (DenyReason::Unknown, "unknown"),
        (DenyReason::Revoked, "revoked"),
        (DenyReason::Inactive, "inactive"),
        (DenyReason::Expired, "expired"),
    ] {
        assert_eq!(
            round_trip(&AuthorizeAnswer::denied(reason)),
            json!({"valid": false, "reason": word})
        );
    }
}

#[test]
fn authorize_answers_read_leniently() {
    // Optional grant fields may be absent.
    let a: AuthorizeAnswer = parse(json!({"valid": true, "key_id": "k"}));
    let g = a.grant.unwrap();
    assert_eq!((g.team, g.models, g.expires_at), (None, vec![], None));
    // A valid answer without a key id has no grant (the filter refuses it).
    let a: AuthorizeAnswer = parse(json!({"valid": true}));
    assert_eq!(a.grant, None);
    // A refusal reason from a newer sidecar.
    let a: AuthorizeAnswer = parse(json!({"valid": false, "reason": "suspended"}));
    assert_eq!(a.reason, Some(DenyReason::Unknown));
    let a: AuthorizeAnswer = parse(json!({"valid": false}));
    assert_eq!((a.reason, a.grant), (None, None));
    // Times before 1970 are representable (and expired).
    let a: AuthorizeAnswer = parse(json!({"valid": true, "key_id": "k", "expires_at": -5}));
    assert_eq!(a.grant.unwrap().expires_at, Some(-5));
    assert!(serde_json::from_value::<AuthorizeAnswer>(json!({"key_id": "k"})).is_err());
}

fn reserve_request() -> ReserveRequest {
    ReserveRequest {
        request_id: "req_1".into(),
        key_id: "key_1".into(),
        team: None,
        user: Some("u".into()),
        model: "gpt-4o".into(),
        upstream_model: "gpt-4o-2024".into(),
        provider: "openai".into(),
        estimated_input_tokens: 10,
        max_output_tokens: 4096,
    }
}

#[test]
fn reserve_request_keeps_its_shape() {
    assert_eq!(
        round_trip(&reserve_request()),
        json!({"request_id": "req_1", "key_id": "key_1", "team": null, "user": "u",
               "model": "gpt-4o", "upstream_model": "gpt-4o-2024", "provider": "openai",
               "estimated_input_tokens": 10, "max_output_tokens": 4096})
    );
    let r: ReserveRequest = parse(json!({"request_id": "r", "key_id": "k", "model": "m",
        "upstream_model": "m", "provider": "p", "estimated_input_tokens": 1, "max_output_tokens": 2}));
    assert_eq!((r.team, r.user), (None, None));
}

fn overage() -> Overage {
    Overage {
        budget_id: "bud_1".into(),
        scope: "team".into(),
        scope_id: "ml".into(),
        kind: "spend".into(),
        period: "monthly".into(),
        limit: 10.0,
        used: 10.5,
        reserved: 0.25,
        period_start: 1_793_491_200,
    }
}

fn denial() -> Denial {
    Denial {
        allowed: false,
        reason: REASON_RATE_LIMIT.into(),
        budget_id: "bud_2".into(),
        scope: "key".into(),
        scope_id: "key_1".into(),
        kind: "requests".into(),
        period: "minute".into(),
        limit: 5.0,
        used: 5.0,
        reserved: 0.0,
        resets_at: Some(1_795_000_020),
        retry_after_s: 15,
        message: "Key key_1 has used 5 of its 5 per-minute requests".into(),
    }
}

#[test]
fn reserve_answers_keep_their_shape() {
    let allowed = ReserveAnswer::Allowed(Allowed {
        allowed: true,
        reservation_id: "res_1".into(),
        estimated_cost_usd: 0.5,
        priced: true,
        warnings: vec![overage()],
    });
    assert_eq!(
        round_trip(&allowed),
        json!({"allowed": true, "reservation_id": "res_1", "estimated_cost_usd": 0.5,
               "priced": true, "warnings": [{"budget_id": "bud_1", "scope": "team",
               "scope_id": "ml", "kind": "spend", "period": "monthly", "limit": 10.0,
               "used": 10.5, "reserved": 0.25, "period_start": 1_793_491_200}]})
    );
    assert_eq!(
        round_trip(&ReserveAnswer::Denied(denial())),
        json!({"allowed": false, "reason": "rate_limit", "budget_id": "bud_2", "scope": "key",
               "scope_id": "key_1", "kind": "requests", "period": "minute", "limit": 5.0,
               "used": 5.0, "reserved": 0.0, "resets_at": 1_795_000_020, "retry_after_s": 15,
               "message": "Key key_1 has used 5 of its 5 per-minute requests"})
    );
}

#[test]
fn reserve_answers_read_by_allowed() {
    // What the filter needs, and nothing more.
    let a: ReserveAnswer = parse(json!({"allowed": true, "reservation_id": "r1"}));
    let ReserveAnswer::Allowed(a) = a else {
        panic!("{a:?}")
    };
    assert_eq!((a.reservation_id.as_str(), a.warnings.len()), ("r1", 0));
    // A denial with nothing but `allowed`: the filter's old defaults.
    let d: ReserveAnswer = parse(json!({"allowed": false}));
    let ReserveAnswer::Denied(d) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (d.reason.as_str(), d.message.as_str(), d.retry_after_s),
        (REASON_BUDGET, "Budget exceeded.", 60)
    );
    // A denial that happens to carry a reservation id is still a denial.
    let d: ReserveAnswer = parse(json!({"allowed": false, "reservation_id": "r"}));
    assert!(matches!(d, ReserveAnswer::Denied(_)));
    // Allowed without a reservation id, no `allowed`, not JSON: errors.
    for bad in [
        json!({"allowed": true}),
        json!({}),
        json!({"allowed": "yes"}),
    ] {
        assert!(
            serde_json::from_value::<ReserveAnswer>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

fn usage_report() -> UsageReport {
    UsageReport {
        request_id: "req_1".into(),
        reservation_id: Some("res_1".into()),
        key_id: Some("key_1".into()),
        team: None,
        user: None,
        model: "gpt-4o".into(),
        upstream_model: "gpt-4o-2024".into(),
        provider: "openai".into(),
        api: "chat_completions".into(),
        input_tokens: 100,
        output_tokens: 20,
        cached_tokens: 5,
        reasoning_tokens: 0,
        status: 200,
        latency_ms: 321,
        estimated: false,
        stream: true,
        guardrail_events: vec![GuardrailEvent {
            guardrail: "pii".into(),
            kind: "email".into(),
            direction: "input".into(),
            action: "redact".into(),
            count: 3,
        }],
        forwarded: true,
        ts: 1_795_000_000,
        lease_id: None,
        lease_debits: vec![],
        cache_hit: false,
        request_digest: None,
        response_digest: None,
        region: None,
        refused: None,
    }
}

#[test]
fn a_cache_hit_is_said_only_when_true() {
    let plain = serde_json::to_value(usage_report()).unwrap();
    assert!(plain.get("cache_hit").is_none());
    let hit = UsageReport {
        cache_hit: true,
        forwarded: false,
        ..usage_report()
    };
    let read: UsageReport = serde_json::from_value(serde_json::to_value(&hit).unwrap()).unwrap();
    assert_eq!(read, hit);
}

#[test]
fn a_cached_answer_round_trips_with_optional_counts() {
    let answer: CachedAnswer = serde_json::from_str(
        r#"{"content_type":"text/event-stream","body":"data: x\n\n","provider":"openai",
            "upstream_model":"gpt-4o","input_tokens":5,"output_tokens":3}"#,
    )
    .unwrap();
    assert_eq!(
        (answer.cached_tokens, answer.body.as_str()),
        (0, "data: x\n\n")
    );
    let put = CachePut {
        key: "ab".into(),
        ttl_s: 60,
        answer,
    };
    let back: CachePut = serde_json::from_slice(&serde_json::to_vec(&put).unwrap()).unwrap();
    assert_eq!(back, put);
}

#[test]
fn usage_reports_keep_their_shape() {
    assert_eq!(
        round_trip(&usage_report()),
        json!({"request_id": "req_1", "reservation_id": "res_1", "key_id": "key_1",
               "team": null, "user": null, "model": "gpt-4o", "upstream_model": "gpt-4o-2024",
               "provider": "openai", "api": "chat_completions", "input_tokens": 100,
               "output_tokens": 20, "cached_tokens": 5, "reasoning_tokens": 0, "status": 200,
               "latency_ms": 321, "estimated": false, "stream": true,
               "guardrail_events": [{"guardrail": "pii", "kind": "email", "direction": "input",
                                     "action": "redact", "count": 3}],
               "forwarded": true, "ts": 1_795_000_000})
    );
    let batch = SettleBatch {
        reports: vec![usage_report(), usage_report()],
    };
    assert_eq!(round_trip(&batch)["reports"].as_array().unwrap().len(), 2);
}

#[test]
fn old_usage_reports_read_with_defaults() {
    // An older filter: no guardrail counts, no `forwarded`, absent options.
    let mut old = serde_json::to_value(usage_report()).unwrap();
    let fields = old.as_object_mut().unwrap();
    for gone in ["forwarded", "reservation_id", "key_id", "team", "user"] {
        fields.remove(gone);
    }
    fields.insert(
        "guardrail_events".into(),
        json!([{"guardrail": "pii", "kind": "email", "direction": "input", "action": "block"}]),
    );
    let r: UsageReport = parse(old.clone());
    assert!(r.forwarded);
    assert_eq!((r.reservation_id, r.key_id), (None, None));
    assert_eq!(r.guardrail_events[0].count, 1);
    fields_without(&mut old, "guardrail_events");
    let r: UsageReport = parse(old);
    assert!(r.guardrail_events.is_empty());
    // Required fields stay required.
    let mut broken = serde_json::to_value(usage_report()).unwrap();
    fields_without(&mut broken, "ts");
    assert!(serde_json::from_value::<UsageReport>(broken).is_err());
}

#[test]
fn lease_reports_name_the_lease_and_its_debits() {
    let r = UsageReport {
        reservation_id: None,
        lease_id: Some("lse_1".into()),
        lease_debits: vec![
            LeaseAmount {
                budget_id: "bud_1".into(),
                amount: 1.0,
            },
            LeaseAmount {
                budget_id: "bud_2".into(),
                amount: 0.0075,
            },
        ],
        ..usage_report()
    };
    let v = round_trip(&r);
    assert_eq!(v["lease_id"], json!("lse_1"));
    assert_eq!(
        v["lease_debits"],
        json!([{"budget_id": "bud_1", "amount": 1.0}, {"budget_id": "bud_2", "amount": 0.0075}])
    );
    assert_eq!(v["reservation_id"], json!(null));
    // A report without a lease is the report an older sidecar reads: no new fields.
    let v = round_trip(&usage_report());
    for absent in ["lease_id", "lease_debits"] {
        assert!(v.get(absent).is_none(), "{absent} in {v}");
    }
    // An older filter's report (no lease fields) reads as no lease.
    let r: UsageReport = parse(v);
    assert_eq!((r.lease_id, r.lease_debits), (None, vec![]));
}

fn fields_without(v: &mut Value, field: &str) {
    v.as_object_mut().unwrap().remove(field);
}

#[test]
fn settle_answers() {
    let one = Settled {
        request_id: "req_1".into(),
        cost_usd: 0.25,
        priced: true,
        duplicate: false,
    };
    assert_eq!(
        round_trip(&one),
        json!({"request_id": "req_1", "cost_usd": 0.25, "priced": true, "duplicate": false})
    );
    let all = SettleBatchAnswer {
        results: vec![
            one.clone(),
            Settled {
                duplicate: true,
                ..one
            },
        ],
    };
    assert_eq!(round_trip(&all)["results"][1]["duplicate"], json!(true));
}

fn lease_request() -> LeaseRequest {
    LeaseRequest {
        key_id: "key_1".into(),
        team: Some("ml".into()),
        user: None,
        model: "gpt-4o".into(),
        upstream_model: "gpt-4o-2024".into(),
        provider: "openai".into(),
        estimated_input_tokens: 10,
        max_output_tokens: 4096,
        release: vec![LeaseRelease {
            lease_id: "lse_0".into(),
            unused: vec![LeaseAmount {
                budget_id: "bud_1".into(),
                amount: 3.0,
            }],
        }],
    }
}

#[test]
fn lease_requests_keep_their_shape() {
    assert_eq!(
        round_trip(&lease_request()),
        json!({"key_id": "key_1", "team": "ml", "user": null, "model": "gpt-4o",
               "upstream_model": "gpt-4o-2024", "provider": "openai",
               "estimated_input_tokens": 10, "max_output_tokens": 4096,
               "release": [{"lease_id": "lse_0", "unused": [{"budget_id": "bud_1", "amount": 3.0}]}]})
    );
    // Team, user and release may be absent.
    let r: LeaseRequest = parse(json!({"key_id": "k", "model": "m", "upstream_model": "m",
        "provider": "p", "estimated_input_tokens": 1, "max_output_tokens": 2}));
    assert_eq!((r.team, r.user, r.release), (None, None, vec![]));
    // The sizes are required: a lease is sized for one request.
    let mut v = serde_json::to_value(lease_request()).unwrap();
    fields_without(&mut v, "max_output_tokens");
    assert!(serde_json::from_value::<LeaseRequest>(v).is_err());
}

fn lease_grant() -> LeaseGrant {
    LeaseGrant {
        allowed: true,
        lease_id: "lse_1".into(),
        ttl_ms: 10_000,
        budgets: vec![
            LeasedBudget {
                budget_id: "bud_1".into(),
                kind: "requests".into(),
                granted: 12.0,
            },
            LeasedBudget {
                budget_id: "bud_3".into(),
                kind: "spend".into(),
                granted: 1.25,
            },
        ],
        price: Some(LeasePrice {
            input: 2.5,
            output: 10.0,
        }),
        warnings: vec![overage()],
    }
}

#[test]
fn lease_answers_keep_their_shape() {
    assert_eq!(
        round_trip(&LeaseAnswer::Granted(lease_grant())),
        json!({"allowed": true, "lease_id": "lse_1", "ttl_ms": 10_000,
               "budgets": [{"budget_id": "bud_1", "kind": "requests", "granted": 12.0},
                           {"budget_id": "bud_3", "kind": "spend", "granted": 1.25}],
               "price": {"input": 2.5, "output": 10.0},
               "warnings": [serde_json::to_value(overage()).unwrap()]})
    );
    // A denial is the reserve denial, field for field.
    assert_eq!(
        round_trip(&LeaseAnswer::Denied(denial())),
        round_trip(&ReserveAnswer::Denied(denial()))
    );
    let unpriced = LeaseGrant {
        budgets: vec![],
        price: None,
        warnings: vec![],
        ..lease_grant()
    };
    let v = round_trip(&LeaseAnswer::Granted(unpriced));
    assert_eq!((&v["price"], &v["budgets"]), (&json!(null), &json!([])));
}

#[test]
fn lease_answers_read_by_allowed() {
    // A grant with nothing optional: no hard budget, unpriced, no warnings.
    let a: LeaseAnswer = parse(json!({"allowed": true, "lease_id": "l", "ttl_ms": 5}));
    let LeaseAnswer::Granted(g) = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        (
            g.lease_id.as_str(),
            g.ttl_ms,
            g.budgets.len(),
            g.price,
            g.warnings.len()
        ),
        ("l", 5, 0, None, 0)
    );
    // A denial with nothing but `allowed`: the reserve defaults.
    let d: LeaseAnswer = parse(json!({"allowed": false}));
    let LeaseAnswer::Denied(d) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (d.reason.as_str(), d.message.as_str(), d.retry_after_s),
        (REASON_BUDGET, "Budget exceeded.", 60)
    );
    // A denial that carries lease fields is still a denial.
    let d: LeaseAnswer = parse(json!({"allowed": false, "lease_id": "l", "ttl_ms": 5}));
    assert!(matches!(d, LeaseAnswer::Denied(_)));
    // Allowed without a lease id or a ttl, no `allowed`, a reserve answer: errors.
    for bad in [
        json!({"allowed": true, "ttl_ms": 5}),
        json!({"allowed": true, "lease_id": "l"}),
        json!({"allowed": true, "reservation_id": "r"}),
        json!({"lease_id": "l", "ttl_ms": 5}),
        json!({"allowed": "yes", "lease_id": "l", "ttl_ms": 5}),
    ] {
        assert!(
            serde_json::from_value::<LeaseAnswer>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn request_need_per_kind() {
    let price = LeasePrice {
        input: 2.5,
        output: 10.0,
    };
    // 1000 in at $2.50 + 500 out at $10 per 1M = $0.0075.
    assert_eq!(request_need("requests", Some(&price), 1000, 500), 1.0);
    assert_eq!(request_need("requests", None, 0, 0), 1.0);
    assert_eq!(request_need("tokens", Some(&price), 1000, 500), 1500.0);
    assert_eq!(request_need("tokens", None, 7, 0), 7.0);
    assert_eq!(request_need("spend", Some(&price), 1000, 500), 0.0075);
    assert_eq!(request_need("spend", Some(&price), 0, 1_000_000), 10.0);
    // Unpriced: spend needs nothing (the request is flagged, never blocked on price).
    assert_eq!(request_need("spend", None, 1000, 500), 0.0);
    // Kinds this reader does not know, and the words in another case: nothing.
    assert_eq!(request_need("watts", Some(&price), 1000, 500), 0.0);
    assert_eq!(request_need("Requests", Some(&price), 1000, 500), 0.0);
    // Token counts saturate rather than wrap.
    assert_eq!(request_need("tokens", None, u64::MAX, 1), u64::MAX as f64);
}

#[test]
fn body_digests_are_two_optional_fields_of_a_report() {
    let plain = serde_json::to_value(usage_report()).unwrap();
    assert!(plain.get("request_digest").is_none());
    let digest = "ab".repeat(32);
    let mut with = plain.clone();
    with["request_digest"] = json!(digest);
    with["response_digest"] = json!(digest);
    let r: UsageReport = parse(with.clone());
    assert_eq!(r.request_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(round_trip(&r), with);
}
