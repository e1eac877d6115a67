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
//! `filter` is the thin proxy-wasm adapter and only exists in the wasm build.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod filter;
