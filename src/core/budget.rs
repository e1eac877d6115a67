//! Budgets as the filter sees them: estimating a request's tokens, the
//! sidecar's lease answer, and usage reports for settling.

use super::api::Api;
use super::config::FailureMode;
use super::error::GatewayError;
use super::guard::GuardEvent;
use serde::Deserialize;
use serde_json::Value;
use tollgate_protocol as proto;
pub use tollgate_protocol::{GuardrailEvent, LeaseAmount, LeaseGrant, LeaseRequest, UsageReport};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Admit requests against budget leases (false = only record usage).
    #[serde(default = "yes")]
    pub enforce: bool,
    /// When the sidecar cannot answer a lease request; default: `sidecar.failure_mode`.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// Output tokens a request needs from a lease when it sets no maximum.
    #[serde(default = "default_max_output_tokens")]
    pub default_max_output_tokens: u64,
    /// Usage reports kept per worker while the sidecar is unreachable.
    #[serde(default = "default_max_queued_reports")]
    pub max_queued_reports: usize,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

fn yes() -> bool {
    true
}
fn default_max_output_tokens() -> u64 {
    4096
}
fn default_max_queued_reports() -> usize {
    100_000
}
fn default_flush_interval_ms() -> u64 {
    200
}
fn default_max_batch() -> usize {
    500
}

impl BudgetConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in [
            ("default_max_output_tokens", self.default_max_output_tokens),
            ("max_queued_reports", self.max_queued_reports as u64),
            ("flush_interval_ms", self.flush_interval_ms),
            ("max_batch", self.max_batch as u64),
        ] {
            if value == 0 {
                out.push(format!("budgets.{name} must be greater than 0"));
            }
        }
        out
    }
}

/// Rough input tokens: characters of the conversation's text / 4, plus a
/// few per message. Image data and ids are skipped; the real count arrives
/// with the response and replaces this estimate.
pub fn estimate_input_tokens(api: Api, body: &Value) -> u64 {
    let mut chars = 0usize;
    let mut messages = 0u64;
    let fields = api.inbound().conversation_fields();
    for field in fields.iter().copied().chain(["tools"]) {
        if let Some(v) = body.get(field) {
            count_text(v, &mut chars);
            messages += v.as_array().map_or(1, |a| a.len() as u64);
        }
    }
    (chars as u64).div_ceil(4) + 4 * messages
}

fn count_text(v: &Value, chars: &mut usize) {
    match v {
        Value::String(s) => *chars += s.chars().count(),
        Value::Array(items) => items.iter().for_each(|i| count_text(i, chars)),
        Value::Object(map) => {
            for (key, value) in map {
                // Images, ids and structural tags are not text the model reads.
                let skip = [
                    "data",
                    "url",
                    "image_url",
                    "source",
                    "id",
                    "tool_call_id",
                    "type",
                    "role",
                ];
                if !skip.contains(&key.as_str()) {
                    count_text(value, chars);
                }
            }
        }
        _ => {}
    }
}

/// The sidecar's answer to a lease request.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseAnswer {
    Granted(LeaseGrant),
    Denied(GatewayError),
}

/// Parses a 200 answer from `POST /v1/lease`.
pub fn parse_lease_response(body: &[u8]) -> Result<LeaseAnswer, String> {
    match serde_json::from_slice(body).map_err(|e| format!("unreadable lease answer: {e}"))? {
        proto::LeaseAnswer::Granted(grant) => Ok(LeaseAnswer::Granted(grant)),
        proto::LeaseAnswer::Denied(d) => Ok(LeaseAnswer::Denied(denial_error(d))),
    }
}

/// A budget refusal as the client's 429.
fn denial_error(d: proto::Denial) -> GatewayError {
    let (message, retry_after_s) = (d.message, d.retry_after_s);
    if d.reason == proto::REASON_RATE_LIMIT {
        GatewayError::RateLimited {
            message,
            retry_after_s,
        }
    } else {
        GatewayError::BudgetExceeded {
            message,
            retry_after_s,
        }
    }
}

