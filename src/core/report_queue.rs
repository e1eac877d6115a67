//! The per-worker queue of usage reports on their way to the sidecar,
//! host-free so its rules are tested natively:
//!
//! - reports are kept encoded, and a batch is bounded in count and bytes
//!   (the sidecar refuses bodies over 2 MB);
//! - a batch goes out when `max_batch` reports wait or the flush interval
//!   passed, one batch in flight at a time;
//! - no answer (sidecar down or restarting): the batch goes back to the
//!   front and is retried until taken, so a restart loses nothing;
//! - the sidecar refuses the batch (4xx, or a 5xx `MAX_ATTEMPTS` times in
//!   a row): the batch is split in halves and retried; a single report it
//!   refuses is dropped and counted, so one report can never stop billing
//!   for the reports behind it;
//! - refusals (reports for the audit log only) wait in a lane of their own,
//!   bounded alike and sent after the billing reports, so a flood of bad
//!   keys can neither push a billing report out nor hold it back;
//! - when its configuration goes away, a queue sends without waiting for
//!   the interval (`hurry`) or hands its reports to the configuration that
//!   replaced it (`adopt`).

use super::budget::UsageReport;
use super::report_json;
use std::collections::VecDeque;

/// Bytes of reports in one batch (the sidecar accepts up to 2 MB).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Server errors on the same batch before it is split (or its one report dropped).
pub const MAX_ATTEMPTS: u32 = 5;

/// What happened to the batch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 200: settled (or already settled: settling is idempotent).
    Taken,
    /// No answer, a timeout, or an answer that says "later" (401/403 from a
    /// token being rotated, 429, 502-504): retry as is.
    Later,
    /// The sidecar answered that it cannot take this batch (4xx).
    Refused,
    /// The sidecar failed on this batch (5xx): retried a few times, then refused.
    Failed,
}

impl Delivery {
    /// Classifies the sidecar's `:status` (None: no answer).
    pub fn from_status(status: Option<&str>) -> Delivery {
        match status.and_then(|s| s.parse::<u16>().ok()) {
            Some(200..=299) => Delivery::Taken,
            None | Some(401 | 403 | 408 | 429 | 502..=504) => Delivery::Later,
            Some(500..) => Delivery::Failed,
            Some(_) => Delivery::Refused,
        }
    }
}

/// Reports counted by the outcome of one call, for the adapter's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub dropped: u64,
    pub failures: u64,
}

#[derive(Debug)]
pub struct ReportQueue {
    max_queued: usize,
    max_batch: usize,
    flush_interval_ms: u64,
    /// Reports that bill (or record a request that ran).
    queue: VecDeque<Vec<u8>>,
    /// Refusals, for the audit log only.
    refusals: VecDeque<Vec<u8>>,
    /// The batch the sidecar has; its last `.1` reports are refusals.
    in_flight: Option<(Vec<Vec<u8>>, usize)>,
    last_flush_ms: u64,
    /// Batch size while the sidecar refuses batches; back to `max_batch` on success.
    batch_limit: usize,
    /// Server errors in a row on the batch at the front.
    attempts: u32,
    /// Every batch is due at once: the configuration is going away.
    hurried: bool,
}

impl ReportQueue {
    pub fn new(max_queued: usize, max_batch: usize, flush_interval_ms: u64) -> ReportQueue {
        ReportQueue {
            max_queued: max_queued.max(1),
            max_batch: max_batch.max(1),
            flush_interval_ms,
            queue: VecDeque::new(),
            refusals: VecDeque::new(),
            in_flight: None,
            last_flush_ms: 0,
            batch_limit: max_batch.max(1),
            attempts: 0,
            hurried: false,
        }
    }

    /// From now on a batch leaves as soon as none is in flight.
    pub fn hurry(&mut self) {
        self.hurried = true;
    }

    /// Takes `other`'s reports, its batch in flight first (its answer will
    /// never arrive here, and the sidecar settles a request once, so a
    /// batch it already took counts once). Returns the reports dropped for
    /// room, oldest first, as `push` would.
    pub fn adopt(&mut self, other: &mut ReportQueue) -> u64 {
        let mut dropped = 0;
        let (mut bills, mut refusals) = other
            .in_flight
            .take()
            .map(|(mut batch, refusals)| {
                let refused = batch.split_off(batch.len() - refusals);
                (batch, refused)
            })
            .unwrap_or_default();
        bills.extend(other.queue.drain(..));
        refusals.extend(other.refusals.drain(..));
        for (lane, reports) in [(&mut self.queue, bills), (&mut self.refusals, refusals)] {
            for report in reports {
                if lane.len() >= self.max_queued && lane.pop_front().is_some() {
                    dropped += 1;
                }
                lane.push_back(report);
            }
        }
        dropped
    }

