#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Budgets, reservations, settling, prices and usage reports at the store
//! level, on SQLite and on PostgreSQL, with a manual clock.

mod common;

use std::sync::Barrier;

use common::{Backend, TestStore, T0};
use tollgate_sidecar::budgets::{
    Allowed, BudgetUpdate, Denial, Kind, Mode, NewBudget, Reason, ReserveAnswer, ReserveRequest,
    Scope,
};
use tollgate_sidecar::error::Error;
use tollgate_sidecar::ledger::{GuardrailEvent, Settled, UsageReport};
use tollgate_sidecar::periods::{iso8601, Period};
use tollgate_sidecar::pricing::{Price, Source};
use tollgate_sidecar::store::Store;
use tollgate_sidecar::usage::{to_csv, GroupBy, UsageQuery};

on_both_backends!(
    concurrent_reserves_never_pass_a_request_budget,
    concurrent_spend_with_settles_overshoots_by_at_most_one_request,
    daily_and_monthly_budgets_reset_at_the_calendar_boundary,
    tracking_budget_warns_and_never_blocks,
    key_team_and_user_budgets_all_apply_and_the_tighter_wins,
    request_rate_limit_resets_at_the_next_minute,
    token_rate_limit_counts_estimates_then_real_usage,
    reservations_expire_after_ten_minutes,
    settling_is_idempotent_by_request_id,
    unknown_model_is_flagged_never_silently_free,
    price_overrides_change_cost_and_can_be_removed,
    usage_grouped_by_key_team_user_model_and_day,
    budget_admin_create_list_update_delete,
    blocked_requests_are_recorded_but_never_charged,
    guardrail_event_counts_are_kept_and_default_to_one,
);

use common::{create_budget as create, hard_budget as hard};

fn request_id() -> String {
    common::request_id("req")
}

/// A request of key `key` (team `ml`, user `alice`) for `model`.
fn req(key: &str, model: &str, input: u64, max_output: u64) -> ReserveRequest {
    ReserveRequest {
        request_id: request_id(),
        key_id: key.into(),
        team: Some("ml".into()),
        user: Some("alice".into()),
        model: model.into(),
        upstream_model: model.into(),
        provider: "openai".into(),
        estimated_input_tokens: input,
        max_output_tokens: max_output,
    }
}

fn report(
    r: &ReserveRequest,
    reservation: Option<&str>,
    input: u64,
    output: u64,
    ts: i64,
) -> UsageReport {
    UsageReport {
        request_id: r.request_id.clone(),
        reservation_id: reservation.map(String::from),
        key_id: Some(r.key_id.clone()),
        team: r.team.clone(),
        user: r.user.clone(),
        model: r.model.clone(),
        upstream_model: r.upstream_model.clone(),
        provider: r.provider.clone(),
        api: "chat_completions".into(),
        input_tokens: input,
        output_tokens: output,
        cached_tokens: 0,
        reasoning_tokens: 0,
        status: 200,
        latency_ms: 250,
        estimated: false,
        stream: false,
        guardrail_events: vec![],
        ts,
        forwarded: true,
        lease_id: None,
        lease_debits: vec![],
        cache_hit: false,
        request_digest: None,
        response_digest: None,
        region: None,
        refused: None,
    }
}

fn allowed(a: ReserveAnswer) -> Allowed {
    match a {
        ReserveAnswer::Allowed(a) => a,
        ReserveAnswer::Denied(d) => panic!("expected allowed, got {d:?}"),
    }
}

fn denied(a: ReserveAnswer) -> Denial {
    match a {
        ReserveAnswer::Denied(d) => d,
        ReserveAnswer::Allowed(a) => panic!("expected a denial, got {a:?}"),
    }
}

/// Reserves and settles at once, the estimate being the real usage.
fn spend(store: &TestStore, key: &str, model: &str, input: u64, output: u64) -> Settled {
    let r = req(key, model, input, output);
    let a = allowed(store.reserve(&r).unwrap());
    let now = store.clock.now();
    store
        .settle(&[report(&r, Some(&a.reservation_id), input, output, now)])
        .unwrap()
        .remove(0)
}

fn reserve(store: &Store, key: &str) -> ReserveAnswer {
    store.reserve(&req(key, "gpt-4o", 1, 1)).unwrap()
}

