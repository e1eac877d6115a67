#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Budget leases at the store level, on SQLite and on PostgreSQL, with a
//! manual clock: grant sizes, refusals, the TTL, releases, settling on a
//! lease, hold expiry, and threads spending leases concurrently.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{Backend, TestStore, T0};
use tollgate_sidecar::budgets::{Budget, Denial, Kind, Mode, ReserveAnswer, ReserveRequest, Scope};
use tollgate_sidecar::leases::{
    request_need, LeaseAmount, LeaseAnswer, LeaseGrant, LeasePrice, LeaseRelease, LeaseRequest,
    DEFAULT_LEASE_TTL_S, LEASE_GRACE_S,
};
use tollgate_sidecar::ledger::{Settled, UsageReport};
use tollgate_sidecar::periods::Period;
use tollgate_sidecar::store::Store;

on_both_backends!(
    grants_are_an_eighth_of_what_is_left_in_whole_requests_down_to_one,
    the_crossing_grant_covers_one_request_when_less_is_left,
    used_up_budgets_refuse_a_lease_as_they_refuse_a_reservation,
    lease_ttl_is_capped_by_the_period_end,
    tracking_budgets_are_not_leased_but_warn,
    releases_free_budget_even_when_the_lease_is_refused,
    settling_takes_debits_off_the_lease_once,
    expired_lease_holds_stop_counting,
    concurrent_leases_admit_exactly_a_request_budget,
    concurrent_leases_overshoot_spend_by_less_than_one_request,
);

use common::{create_budget as create_in, hard_budget as create};

fn request_id() -> String {
    common::request_id("lreq")
}

/// A lease request of key `key` (team `ml`, user `alice`) for `model`.
fn lease_req(key: &str, model: &str, input: u64, max_output: u64) -> LeaseRequest {
    LeaseRequest {
        key_id: key.into(),
        team: Some("ml".into()),
        user: Some("alice".into()),
        model: model.into(),
        upstream_model: model.into(),
        provider: "openai".into(),
        estimated_input_tokens: input,
        max_output_tokens: max_output,
        release: vec![],
    }
}

fn granted(a: LeaseAnswer) -> LeaseGrant {
    match a {
        LeaseAnswer::Granted(g) => g,
        LeaseAnswer::Denied(d) => panic!("expected a lease, got {d:?}"),
    }
}

fn refused(a: LeaseAnswer) -> Denial {
    match a {
        LeaseAnswer::Denied(d) => d,
        LeaseAnswer::Granted(g) => panic!("expected a denial, got {g:?}"),
    }
}

/// What the lease grants of budget `id`.
fn grant_of(g: &LeaseGrant, id: &str) -> f64 {
    let found: Vec<f64> = g
        .budgets
        .iter()
        .filter(|b| b.budget_id == id)
        .map(|b| b.granted)
        .collect();
    assert_eq!(found.len(), 1, "{id} in {g:?}");
    found[0]
}

