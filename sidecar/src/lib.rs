//! Tollgate sidecar: owns virtual keys, teams, budgets and the usage ledger,
//! and answers the Envoy filter's authorize, reserve, lease and settle calls. The
//! binary (`main.rs`) wires these modules into the `serve` command and the
//! offline CLI.

#[macro_use]
mod macros;

pub mod answer_cache;
pub mod audit;
pub mod budgets;
pub mod cli;
pub mod clock;
pub mod error;
pub mod http;
pub mod keys;
pub mod leases;
pub mod ledger;
pub mod model;
mod notices;
pub mod periods;
pub mod pricing;
pub mod residency;
pub mod store;
pub mod usage;