fn concurrent_reserves_never_pass_a_request_budget(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let b = hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        10.0,
        Period::Daily,
    );
    let start = Barrier::new(50);
    let answers: Vec<ReserveAnswer> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let r = req("key_a", "gpt-4o-mini", 100, 100);
                    start.wait();
                    store.reserve(&r).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let passed = answers
        .iter()
        .filter(|a| matches!(a, ReserveAnswer::Allowed(_)))
        .count();
    // used + reserved < limit before each hold: a request budget of 10 lets exactly 10 through.
    assert_eq!(
        passed, 10,
        "a request budget of 10 let {passed} of 50 concurrent requests through"
    );
    let refusal = answers
        .into_iter()
        .find_map(|a| match a {
            ReserveAnswer::Denied(d) => Some(d),
            ReserveAnswer::Allowed(_) => None,
        })
        .unwrap();
    assert_eq!(
        (
            refusal.reason.as_str(),
            refusal.scope.as_str(),
            refusal.kind.as_str()
        ),
        (
            Reason::Budget.as_str(),
            Scope::Key.as_str(),
            Kind::Requests.as_str()
        )
    );
    assert_eq!(
        (refusal.used, refusal.reserved, refusal.limit),
        (0.0, 10.0, 10.0)
    );
    assert_eq!(
        refusal.retry_after_s, 60,
        "only in-flight reservations block: retry soon"
    );
    let now = store.get_budget(&b.id).unwrap();
    assert_eq!((now.used, now.reserved), (0.0, 10.0));
}

