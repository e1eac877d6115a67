//! Budgets over HTTP: the filter's `/v1/reserve`, `/v1/lease` and
//! `/v1/settle` calls (service token, like `/v1/authorize`), and the admin
//! API for budgets, prices, usage reports and the test clock.
//!
//! `/v1/reserve` holds one request's estimate against every matching budget
//! (`budgets.rs`); `/v1/lease` grants the filter an amount of each hard
//! budget to admit requests against locally, an eighth of what is left
//! (`leases.rs`). Either way a hard budget is overshot by at most one
//! request's estimate plus what requests in flight use beyond theirs.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::{with_store, ApiError, AppState, JsonBody};
use crate::budgets::{BudgetUpdate, NewBudget, Scope};
use crate::pricing::Price;
use crate::usage::{self, GroupBy, UsageQuery};
use tollgate_protocol::{
    LeaseRequest, ReserveRequest, SettleBatch, SettleBatchAnswer, UsageReport,
};

/// `GET /admin/usage/requests` answers at most this many rows per call.
const MAX_LEDGER_ROWS: u32 = 100_000;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub(super) async fn reserve(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ReserveRequest>,
) -> Result<Response, ApiError> {
    let answer = with_store(&state, move |s| s.reserve(&req)).await?;
    Ok(Json(answer).into_response())
}

pub(super) async fn lease(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> Result<Response, ApiError> {
    let answer = with_store(&state, move |s| s.lease(&req)).await?;
    Ok(Json(answer).into_response())
}

pub(super) async fn settle_one(
    State(state): State<AppState>,
    JsonBody(report): JsonBody<UsageReport>,
) -> Result<Response, ApiError> {
    let settled = with_store(&state, move |s| s.settle(std::slice::from_ref(&report))).await?;
    match settled.into_iter().next() {
        Some(one) => Ok(Json(one).into_response()),
        None => Err(ApiError::internal()),
    }
}

pub(super) async fn settle_batch(
    State(state): State<AppState>,
    JsonBody(batch): JsonBody<SettleBatch>,
) -> Result<Response, ApiError> {
    let results = with_store(&state, move |s| s.settle(&batch.reports)).await?;
    Ok(Json(SettleBatchAnswer { results }).into_response())
}

pub(super) async fn create_budget(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NewBudget>,
) -> Result<Response, ApiError> {
    let budget = with_store(&state, move |s| s.create_budget(req)).await?;
    info!(
        budget = %budget.id, scope = %budget.scope, scope_id = %budget.scope_id,
        kind = %budget.kind, limit = budget.limit, period = %budget.period, mode = %budget.mode,
        "budget created"
    );
    Ok((StatusCode::CREATED, Json(budget)).into_response())
}

#[derive(Deserialize)]
pub(super) struct BudgetFilter {
    scope: Option<Scope>,
    scope_id: Option<String>,
}

pub(super) async fn list_budgets(
    State(state): State<AppState>,
    q: Result<Query<BudgetFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let f = query(q)?;
    let budgets = with_store(&state, move |s| {
        s.list_budgets(f.scope, f.scope_id.as_deref())
    })
    .await?;
    Ok(Json(json!({ "budgets": budgets })).into_response())
}

pub(super) async fn get_budget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let budget = with_store(&state, move |s| s.get_budget(&id)).await?;
    Ok(Json(budget).into_response())
}

pub(super) async fn update_budget(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<BudgetUpdate>,
) -> Result<Response, ApiError> {
    let budget = with_store(&state, move |s| s.update_budget(&id, update)).await?;
    info!(budget = %budget.id, limit = budget.limit, mode = %budget.mode, "budget updated");
    Ok(Json(budget).into_response())
}

pub(super) async fn delete_budget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = id.clone();
    with_store(&state, move |s| s.delete_budget(&id)).await?;
    info!(budget = %deleted, "budget deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_prices(State(state): State<AppState>) -> Result<Response, ApiError> {
    let prices = with_store(&state, |s| s.list_prices()).await?;
    Ok(Json(json!({ "prices": prices })).into_response())
}