    /// Reports not yet taken by the sidecar (queued and in flight).
    pub fn pending(&self) -> usize {
        self.queued() + self.in_flight.as_ref().map_or(0, |(b, _)| b.len())
    }

    fn queued(&self) -> usize {
        self.queue.len() + self.refusals.len()
    }

    /// A whole batch waits (the queue is behind the requests).
    pub fn has_full_batch(&self) -> bool {
        self.queued() >= self.max_batch
    }

    /// Queues a report; a full lane drops its oldest (counted).
    pub fn push(&mut self, report: &UsageReport) -> Tally {
        let mut tally = Tally::default();
        let encoded = report_json::encode(report);
        if encoded.len() > MAX_BATCH_BYTES {
            tally.dropped += 1;
            return tally;
        }
        let lane = if report.refused.is_some() {
            &mut self.refusals
        } else {
            &mut self.queue
        };
        if lane.len() >= self.max_queued && lane.pop_front().is_some() {
            tally.dropped += 1;
        }
        lane.push_back(encoded);
        tally
    }

    /// The body of the next batch when one is due and none is in flight:
    /// billing reports first, then refusals.
    pub fn next_batch(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let due = self.hurried
            || self.queued() >= self.max_batch
            || now_ms.saturating_sub(self.last_flush_ms) >= self.flush_interval_ms;
        if self.in_flight.is_some() || self.queued() == 0 || !due {
            return None;
        }
        self.last_flush_ms = now_ms;
        let mut batch = Vec::new();
        let mut bytes = 0;
        let limit = self.batch_limit.min(self.max_batch);
        let mut refusals = 0;
        for (lane, is_refusal) in [(&mut self.queue, false), (&mut self.refusals, true)] {
            while let Some(next) = lane.front() {
                let full = batch.len() >= limit
                    || (!batch.is_empty() && bytes + next.len() + 1 > MAX_BATCH_BYTES);
                if full {
                    break;
                }
                bytes += next.len() + 1;
                batch.extend(lane.pop_front());
                refusals += usize::from(is_refusal);
            }
        }
        let body = batch_body(&batch);
        self.in_flight = Some((batch, refusals));
        Some(body)
    }

    /// The batch could not be sent at all: it goes back to the front.
    pub fn not_sent(&mut self) -> Tally {
        self.finish(Delivery::Later)
    }

    /// The sidecar's answer to the batch in flight.
    pub fn finish(&mut self, delivery: Delivery) -> Tally {
        let mut tally = Tally::default();
        let Some((mut batch, refusals)) = self.in_flight.take() else {
            return tally;
        };
        let n = batch.len();
        let refused = match delivery {
            Delivery::Taken => {
                tally.sent = n as u64;
                self.batch_limit = self.max_batch;
                self.attempts = 0;
                return tally;
            }
            Delivery::Later => false,
            Delivery::Refused => true,
            Delivery::Failed => {
                self.attempts += 1;
                self.attempts >= MAX_ATTEMPTS
            }
        };
        tally.failures = 1;
        if refused {
            self.attempts = 0;
            if n == 1 {
                tally.dropped = 1;
                return tally;
            }
            self.batch_limit = (n / 2).max(1);
        }
        let refused_part = batch.split_off(n - refusals);
        for (lane, reports) in [(&mut self.queue, batch), (&mut self.refusals, refused_part)] {
            for report in reports.into_iter().rev() {
                lane.push_front(report);
            }
            while lane.len() > self.max_queued {
                if lane.pop_back().is_some() {
                    tally.dropped += 1;
                }
            }
        }
        tally
    }
}