fn concurrent_spend_with_settles_overshoots_by_at_most_one_request(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    // gpt-4o-mini: $0.15 / $0.60 per 1M. Estimate: 1000 in + 1000 max out = $0.00075;
    // real: about 1000 in + 500 out = $0.00045. 50 requests would spend $0.0225.
    let limit = 0.01;
    let estimate = 0.00075;
    let b = hard(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        limit,
        Period::Monthly,
    );
    let start = Barrier::new(50);
    let settled: Vec<Option<(u64, u64, f64)>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..50u64)
            .map(|i| {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    let r = req(&format!("key_{}", i % 5), "gpt-4o-mini", 1000, 1000);
                    start.wait();
                    match store.reserve(&r).unwrap() {
                        ReserveAnswer::Allowed(a) => {
                            let (input, output) = (1000 + i, 500 + i);
                            let now = store.clock.now();
                            let rep = report(&r, Some(&a.reservation_id), input, output, now);
                            let s = store.settle(&[rep]).unwrap().remove(0);
                            assert!(!s.duplicate && s.priced);
                            Some((input, output, s.cost_usd))
                        }
                        ReserveAnswer::Denied(d) => {
                            assert_eq!(d.scope_id, "ml");
                            None
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let ok: Vec<(u64, u64, f64)> = settled.into_iter().flatten().collect();
    let spent: f64 = ok.iter().map(|s| s.2).sum();
    assert!(!ok.is_empty() && ok.len() < 50, "{} of 50 passed", ok.len());
    assert!(
        spent < limit + estimate,
        "overshot by more than one request: ${spent} of ${limit}"
    );
    let b = store.get_budget(&b.id).unwrap();
    assert!(
        (b.used - spent).abs() < 1e-12,
        "budget used {} != settled {spent}",
        b.used
    );
    assert_eq!(b.reserved, 0.0, "every hold was released by its settle");

    // The ledger and the daily tallies hold exactly the settled tokens.
    let rows = store.ledger(None, 1000).unwrap();
    assert_eq!(rows.len(), ok.len());
    let sum = |f: fn(&(u64, u64, f64)) -> u64| ok.iter().map(f).sum::<u64>();
    assert_eq!(
        rows.iter().map(|r| r.input_tokens).sum::<u64>(),
        sum(|s| s.0)
    );
    assert_eq!(
        rows.iter().map(|r| r.output_tokens).sum::<u64>(),
        sum(|s| s.1)
    );
    let by_team = store
        .usage(&UsageQuery {
            group_by: GroupBy::Team,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_team.len(), 1);
    let t = by_team[0].totals;
    assert_eq!(
        (t.requests, t.input_tokens, t.output_tokens),
        (ok.len() as u64, sum(|s| s.0), sum(|s| s.1))
    );
    assert!((t.cost_usd - spent).abs() < 1e-12);
}

fn daily_and_monthly_budgets_reset_at_the_calendar_boundary(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    // 2026-11-30T23:59:30Z: the last half-minute of the day and of the month.
    let eve = 1_796_083_170;
    store.clock.set(eve);
    let daily = hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        2.0,
        Period::Daily,
    );
    let monthly = hard(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        0.0025,
        Period::Monthly,
    );
    // $0.00075 a call (100 in at $2.50, 50 out at $10 per 1M).
    spend(&store, "key_a", "gpt-4o", 100, 50);
    spend(&store, "key_a", "gpt-4o", 100, 50);
    let d = denied(reserve(&store, "key_a"));
    assert_eq!((d.budget_id.as_str(), d.used), (daily.id.as_str(), 2.0));
    assert_eq!(
        d.resets_at.map(iso8601).as_deref(),
        Some("2026-12-01T00:00:00Z")
    );
    assert_eq!(d.retry_after_s, 30);

    // Another key of the team spends past the monthly budget.
    spend(&store, "key_b", "gpt-4o", 100, 50);
    spend(&store, "key_b", "gpt-4o", 100, 50);
    let d = denied(reserve(&store, "key_b"));
    assert_eq!(d.budget_id, monthly.id);
    assert_eq!(
        d.message,
        "Team ml has used $0.003 of its $0.0025 monthly budget; resets 2026-12-01T00:00:00Z"
    );

    store.clock.advance(30);
    allowed(reserve(&store, "key_a"));
    allowed(reserve(&store, "key_b"));
    let m = store.get_budget(&monthly.id).unwrap();
    assert_eq!(m.used, 0.0, "a new month starts from zero");
    assert_eq!(iso8601(m.period_start), "2026-12-01T00:00:00Z");
    assert_eq!(
        m.resets_at.map(iso8601).as_deref(),
        Some("2027-01-01T00:00:00Z")
    );
}

fn tracking_budget_warns_and_never_blocks(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let b = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1.0,
        Period::Daily,
        Mode::Tracking,
    );
    assert!(allowed(reserve(&store, "key_a")).warnings.is_empty());
    for _ in 0..3 {
        let a = allowed(reserve(&store, "key_a"));
        assert_eq!(a.warnings.len(), 1);
        let w = &a.warnings[0];
        assert_eq!(
            (
                w.budget_id.as_str(),
                w.scope.as_str(),
                w.kind.as_str(),
                w.period.as_str(),
                w.limit
            ),
            (
                b.id.as_str(),
                Scope::Key.as_str(),
                Kind::Requests.as_str(),
                Period::Daily.as_str(),
                1.0
            )
        );
    }
    assert_eq!(
        store.get_budget(&b.id).unwrap().reserved,
        4.0,
        "tracking budgets still count"
    );
}

fn key_team_and_user_budgets_all_apply_and_the_tighter_wins(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let key = hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        5.0,
        Period::Daily,
    );
    let team = hard(
        &store,
        Scope::Team,
        "ml",
        Kind::Requests,
        3.0,
        Period::Daily,
    );
    let user = hard(
        &store,
        Scope::User,
        "alice",
        Kind::Requests,
        100.0,
        Period::Weekly,
    );
    // A budget of another team never applies.
    hard(
        &store,
        Scope::Team,
        "ops",
        Kind::Requests,
        0.0,
        Period::Daily,
    );
    for _ in 0..3 {
        spend(&store, "key_a", "gpt-4o", 1, 1);
    }
    let d = denied(reserve(&store, "key_a"));
    assert_eq!(
        (d.scope.as_str(), d.scope_id.as_str(), d.budget_id.as_str()),
        (Scope::Team.as_str(), "ml", team.id.as_str())
    );

    let raise = BudgetUpdate {
        limit: Some(10.0),
        mode: None,
    };
    store.update_budget(&team.id, raise).unwrap();
    spend(&store, "key_a", "gpt-4o", 1, 1);
    spend(&store, "key_a", "gpt-4o", 1, 1);
    let d = denied(reserve(&store, "key_a"));
    assert_eq!(
        (d.scope.as_str(), d.budget_id.as_str()),
        (Scope::Key.as_str(), key.id.as_str())
    );
    assert_eq!(
        store.get_budget(&user.id).unwrap().used,
        5.0,
        "the user budget counted every request"
    );

    // When several refuse, the answer names the one that stays closed longest.
    let closed = hard(
        &store,
        Scope::User,
        "alice",
        Kind::Requests,
        0.0,
        Period::Lifetime,
    );
    let d = denied(reserve(&store, "key_a"));
    assert_eq!(
        (d.budget_id.as_str(), d.resets_at),
        (closed.id.as_str(), None)
    );
}

fn request_rate_limit_resets_at_the_next_minute(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    store.clock.set(T0 + 45); // 12:00:45
    hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        3.0,
        Period::Minute,
    );
    for _ in 0..3 {
        spend(&store, "key_a", "gpt-4o", 1, 1);
    }
    let d = denied(reserve(&store, "key_a"));
    assert_eq!(
        (d.reason.as_str(), d.period.as_str(), d.retry_after_s),
        (Reason::RateLimit.as_str(), Period::Minute.as_str(), 15)
    );
    assert_eq!(
        d.message,
        format!(
            "Key key_a has used 3 of its 3 requests per minute; resets {}",
            iso8601(T0 + 60)
        )
    );
    store.clock.advance(14);
    denied(reserve(&store, "key_a"));
    store.clock.advance(1);
    allowed(reserve(&store, "key_a"));
}

