//! The axum router driven in-process, as the Envoy filter and admins would.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_sidecar::clock::Clock;
use tollgate_sidecar::http::{router, AppState};
use tollgate_sidecar::store::Store;
use tower::ServiceExt;

use super::{Backend, TestStore};

pub const MASTER: &str = "test-master-key";
/// The filter's service token (`serve` requires at least 32 characters).
pub const SERVICE: &str = "test-service-token-0123456789abcdef";

pub struct App {
    pub store: TestStore,
    pub router: Router,
}

/// A router over a fresh SQLite store on a manual (so movable) clock.
pub fn app() -> App {
    app_on(Backend::Sqlite).unwrap()
}

/// A router over a fresh store on `backend` on a manual clock; `None` when
/// PostgreSQL is not installed.
pub fn app_on(backend: Backend) -> Option<App> {
    let store = TestStore::open(backend)?;
    let router = router(AppState::new(Arc::clone(&store.store), MASTER, SERVICE));
    Some(App { store, router })
}

/// Runs an async test body from a plain `#[test]` (as `on_both_backends!`
/// generates); the App is dropped after the runtime is gone.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A router whose store reads the machine's clock, as `serve` without
/// `--test-clock` runs.
pub fn app_on_system_clock() -> App {
    let store = TestStore::open(Backend::Sqlite).unwrap();
    let system = Arc::new(Store::open(&store.db.url, Arc::new(Clock::system())).unwrap());
    App {
        router: router(AppState::new(system, MASTER, SERVICE)),
        store,
    }
}

pub fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

impl App {
    /// Status, content type and body of one call.
    pub async fn send_raw(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, String, Bytes) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, bytes)
    }

    /// An unauthenticated GET: status, headers and body.
    pub async fn get(&self, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    /// A call whose answer is JSON (or empty, read as null).
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send_raw(method, uri, auth, body).await;
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON response ({e}): {bytes:?}"));
        (status, value)
    }

    pub async fn admin(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let bearer = format!("Bearer {MASTER}");
        self.send(method, uri, Some(&bearer), &body.to_string())
            .await
    }

    /// A `/v1/*` call as the filter makes it: POST with the service token.
    pub async fn filter(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        let bearer = format!("Bearer {SERVICE}");
        self.send(Method::POST, uri, Some(&bearer), body).await
    }
}
