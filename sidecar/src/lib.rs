//! Tollgate sidecar: owns virtual keys and teams, and answers the Envoy
//! filter's authorization lookups. The binary (`main.rs`) wires these modules
//! into the `serve` command and the offline CLI.

pub mod budgets;
pub mod cli;
pub mod error;
pub mod http;
pub mod keys;
pub mod model;
pub mod store;