fn token_rate_limit_counts_estimates_then_real_usage(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Tokens,
        1000.0,
        Period::Minute,
    );
    let first = req("key_a", "gpt-4o", 300, 200);
    let a = allowed(store.reserve(&first).unwrap());
    allowed(store.reserve(&req("key_a", "gpt-4o", 300, 200)).unwrap());
    let d = denied(reserve(&store, "key_a"));
    assert_eq!(
        (d.kind.as_str(), d.used, d.reserved),
        (Kind::Tokens.as_str(), 0.0, 1000.0)
    );
    // Settling the first with 100 real tokens frees the rest of its 500 estimate.
    let now = store.clock.now();
    store
        .settle(&[report(&first, Some(&a.reservation_id), 60, 40, now)])
        .unwrap();
    allowed(store.reserve(&req("key_a", "gpt-4o", 200, 200)).unwrap());
    denied(reserve(&store, "key_a"));
    store.clock.advance(60);
    allowed(store.reserve(&req("key_a", "gpt-4o", 900, 100)).unwrap());
}

fn reservations_expire_after_ten_minutes(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let b = hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1.0,
        Period::Daily,
    );
    let held = req("key_a", "gpt-4o", 1, 1);
    let a = allowed(store.reserve(&held).unwrap());
    let d = denied(reserve(&store, "key_a"));
    assert_eq!((d.used, d.reserved), (0.0, 1.0));
    store.clock.advance(599);
    denied(reserve(&store, "key_a"));
    store.clock.advance(1);
    assert_eq!(
        store.get_budget(&b.id).unwrap().reserved,
        0.0,
        "the hold expired"
    );
    let second = allowed(reserve(&store, "key_a"));
    // The first request still settles (late): it is charged, its expired hold changes nothing.
    let now = store.clock.now();
    store
        .settle(&[report(&held, Some(&a.reservation_id), 1, 1, now)])
        .unwrap();
    let b = store.get_budget(&b.id).unwrap();
    assert_eq!((b.used, b.reserved), (1.0, 1.0));
    assert_ne!(second.reservation_id, a.reservation_id);
}

