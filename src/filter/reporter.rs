//! Usage reports to the sidecar, per worker: queued at the end of each
//! request and sent in batches from the root context's tick. The rules
//! (batch bounds, retry until the sidecar takes them, split and drop what it
//! refuses) are in `core::report_queue`; this adds the calls and metrics.
//! What can still be lost: reports queued in a worker when Envoy itself
//! stops (a configuration replaced or removed while Envoy runs sends its
//! reports first, or hands them to its successor: `Shared::drain` and
//! `Shared::hand_over`), or beyond `max_queued_reports` (counted in
//! `tollgate.usage.reports_dropped` and logged). Host calls go through
//! `env::Host`: none per request unless a report is dropped (the queue
//! gauge is set on the tick).

use super::env::Host;
use super::sidecar::SidecarClient;
use crate::core::budget::{self, BudgetConfig, UsageReport};
use crate::core::report_queue::{Delivery, ReportQueue, Tally};
use std::sync::Arc;
use std::time::Duration;

pub struct Reporter {
    sidecar: Arc<SidecarClient>,
    queue: ReportQueue,
    /// The callout token of the batch in flight.
    in_flight: Option<u32>,
    sent: Option<u32>,
    dropped: Option<u32>,
    failures: Option<u32>,
    queued: Option<u32>,
}

impl Reporter {
    pub fn new(host: &impl Host, config: &BudgetConfig, sidecar: Arc<SidecarClient>) -> Reporter {
        Reporter {
            sidecar,
            queue: ReportQueue::new(
                config.max_queued_reports,
                config.max_batch,
                config.flush_interval_ms,
            ),
            in_flight: None,
            sent: host.define_counter("tollgate.usage.reports_sent"),
            dropped: host.define_counter("tollgate.usage.reports_dropped"),
            failures: host.define_counter("tollgate.usage.report_failures"),
            queued: host.define_gauge("tollgate.usage.reports_queued"),
        }
    }

    pub fn push(&mut self, host: &impl Host, report: UsageReport) {
        let tally = self.queue.push(&budget::bounded(report));
        if tally.dropped > 0 {
            log::error!(
                "tollgate: usage report queue full, dropped the oldest report ({} queued)",
                self.queue.pending()
            );
        }
        self.count(host, tally);
    }

    /// Sends the next batch when one is due and nothing is in flight.
    pub fn tick(&mut self, host: &impl Host, now_ms: u64) {
        host.set_gauge(self.queued, self.queue.pending() as u64);
        let Some(body) = self.queue.next_batch(now_ms) else {
            return;
        };
        let timeout = Duration::from_millis(self.sidecar.config.timeout_ms.max(1000));
        match self
            .sidecar
            .post(host, tollgate_protocol::SETTLE_BATCH_PATH, &body, timeout)
        {
            Some(token) => self.in_flight = Some(token),
            None => {
                let tally = self.queue.not_sent();
                self.count(host, tally);
            }
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// From now on each batch leaves as soon as the one before is answered.
    #[cfg(feature = "wasm")]
    pub fn hurry(&mut self) {
        self.queue.hurry();
    }

    /// Reports queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue.pending()
    }

    /// Takes the reports of `other`, whose configuration is going away.
    pub fn adopt(&mut self, other: &mut Reporter) {
        let moved = other.queue.pending();
        let dropped = self.queue.adopt(&mut other.queue);
        other.in_flight = None;
        if moved > 0 {
            log::info!("tollgate: took {moved} usage reports from a replaced configuration");
        }
        if dropped > 0 {
            log::error!("tollgate: usage report queue full, dropped the {dropped} oldest reports");
        }
    }

    pub fn on_response(&mut self, host: &impl Host, status: Option<String>) {
        self.in_flight = None;
        let delivery = Delivery::from_status(status.as_deref());
        let tally = self.queue.finish(delivery);
        if delivery != Delivery::Taken {
            let status = status.as_deref().unwrap_or("no answer");
            if tally.dropped > 0 {
                log::error!("tollgate: the sidecar refused a usage report ({status}); dropped it");
            } else {
                log::warn!(
                    "tollgate: the sidecar did not take usage reports ({status}); will retry"
                );
            }
        }
        self.count(host, tally);
        // Behind the requests: the next batch goes now, not on the next
        // tick, or one batch per tick would cap a worker at `max_batch`
        // reports per 100 ms and the queue would grow under load.
        if delivery == Delivery::Taken && self.queue.has_full_batch() {
            self.tick(host, host.now_ms());
        }
    }

    /// Adds what changed to the counters (a host call only for those).
    fn count(&self, host: &impl Host, tally: Tally) {
        for (id, n) in [
            (self.sent, tally.sent),
            (self.dropped, tally.dropped),
            (self.failures, tally.failures),
        ] {
            if n > 0 {
                host.add_to_counter(id, n);
            }
        }
    }
}
