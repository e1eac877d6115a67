//! PEM private keys: from the header to the end marker, or to the end of
//! the text (a key cut off is still a key).

use super::super::anchors::{byte, run_end, starts_with};
use super::{any, anywhere, Caches, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "secrets",
    name: "private_key",
    matcher: Matcher::PrivateKeyHeader(private_key),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
};

const PRIVATE_KEY: &[u8] = b"PRIVATE KEY-----";

/// `(?:[A-Z]+ )?PRIVATE KEY-----` at `at`: where it ends.
fn private_key_label(b: &[u8], at: usize) -> Option<usize> {
    let word = run_end(b, at, |c| c.is_ascii_uppercase());
    if word > at && byte(b, word) == b' ' && starts_with(b, word + 1, PRIVATE_KEY, false) {
        return Some(word + 1 + PRIVATE_KEY.len());
    }
    starts_with(b, at, PRIVATE_KEY, false).then_some(at + PRIVATE_KEY.len())
}

/// `-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)`:
/// to the first end marker after the header, or to the end of the text.
fn private_key(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !starts_with(b, s, b"-----BEGIN ", false) {
        return None;
    }
    let header = private_key_label(b, s + 11)?;
    let mut from = header;
    while let Some(p) = text.get(from..).and_then(|t| t.find("-----END ")) {
        let p = from + p;
        if let Some(end) = private_key_label(b, p + 9) {
            return Some(end);
        }
        from = p + 1;
    }
    Some(b.len())
}