fn settling_is_idempotent_by_request_id(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let b = hard(
        &store,
        Scope::Team,
        "ml",
        Kind::Tokens,
        1e9,
        Period::Lifetime,
    );
    let r = req("key_a", "claude-haiku-4-5", 1000, 1000);
    let a = allowed(store.reserve(&r).unwrap());
    let now = store.clock.now();
    let mut rep = report(&r, Some(&a.reservation_id), 1_000_000, 100_000, now);
    rep.cached_tokens = 400_000;
    rep.reasoning_tokens = 50_000;
    rep.stream = true;
    rep.guardrail_events = vec![GuardrailEvent {
        guardrail: "pii".into(),
        kind: "email".into(),
        direction: "input".into(),
        action: "redact".into(),
        count: 2,
    }];
    let first = store.settle(std::slice::from_ref(&rep)).unwrap().remove(0);
    // claude-haiku-4-5: $1 input, $0.10 cached, $5 output per 1M.
    let expected = 0.6 * 1.0 + 0.4 * 0.10 + 0.1 * 5.0;
    assert!(!first.duplicate && first.priced);
    assert!(
        (first.cost_usd - expected).abs() < 1e-12,
        "{}",
        first.cost_usd
    );

    let again = store.settle(std::slice::from_ref(&rep)).unwrap().remove(0);
    assert!(again.duplicate);
    assert_eq!(again.cost_usd, first.cost_usd);
    // Duplicates inside one batch too, answered in the batch's order.
    let other = report(&req("key_a", "gpt-4o", 1, 1), None, 10, 10, now);
    let batch = store
        .settle(&[rep.clone(), other.clone(), other.clone()])
        .unwrap();
    let shape: Vec<(&str, bool)> = batch
        .iter()
        .map(|s| (s.request_id.as_str(), s.duplicate))
        .collect();
    assert_eq!(
        shape,
        vec![
            (rep.request_id.as_str(), true),
            (other.request_id.as_str(), false),
            (other.request_id.as_str(), true)
        ]
    );

    let rows = store.ledger(Some("key_a"), 100).unwrap();
    assert_eq!(rows.len(), 2, "one ledger row per request");
    let row = rows
        .iter()
        .find(|r| r.request_id == rep.request_id)
        .unwrap();
    assert_eq!(
        (
            row.input_tokens,
            row.output_tokens,
            row.cached_tokens,
            row.reasoning_tokens
        ),
        (1_000_000, 100_000, 400_000, 50_000)
    );
    assert!(row.stream && row.priced && !row.estimated && row.forwarded);
    assert_eq!(row.guardrail_events, rep.guardrail_events);
    assert_eq!(
        store.get_budget(&b.id).unwrap().used,
        1_100_000.0 + 20.0,
        "each request counted once"
    );
}