/// `(used, reserved)` of a budget now.
fn standing(store: &Store, b: &Budget) -> (f64, f64) {
    let b = store.get_budget(&b.id).unwrap();
    (b.used, b.reserved)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// The report of one request admitted on `lease` with these debits.
fn report(
    r: &LeaseRequest,
    lease: &str,
    debits: &[(&str, f64)],
    input: u64,
    output: u64,
    ts: i64,
) -> UsageReport {
    UsageReport {
        request_id: request_id(),
        reservation_id: None,
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
        latency_ms: 100,
        estimated: false,
        stream: false,
        guardrail_events: vec![],
        forwarded: true,
        ts,
        lease_id: Some(lease.into()),
        lease_debits: debits
            .iter()
            .map(|(b, amount)| LeaseAmount {
                budget_id: (*b).into(),
                amount: *amount,
            })
            .collect(),
        cache_hit: false,
        request_digest: None,
        response_digest: None,
        region: None,
        refused: None,
    }
}

fn release(lease: &str, unused: &[(&str, f64)]) -> LeaseRelease {
    LeaseRelease {
        lease_id: lease.into(),
        unused: unused
            .iter()
            .map(|(b, amount)| LeaseAmount {
                budget_id: (*b).into(),
                amount: *amount,
            })
            .collect(),
    }
}

fn gpt_4o() -> LeasePrice {
    // The shipped default, USD per 1M tokens.
    LeasePrice {
        input: 2.5,
        output: 10.0,
    }
}

fn grants_are_an_eighth_of_what_is_left_in_whole_requests_down_to_one(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let requests = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let tokens = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Tokens,
        80_000.0,
        Period::Daily,
    );
    let spend = create(
        &store,
        Scope::User,
        "alice",
        Kind::Spend,
        1.0,
        Period::Monthly,
    );
    // 1000 in + 500 out of gpt-4o: 1 request, 1500 tokens, $0.0075.
    let r = lease_req("key_a", "gpt-4o", 1000, 500);
    let g = granted(store.lease(&r).unwrap());
    assert!(g.lease_id.starts_with("lse_"), "{}", g.lease_id);
    assert_eq!(g.price, Some(gpt_4o()));
    assert_eq!(g.ttl_ms, 1000 * DEFAULT_LEASE_TTL_S as u64);
    assert_eq!(g.budgets.len(), 3);
    assert_eq!(grant_of(&g, &requests.id), 12.0, "floor(100 / 8)");
    assert_eq!(grant_of(&g, &tokens.id), 10_000.0);
    assert!(close(grant_of(&g, &spend.id), 0.125));
    let kinds: Vec<(&str, &str)> = g
        .budgets
        .iter()
        .map(|b| (b.budget_id.as_str(), b.kind.as_str()))
        .collect();
    assert!(kinds.contains(&(requests.id.as_str(), "requests")));
    assert!(kinds.contains(&(spend.id.as_str(), "spend")));
    // Held like reservations: the standings count the grants as reserved.
    assert_eq!(standing(&store, &requests), (0.0, 12.0));
    assert_eq!(standing(&store, &tokens), (0.0, 10_000.0));
    assert!(close(standing(&store, &spend).1, 0.125));

    // Each lease takes an eighth of what the others left.
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(grant_of(&g, &requests.id), 11.0, "floor(88 / 8)");
    assert_eq!(grant_of(&g, &tokens.id), 8_750.0);
    assert!(close(grant_of(&g, &spend.id), 0.875 / 8.0));

    // Down to one request per lease, never past the limit (a request of no
    // team and no user: only the key's request budget applies).
    let r = LeaseRequest {
        team: None,
        user: None,
        ..r
    };
    let mut left = 100.0 - 12.0 - 11.0;
    let mut sizes = vec![];
    while left > 0.0 {
        let g = granted(store.lease(&r).unwrap());
        let got = grant_of(&g, &requests.id);
        assert_eq!(got, (left / 8.0_f64).floor().max(1.0), "with {left} left");
        assert_eq!(got.fract(), 0.0);
        sizes.push(got);
        left -= got;
    }
    assert_eq!(left, 0.0, "grants add up to the limit exactly");
    assert_eq!(&sizes[..3], &[9.0, 8.0, 7.0]);
    assert_eq!(
        sizes.iter().filter(|&&g| g == 1.0).count(),
        15,
        "one at a time from 15 left: {sizes:?}"
    );
    assert_eq!(standing(&store, &requests), (0.0, 100.0));
    let d = refused(store.lease(&r).unwrap());
    assert_eq!(d.budget_id, requests.id);
    assert_eq!((d.used, d.reserved, d.limit), (0.0, 100.0, 100.0));
}

fn the_crossing_grant_covers_one_request_when_less_is_left(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let need = request_need("spend", Some(&gpt_4o()), 1000, 500);
    assert!(close(need, 0.0075));
    // $0.01: an eighth is less than one request, so a lease is one request.
    let spend = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        0.01,
        Period::Monthly,
    );
    let tokens = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Tokens,
        2000.0,
        Period::Daily,
    );
    let r = lease_req("key_a", "gpt-4o", 1000, 500);
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(grant_of(&g, &spend.id), need);
    assert_eq!(grant_of(&g, &tokens.id), 1500.0);
    // Less than one request left ($0.0025, 500 tokens): the crossing grant
    // is one whole request, as a reservation crossing the limit would be.
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(grant_of(&g, &spend.id), need);
    assert_eq!(grant_of(&g, &tokens.id), 1500.0);
    assert_eq!(standing(&store, &tokens), (0.0, 3000.0));
    assert!(close(standing(&store, &spend).1, 2.0 * need));
    // Past the limit: refused.
    let d = refused(store.lease(&r).unwrap());
    assert!(d.budget_id == spend.id || d.budget_id == tokens.id, "{d:?}");
}

