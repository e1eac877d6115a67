//! Audit log entries and their canonical bytes.
//!
//! An entry is a JSON object whose `kind` says what happened: `request` (a
//! settled usage report), `lease_grant` or `lease_settle` (a budget lease
//! granted, or the unused rest of one handed back). Every entry also has
//! `seq` (its leaf index, so an entry moved to another place in the log
//! says where it belongs) and `ts` (unix seconds).
//!
//! The bytes hashed into the tree are the entry's canonical JSON: object
//! keys sorted by their UTF-8 bytes at every level, no whitespace, absent
//! optional fields left out, strings and numbers as serde_json writes them
//! (shortest round-trip floats). Encoding a parsed entry again gives the
//! same bytes, which is what lets a proof carry the entry as JSON.

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use tollgate_protocol::{GuardrailEvent, LeaseAmount, LeaseGrant, LeaseRequest, UsageReport};

/// What one entry records, without its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Request(Box<RequestEntry>),
    LeaseGrant(LeaseGrantEntry),
    LeaseSettle(LeaseSettleEntry),
}

/// What the gateway did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Sent to a provider.
    Forwarded,
    /// Answered by the gateway because a guardrail blocked it.
    Blocked,
    /// Answered by the gateway for another reason (the HTTP status says which).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestEntry {
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The model the client asked for.
    pub model: String,
    /// The model the provider served.
    pub upstream_model: String,
    pub provider: String,
    /// Where the provider served it from, when the gateway knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub api: String,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Guardrail findings: kinds, actions and counts, never the text.
    pub guardrails: Vec<GuardrailEvent>,
    pub tokens: Tokens,
    pub estimated: bool,
    pub cost_usd: f64,
    pub priced: bool,
    pub status: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// What the request took from its lease, per budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lease_debits: Vec<LeaseAmount>,
    /// HMAC-SHA256 of the request body's SHA-256 under the team's secret
    /// (`secrets.rs`), hex; absent when the filter sent no digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_hmac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_hmac: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseGrantEntry {
    pub lease_id: String,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    pub ttl_ms: u64,
    /// Per hard budget: its id, kind and the amount granted.
    pub budgets: Vec<tollgate_protocol::LeasedBudget>,
}

/// A lease the filter is done with: what it hands back per budget. With
/// the grant and the debits of the requests admitted on it, spend on a
/// lease adds up: granted = debits + released (+ what expired unused).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseSettleEntry {
    pub lease_id: String,
    pub released: Vec<LeaseAmount>,
}

impl Entry {
    /// The `kind` word, also stored in its own column.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Request(_) => "request",
            Entry::LeaseGrant(_) => "lease_grant",
            Entry::LeaseSettle(_) => "lease_settle",
        }
    }

    /// The request id of a `request` entry, kept in its own column for
    /// `audit prove --request-id`.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Entry::Request(r) => Some(&r.request_id),
            Entry::LeaseGrant(_) | Entry::LeaseSettle(_) => None,
        }
    }

    /// A settled report's entry; the HMACs are the caller's (they need
    /// the team's secret).
    pub fn request(
        r: &UsageReport,
        cost_usd: f64,
        priced: bool,
        hmacs: (Option<String>, Option<String>),
    ) -> Entry {
        let (decision, reason) = decision(r);
        Entry::Request(Box::new(RequestEntry {
            request_id: r.request_id.clone(),
            key_id: r.key_id.clone(),
            team: r.team.clone(),
            user: r.user.clone(),
            model: r.model.clone(),
            upstream_model: r.upstream_model.clone(),
            provider: r.provider.clone(),
            region: r.region.clone(),
            api: r.api.clone(),
            decision,
            reason,
            guardrails: r.guardrail_events.clone(),
            tokens: Tokens {
                input: r.input_tokens,
                output: r.output_tokens,
                cached: r.cached_tokens,
                reasoning: r.reasoning_tokens,
            },
            estimated: r.estimated,
            cost_usd,
            priced,
            status: r.status,
            lease_id: r.lease_id.clone(),
            lease_debits: r.lease_debits.clone(),
            request_hmac: hmacs.0,
            response_hmac: hmacs.1,
        }))
    }

    pub fn lease_grant(r: &LeaseRequest, g: &LeaseGrant) -> Entry {
        Entry::LeaseGrant(LeaseGrantEntry {
            lease_id: g.lease_id.clone(),
            key_id: r.key_id.clone(),
            team: r.team.clone(),
            user: r.user.clone(),
            model: r.model.clone(),
            upstream_model: r.upstream_model.clone(),
            provider: r.provider.clone(),
            ttl_ms: g.ttl_ms,
            budgets: g.budgets.clone(),
        })
    }

    pub fn lease_settle(lease_id: &str, released: &[LeaseAmount]) -> Entry {
        Entry::LeaseSettle(LeaseSettleEntry {
            lease_id: lease_id.to_owned(),
            released: released.to_vec(),
        })
    }

    /// The entry's fields, as `encode` takes them (and the queue keeps them).
    pub fn fields(&self) -> Result<Value> {
        Ok(serde_json::to_value(self)?)
    }
}

