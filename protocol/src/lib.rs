#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! The messages between the Envoy filter (`tollgate`) and `tollgate-sidecar`,
//! defined once and used by both: the filter builds the requests and parses
//! the answers, the sidecar parses the requests and builds the answers.
//!
//! Every call is a JSON `POST` carrying the service token:
//!
//! | path                | request          | answer (200)        |
//! |---------------------|------------------|---------------------|
//! | `/v1/authorize`     | `AuthorizeRequest` | `AuthorizeAnswer` |
//! | `/v1/reserve`       | `ReserveRequest` | `ReserveAnswer`     |
//! | `/v1/lease`         | `LeaseRequest`   | `LeaseAnswer`       |
//! | `/v1/settle`        | `UsageReport`    | `Settled`           |
//! | `/v1/settle/batch`  | `SettleBatch`    | `SettleBatchAnswer` |
//! | `/v1/cache/get`     | `CacheGet`       | `CachedAnswer` (404: none) |
//! | `/v1/cache/put`     | `CachePutBatch`  | `CachePutAnswer`    |
//!
//! The serde attributes are the wire format: field names, which fields may
//! be absent and what an absent field means (an older sender, or a sender
//! that leaves out what the reader does not need). Times are unix seconds
//! as `i64`. The sidecar's budget vocabulary (scope, kind, period, refusal
//! reason) travels as its lowercase words (`String` here); the sidecar's
//! enums own the list.
//!
//! A lease (`/v1/lease`) is an amount of each of a key's hard budgets that
//! the filter spends locally, one request at a time, without a callout;
//! `request_need` is what one request takes from a leased budget, on both
//! sides. Reports of requests admitted on a lease name it (`lease_id`,
//! `lease_debits`) so the sidecar shrinks the lease's holds as it settles.
//!
//! Only `serde` (derive) is a dependency: the filter links this into its
//! wasm module.

use serde::{de, Deserialize, Deserializer, Serialize};

/// `POST` path of the key check.
pub const AUTHORIZE_PATH: &str = "/v1/authorize";
/// `POST` path of a budget reservation.
pub const RESERVE_PATH: &str = "/v1/reserve";
/// `POST` path of a budget lease.
pub const LEASE_PATH: &str = "/v1/lease";
/// `POST` path of one usage report.
pub const SETTLE_PATH: &str = "/v1/settle";
/// `POST` path of a batch of usage reports (what the filter sends).
pub const SETTLE_BATCH_PATH: &str = "/v1/settle/batch";
/// `POST` path of a response cache lookup.
pub const CACHE_GET_PATH: &str = "/v1/cache/get";
/// `POST` path of a response cache store.
pub const CACHE_PUT_PATH: &str = "/v1/cache/put";

// ---------------------------------------------------------------- authorize

/// `POST /v1/authorize`: is this key valid, and what may it use?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// SHA-256 of the key, 64 hex characters.
    pub key_hash: String,
}

/// Why `/v1/authorize` refused a key. A reason this reader does not know
/// (a newer sidecar) reads as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyReason {
    /// Permanently disabled.
    Revoked,
    /// Temporarily disabled (can be re-activated).
    Inactive,
    Expired,
    /// No such key.
    #[serde(other)]
    Unknown,
}

/// What the filter needs to enforce a valid key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub key_id: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Model patterns the key may use; empty = any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Model patterns the key's team may use; empty = any.
    #[serde(default)]
    pub team_models: Vec<String>,
    /// Unix seconds; the key is expired from this second on.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// The answer to `/v1/authorize`: `{"valid":true, <Grant fields>}` or
/// `{"valid":false,"reason":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeAnswer {
    pub valid: bool,
    /// Set when `valid` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    /// Set when `valid` is true (its fields sit next to `valid`). Reads as
    /// `None` when they are missing or malformed.
    #[serde(flatten)]
    pub grant: Option<Grant>,
}

impl AuthorizeAnswer {
    pub fn granted(grant: Grant) -> AuthorizeAnswer {
        AuthorizeAnswer {
            valid: true,
            reason: None,
            grant: Some(grant),
        }
    }

    pub fn denied(reason: DenyReason) -> AuthorizeAnswer {
        AuthorizeAnswer {
            valid: false,
            reason: Some(reason),
            grant: None,
        }
    }
}

// ------------------------------------------------------------------ reserve

/// `POST /v1/reserve`, sent by the filter before a request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    pub request_id: String,
    pub key_id: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The client-facing model name.
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    pub estimated_input_tokens: u64,
    pub max_output_tokens: u64,
}

/// The answer to `/v1/reserve`: an `Allowed` or a `Denial`, told apart by
/// their `allowed` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReserveAnswer {
    Allowed(Allowed),
    Denied(Denial),
}

