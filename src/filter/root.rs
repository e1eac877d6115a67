//! Root context: one per stage per worker VM. The request stage (root_id "")
//! owns the configuration and the key cache; the route stage (root_id
//! "route") needs no configuration.

use super::host;
use super::metrics::Metrics;
use super::request_stage::RequestStage;
use super::route_stage::{RouteStage, SecretCache};
use crate::core::api::ClientFormat;
use crate::core::auth::AuthCache;
use crate::core::config::Config;
use crate::core::error::GatewayError;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

/// Distinct keys remembered per worker before the cache is pruned.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// What every request-stage context of a worker shares.
pub struct Shared {
    pub config: Config,
    pub cache: RefCell<AuthCache>,
    pub metrics: Metrics,
}

#[derive(Default)]
pub enum Root {
    #[default]
    Unconfigured,
    Request(Rc<Shared>),
    Route(Rc<RefCell<SecretCache>>),
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if root_id == "route" {
            *self = Root::Route(Rc::default());
            return true;
        }
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "tollgate: configured {} providers, {} model routes, key cache {} ms, sidecar {} (fail-{:?})",
                    config.providers.len(),
                    config.models.len(),
                    config.key_cache_ttl_ms,
                    config.sidecar.cluster,
                    config.sidecar.failure_mode
                );
                let cache =
                    RefCell::new(AuthCache::new(config.key_cache_ttl_ms, KEY_CACHE_CAPACITY));
                *self = Root::Request(Rc::new(Shared {
                    config,
                    cache,
                    metrics: Metrics::define(),
                }));
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
            Root::Request(shared) => Some(Box::new(RequestStage::new(Rc::clone(shared)))),
            Root::Route(secrets) => Some(Box::new(RouteStage::new(Rc::clone(secrets)))),
            Root::Unconfigured => Some(Box::new(Unconfigured)),
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
        host::send_json(error.status(), &error.body(ClientFormat::OpenAi));
        Action::Pause
    }
}