fn used_up_budgets_refuse_a_lease_as_they_refuse_a_reservation(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    store.clock.set(T0 + 45);
    let rate = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        2.0,
        Period::Minute,
    );
    let r = lease_req("key_a", "gpt-4o", 10, 10);
    // Held, not used: the refusal says try again soon.
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(grant_of(&g, &rate.id), 1.0);
    granted(store.lease(&r).unwrap());
    let d = refused(store.lease(&r).unwrap());
    assert_eq!((d.used, d.reserved, d.limit), (0.0, 2.0, 2.0));
    assert_eq!(d.reason, "rate_limit");
    assert_eq!(d.retry_after_s, 15, "the minute ends first");
    assert!(d.message.contains("(plus 2 in flight)"), "{}", d.message);

    // The same refusal as a reservation's, field for field.
    let reserve = ReserveRequest {
        request_id: request_id(),
        key_id: "key_a".into(),
        team: r.team.clone(),
        user: r.user.clone(),
        model: r.model.clone(),
        upstream_model: r.upstream_model.clone(),
        provider: r.provider.clone(),
        estimated_input_tokens: 10,
        max_output_tokens: 10,
    };
    let ReserveAnswer::Denied(by_reserve) = store.reserve(&reserve).unwrap() else {
        panic!("the reservation passed");
    };
    assert_eq!(d, by_reserve);

    // A used-up daily budget of the team waits for its reset, and names
    // itself over the rate limit (it stays closed longer).
    let daily = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Requests,
        0.0,
        Period::Daily,
    );
    let d = refused(store.lease(&r).unwrap());
    assert_eq!(d.budget_id, daily.id);
    assert_eq!((d.reason.as_str(), d.scope.as_str()), ("budget", "team"));
    assert_eq!(d.resets_at, Some(T0 + 12 * 3600));
    assert_eq!(
        d.retry_after_s,
        12 * 3600 - 45,
        "used up: wait for the reset"
    );
    let ReserveAnswer::Denied(by_reserve) = store.reserve(&reserve).unwrap() else {
        panic!("the reservation passed");
    };
    assert_eq!(d, by_reserve);
    // A refused lease holds nothing.
    assert_eq!(standing(&store, &rate), (0.0, 2.0));
    assert_eq!(standing(&store, &daily), (0.0, 0.0));
}

fn lease_ttl_is_capped_by_the_period_end(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let r = lease_req("key_a", "gpt-4o", 10, 10);
    // No budget at all: an empty lease for the whole TTL.
    let g = granted(store.lease(&r).unwrap());
    assert!(g.budgets.is_empty() && g.warnings.is_empty(), "{g:?}");
    assert_eq!(g.ttl_ms, 10_000);

    create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1000.0,
        Period::Daily,
    );
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(g.ttl_ms, 10_000, "the day ends much later");
    create(
        &store,
        Scope::User,
        "alice",
        Kind::Tokens,
        1e9,
        Period::Minute,
    );
    for (second, ttl_ms) in [
        (0, 10_000),
        (45, 10_000),
        (50, 10_000),
        (55, 5_000),
        (59, 1_000),
    ] {
        store.clock.set(T0 + second);
        let g = granted(store.lease(&r).unwrap());
        assert_eq!(g.ttl_ms, ttl_ms, "at second {second}");
        assert_eq!(g.budgets.len(), 2);
    }

    // A longer TTL (`serve --lease-ttl-s 30`), cut by the minute too.
    let long = store.reopen().with_lease_ttl_s(30).unwrap();
    assert_eq!(long.lease_ttl_s(), 30);
    for (second, ttl_ms) in [(10, 30_000), (45, 15_000)] {
        store.clock.set(T0 + 60 + second);
        assert_eq!(granted(long.lease(&r).unwrap()).ttl_ms, ttl_ms);
    }
    // At least a second; never zero or negative.
    for bad in [0, -5] {
        assert!(store.reopen().with_lease_ttl_s(bad).is_err());
    }
}

