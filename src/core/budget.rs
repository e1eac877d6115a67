//! Budgets as the filter sees them: estimating a request's tokens, the
//! sidecar's reserve answer, and usage reports for settling.

use super::api::Api;
use super::config::FailureMode;
use super::error::GatewayError;
use super::guard::GuardEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Reserve before forwarding (false = only record usage).
    #[serde(default = "yes")]
    pub enforce: bool,
    /// When the sidecar cannot answer a reserve; default: `sidecar.failure_mode`.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// Output tokens reserved when the request sets no maximum.
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

#[derive(Debug, Clone, Serialize)]
pub struct ReserveRequest<'a> {
    pub request_id: &'a str,
    pub key_id: &'a str,
    pub team: Option<&'a str>,
    pub user: Option<&'a str>,
    pub model: &'a str,
    pub upstream_model: &'a str,
    pub provider: &'a str,
    pub estimated_input_tokens: u64,
    pub max_output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ReserveResponse {
    allowed: bool,
    #[serde(default)]
    reservation_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    retry_after_s: Option<u64>,
}

/// The sidecar's verdict on a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveAnswer {
    Allowed { reservation_id: String },
    Denied(GatewayError),
}

pub fn parse_reserve_response(body: &[u8]) -> Result<ReserveAnswer, String> {
    let r: ReserveResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable reserve answer: {e}"))?;
    if r.allowed {
        let reservation_id = r
            .reservation_id
            .ok_or("allowed reserve answer without reservation_id")?;
        return Ok(ReserveAnswer::Allowed { reservation_id });
    }
    let message = r.message.unwrap_or_else(|| "Budget exceeded.".into());
    let retry_after_s = r.retry_after_s.unwrap_or(60);
    Ok(ReserveAnswer::Denied(match r.reason.as_deref() {
        Some("rate_limit") => GatewayError::RateLimited {
            message,
            retry_after_s,
        },
        _ => GatewayError::BudgetExceeded {
            message,
            retry_after_s,
        },
    }))
}

/// Guardrail events of one kind on one request, counted (never the text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardrailEventReport {
    pub guardrail: String,
    pub kind: String,
    pub direction: String,
    pub action: String,
    pub count: u64,
}

impl From<&GuardEvent> for GuardrailEventReport {
    fn from(e: &GuardEvent) -> Self {
        GuardrailEventReport {
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

/// One request's usage for `POST /v1/settle/batch`. Text fields are cut to
/// `MAX_REPORT_FIELD` (see `bounded`) and events are counted by kind, so a
/// report's size does not grow with what the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub request_id: String,
    pub reservation_id: Option<String>,
    pub key_id: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    pub api: &'static str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub status: u32,
    pub latency_ms: u64,
    /// Tokens estimated because the provider sent no usage (or the client left mid-stream).
    pub estimated: bool,
    pub stream: bool,
    pub guardrail_events: Vec<GuardrailEventReport>,
    /// False when the gateway answered itself (a guardrail block): recorded,
    /// never billed.
    pub forwarded: bool,
    pub ts: u64,
}

impl UsageReport {
    /// The report with every client- or sidecar-supplied text field capped.
    pub fn bounded(mut self) -> UsageReport {
        for field in [
            &mut self.model,
            &mut self.upstream_model,
            &mut self.provider,
        ] {
            *field = capped(field, MAX_REPORT_FIELD);
        }
        for field in [&mut self.key_id, &mut self.team, &mut self.user]
            .into_iter()
            .flatten()
        {
            *field = capped(field, MAX_REPORT_FIELD);
        }
        self
    }
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
    fn parses_reserve_answers() {
        assert_eq!(
            parse_reserve_response(br#"{"allowed":true,"reservation_id":"r1","warnings":[]}"#),
            Ok(ReserveAnswer::Allowed {
                reservation_id: "r1".into()
            })
        );
        let denied = parse_reserve_response(
            br#"{"allowed":false,"reason":"budget","message":"Team ml is over budget","retry_after_s":30}"#,
        )
        .unwrap();
        let ReserveAnswer::Denied(e) = denied else {
            panic!()
        };
        assert_eq!(e.status(), 429);
        assert!(e.message().contains("Team ml"));
        assert!(parse_reserve_response(br#"{"allowed":true}"#).is_err());
        assert!(parse_reserve_response(b"nope").is_err());
    }
}
