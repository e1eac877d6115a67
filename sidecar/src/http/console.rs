//! The web console: static pages embedded in the binary (no build step, no
//! CDN), served without authentication. They hold no data: the page asks
//! for the master key, keeps it in the tab's sessionStorage and calls the
//! admin API with it like any other client. The invite page redeems a
//! one-time link, whose token is the only credential it needs.
//!
//! Every console response forbids framing, inline script and style, and
//! any origin but this one (Content-Security-Policy), and is never cached.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tracing::info;

use super::{with_store, ApiError, AppState, JsonBody};
use crate::model::RedeemInviteRequest;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Path, content type and body of each embedded file.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/console/", HTML, include_str!("../../console/index.html")),
    (
        "/console/console.js",
        JS,
        include_str!("../../console/console.js"),
    ),
    (
        "/console/console.css",
        CSS,
        include_str!("../../console/console.css"),
    ),
    (
        "/console/invite",
        HTML,
        include_str!("../../console/invite.html"),
    ),
    (
        "/console/invite.js",
        JS,
        include_str!("../../console/invite.js"),
    ),
];

pub(super) fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/invite/redeem", post(redeem_invite));
    for &(path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
        );
    }
    router.layer(middleware::map_response(secure))
}

async fn secure(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Keeps the invite page's token out of other windows' reach.
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// `POST /console/invite/redeem` `{"token", "name"}`: the new key, its
/// secret shown this once. 404 for an unknown link, 409 for a used or
/// expired one.
async fn redeem_invite(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RedeemInviteRequest>,
) -> Result<Response, ApiError> {
    let (token, name) = req.validate()?;
    let created = with_store(&state, move |s| s.redeem_invite(&token, name)).await?;
    let key = &created.record;
    info!(
        id = %key.id, team = %key.team.as_deref().unwrap_or("-"),
        user = %key.user.as_deref().unwrap_or("-"), "invite redeemed: key created"
    );
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
