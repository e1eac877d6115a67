//! HTTP API: the filter's `/v1/authorize` lookup, health probes and the
//! master-key protected admin API for keys, teams, users and invites;
//! budgets, reservations, leases, prices and usage are in `billing.rs`, the
//! web console and its public invite page in `console.rs`. Every API error
//! is JSON: `{"error":{"message":..,"type":..}}`.
//!
//! Two secrets, never interchangeable: the filter's `/v1/*` calls carry the
//! service token (`Authorization: Bearer <TOLLGATE_SERVICE_TOKEN>`), admin
//! calls the master key. Health probes, the console's static pages and
//! invite redemption (the one-time token is the credential) need neither.

mod billing;
mod console;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tracing::{error, info, warn};

use crate::answer_cache::{AnswerCache, DEFAULT_MAX_BYTES};
use crate::error::Error;
use crate::keys::{self, SecretDigest};
use crate::model::{
    Authorization, CreateInviteRequest, CreateKeyRequest, CreateTeamRequest, KeyFilter, KeyList,
    KeyRecord, KeyStatus, StatusChange, Team, TeamList, UpdateKeyRequest, UpdateTeamRequest,
};
use crate::store::Store;
use tollgate_protocol::{
    AuthorizeAnswer, AuthorizeRequest, CacheGet, CachePutAnswer, CachePutBatch, AUTHORIZE_PATH,
    CACHE_GET_PATH, CACHE_PUT_PATH, LEASE_PATH, RESERVE_PATH, SETTLE_BATCH_PATH, SETTLE_PATH,
};

/// Service tokens shorter than this are refused at start-up.
pub const MIN_SERVICE_TOKEN_LEN: usize = 32;

/// Why `token` cannot serve as the filter's service token, if it cannot:
/// too short, unfit for an HTTP header, or the master key itself (the
/// service token sits in every Envoy; the master key stays with admins).
pub fn check_service_token(token: &str, master_key: &str) -> Result<(), String> {
    let len = token.chars().count();
    if len < MIN_SERVICE_TOKEN_LEN {
        return Err(format!(
            "is {len} characters long; it needs at least {MIN_SERVICE_TOKEN_LEN}"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be printable ASCII without spaces (the filter sends it in an HTTP header)".into(),
        );
    }
    if SecretDigest::of(master_key).matches(token) {
        return Err("equals the master key; the two must be separate secrets".into());
    }
    Ok(())
}

/// Largest `/v1/cache/put` body accepted.
const MAX_CACHE_PUT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
    /// The response cache's answers (`/v1/cache/*`).
    answers: Arc<AnswerCache>,
    /// Admin calls (`/admin/*`) must carry this.
    master_key: SecretDigest,
    /// The filter's calls (`/v1/*`) must carry this.
    service_token: SecretDigest,
}

impl AppState {
    /// Bounds the response cache at `max_bytes` (0: nothing is cached).
    pub fn with_cache_bytes(mut self, max_bytes: u64) -> Self {
        self.answers = Arc::new(AnswerCache::new(max_bytes, Arc::clone(self.store.clock())));
        self
    }

