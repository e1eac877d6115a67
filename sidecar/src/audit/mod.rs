//! The verifiable audit log.

pub mod merkle;
