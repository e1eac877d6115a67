//! Lower-case hex, written by hand: `format!("{:x}")` costs several times
//! more in the VM, and ids and key hashes are written on every request.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two hex digits of `byte`.
pub fn digits(byte: u8) -> [u8; 2] {
    let digit = |nibble: u8| DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
    [digit(byte >> 4), digit(byte & 0x0f)]
}

/// Appends `bytes` as lower-case hex.
pub fn push(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        for d in digits(b) {
            out.push(char::from(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_formatting() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = String::new();
        push(&mut out, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(out, expected);
    }
}