fn unknown_model_is_flagged_never_silently_free(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let r = req("key_a", "mystery-model-9", 1000, 1000);
    let a = allowed(store.reserve(&r).unwrap());
    assert!(!a.priced);
    assert_eq!(a.estimated_cost_usd, 0.0);
    let now = store.clock.now();
    let s = store
        .settle(&[report(&r, Some(&a.reservation_id), 1000, 1000, now)])
        .unwrap()
        .remove(0);
    assert!(!s.priced && s.cost_usd == 0.0);
    assert!(!store.ledger(None, 1).unwrap()[0].priced);
    let usage = store
        .usage(&UsageQuery {
            group_by: GroupBy::Model,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(usage[0].group.as_deref(), Some("mystery-model-9"));
    assert_eq!(usage[0].totals.unpriced_requests, 1);

    // A client-facing alias of a priced upstream model is priced by the upstream name.
    let mut aliased = req("key_a", "fast", 1_000_000, 0);
    aliased.upstream_model = "gpt-5.4-mini".into();
    let a = allowed(store.reserve(&aliased).unwrap());
    assert!(a.priced && (a.estimated_cost_usd - 0.75).abs() < 1e-12);
}

fn price_overrides_change_cost_and_can_be_removed(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let price = |input: f64, output: f64, cached_input: Option<f64>| Price {
        input,
        output,
        cached_input,
    };
    let default = spend(&store, "key_a", "gpt-4o-2024-08-06", 1_000_000, 0);
    assert!((default.cost_usd - 2.50).abs() < 1e-12);

    let entry = store.set_price("gpt-4o", price(1.0, 2.0, None)).unwrap();
    assert_eq!((entry.cached_input, entry.source), (1.0, Source::Override));
    let overridden = spend(&store, "key_a", "gpt-4o-2024-08-06", 1_000_000, 1_000_000);
    assert!(
        (overridden.cost_usd - 3.0).abs() < 1e-12,
        "{}",
        overridden.cost_usd
    );
    // The longer default entry still wins for gpt-4o-mini.
    let mini = spend(&store, "key_a", "gpt-4o-mini", 1_000_000, 0);
    assert!((mini.cost_usd - 0.15).abs() < 1e-12);

    store
        .set_price("local-llama", price(0.1, 0.2, Some(0.0)))
        .unwrap();
    let local = spend(&store, "key_a", "local-llama-3-8b", 1_000_000, 1_000_000);
    assert!(local.priced && (local.cost_usd - 0.3).abs() < 1e-12);

    let prices = store.list_prices().unwrap();
    let find = |m: &str| prices.iter().find(|p| p.model == m).unwrap().clone();
    assert_eq!(
        (find("gpt-4o").input, find("gpt-4o").source),
        (1.0, Source::Override)
    );
    assert_eq!(
        (find("gpt-4o-mini").input, find("gpt-4o-mini").source),
        (0.15, Source::Default)
    );
    assert_eq!(prices.iter().filter(|p| p.model == "gpt-4o").count(), 1);

    store.delete_price("gpt-4o").unwrap();
    assert!((spend(&store, "key_a", "gpt-4o", 1_000_000, 0).cost_usd - 2.50).abs() < 1e-12);
    assert!(matches!(
        store.delete_price("gpt-4o"),
        Err(Error::NotFound { .. })
    ));
    for (model, bad) in [
        ("x", price(-1.0, 0.0, None)),
        ("x", price(f64::NAN, 0.0, None)),
        ("x", price(1.0, 1.0, Some(-0.5))),
        ("has space", price(1.0, 1.0, None)),
    ] {
        assert!(matches!(
            store.set_price(model, bad),
            Err(Error::Invalid(_))
        ));
    }
}

fn usage_grouped_by_key_team_user_model_and_day(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let day1 = T0; // 2026-11-22
    let day2 = T0 + 86_400;
    let mk = |key: &str,
              team: Option<&str>,
              user: Option<&str>,
              model: &str,
              input: u64,
              ts: i64,
              estimated: bool| {
        let mut r = report(&req(key, model, 0, 0), None, input, 10, ts);
        r.team = team.map(String::from);
        r.user = user.map(String::from);
        r.estimated = estimated;
        r
    };
    store.clock.set(day2 + 10);
    store
        .settle(&[
            mk(
                "key_a",
                Some("ml"),
                Some("alice"),
                "gpt-4o",
                100,
                day1,
                false,
            ),
            mk(
                "key_a",
                Some("ml"),
                Some("alice"),
                "gpt-4o-mini",
                200,
                day1,
                true,
            ),
            mk("key_b", Some("ops"), None, "gpt-4o", 300, day2, false),
            mk("key_c", None, None, "mystery", 400, day2, false),
        ])
        .unwrap();
    let q = |group_by: GroupBy, from: Option<&str>, to: Option<&str>| {
        store
            .usage(&UsageQuery {
                group_by,
                from: from.map(String::from),
                to: to.map(String::from),
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.group, r.totals.requests, r.totals.input_tokens))
            .collect::<Vec<_>>()
    };
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        q(GroupBy::Key, None, None),
        vec![
            (s("key_a"), 2, 300),
            (s("key_b"), 1, 300),
            (s("key_c"), 1, 400)
        ]
    );
    assert_eq!(
        q(GroupBy::Team, None, None),
        vec![(None, 1, 400), (s("ml"), 2, 300), (s("ops"), 1, 300)]
    );
    assert_eq!(
        q(GroupBy::User, None, None),
        vec![(None, 2, 700), (s("alice"), 2, 300)]
    );
    assert_eq!(
        q(GroupBy::Model, None, None),
        vec![
            (s("gpt-4o"), 2, 400),
            (s("gpt-4o-mini"), 1, 200),
            (s("mystery"), 1, 400)
        ]
    );
    assert_eq!(
        q(GroupBy::Day, None, None),
        vec![(s("2026-11-22"), 2, 300), (s("2026-11-23"), 2, 700)]
    );
    assert_eq!(
        q(GroupBy::Key, Some("2026-11-23"), None),
        vec![(s("key_b"), 1, 300), (s("key_c"), 1, 400)]
    );
    assert_eq!(
        q(GroupBy::Day, None, Some("2026-11-22")),
        vec![(s("2026-11-22"), 2, 300)]
    );
    assert!(q(GroupBy::Day, Some("2026-11-24"), None).is_empty());

    let days = store
        .usage(&UsageQuery {
            group_by: GroupBy::Day,
            ..Default::default()
        })
        .unwrap();
    let t = days[0].totals;
    // gpt-4o 100 in + 10 out = $0.00035; gpt-4o-mini 200 in + 10 out = $0.000036.
    assert!((t.cost_usd - 0.000386).abs() < 1e-12, "{}", t.cost_usd);
    assert_eq!(
        (t.estimated_requests, t.unpriced_requests, t.output_tokens),
        (1, 0, 20)
    );
    assert_eq!(days[1].totals.unpriced_requests, 1);
    let csv = to_csv(GroupBy::Day, &days);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,requests,input_tokens,output_tokens,cached_tokens,reasoning_tokens,cost_usd,\
         estimated_requests,unpriced_requests"
    );
    assert!(
        lines[1].starts_with("2026-11-22,2,300,20,0,0,0.000386"),
        "{}",
        lines[1]
    );
    assert_eq!(lines.len(), 3);

    let bad = UsageQuery {
        group_by: GroupBy::Key,
        from: Some("22-11-2026".into()),
        to: None,
    };
    assert!(matches!(store.usage(&bad), Err(Error::Invalid(_))));
}