pub(super) async fn set_price(
    State(state): State<AppState>,
    Path(model): Path<String>,
    JsonBody(price): JsonBody<Price>,
) -> Result<Response, ApiError> {
    let entry = with_store(&state, move |s| s.set_price(&model, price)).await?;
    info!(
        model = %entry.model, input = entry.input, output = entry.output,
        cached_input = entry.cached_input, "price set"
    );
    Ok(Json(entry).into_response())
}

pub(super) async fn delete_price(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = model.clone();
    with_store(&state, move |s| s.delete_price(&model)).await?;
    info!(model = %deleted, "price override deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct RequestsQuery {
    key_id: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn usage_requests(
    State(state): State<AppState>,
    q: Result<Query<RequestsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LEDGER_ROWS);
    let rows = with_store(&state, move |s| s.ledger(q.key_id.as_deref(), limit)).await?;
    Ok(Json(json!({ "requests": rows })).into_response())
}

#[derive(Deserialize)]
pub(super) struct UsageParams {
    #[serde(default)]
    group_by: GroupBy,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

pub(super) async fn usage_summary(
    State(state): State<AppState>,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (q, csv) = usage_query(query(q)?)?;
    let group_by = q.group_by;
    let rows = with_store(&state, move |s| s.usage(&q)).await?;
    if csv {
        let body = usage::to_csv(group_by, &rows);
        return Ok(csv_response(body, &format!("usage-{group_by}.csv")));
    }
    Ok(Json(usage::to_json(group_by, &rows)).into_response())
}

/// A usage endpoint's query, and whether it answers in CSV.
fn usage_query(p: UsageParams) -> Result<(UsageQuery, bool), ApiError> {
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json or csv, got {other:?}"
            )))
        }
    };
    let q = UsageQuery {
        group_by: p.group_by,
        from: p.from,
        to: p.to,
    };
    Ok((q, csv))
}

/// A CSV body a browser saves as `filename`.
fn csv_response(body: String, filename: &str) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin/usage/daily`: per day and key, team, user or model, for charts.
pub(super) async fn usage_daily(
    State(state): State<AppState>,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (q, csv) = usage_query(query(q)?)?;
    let group_by = q.group_by;
    let rows = with_store(&state, move |s| s.usage_daily(&q)).await?;
    if csv {
        let body = usage::daily_to_csv(group_by, &rows);
        return Ok(csv_response(body, &format!("usage-daily-{group_by}.csv")));
    }
    Ok(Json(usage::daily_to_json(group_by, &rows)).into_response())
}

#[derive(Deserialize)]
pub(super) struct DayRange {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/guardrails`: event counts by guardrail, kind, direction and action.
pub(super) async fn guardrail_events(
    State(state): State<AppState>,
    q: Result<Query<DayRange>, QueryRejection>,
) -> Result<Response, ApiError> {
    let r = query(q)?;
    let rows = with_store(&state, move |s| {
        s.guardrail_events(r.from.as_deref(), r.to.as_deref())
    })
    .await?;
    Ok(Json(json!({ "events": rows })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClockChange {
    now: Option<i64>,
    advance_s: Option<i64>,
}

/// `POST /admin/clock` (only with `serve --test-clock`): `{"now": unix secs}`
/// or `{"advance_s": n}`; `{}` reads the clock.
pub(super) async fn set_clock(
    State(state): State<AppState>,
    JsonBody(change): JsonBody<ClockChange>,
) -> Result<Response, ApiError> {
    let clock = state.store.clock();
    let moved = match (change.now, change.advance_s) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give now or advance_s, not both")),
        (Some(at), None) => clock.set(at),
        (None, Some(secs)) => clock.advance(secs),
        (None, None) => return Ok(Json(json!({ "now": clock.now() })).into_response()),
    };
    let now = moved.ok_or_else(|| ApiError::bad_request("this clock cannot be moved"))?;
    info!(now, "test clock moved");
    Ok(Json(json!({ "now": now })).into_response())
}
