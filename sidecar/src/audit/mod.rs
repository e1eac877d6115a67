//! The verifiable audit log: every settled request, lease grant and lease
//! settlement appends one entry (`entry.rs`) to an append-only Merkle log
//! (`merkle.rs`, RFC 9162 hashing) kept in the store (`log.rs`); signed
//! checkpoints (`checkpoint.rs`) fix its size and root from time to time.
//! `verify.rs` checks a whole log, from the database or from an export
//! (`export.rs`); `proof.rs` makes and checks inclusion and consistency
//! proofs that need only checkpoints and the public key. Bodies are never
//! stored: only HMACs of their digests under per-team secrets (`secrets.rs`).

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod secrets;
pub mod verify;

/// Lowercase or uppercase hex to bytes; `None` if it is not hex.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}
