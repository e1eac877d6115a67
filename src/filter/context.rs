//! The callbacks a stream's stage answers. The wasm build (and its native
//! tests) uses the proxy-wasm SDK's traits; the dynamic module declares the
//! same shape here instead of linking the SDK, whose exported entry points
//! name wasm host calls no Envoy process provides (the `.so` would not load).

#[cfg(feature = "wasm")]
pub use proxy_wasm::traits::{Context, HttpContext};
#[cfg(feature = "wasm")]
pub use proxy_wasm::types::Action;

#[cfg(not(feature = "wasm"))]
pub use own::{Action, Context, HttpContext};

#[cfg(not(feature = "wasm"))]
mod own {
    /// What a callback tells Envoy: go on, or hold the stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        Continue,
        Pause,
    }

    pub trait Context {
        fn on_http_call_response(
            &mut self,
            _token: u32,
            _headers: usize,
            _body_size: usize,
            _trailers: usize,
        ) {
        }
    }

    pub trait HttpContext: Context {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
            Action::Continue
        }
        fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
            Action::Continue
        }
        fn on_log(&mut self) {}
    }
}