fn tracking_budgets_are_not_leased_but_warn(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let tracking = create_in(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1.0,
        Period::Daily,
        Mode::Tracking,
    );
    let r = lease_req("key_a", "gpt-4o", 10, 10);
    let g = granted(store.lease(&r).unwrap());
    assert!(g.budgets.is_empty(), "{g:?}");
    assert!(g.warnings.is_empty());
    assert_eq!(standing(&store, &tracking), (0.0, 0.0), "nothing held");
    // Settled usage still counts; over its limit it warns, never refuses.
    let now = store.clock.now();
    for _ in 0..2 {
        store
            .settle(&[report(&r, &g.lease_id, &[], 10, 10, now)])
            .unwrap();
    }
    let hard = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Requests,
        10.0,
        Period::Daily,
    );
    let g = granted(store.lease(&r).unwrap());
    assert_eq!(g.budgets.len(), 1);
    assert_eq!(grant_of(&g, &hard.id), 1.0);
    assert_eq!(g.warnings.len(), 1);
    let w = &g.warnings[0];
    assert_eq!(
        (w.budget_id.as_str(), w.kind.as_str(), w.used, w.limit),
        (tracking.id.as_str(), "requests", 2.0, 1.0)
    );
    assert_eq!(standing(&store, &tracking), (2.0, 0.0));
}

fn releases_free_budget_even_when_the_lease_is_refused(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let many = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let one = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Requests,
        1.0,
        Period::Daily,
    );
    let r = lease_req("key_a", "gpt-4o", 10, 10);
    let first = granted(store.lease(&r).unwrap());
    assert_eq!(
        (grant_of(&first, &many.id), grant_of(&first, &one.id)),
        (12.0, 1.0)
    );
    // Handing back part of `many` while `one` is still held: refused, but
    // the release stands.
    let mut again = r.clone();
    again.release = vec![release(&first.lease_id, &[(&many.id, 5.0)])];
    let d = refused(store.lease(&again).unwrap());
    assert_eq!(d.budget_id, one.id);
    assert_eq!(standing(&store, &many), (0.0, 7.0));
    // Nonsense amounts and unknown leases change nothing.
    again.release = vec![
        release(&first.lease_id, &[(&many.id, -3.0), (&many.id, f64::NAN)]),
        release("lse_unknown", &[(&many.id, 4.0), (&one.id, 1.0)]),
        release(&first.lease_id, &[("bud_gone", 1.0)]),
    ];
    refused(store.lease(&again).unwrap());
    assert_eq!(standing(&store, &many), (0.0, 7.0));
    assert_eq!(standing(&store, &one), (0.0, 1.0));
    // Handing back the rest (more than is held: the hold floors at 0)
    // frees `one` for the next lease.
    again.release = vec![release(
        &first.lease_id,
        &[(&many.id, 50.0), (&one.id, 1.0)],
    )];
    let second = granted(store.lease(&again).unwrap());
    assert_eq!(grant_of(&second, &one.id), 1.0);
    assert_eq!(grant_of(&second, &many.id), 12.0);
    assert_eq!(standing(&store, &many), (0.0, 12.0));
    assert_eq!(standing(&store, &one), (0.0, 1.0));
}