    /// `serve` checks the service token with `check_service_token` first.
    pub fn new(store: Arc<Store>, master_key: &str, service_token: &str) -> Self {
        let answers = AnswerCache::new(DEFAULT_MAX_BYTES, Arc::clone(store.clock()));
        AppState {
            answers: Arc::new(answers),
            store,
            master_key: SecretDigest::of(master_key),
            service_token: SecretDigest::of(service_token),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/admin/keys", post(create_key).get(list_keys))
        .route("/admin/keys/{id}", get(get_key).patch(update_key))
        .route("/admin/keys/{id}/revoke", post(revoke_key))
        .route("/admin/keys/{id}/deactivate", post(deactivate_key))
        .route("/admin/keys/{id}/activate", post(activate_key))
        .route("/admin/teams", post(create_team).get(list_teams))
        .route("/admin/teams/{name}", get(get_team).patch(update_team))
        .route("/admin/users", get(list_users))
        .route("/admin/invites", post(create_invite).get(list_invites))
        .route("/admin/invites/{id}", delete(delete_invite))
        .route(
            "/admin/budgets",
            post(billing::create_budget).get(billing::list_budgets),
        )
        .route(
            "/admin/budgets/{id}",
            get(billing::get_budget)
                .patch(billing::update_budget)
                .delete(billing::delete_budget),
        )
        .route("/admin/prices", get(billing::list_prices))
        .route(
            "/admin/prices/{*model}",
            delete(billing::delete_price).put(billing::set_price),
        )
        .route("/admin/usage", get(billing::usage_summary))
        .route("/admin/usage/requests", get(billing::usage_requests))
        .route("/admin/usage/daily", get(billing::usage_daily))
        .route("/admin/guardrails", get(billing::guardrail_events));
    // Moving time is for tests only: without `serve --test-clock` the route does not exist.
    let admin = if state.store.clock().is_adjustable() {
        admin.route("/admin/clock", post(billing::set_clock))
    } else {
        admin
    };
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_master_key,
    ));
    let filter = Router::new()
        .route(AUTHORIZE_PATH, post(authorize))
        .route(RESERVE_PATH, post(billing::reserve))
        .route(LEASE_PATH, post(billing::lease))
        .route(SETTLE_PATH, post(billing::settle_one))
        .route(SETTLE_BATCH_PATH, post(billing::settle_batch))
        .route(CACHE_GET_PATH, post(cache_get))
        // An answer escaped into JSON can exceed axum's 2 MB default.
        .route(
            CACHE_PUT_PATH,
            post(cache_put).layer(DefaultBodyLimit::max(MAX_CACHE_PUT_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_service_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(filter)
        .merge(admin)
        .merge(console::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed for this route",
            )
        })
        .with_state(state)
}

/// An error response: `{"error":{"message","type"}}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see the sidecar logs",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(msg) => ApiError::bad_request(msg),
            Error::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            Error::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            Error::Unavailable(msg) => {
                error!(error = %msg, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "database unavailable; see the sidecar logs",
                )
            }
            Error::Schema(_)
            | Error::Sqlite(_)
            | Error::Postgres(_)
            | Error::Decode(_)
            | Error::Json(_)
            | Error::Rng(_) => {
                // Details stay in the log: they are for the operator, not the caller.
                error!(error = %e, "request failed");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind}});
        (self.status, Json(body)).into_response()
    }
}

/// Like `axum::Json` but with our error shape, and it ignores Content-Type so
/// callers (notably the Envoy filter) need not set it. An empty body reads as
/// `{}`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
        let body: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(body)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Runs a blocking store call off the async worker threads.
async fn with_store<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, Error> + Send + 'static,
{
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            error!(error = %e, "store task failed");
            Err(ApiError::internal())
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case).
fn bearer_token(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Lets the request through if it carries `secret` as its bearer token;
/// otherwise a 401 naming what was expected (never what was sent).
async fn require_secret(
    secret: &SecretDigest,
    what: &str,
    hint: &str,
    req: Request,
    next: Next,
) -> Response {
    match bearer_token(&req) {
        Some(token) if secret.matches(token) => next.run(req).await,
        None => ApiError::unauthorized(&format!("missing {what}: send {hint}")).into_response(),
        Some(_) => {
            warn!(path = %req.uri().path(), "request rejected: wrong {what}");
            ApiError::unauthorized(&format!("invalid {what}")).into_response()
        }
    }
}

async fn require_master_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let hint = "`Authorization: Bearer <TOLLGATE_MASTER_KEY>`";
    require_secret(&state.master_key, "master key", hint, req, next).await
}

/// The filter's endpoints: any process on the host could otherwise forge
/// settlements or probe key hashes.
async fn require_service_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let hint = "`Authorization: Bearer <TOLLGATE_SERVICE_TOKEN>` (the token Envoy's filter sends)";
    require_secret(&state.service_token, "service token", hint, req, next).await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match with_store(&state, |s| s.ping()).await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            warn!(error = %e.message, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// The filter's per-request lookup: one indexed query, service token only.
async fn authorize(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<AuthorizeRequest>,
) -> Result<Response, ApiError> {
    let hash = keys::normalize_key_hash(&req.key_hash).ok_or_else(|| {
        ApiError::bad_request("key_hash must be 64 hex characters (SHA-256 of the key)")
    })?;
    let answer = match with_store(&state, move |s| s.authorize(&hash)).await? {
        Authorization::Granted(grant) => AuthorizeAnswer::granted(grant),
        Authorization::Denied(reason) => AuthorizeAnswer::denied(reason),
    };
    Ok(Json(answer).into_response())
}

async fn create_key(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let new = req.validate(state.store.clock().now())?;
    let created = with_store(&state, move |s| s.create_key(new)).await?;
    info!(
        id = %created.record.id,
        team = %created.record.team.as_deref().unwrap_or("-"),
        user = %created.record.user.as_deref().unwrap_or("-"),
        "key created"
    );
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize)]
struct ListKeysQuery {
    team: Option<String>,
    status: Option<String>,
    search: Option<String>,
}

