//! Usage reports to the sidecar, per worker: queued at the end of each
//! request and sent in batches from the root context's tick. A batch that
//! fails (sidecar down, timeout, non-200) goes back to the front of the queue
//! and is retried, so usage survives a sidecar restart; the sidecar settles
//! idempotently by request id. What can still be lost: reports queued in a
//! worker when Envoy itself stops, or beyond `max_queued_reports` (counted in
//! `tollgate.usage.reports_dropped` and logged).

use super::host;
use crate::core::budget::{self, BudgetConfig, UsageReport};
use crate::core::config::SidecarConfig;
use std::collections::VecDeque;
use std::time::Duration;

pub struct Reporter {
    config: BudgetConfig,
    sidecar: SidecarConfig,
    queue: VecDeque<UsageReport>,
    /// The batch in flight and its callout token.
    in_flight: Option<(u32, Vec<UsageReport>)>,
    last_flush_ms: u64,
    sent: Option<u32>,
    dropped: Option<u32>,
    failures: Option<u32>,
    queued: Option<u32>,
}

impl Reporter {
    pub fn new(config: BudgetConfig, sidecar: SidecarConfig) -> Reporter {
        Reporter {
            config,
            sidecar,
            queue: VecDeque::new(),
            in_flight: None,
            last_flush_ms: 0,
            sent: host::define_counter("tollgate.usage.reports_sent"),
            dropped: host::define_counter("tollgate.usage.reports_dropped"),
            failures: host::define_counter("tollgate.usage.report_failures"),
            queued: host::define_gauge("tollgate.usage.reports_queued"),
        }
    }

    pub fn push(&mut self, report: UsageReport) {
        if self.queue.len() >= self.config.max_queued_reports {
            if let Some(lost) = self.queue.pop_front() {
                host::add_to_counter(self.dropped, 1);
                log::error!(
                    "tollgate: usage report queue full, dropped the oldest report (request {})",
                    lost.request_id
                );
            }
        }
        self.queue.push_back(report);
        host::set_gauge(self.queued, self.queue.len() as u64);
    }

    /// Sends the next batch when due and nothing is in flight.
    pub fn tick(&mut self, now_ms: u64) {
        if self.in_flight.is_some()
            || self.queue.is_empty()
            || now_ms.saturating_sub(self.last_flush_ms) < self.config.flush_interval_ms
        {
            return;
        }
        self.last_flush_ms = now_ms;
        let take = self.queue.len().min(self.config.max_batch);
        let batch: Vec<UsageReport> = self.queue.drain(..take).collect();
        let body = budget::settle_batch_body(&batch);
        let headers = vec![
            (":method", "POST"),
            (":path", "/v1/settle/batch"),
            (":authority", self.sidecar.authority.as_str()),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(self.sidecar.timeout_ms.max(1000));
        match proxy_wasm::hostcalls::dispatch_http_call(
            &self.sidecar.cluster,
            headers,
            Some(&body),
            vec![],
            timeout,
        ) {
            Ok(token) => self.in_flight = Some((token, batch)),
            Err(e) => {
                log::warn!("tollgate: cannot send usage reports to the sidecar: {e:?}; will retry");
                self.requeue(batch);
            }
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|(t, _)| *t == token)
    }

    pub fn on_response(&mut self, status: Option<String>) {
        let Some((_, batch)) = self.in_flight.take() else {
            return;
        };
        if status.as_deref() == Some("200") {
            host::add_to_counter(self.sent, batch.len() as u64);
        } else {
            log::warn!(
                "tollgate: sidecar did not take {} usage reports ({}); will retry",
                batch.len(),
                status.as_deref().unwrap_or("no answer")
            );
            self.requeue(batch);
        }
    }

    fn requeue(&mut self, batch: Vec<UsageReport>) {
        host::add_to_counter(self.failures, 1);
        for report in batch.into_iter().rev() {
            self.queue.push_front(report);
        }
        while self.queue.len() > self.config.max_queued_reports {
            if self.queue.pop_back().is_some() {
                host::add_to_counter(self.dropped, 1);
            }
        }
        host::set_gauge(self.queued, self.queue.len() as u64);
    }
}
