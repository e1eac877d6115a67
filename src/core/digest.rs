//! SHA-256 as lowercase hex: key hashes (what the sidecar looks keys up
//! by) and the body digests usage reports carry for the audit log.

use super::hex;
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_of(Sha256::new_with_prefix(bytes))
}

/// The hex digest of what `hasher` has read.
pub fn hex_of(hasher: Sha256) -> String {
    let mut out = String::with_capacity(64);
    hex::push(&mut out, &hasher.finalize());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(hex_of(h), sha256_hex(b"abc"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