/// `Denial::reason` when a per-minute budget (a rate limit) refuses.
pub const REASON_RATE_LIMIT: &str = "rate_limit";
/// `Denial::reason` when any other budget refuses.
pub const REASON_BUDGET: &str = "budget";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allowed {
    /// Always true; the field the filter branches on.
    #[serde(deserialize_with = "must_be_true")]
    pub allowed: bool,
    pub reservation_id: String,
    #[serde(default)]
    pub estimated_cost_usd: f64,
    /// False when the model has no price (the estimate is then 0).
    #[serde(default)]
    pub priced: bool,
    /// Tracking-only budgets this request is over; they never block.
    #[serde(default)]
    pub warnings: Vec<Overage>,
}

/// A budget that is used up (`used + reserved >= limit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overage {
    pub budget_id: String,
    /// `key`, `team` or `user`.
    pub scope: String,
    pub scope_id: String,
    /// `spend`, `tokens` or `requests`.
    pub kind: String,
    /// `minute`, `daily`, `weekly`, `monthly` or `lifetime`.
    pub period: String,
    pub limit: f64,
    pub used: f64,
    pub reserved: f64,
    pub period_start: i64,
}

/// A refusal. The filter reads `reason`, `message` and `retry_after_s`;
/// absent, they read as `budget`, "Budget exceeded." and 60.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    /// Always false.
    #[serde(deserialize_with = "must_be_false")]
    pub allowed: bool,
    /// `REASON_RATE_LIMIT` or `REASON_BUDGET`.
    #[serde(default = "reason_budget")]
    pub reason: String,
    #[serde(default)]
    pub budget_id: String,
    /// `key`, `team` or `user`.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub scope_id: String,
    /// `spend`, `tokens` or `requests`.
    #[serde(default)]
    pub kind: String,
    /// `minute`, `daily`, `weekly`, `monthly` or `lifetime`.
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub limit: f64,
    #[serde(default)]
    pub used: f64,
    #[serde(default)]
    pub reserved: f64,
    /// Unix seconds; null for lifetime budgets.
    #[serde(default)]
    pub resets_at: Option<i64>,
    #[serde(default = "sixty")]
    pub retry_after_s: u64,
    #[serde(default = "budget_exceeded")]
    pub message: String,
}

fn reason_budget() -> String {
    REASON_BUDGET.into()
}

fn sixty() -> u64 {
    60
}

fn budget_exceeded() -> String {
    "Budget exceeded.".into()
}

fn must_be_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match bool::deserialize(d)? {
        true => Ok(true),
        false => Err(de::Error::custom("not an allowed answer")),
    }
}

fn must_be_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match bool::deserialize(d)? {
        false => Ok(false),
        true => Err(de::Error::custom("not a denial")),
    }
}

// -------------------------------------------------------------------- lease

/// `POST /v1/lease`: a lease for this key and model, sized for at least one
/// request of this size; `release` hands back the unused rest of leases the
/// filter dropped (expired or replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub key_id: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The client-facing model name.
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    /// One request's worth: the lease is sized for at least one request
    /// of these tokens.
    pub estimated_input_tokens: u64,
    pub max_output_tokens: u64,
    #[serde(default)]
    pub release: Vec<LeaseRelease>,
}

/// The unused rest of a lease the filter no longer uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRelease {
    pub lease_id: String,
    pub unused: Vec<LeaseAmount>,
}

/// An amount of one budget: released (`LeaseRelease::unused`) or taken by
/// one request (`UsageReport::lease_debits`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAmount {
    pub budget_id: String,
    pub amount: f64,
}

/// The answer to `/v1/lease`: a `LeaseGrant` or a `Denial` (the one
/// `/v1/reserve` gives), told apart by their `allowed` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LeaseAnswer {
    Granted(LeaseGrant),
    Denied(Denial),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// Always true; the field the filter branches on.
    #[serde(deserialize_with = "must_be_true")]
    pub allowed: bool,
    pub lease_id: String,
    /// How long the filter may use it, relative (the filter's clock may differ
    /// from the sidecar's; the sidecar's test clock does).
    pub ttl_ms: u64,
    /// The hard budgets this key's requests count against, each with the amount
    /// granted. Empty: no hard budget applies (the filter then admits with no
    /// callout until ttl_ms passes).
    #[serde(default)]
    pub budgets: Vec<LeasedBudget>,
    /// USD per million tokens of the upstream model; None = unpriced (spend need 0).
    #[serde(default)]
    pub price: Option<LeasePrice>,
    /// Tracking-only budgets that are used up; they never block.
    #[serde(default)]
    pub warnings: Vec<Overage>,
}

/// One hard budget of a lease and the amount granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeasedBudget {
    pub budget_id: String,
    /// `spend`, `tokens` or `requests`.
    pub kind: String,
    pub granted: f64,
}

/// A model's price, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeasePrice {
    pub input: f64,
    pub output: f64,
}