/// `{"reports":[...]}` from encoded reports.
fn batch_body(reports: &[Vec<u8>]) -> Vec<u8> {
    let size = reports.iter().map(|r| r.len() + 1).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"reports\":[");
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, model_len: usize) -> UsageReport {
        UsageReport {
            request_id: id.into(),
            reservation_id: None,
            lease_id: None,
            lease_debits: Vec::new(),
            cache_hit: false,
            request_digest: None,
            response_digest: None,
            region: None,
            refused: None,
            key_id: Some("key_1".into()),
            team: None,
            user: None,
            model: "m".repeat(model_len),
            upstream_model: "m".into(),
            provider: "openai".into(),
            api: "chat_completions".into(),
            input_tokens: 1,
            output_tokens: 2,
            cached_tokens: 0,
            reasoning_tokens: 0,
            status: 200,
            latency_ms: 3,
            estimated: false,
            stream: false,
            guardrail_events: Vec::new(),
            forwarded: true,
            ts: 4,
        }
    }

    /// A report for the audit log only: a request refused for its key.
    fn refusal(id: &str) -> UsageReport {
        let mut r = report(id, 1);
        r.refused = Some("invalid_api_key".into());
        r
    }

    /// The request ids of a batch, read as the sidecar reads it.
    fn ids(body: &[u8]) -> Vec<String> {
        let batch: tollgate_protocol::SettleBatch = serde_json::from_slice(body).unwrap();
        batch.reports.into_iter().map(|r| r.request_id).collect()
    }

    #[test]
    fn statuses() {
        assert_eq!(Delivery::from_status(Some("200")), Delivery::Taken);
        assert_eq!(Delivery::from_status(None), Delivery::Later);
        assert_eq!(Delivery::from_status(Some("503")), Delivery::Later);
        assert_eq!(Delivery::from_status(Some("413")), Delivery::Refused);
        assert_eq!(Delivery::from_status(Some("400")), Delivery::Refused);
        assert_eq!(Delivery::from_status(Some("500")), Delivery::Failed);
    }

    #[test]
    fn batches_by_count_bytes_and_time() {
        let mut q = ReportQueue::new(100, 3, 200);
        for i in 0..4 {
            q.push(&report(&i.to_string(), 10));
        }
        // Three are waiting: due at once, whatever the time.
        assert_eq!(ids(&q.next_batch(1).unwrap()), ["0", "1", "2"]);
        assert!(q.next_batch(1000).is_none(), "one batch in flight");
        assert_eq!(q.pending(), 4);
        assert_eq!(q.finish(Delivery::Taken).sent, 3);
        assert_eq!(q.pending(), 1);
        assert!(
            q.next_batch(100).is_none(),
            "one report waits for the interval"
        );
        assert_eq!(ids(&q.next_batch(201).unwrap()), ["3"]);
        q.finish(Delivery::Taken);
        assert_eq!(q.pending(), 0);

        // Large reports: a batch stays under MAX_BATCH_BYTES.
        let mut q = ReportQueue::new(100, 500, 0);
        for i in 0..6 {
            q.push(&report(&i.to_string(), 200_000));
        }
        let body = q.next_batch(1).unwrap();
        assert!(body.len() <= MAX_BATCH_BYTES + 16, "{}", body.len());
        assert_eq!(ids(&body).len(), 2);
    }

    #[test]
    fn no_answer_retries_forever_in_order() {
        let mut q = ReportQueue::new(100, 10, 0);
        q.push(&report("a", 1));
        q.push(&report("b", 1));
        for t in 0..50 {
            q.next_batch(t).unwrap();
            let tally = q.finish(Delivery::Later);
            assert_eq!((tally.dropped, tally.failures), (0, 1));
        }
        assert_eq!(ids(&q.next_batch(99).unwrap()), ["a", "b"]);
    }

    #[test]
    fn a_refused_report_is_split_off_and_dropped() {
        let mut q = ReportQueue::new(1000, 8, 0);
        for i in 0..8 {
            q.push(&report(&format!("r{i}"), 1));
        }
        // The sidecar refuses any batch holding r5; the rest must get through.
        let mut taken = Vec::new();
        let mut dropped = 0;
        for t in 0..200 {
            let Some(body) = q.next_batch(t) else { break };
            let batch = ids(&body);
            let tally = if batch.iter().any(|id| id == "r5") {
                q.finish(Delivery::Refused)
            } else {
                taken.extend(batch);
                q.finish(Delivery::Taken)
            };
            dropped += tally.dropped;
        }
        assert_eq!(dropped, 1);
        taken.sort();
        assert_eq!(taken, ["r0", "r1", "r2", "r3", "r4", "r6", "r7"]);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn server_errors_are_retried_then_split() {
        let mut q = ReportQueue::new(100, 10, 0);
        q.push(&report("a", 1));
        q.push(&report("b", 1));
        for t in 0..MAX_ATTEMPTS - 1 {
            q.next_batch(u64::from(t)).unwrap();
            assert_eq!(q.finish(Delivery::Failed).dropped, 0);
        }
        assert_eq!(ids(&q.next_batch(10).unwrap()).len(), 2);
        q.finish(Delivery::Failed);
        // Split: "a" alone now; after more failures it is dropped, "b" goes on.
        let mut dropped = 0;
        for t in 0..MAX_ATTEMPTS {
            assert_eq!(ids(&q.next_batch(20 + u64::from(t)).unwrap()), ["a"]);
            dropped += q.finish(Delivery::Failed).dropped;
        }
        assert_eq!(dropped, 1);
        assert_eq!(ids(&q.next_batch(99).unwrap()), ["b"]);
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let mut q = ReportQueue::new(2, 10, 0);
        q.push(&report("a", 1));
        q.push(&report("b", 1));
        assert_eq!(q.push(&report("c", 1)).dropped, 1);
        assert_eq!(ids(&q.next_batch(0).unwrap()), ["b", "c"]);
    }

    #[test]
    fn refusals_never_push_out_or_hold_back_billing_reports() {
        let mut q = ReportQueue::new(2, 3, 0);
        q.push(&report("a", 1));
        q.push(&refusal("x1"));
        q.push(&report("b", 1));
        // A flood of refusals drops only refusals.
        for i in 2..10 {
            let dropped = q.push(&refusal(&format!("x{i}"))).dropped;
            assert_eq!(dropped, u64::from(i > 2), "x{i}");
        }
        assert_eq!(q.pending(), 4);
        // Billing reports go first; refusals fill the rest of the batch.
        assert_eq!(ids(&q.next_batch(0).unwrap()), ["a", "b", "x8"]);
        // Back from a failed send, each returns to its own lane, in order;
        // a lane over its bound loses its newest report.
        q.push(&report("c", 1));
        assert_eq!(q.pending(), 5);
        assert_eq!(q.finish(Delivery::Later).dropped, 1);
        assert_eq!(q.pending(), 4);
        assert_eq!(ids(&q.next_batch(1).unwrap()), ["a", "b", "x8"]);
        assert_eq!(q.finish(Delivery::Taken).sent, 3);
        assert_eq!(ids(&q.next_batch(2).unwrap()), ["x9"]);
    }

    #[test]
    fn a_hurried_queue_sends_without_waiting_for_the_interval() {
        let mut q = ReportQueue::new(100, 3, 200);
        q.push(&report("a", 1));
        assert!(q.next_batch(1).is_none());
        q.hurry();
        assert_eq!(ids(&q.next_batch(1).unwrap()), ["a"]);
        q.finish(Delivery::Taken);
        q.push(&report("b", 1));
        assert_eq!(ids(&q.next_batch(2).unwrap()), ["b"]);
    }

    #[test]
    fn adopting_takes_every_report_the_batch_in_flight_first() {
        let mut old = ReportQueue::new(100, 2, 0);
        for id in ["a", "b", "c"] {
            old.push(&report(id, 1));
        }
        old.push(&refusal("x"));
        assert_eq!(ids(&old.next_batch(0).unwrap()), ["a", "b"]);
        let mut new = ReportQueue::new(100, 10, 0);
        new.push(&report("n", 1));
        assert_eq!(new.adopt(&mut old), 0);
        assert_eq!(old.pending(), 0);
        assert!(old.finish(Delivery::Taken) == Tally::default());
        assert_eq!(ids(&new.next_batch(0).unwrap()), ["n", "a", "b", "c", "x"]);

        // Past the bound, the oldest go, counted.
        let mut old = ReportQueue::new(100, 10, 0);
        for id in ["a", "b", "c"] {
            old.push(&report(id, 1));
        }
        let mut new = ReportQueue::new(2, 10, 0);
        assert_eq!(new.adopt(&mut old), 1);
        assert_eq!(ids(&new.next_batch(0).unwrap()), ["b", "c"]);
    }

    #[test]
    fn bounded_reports_stay_small() {
        let mut r = report("x", 2_500_000);
        r.team = Some("t".repeat(100_000));
        let r = crate::core::budget::bounded(r);
        assert!(serde_json::to_vec(&r).unwrap().len() < 2_000);
    }
}
