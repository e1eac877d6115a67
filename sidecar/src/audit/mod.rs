//! The verifiable audit log: entries (`entry.rs`) in an append-only
//! Merkle log (`merkle.rs`, RFC 9162 hashing), fixed from time to time by
//! signed checkpoints (`checkpoint.rs`).

pub mod checkpoint;
pub mod entry;
pub mod merkle;