/// What one request takes from a leased budget of `kind`: the one
/// definition both sides use (the sidecar to size grants, the filter to
/// debit them). `requests`: 1; `tokens`: input plus maximum output;
/// `spend`: those tokens at `price` (0 when the model is unpriced); a kind
/// this reader does not know: 0.
pub fn request_need(
    kind: &str,
    price: Option<&LeasePrice>,
    estimated_input_tokens: u64,
    max_output_tokens: u64,
) -> f64 {
    let (input, output) = (estimated_input_tokens as f64, max_output_tokens as f64);
    match kind {
        "requests" => 1.0,
        "tokens" => estimated_input_tokens.saturating_add(max_output_tokens) as f64,
        "spend" => price.map_or(0.0, |p| (input * p.input + output * p.output) / 1e6),
        _ => 0.0,
    }
}

// ------------------------------------------------------------------- settle

/// Guardrail findings of one kind on one request: which guardrail, what it
/// did and how often, never the matched text. Without `count` (older
/// filters, older ledger rows) it means one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailEvent {
    pub guardrail: String,
    pub kind: String,
    /// `input` or `output`.
    pub direction: String,
    pub action: String,
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

fn yes() -> bool {
    true
}

/// `POST /v1/settle` (one) or an entry of `/v1/settle/batch`: one finished
/// request as the filter saw it. The sidecar settles idempotently by
/// `request_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub request_id: String,
    #[serde(default)]
    pub reservation_id: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub model: String,
    pub upstream_model: String,
    pub provider: String,
    /// The client's API: `chat_completions`, `responses`, `messages`, ...
    pub api: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// The HTTP status the client got.
    pub status: u32,
    pub latency_ms: u64,
    /// Tokens were estimated: the provider sent no usage (or the client
    /// left mid-stream).
    pub estimated: bool,
    pub stream: bool,
    #[serde(default)]
    pub guardrail_events: Vec<GuardrailEvent>,
    /// `false`: the gateway answered itself (a guardrail block) and nothing
    /// reached a provider; recorded at cost 0, never billed. Absent means
    /// `true`.
    #[serde(default = "yes")]
    pub forwarded: bool,
    /// Unix seconds when the request ended (the filter's clock).
    pub ts: i64,
    /// The lease the request was admitted on; absent for reserved requests
    /// (and from older filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// What the filter took from that lease for this request, per budget
    /// (`request_need` of each leased budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_debits: Vec<LeaseAmount>,
    /// Answered from the response cache (`forwarded` is false): the tokens
    /// are the ones the hit saved, at no cost.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cache_hit: bool,
    /// SHA-256 of the request body the client sent, 64 lowercase hex
    /// characters, for the sidecar's audit log (which keeps only an HMAC of
    /// it under a per-team secret). Sent when `audit.body_digests` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// SHA-256 of the response body the client received (after any
    /// translation or redaction), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_digest: Option<String>,
    /// The region of the target that served the request (configured per
    /// provider or deployment), for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The gateway refused the request before it was routed (a bad key, a
    /// budget, a model the key may not use, the sidecar unreachable, ...):
    /// the error code the client got. Such a report is for the audit log
    /// only: no ledger row, no usage, no budget touched (a key out of
    /// budget retrying must not grow the ledger). Guardrail blocks and
    /// residency refusals, decided after routing, are ordinary
    /// `forwarded: false` reports instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/settle/batch`. The filter writes this envelope around reports
/// it keeps encoded (`{"reports":[..]}`), so its batches stay bounded in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleBatch {
    pub reports: Vec<UsageReport>,
}

/// How one report was settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    pub request_id: String,
    pub cost_usd: f64,
    pub priced: bool,
    /// The request was settled before; nothing changed.
    pub duplicate: bool,
}

/// The answer to `/v1/settle/batch`, in the reports' order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleBatchAnswer {
    pub results: Vec<Settled>,
}

// ---------------------------------------------------------------- cache

/// `POST /v1/cache/get`: the answer stored under `key`, if any and fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheGet {
    /// SHA-256 of the request's cache key material, 64 hex characters. The
    /// filter derives it from the tenant scope, so a key never names
    /// another team's entry.
    pub key: String,
}

/// `POST /v1/cache/put`: the answers a filter worker kept since its last
/// batch. The filter writes this envelope around puts it keeps encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePutBatch {
    pub entries: Vec<CachePut>,
}

/// Whether each entry of a `CachePutBatch` was stored, in its order (an
/// answer larger than the whole cache is not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePutAnswer {
    pub stored: Vec<bool>,
}

/// One answer to store under `key` for `ttl_s` seconds (replacing what was
/// there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePut {
    pub key: String,
    pub ttl_s: u64,
    pub answer: CachedAnswer,
}

/// An answer exactly as the client got it (after translation and output
/// guardrails), with what producing it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// `application/json`, or `text/event-stream` for a stream.
    pub content_type: String,
    pub body: String,
    /// The target that produced it.
    pub provider: String,
    pub upstream_model: String,
    /// The tokens it took, which a hit saves.
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
}

#[cfg(test)]
mod tests;