/// A guardrail's findings of one kind on one request, counted (never the text).
impl From<&GuardEvent> for GuardrailEvent {
    fn from(e: &GuardEvent) -> Self {
        GuardrailEvent {
            guardrail: e.guardrail.into(),
            kind: capped(&e.kind, MAX_REPORT_FIELD),
            direction: e.direction.name().into(),
            action: e.action.name().into(),
            count: e.count,
        }
    }
}

/// Longest text field a usage report carries: names and ids are short, and
/// a report must stay far below the sidecar's request size limit.
pub const MAX_REPORT_FIELD: usize = 256;

/// `s` cut to at most `max` bytes at a character boundary.
pub fn capped(s: &str, max: usize) -> String {
    s.get(..s.floor_char_boundary(max))
        .unwrap_or_default()
        .to_string()
}

/// Cuts `s` to at most `max` bytes at a character boundary, in place.
fn cap(s: &mut String, max: usize) {
    if s.len() > max {
        s.truncate(s.floor_char_boundary(max));
    }
}

/// `report` with every client- or sidecar-supplied text field cut to
/// `MAX_REPORT_FIELD`: with events counted by kind (`From<&GuardEvent>`), a
/// report's size does not grow with what the client sends.
pub fn bounded(mut report: UsageReport) -> UsageReport {
    for field in [
        &mut report.model,
        &mut report.upstream_model,
        &mut report.provider,
    ] {
        cap(field, MAX_REPORT_FIELD);
    }
    for field in [
        &mut report.key_id,
        &mut report.team,
        &mut report.user,
        &mut report.lease_id,
    ]
    .into_iter()
    .flatten()
    {
        cap(field, MAX_REPORT_FIELD);
    }
    // A slot holds at most `lease::MAX_BUDGETS` budgets per lease.
    report
        .lease_debits
        .truncate(crate::core::lease::MAX_BUDGETS);
    for debit in &mut report.lease_debits {
        cap(&mut debit.budget_id, MAX_REPORT_FIELD);
    }
    report
}

/// Unix seconds for a report's `ts`, from the host's nanoseconds.
pub fn unix_secs(now_ns: u64) -> i64 {
    i64::try_from(now_ns / 1_000_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimates_from_text_only() {
        let body = json!({
            "model": "m",
            "system": "abcd",
            "messages": [
                {"role": "user", "content": "12345678"},
                {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "A".repeat(10_000)}}]}
            ]
        });
        // "abcd" + "12345678" = 12 chars -> 3 tokens, + 4 * (1 system + 2 messages)
        assert_eq!(estimate_input_tokens(Api::Messages, &body), 3 + 12);
    }

    #[test]
    fn parses_lease_answers() {
        let granted = parse_lease_response(
            br#"{"allowed":true,"lease_id":"l1","ttl_ms":10000,"budgets":[{"budget_id":"b","kind":"requests","granted":12.0}],"price":{"input":2.0,"output":10.0}}"#,
        )
        .unwrap();
        let LeaseAnswer::Granted(g) = granted else {
            panic!("{granted:?}")
        };
        assert_eq!(
            (g.lease_id.as_str(), g.ttl_ms, g.budgets.len()),
            ("l1", 10_000, 1)
        );
        // No hard budget: an empty lease.
        let LeaseAnswer::Granted(g) =
            parse_lease_response(br#"{"allowed":true,"lease_id":"l2","ttl_ms":5}"#).unwrap()
        else {
            panic!()
        };
        assert!(g.budgets.is_empty() && g.price.is_none());
        // Denials become the client's 429, as reservations' did.
        let denied = parse_lease_response(
            br#"{"allowed":false,"reason":"budget","message":"Team ml is over budget","retry_after_s":30}"#,
        )
        .unwrap();
        let LeaseAnswer::Denied(e) = denied else {
            panic!()
        };
        assert_eq!((e.status(), e.retry_after_s()), (429, Some(30)));
        assert!(e.message().contains("Team ml"));
        assert_eq!(
            parse_lease_response(br#"{"allowed":false,"reason":"rate_limit"}"#),
            Ok(LeaseAnswer::Denied(GatewayError::RateLimited {
                message: "Budget exceeded.".into(),
                retry_after_s: 60
            }))
        );
        assert!(parse_lease_response(br#"{"allowed":true,"lease_id":"l"}"#).is_err());
        assert!(parse_lease_response(b"nope").is_err());
    }
}
