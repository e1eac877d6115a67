//! The host-free core: everything that can be decided without Envoy.

pub mod api;
pub mod auth;
pub mod budget;
pub mod config;
pub mod content;
pub mod decision;
pub mod error;
pub mod exchange;
pub mod glob;
pub mod guard;
pub mod header_map;
pub mod json;
pub mod key;
pub mod lease;
pub mod models;
pub mod otlp;
pub mod provider;
pub mod report_json;
pub mod report_queue;
pub mod request;
pub mod routing;
pub mod sse;
pub mod telemetry;
pub mod tracecontext;
pub mod usage;
pub mod wire;