fn settling_takes_debits_off_the_lease_once(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let requests = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let spend = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        10.0,
        Period::Monthly,
    );
    let r = lease_req("key_a", "gpt-4o", 1000, 500);
    let g = granted(store.lease(&r).unwrap());
    let need = request_need("spend", g.price.as_ref(), 1000, 500);
    let (req_grant, spend_grant) = (grant_of(&g, &requests.id), grant_of(&g, &spend.id));
    assert_eq!((req_grant, spend_grant), (12.0, 1.25));
    let debits = [(requests.id.as_str(), 1.0), (spend.id.as_str(), need)];
    let now = store.clock.now();
    // Three requests on the lease, each using less than its estimate.
    let reports: Vec<UsageReport> = (0..3)
        .map(|_| report(&r, &g.lease_id, &debits, 1000, 100, now))
        .collect();
    let settled = store.settle(&reports).unwrap();
    let cost: f64 = settled.iter().map(|s| s.cost_usd).sum();
    assert!(close(cost, 3.0 * (1000.0 * 2.5 + 100.0 * 10.0) / 1e6));
    // Charged the real usage; the lease holds its grant less the debits.
    assert_eq!(standing(&store, &requests), (3.0, req_grant - 3.0));
    let (used, reserved) = standing(&store, &spend);
    assert!(close(used, cost), "{used}");
    assert!(close(reserved, spend_grant - 3.0 * need), "{reserved}");

    // A duplicate, alone or in a batch with a new report, takes nothing twice.
    let again = store.settle(&reports[..1]).unwrap();
    assert!(again[0].duplicate);
    let fourth = report(&r, &g.lease_id, &debits, 1000, 100, now);
    let batch: Vec<Settled> = store.settle(&[reports[1].clone(), fourth]).unwrap();
    assert_eq!(
        batch.iter().map(|s| s.duplicate).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(standing(&store, &requests), (4.0, req_grant - 4.0));
    assert!(close(standing(&store, &spend).1, spend_grant - 4.0 * need));

    // A request the gateway answered itself: its debits go back, nothing is charged.
    let mut blocked = report(&r, &g.lease_id, &debits, 1000, 0, now);
    blocked.forwarded = false;
    store.settle(&[blocked]).unwrap();
    assert_eq!(standing(&store, &requests), (4.0, req_grant - 5.0));
    // Releasing the unused rest leaves nothing held.
    let mut next = r.clone();
    next.release = vec![release(
        &g.lease_id,
        &[
            (&requests.id, req_grant - 5.0),
            (&spend.id, spend_grant - 5.0 * need),
        ],
    )];
    let g2 = granted(store.lease(&next).unwrap());
    // The new lease holds an eighth of what is left (96 requests).
    assert_eq!(standing(&store, &requests), (4.0, 12.0));
    assert_eq!(grant_of(&g2, &requests.id), 12.0);
    let (used, reserved) = standing(&store, &spend);
    assert!(close(reserved, grant_of(&g2, &spend.id)), "{reserved}");
    assert!(close(grant_of(&g2, &spend.id), (10.0 - used) / 8.0));
    // Debits past what is held floor at 0 and never touch other leases.
    let greedy = report(&r, &g.lease_id, &[(requests.id.as_str(), 50.0)], 1, 1, now);
    store.settle(&[greedy]).unwrap();
    assert_eq!(standing(&store, &requests), (5.0, 12.0));
}

fn expired_lease_holds_stop_counting(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let b = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        100.0,
        Period::Daily,
    );
    let r = lease_req("key_a", "gpt-4o", 10, 10);
    let g = granted(store.lease(&r).unwrap());
    let ttl = i64::try_from(g.ttl_ms / 1000).unwrap();
    assert_eq!(standing(&store, &b), (0.0, 12.0));
    // The filter stops using it after the TTL; in-flight requests count on
    // for the grace period.
    store.clock.advance(ttl + LEASE_GRACE_S - 1);
    assert_eq!(standing(&store, &b), (0.0, 12.0));
    store.clock.advance(1);
    assert_eq!(standing(&store, &b), (0.0, 0.0), "the hold expired");
    let g2 = granted(store.lease(&r).unwrap());
    assert_eq!(grant_of(&g2, &b.id), 12.0, "an eighth of all 100 again");
    // A late report is still charged; the expired hold changes nothing.
    let now = store.clock.now();
    store
        .settle(&[report(&r, &g.lease_id, &[(&b.id, 1.0)], 10, 10, now)])
        .unwrap();
    assert_eq!(standing(&store, &b), (1.0, 12.0));
}

/// A worker's lease: its id and what is left of each budget.
struct Held {
    id: String,
    left: Vec<(String, String, f64)>,
    price: Option<LeasePrice>,
}