/// An entry's canonical bytes: its `fields` at leaf `seq`, written at `ts`.
pub fn encode(mut fields: Value, seq: u64, ts: i64) -> String {
    if let Value::Object(map) = &mut fields {
        map.insert("seq".into(), seq.into());
        map.insert("ts".into(), ts.into());
    }
    canonical(&fields)
}

/// Forwarded; blocked when a guardrail's `block` stopped it (the reason
/// names the first); else refused, with the status the client got.
fn decision(r: &UsageReport) -> (Decision, Option<String>) {
    if r.forwarded {
        return (Decision::Forwarded, None);
    }
    if let Some(code) = &r.refused {
        return (Decision::Refused, Some(code.clone()));
    }
    match r.guardrail_events.iter().find(|e| e.action == "block") {
        Some(e) => (
            Decision::Blocked,
            Some(format!(
                "guardrail {} blocked {} ({})",
                e.guardrail, e.kind, e.direction
            )),
        ),
        None => (Decision::Refused, Some(format!("status {}", r.status))),
    }
}

/// `value` as canonical JSON (see the module comment).
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn report() -> UsageReport {
        serde_json::from_value(json!({
            "request_id": "req_1", "key_id": "key_1", "team": "eng", "model": "gpt-4o",
            "upstream_model": "gpt-4o-2024-08-06", "provider": "openai", "api": "chat_completions",
            "input_tokens": 100, "output_tokens": 20, "cached_tokens": 5, "reasoning_tokens": 0,
            "status": 200, "latency_ms": 321, "estimated": false, "stream": true, "ts": 1,
            "guardrail_events": [{"guardrail": "pii", "kind": "email", "direction": "input",
                                  "action": "redact", "count": 2}]
        }))
        .unwrap()
    }

    #[test]
    fn request_entries_have_sorted_keys_and_no_absent_fields() {
        let e = Entry::request(&report(), 0.000_45, true, (Some("ab".into()), None));
        let bytes = encode(e.fields().unwrap(), 7, 1_795_348_800);
        assert_eq!(
            bytes,
            r#"{"api":"chat_completions","cost_usd":0.00045,"decision":"forwarded","estimated":false,"#
                .to_owned()
                + r#""guardrails":[{"action":"redact","count":2,"direction":"input","guardrail":"pii","kind":"email"}],"#
                + r#""key_id":"key_1","kind":"request","model":"gpt-4o","priced":true,"provider":"openai","#
                + r#""request_hmac":"ab","request_id":"req_1","seq":7,"status":200,"team":"eng","#
                + r#""tokens":{"cached":5,"input":100,"output":20,"reasoning":0},"ts":1795348800,"#
                + r#""upstream_model":"gpt-4o-2024-08-06"}"#
        );
        // Parsed and encoded again: the same bytes (proofs carry entries as JSON).
        let parsed: Value = serde_json::from_str(&bytes).unwrap();
        assert_eq!(canonical(&parsed), bytes);
    }

    #[test]
    fn decisions_follow_forwarded_and_block_events() {
        let mut r = report();
        assert_eq!(decision(&r), (Decision::Forwarded, None));
        r.forwarded = false;
        r.status = 429;
        assert_eq!(decision(&r), (Decision::Refused, Some("status 429".into())));
        r.refused = Some("budget_exceeded".into());
        assert_eq!(
            decision(&r),
            (Decision::Refused, Some("budget_exceeded".into()))
        );
        r.refused = None;
        r.guardrail_events[0].action = "block".into();
        assert_eq!(
            decision(&r),
            (
                Decision::Blocked,
                Some("guardrail pii blocked email (input)".into())
            )
        );
    }

    #[test]
    fn canonical_json_escapes_and_sorts_by_bytes() {
        let v = json!({"b": [1, 2.5, null], "a\"": "é\n", "B": {"y": true, "x": -0.1}});
        assert_eq!(
            canonical(&v),
            r#"{"B":{"x":-0.1,"y":true},"a\"":"é\n","b":[1,2.5,null]}"#
        );
    }
}