async fn list_keys(
    State(state): State<AppState>,
    query: Result<Query<ListKeysQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // An empty field of a search form means "any".
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let status = given(query.status)
        .map(|s| s.parse::<KeyStatus>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = KeyFilter {
        team: given(query.team),
        status,
        search: given(query.search),
    };
    let keys = with_store(&state, move |s| s.find_keys(&filter)).await?;
    Ok(Json(KeyList { keys: &keys }).into_response())
}

async fn get_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(with_store(&state, move |s| s.get_key(&id)).await?))
}

async fn update_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateKeyRequest>,
) -> Result<Json<KeyRecord>, ApiError> {
    let update = req.validate(state.store.clock().now())?;
    let key = with_store(&state, move |s| s.update_key(&id, update)).await?;
    info!(id = %key.id, "key updated");
    Ok(Json(key))
}

async fn change_status(
    state: AppState,
    id: String,
    change: StatusChange,
) -> Result<Json<KeyRecord>, ApiError> {
    let key = with_store(&state, move |s| s.set_key_status(&id, change)).await?;
    let verb = match change {
        StatusChange::Revoke => "revoked",
        StatusChange::Deactivate => "deactivated",
        StatusChange::Activate => "activated",
    };
    info!(id = %key.id, "key {verb}");
    Ok(Json(key))
}

async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    change_status(state, id, StatusChange::Revoke).await
}

async fn deactivate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    change_status(state, id, StatusChange::Deactivate).await
}

async fn activate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    change_status(state, id, StatusChange::Activate).await
}

async fn create_team(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateTeamRequest>,
) -> Result<Response, ApiError> {
    let new = req.validate()?;
    let team = with_store(&state, move |s| s.create_team(new)).await?;
    info!(team = %team.name, "team created");
    Ok((StatusCode::CREATED, Json(team)).into_response())
}

async fn list_teams(State(state): State<AppState>) -> Result<Response, ApiError> {
    let teams = with_store(&state, |s| s.list_teams()).await?;
    Ok(Json(TeamList { teams: &teams }).into_response())
}

async fn get_team(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Team>, ApiError> {
    Ok(Json(with_store(&state, move |s| s.get_team(&name)).await?))
}

async fn update_team(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateTeamRequest>,
) -> Result<Json<Team>, ApiError> {
    let update = req.validate()?;
    let team = with_store(&state, move |s| s.update_team(&name, update)).await?;
    info!(team = %team.name, "team updated");
    Ok(Json(team))
}

async fn list_users(State(state): State<AppState>) -> Result<Response, ApiError> {
    let users = with_store(&state, |s| s.list_users()).await?;
    Ok(Json(json!({ "users": users })).into_response())
}

async fn create_invite(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateInviteRequest>,
) -> Result<Response, ApiError> {
    let new = req.validate(state.store.clock().now())?;
    let created = with_store(&state, move |s| s.create_invite(new)).await?;
    let invite = &created.invite;
    info!(id = %invite.id, team = %invite.team, user = %invite.user, "invite created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize)]
struct ListInvitesQuery {
    team: Option<String>,
}

async fn list_invites(
    State(state): State<AppState>,
    query: Result<Query<ListInvitesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let invites = with_store(&state, move |s| s.list_invites(query.team.as_deref())).await?;
    Ok(Json(json!({ "invites": invites })).into_response())
}

async fn delete_invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = id.clone();
    with_store(&state, move |s| s.delete_invite(&id)).await?;
    info!(id = %deleted, "invite withdrawn");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `/v1/cache/get`: the kept answer (a `CachedAnswer`, as stored), or 404.
async fn cache_get(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CacheGet>,
) -> Result<Response, ApiError> {
    match state.answers.get(&req.key) {
        Some(answer) => Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such answer",
        )),
    }
}

/// `/v1/cache/put`: keeps each answer of the batch for its TTL.
async fn cache_put(
    State(state): State<AppState>,
    JsonBody(batch): JsonBody<CachePutBatch>,
) -> Result<Response, ApiError> {
    let mut stored = Vec::with_capacity(batch.entries.len());
    for put in batch.entries {
        let answer = serde_json::to_vec(&put.answer).map_err(|_| ApiError::internal())?;
        stored.push(state.answers.put(put.key, answer.into(), put.ttl_s));
    }
    Ok(Json(CachePutAnswer { stored }).into_response())
}
