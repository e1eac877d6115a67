#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What the audit log costs the sidecar, printed rather than asserted (a
//! measurement, not a timed test; ignored unless asked for):
//!
//! ```text
//! cargo test --release -p tollgate-sidecar --test audit_cost -- --ignored --nocapture
//! ```
//!
//! For each backend (PostgreSQL when installed: `tests/common`'s throwaway
//! server, which runs with fsync off), two databases set up alike, one
//! store with the log on and one with it off (`Store::with_audit_log`),
//! take the same work in alternating order, round after round:
//!
//! - `Store::settle` of batches of 64 reports (the filter sends up to
//!   `budgets.max_batch`, 500, every 200 ms) and of single reports, each
//!   report charging a never-binding request budget, as in `make bench`'s
//!   (s), without body digests (as shipped) and with them (HMACs);
//! - lease calls, each handing back the previous lease's rest, as the
//!   filter renews one: the part of the log a request may wait on (on,
//!   each call queues its entries);
//! - the next append of those queued entries (`settle` of no reports).
//!
//! Medians over the rounds, in µs per report, per lease call and per
//! queued entry; the first round only warms up.

mod common;

use std::time::Instant;

use common::{hard_budget, Backend, TestStore};
use serde_json::json;
use tollgate_sidecar::budgets::{Kind, Scope};
use tollgate_sidecar::leases::{LeaseAmount, LeaseAnswer, LeaseRelease, LeaseRequest};
use tollgate_sidecar::ledger::UsageReport;
use tollgate_sidecar::periods::Period;
use tollgate_sidecar::store::Store;

const ROUNDS: usize = 8;
/// Batches of 64 settled per round and store.
const BATCHES: usize = 12;
const SINGLES: usize = 200;
const LEASES: usize = 200;

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn audit_log_cost_on_sqlite() {
    measure(Backend::Sqlite);
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn audit_log_cost_on_postgres() {
    measure(Backend::Postgres);
}

/// A store on a database of its own, with the key's request budget.
struct Side {
    _db: TestStore,
    store: Store,
    /// The lease to hand back with the next lease call.
    lease: Option<LeaseRelease>,
    reports: usize,
}

impl Side {
    fn open(backend: Backend, audit_log: bool) -> Option<Side> {
        let db = TestStore::open(backend)?;
        let store = db.reopen().with_audit_log(audit_log);
        hard_budget(
            &store,
            Scope::Key,
            "key_a",
            Kind::Requests,
            1e12,
            Period::Daily,
        );
        Some(Side {
            _db: db,
            store,
            lease: None,
            reports: 0,
        })
    }

    fn reports(&mut self, n: usize, digests: bool) -> Vec<UsageReport> {
        (0..n)
            .map(|_| {
                self.reports += 1;
                report(&format!("req-{}", self.reports), digests)
            })
            .collect()
    }

    /// µs per report settling `batches` batches of `size`.
    fn settle(&mut self, batches: usize, size: usize, digests: bool) -> f64 {
        let work: Vec<Vec<UsageReport>> =
            (0..batches).map(|_| self.reports(size, digests)).collect();
        let start = Instant::now();
        for batch in &work {
            self.store.settle(batch).unwrap();
        }
        micros(start) / (batches * size) as f64
    }

    /// µs per lease call, each handing back the previous lease's rest.
    fn leases(&mut self, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            let request = LeaseRequest {
                release: self.lease.take().into_iter().collect(),
                ..lease_request()
            };
            let LeaseAnswer::Granted(grant) = self.store.lease(&request).unwrap() else {
                panic!("no lease")
            };
            self.lease = Some(LeaseRelease {
                lease_id: grant.lease_id,
                unused: grant
                    .budgets
                    .iter()
                    .map(|b| LeaseAmount {
                        budget_id: b.budget_id.clone(),
                        amount: b.granted,
                    })
                    .collect(),
            });
        }
        micros(start) / n as f64
    }

    /// µs appending what the lease calls queued (a settle of no reports).
    fn drain(&mut self) -> f64 {
        let start = Instant::now();
        self.store.settle(&[]).unwrap();
        micros(start)
    }
}

fn micros(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

fn report(id: &str, digests: bool) -> UsageReport {
    // Any 64 hex characters: what the filter sends as a body's SHA-256.
    let digest = digests.then(|| "ab".repeat(32));
    serde_json::from_value(json!({
        "request_id": id, "key_id": "key_a", "team": "bench", "user": null,
        "model": "gpt-4o-mini", "upstream_model": "gpt-4o-mini", "provider": "openai",
        "api": "chat_completions", "input_tokens": 14, "output_tokens": 9,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 3,
        "estimated": false, "stream": false, "ts": common::T0,
        "request_digest": digest, "response_digest": digest
    }))
    .unwrap()
}

fn lease_request() -> LeaseRequest {
    LeaseRequest {
        key_id: "key_a".into(),
        team: Some("bench".into()),
        user: None,
        model: "gpt-4o-mini".into(),
        upstream_model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        estimated_input_tokens: 14,
        max_output_tokens: 4096,
        release: vec![],
    }
}

/// Rows of the table: what is timed, and its unit.
const MEASURES: [(&str, &str); 5] = [
    ("settle, batches of 64", "µs/report"),
    ("settle, batches of 64, body digests", "µs/report"),
    ("settle, one report at a time", "µs/report"),
    ("lease call (grant + hand back)", "µs/call"),
    ("appending a lease call's queued entries", "µs/call"),
];

fn measure(backend: Backend) {
    let (Some(on), Some(off)) = (Side::open(backend, true), Side::open(backend, false)) else {
        return;
    };
    let mut sides = [on, off];
    // [side][measure] -> one figure per counted round
    let mut figures = vec![vec![Vec::new(); MEASURES.len()]; 2];
    for round in 0..ROUNDS {
        // Alternate which side goes first, so drift lands on both.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = &mut sides[i];
            let round_figures = [
                side.settle(BATCHES, 64, false),
                side.settle(BATCHES, 64, true),
                side.settle(SINGLES, 1, false),
                side.leases(LEASES),
                side.drain() / LEASES as f64,
            ];
            if round > 0 {
                for (m, v) in round_figures.into_iter().enumerate() {
                    figures[i][m].push(v);
                }
            }
        }
    }
    println!(
        "\n{backend:?}: audit log on vs off, medians of {} rounds (min-max in brackets)\n",
        ROUNDS - 1
    );
    println!("| measure | on | off | on - off |");
    println!("|---|---:|---:|---:|");
    for (m, (what, unit)) in MEASURES.iter().enumerate() {
        let (on, off) = (median(&figures[0][m]), median(&figures[1][m]));
        println!(
            "| {what} ({unit}) | {on:.1} [{}] | {off:.1} [{}] | {:+.1} |",
            range(&figures[0][m]),
            range(&figures[1][m]),
            on - off
        );
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.1}-{max:.1}")
}
