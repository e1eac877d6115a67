#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! Tollgate: an LLM gateway as a proxy-wasm filter for Envoy.
//!
//! `core` is host-free (plain functions and types, unit-tested natively);
//! `filter` is the thin proxy-wasm adapter: built for wasm, and natively
//! only for its tests (which reach the host through a mock).

pub mod core;

#[cfg(any(target_arch = "wasm32", test, feature = "dynamic-module"))]
mod filter;