fn budget_admin_create_list_update_delete(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let a = hard(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        10.0,
        Period::Monthly,
    );
    let b = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Tokens,
        5000.0,
        Period::Minute,
        Mode::Tracking,
    );
    assert!(a.id.starts_with("bud_"));
    assert_eq!((a.used, a.reserved, a.created_at), (0.0, 0.0, T0));
    assert_eq!(
        a.resets_at.map(iso8601).as_deref(),
        Some("2026-12-01T00:00:00Z")
    );
    let ids = |scope, id| {
        store
            .list_budgets(scope, id)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(None, None), vec![a.id.clone(), b.id.clone()]);
    assert_eq!(ids(Some(Scope::Key), None), vec![b.id.clone()]);
    assert_eq!(ids(None, Some("ml")), vec![a.id.clone()]);
    assert!(ids(Some(Scope::User), Some("ml")).is_empty());

    let update = BudgetUpdate {
        limit: Some(20.0),
        mode: Some(Mode::Tracking),
    };
    let u = store.update_budget(&a.id, update).unwrap();
    assert_eq!((u.limit, u.mode), (20.0, Mode::Tracking));
    assert!(matches!(
        store.update_budget(&a.id, BudgetUpdate::default()),
        Err(Error::Invalid(_))
    ));
    let missing = BudgetUpdate {
        limit: Some(1.0),
        mode: None,
    };
    assert!(matches!(
        store.update_budget("bud_nope", missing),
        Err(Error::NotFound { .. })
    ));

    store.delete_budget(&a.id).unwrap();
    assert!(matches!(
        store.delete_budget(&a.id),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get_budget(&a.id),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(ids(None, None), vec![b.id]);

    let invalid = |scope_id: &str, kind, limit, period| {
        store.create_budget(NewBudget {
            scope: Scope::Key,
            scope_id: scope_id.into(),
            kind,
            limit,
            period,
            mode: Mode::Hard,
        })
    };
    for bad in [
        invalid("", Kind::Requests, 1.0, Period::Daily),
        invalid("k", Kind::Requests, -1.0, Period::Daily),
        invalid("k", Kind::Requests, f64::INFINITY, Period::Daily),
        invalid("k", Kind::Spend, 1.0, Period::Minute),
    ] {
        assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
    }
}

/// A request the gateway answered itself (`forwarded: false`, a guardrail
/// block): a ledger row at cost 0 with its events, idempotent by request id,
/// but no budget charged (not even a request count) and no provider request
/// in the daily tallies.
fn blocked_requests_are_recorded_but_never_charged(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let per_key = hard(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1.0,
        Period::Lifetime,
    );
    let dollars = hard(&store, Scope::Team, "ml", Kind::Spend, 10.0, Period::Daily);
    let tokens = hard(
        &store,
        Scope::User,
        "alice",
        Kind::Tokens,
        1e6,
        Period::Daily,
    );
    let now = store.clock.now();
    let mut blocked = report(&req("key_a", "gpt-4o", 0, 0), None, 0, 0, now);
    blocked.forwarded = false;
    blocked.status = 400;
    blocked.guardrail_events = vec![GuardrailEvent {
        guardrail: "secrets".into(),
        kind: "aws_access_key".into(),
        direction: "input".into(),
        action: "block".into(),
        count: 3,
    }];
    let first = store
        .settle(std::slice::from_ref(&blocked))
        .unwrap()
        .remove(0);
    assert_eq!(
        first,
        Settled {
            request_id: blocked.request_id.clone(),
            cost_usd: 0.0,
            priced: true,
            duplicate: false,
        },
        "nothing reached a provider: the cost is known to be 0"
    );
    let again = store
        .settle(std::slice::from_ref(&blocked))
        .unwrap()
        .remove(0);
    assert!(again.duplicate && again.cost_usd == 0.0);

    let rows = store.ledger(Some("key_a"), 10).unwrap();
    assert_eq!(rows.len(), 1, "one row, however often it is reported");
    let row = &rows[0];
    assert!(!row.forwarded);
    assert_eq!((row.status, row.cost_usd), (400, 0.0));
    assert_eq!(row.guardrail_events, blocked.guardrail_events);
    for b in [&per_key, &dollars, &tokens] {
        let b = store.get_budget(&b.id).unwrap();
        assert_eq!((b.used, b.reserved), (0.0, 0.0), "{:?} charged", b.kind);
    }
    let by_key = store
        .usage(&UsageQuery {
            group_by: GroupBy::Key,
            ..Default::default()
        })
        .unwrap();
    assert!(by_key.is_empty(), "not a provider request: {by_key:?}");

    // The key's one request is still there for a forwarded one...
    let r = req("key_a", "gpt-4o", 100, 100);
    let a = allowed(store.reserve(&r).unwrap());
    // ...and a blocked report naming a reservation releases it, charging nothing.
    let mut released = report(&r, Some(&a.reservation_id), 0, 0, now);
    released.forwarded = false;
    assert!(!store.settle(&[released]).unwrap()[0].duplicate);
    let b = store.get_budget(&per_key.id).unwrap();
    assert_eq!((b.used, b.reserved), (0.0, 0.0));

    // A forwarded request is charged and tallied as before, next to the blocked ones.
    let charged = spend(&store, "key_a", "gpt-4o", 1000, 100);
    assert!(charged.cost_usd > 0.0);
    assert_eq!(store.get_budget(&per_key.id).unwrap().used, 1.0);
    let rows = store.ledger(Some("key_a"), 10).unwrap();
    let forwarded: Vec<bool> = rows.iter().map(|r| r.forwarded).collect();
    assert_eq!(forwarded.iter().filter(|f| **f).count(), 1, "{forwarded:?}");
    assert_eq!(rows.len(), 3);
    let by_key = store
        .usage(&UsageQuery {
            group_by: GroupBy::Key,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].totals.requests, 1);
}

/// The filter aggregates guardrail findings with a count; reports from
/// filters that send one entry per finding (no `count`) still mean one each.
fn guardrail_event_counts_are_kept_and_default_to_one(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let r = req("key_a", "gpt-4o", 10, 10);
    let mut json = report_json(&r, store.clock.now());
    json["guardrail_events"] = serde_json::json!([
        {"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact",
         "count": 4},
        {"guardrail": "pii", "kind": "phone", "direction": "output", "action": "redact"}
    ]);
    let report: UsageReport = serde_json::from_value(json).unwrap();
    assert!(report.forwarded, "forwarded defaults to true");
    store.settle(&[report]).unwrap();
    let rows = store.ledger(Some("key_a"), 10).unwrap();
    let counts: Vec<(&str, u64)> = rows[0]
        .guardrail_events
        .iter()
        .map(|e| (e.kind.as_str(), e.count))
        .collect();
    assert_eq!(counts, vec![("email", 4), ("phone", 1)]);
    assert!(rows[0].forwarded);
    let listed = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(listed["guardrail_events"][1]["count"], 1);
    assert_eq!(listed["forwarded"], true);
}

/// A report as the filter sends it, without the fields that have defaults.
fn report_json(r: &ReserveRequest, ts: i64) -> serde_json::Value {
    serde_json::json!({
        "request_id": r.request_id, "reservation_id": null, "key_id": r.key_id,
        "team": r.team, "user": r.user, "model": r.model, "upstream_model": r.upstream_model,
        "provider": r.provider, "api": "chat_completions", "input_tokens": 10,
        "output_tokens": 10, "cached_tokens": 0, "reasoning_tokens": 0, "status": 200,
        "latency_ms": 5, "estimated": false, "stream": false, "ts": ts
    })
}