/// `threads` workers admit requests (`input` + `max_output` estimated,
/// `output` used) on leases of key `key_a`, settling each with its debits,
/// until a budget is used up. Answers the cost of every admitted request.
fn spend_leases_concurrently(
    store: &TestStore,
    threads: usize,
    input: u64,
    max_output: u64,
    output: u64,
) -> Vec<f64> {
    let start = Barrier::new(threads);
    // A broken lease never finishes: workers then fail instead of spinning.
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                s.spawn(move || {
                    let r = lease_req("key_a", "gpt-4o-mini", input, max_output);
                    let mut held: Option<Held> = None;
                    let mut costs = vec![];
                    start.wait();
                    loop {
                        assert!(Instant::now() < deadline, "workers never finish");
                        if let Some(h) = held.as_mut() {
                            let needs: Vec<f64> = h
                                .left
                                .iter()
                                .map(|(_, kind, _)| {
                                    request_need(kind, h.price.as_ref(), input, max_output)
                                })
                                .collect();
                            let covered = h
                                .left
                                .iter()
                                .zip(&needs)
                                .all(|((_, _, left), need)| left >= need);
                            if covered {
                                let mut debits = vec![];
                                for ((budget, _, left), need) in h.left.iter_mut().zip(&needs) {
                                    *left -= need;
                                    debits.push((budget.as_str(), *need));
                                }
                                let now = store.clock.now();
                                let rep = report(&r, &h.id, &debits, input, output, now);
                                let s = store.settle(&[rep]).unwrap().remove(0);
                                assert!(!s.duplicate && s.priced);
                                costs.push(s.cost_usd);
                                continue;
                            }
                        }
                        // No lease covers the request: ask, handing back the rest.
                        let mut ask = r.clone();
                        if let Some(h) = held.take() {
                            let unused: Vec<(&str, f64)> =
                                h.left.iter().map(|(b, _, l)| (b.as_str(), *l)).collect();
                            ask.release = vec![release(&h.id, &unused)];
                        }
                        match store.lease(&ask).unwrap() {
                            LeaseAnswer::Granted(g) => {
                                assert!(!g.budgets.is_empty());
                                held = Some(Held {
                                    left: g
                                        .budgets
                                        .iter()
                                        .map(|b| (b.budget_id.clone(), b.kind.clone(), b.granted))
                                        .collect(),
                                    id: g.lease_id,
                                    price: g.price,
                                });
                            }
                            // Used up: done. Held by other workers: they
                            // spend or hand back their leases soon.
                            LeaseAnswer::Denied(d) if d.used >= d.limit => break,
                            LeaseAnswer::Denied(_) => std::thread::yield_now(),
                        }
                    }
                    costs
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn concurrent_leases_admit_exactly_a_request_budget(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let requests = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        10.0,
        Period::Daily,
    );
    // gpt-4o-mini: $0.15 / $0.60 per 1M; 1000 in + 1000 out estimated =
    // $0.00075. $0.05 is more than 60 such requests: the request budget binds.
    let spend = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        0.05,
        Period::Monthly,
    );
    let costs = spend_leases_concurrently(&store, 8, 1000, 1000, 400);
    assert_eq!(
        costs.len(),
        10,
        "a request budget of 10 admitted {} on leases",
        costs.len()
    );
    assert_eq!(standing(&store, &requests), (10.0, 0.0));
    let (used, reserved) = standing(&store, &spend);
    assert!(close(used, costs.iter().sum()), "{used}");
    assert!(
        reserved.abs() < 1e-12,
        "all handed back or settled: {reserved}"
    );
}

fn concurrent_leases_overshoot_spend_by_less_than_one_request(backend: Backend) {
    let Some(store) = TestStore::open(backend) else {
        return;
    };
    let requests = create(
        &store,
        Scope::Key,
        "key_a",
        Kind::Requests,
        1000.0,
        Period::Daily,
    );
    let limit = 0.005;
    let spend = create(
        &store,
        Scope::Team,
        "ml",
        Kind::Spend,
        limit,
        Period::Monthly,
    );
    let estimate = request_need(
        "spend",
        Some(&LeasePrice {
            input: 0.15,
            output: 0.60,
        }),
        1000,
        1000,
    );
    // Requests use their estimate: the bound is one request's estimate, and
    // the requests admitted are the first whose total reaches the limit.
    let costs = spend_leases_concurrently(&store, 8, 1000, 1000, 1000);
    let spent: f64 = costs.iter().sum();
    assert!(
        spent < limit + estimate,
        "overshot by more than one request: ${spent} of ${limit}"
    );
    assert!(spent >= limit, "stopped early: ${spent} of ${limit}");
    assert_eq!(costs.len() as f64, (limit / estimate).ceil());
    let (used, reserved) = standing(&store, &spend);
    assert!(close(used, spent), "{used}");
    assert!(reserved.abs() < 1e-12, "{reserved}");
    assert_eq!(standing(&store, &requests), (costs.len() as f64, 0.0));
}
