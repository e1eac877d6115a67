//! Root context: one per stage per worker VM. The request stage (root_id "")
//! owns the configuration and the key cache; the route stage (root_id
//! "route") needs no configuration, and the attempt stage (root_id
//! "attempt", an upstream filter) and the relay stage (root_id "relay", in
//! the relay listener) use the request stage's.

use super::attempt_stage::AttemptStage;
use super::env::{Envoy, Host};
use super::host;
use super::relay_stage::RelayStage;
use super::request_stage::RequestStage;
use super::route_headers::Secrets;
use super::route_stage::RouteStage;
use super::shared::Shared;
use super::sidecar::SidecarClient;
use crate::core::api::ClientFormat;
use crate::core::config::Config;
use crate::core::error::GatewayError;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// The root context's tick: full report and span batches leave at the next
/// tick, partial ones when their flush interval has passed.
const TICK_MS: u64 = 100;

/// How long a request stage whose configuration was removed, with no
/// successor in its VM, keeps sending what it has queued.
const DRAIN_LIMIT_MS: u64 = 30_000;

/// The wasm linear memory size: what this worker's VM holds.
#[cfg(target_arch = "wasm32")]
fn vm_memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}

/// Native test builds have no wasm memory to measure.
#[cfg(not(target_arch = "wasm32"))]
fn vm_memory_bytes() -> u64 {
    0
}

thread_local! {
    /// A route stage was configured in this VM (it shares the request
    /// stage's `vm_id`): the chain is the two-stage one whatever the
    /// configuration says, so a two-stage config from before `"chain"`
    /// existed keeps working instead of pausing headers without the flag.
    static ROUTE_STAGE: Cell<bool> = const { Cell::new(false) };
    /// The request stage's state in this VM, for the attempt stage (an
    /// upstream filter with the same `vm_id` shares the VM).
    static REQUEST_STAGE: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Whether this VM also runs the two-stage chain's route stage.
pub fn route_stage_present() -> bool {
    ROUTE_STAGE.with(Cell::get)
}

/// Envoy's node id: names the instance on exported traces.
fn node_id() -> Option<String> {
    host::property(&["node", "id"])
        .map(|id| String::from_utf8_lossy(&id).into_owned())
        .filter(|id| !id.is_empty())
}

#[derive(Default)]
pub enum Root {
    #[default]
    Unconfigured,
    Request(Arc<Shared>),
    /// A request stage Envoy is done with (`on_done`), sending what it has
    /// queued until `until_ms`.
    Draining {
        shared: Arc<Shared>,
        until_ms: u64,
    },
    Route(Arc<Secrets>),
    Attempt,
    Relay,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Root::Request(shared) | Root::Draining { shared, .. }) = self else {
            return;
        };
        let status = host::header(host::CALL_RESPONSE_HEADERS, ":status");
        shared.answered(&Envoy, token, status, body_size);
        if matches!(self, Root::Draining { .. }) {
            self.drain_step();
        }
    }

    /// Envoy is done with this root context: its configuration was replaced
    /// (a listener update) or removed. What it has not sent yet goes to the
    /// request stage configured after it in this VM, or is sent from here
    /// before the context goes (`false`: Envoy waits for `host::done`).
    fn on_done(&mut self) -> bool {
        let Root::Request(shared) = self else {
            return true;
        };
        let successor = REQUEST_STAGE.with(|s| s.borrow().clone());
        if let Some(successor) = successor.filter(|s| !Arc::ptr_eq(s, shared)) {
            if shared.hand_over(&successor) {
                return true;
            }
        }
        if shared.drain(&Envoy) {
            return true;
        }
        *self = Root::Draining {
            shared: Arc::clone(shared),
            until_ms: Envoy.now_ms() + DRAIN_LIMIT_MS,
        };
        false
    }
}

impl Root {
    /// A draining request stage's next sends; tells Envoy once it is done.
    fn drain_step(&mut self) {
        let Root::Draining { shared, until_ms } = self else {
            return;
        };
        let drained = shared.drain(&Envoy);
        if drained || Envoy.now_ms() >= *until_ms {
            if !drained {
                log::error!(
                    "tollgate: {} usage reports of a removed configuration were not sent in {} s",
                    shared.reports_pending(),
                    DRAIN_LIMIT_MS / 1000
                );
            }
            host::done();
            *self = Root::Unconfigured;
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        host::follow_envoy_log_level();
        match host::property(&["plugin_root_id"]).as_deref() {
            Some(b"route") => {
                ROUTE_STAGE.with(|present| present.set(true));
                *self = Root::Route(Arc::default());
                return true;
            }
            Some(b"attempt") => {
                *self = Root::Attempt;
                return true;
            }
            Some(b"relay") => {
                *self = Root::Relay;
                return true;
            }
            _ => {}
        }
        let bytes = host::buffer(host::PLUGIN_CONFIGURATION, size);
        let configured = Config::load(&bytes).and_then(|(config, guardrails)| {
            let sidecar = SidecarClient::from_env(config.sidecar.clone())
                .map_err(|e| format!("invalid tollgate configuration:\n  - {e}"))?;
            Ok((config, guardrails, Arc::new(sidecar)))
        });
        match configured {
            Ok((config, guardrails, sidecar)) => {
                log::info!(
                    "tollgate: configured {} providers, {} model routes, key cache {} ms, sidecar {} (fail-{:?})",
                    config.providers.len(),
                    config.models.len(),
                    config.key_cache_ttl_ms,
                    config.sidecar.cluster,
                    config.sidecar.failure_mode
                );
                host::set_tick_period_ms(TICK_MS);
                let shared = Arc::new(Shared::new(
                    &Envoy,
                    config,
                    guardrails,
                    sidecar,
                    node_id(),
                    host::random_u64(),
                ));
                REQUEST_STAGE.with(|s| *s.borrow_mut() = Some(Arc::clone(&shared)));
                *self = Root::Request(shared);
                true
            }
            Err(e) => {
                log::error!("tollgate: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self {
            Root::Request(shared) => {
                shared.count_request();
                Some(Box::new(RequestStage::new(Arc::clone(shared), Envoy)))
            }
            Root::Route(secrets) => Some(Box::new(RouteStage::new(Arc::clone(secrets), Envoy))),
            Root::Attempt => {
                let shared = REQUEST_STAGE.with(|s| s.borrow().clone());
                Some(Box::new(AttemptStage::new(shared, Envoy)))
            }
            Root::Relay => {
                let shared = REQUEST_STAGE.with(|s| s.borrow().clone());
                Some(Box::new(RelayStage::new(shared, Envoy)))
            }
            Root::Unconfigured | Root::Draining { .. } => Some(Box::new(Unconfigured)),
        }
    }

    fn on_tick(&mut self) {
        if matches!(self, Root::Draining { .. }) {
            self.drain_step();
        }
        if let Root::Request(shared) = self {
            shared.tick(&Envoy);
            // Only VMs that serve requests report: the main thread's VM
            // ticks too, and would overwrite the worker's figure.
            if shared.requests() > 0 {
                host::set_gauge(shared.memory_gauge, vm_memory_bytes());
            }
            // Envoy's log level can change at runtime (admin /logging).
            host::follow_envoy_log_level();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Stands in when configuration failed, so requests get a clear error
/// instead of passing unchecked.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let error =
            GatewayError::Internal("the gateway filter is not configured; see the Envoy log");
        host::send_json(
            error.status(),
            &error.body(ClientFormat::OpenAi),
            error.retry_after_s(),
        );
        Action::Pause
    }
}
