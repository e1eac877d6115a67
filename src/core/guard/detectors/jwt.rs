//! JSON web tokens: three base64url parts, the first two JSON objects
//! (`eyJ` is `{"` encoded).

use super::super::anchors::{boundary, byte, key_char, starts_with, RunCache};
use super::{any, anywhere, Caches, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "secrets",
    name: "jwt",
    matcher: Matcher::Prefixed(&["eyJ"], jwt),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
};

/// The runs of each part measured last.
#[derive(Default)]
pub struct Cache([RunCache; 3]);

/// `\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`
fn jwt(text: &str, s: usize, caches: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !(boundary(b, s) && starts_with(b, s, b"eyJ", false)) {
        return None;
    }
    let [c1, c2, c3] = &mut caches.jwt.0;
    let r1 = c1.end(b, s + 3, key_char);
    if r1 - (s + 3) < 8 || byte(b, r1) != b'.' || !starts_with(b, r1 + 1, b"eyJ", false) {
        return None;
    }
    let r2 = c2.end(b, r1 + 4, key_char);
    if r2 - (r1 + 4) < 8 || byte(b, r2) != b'.' {
        return None;
    }
    let r3 = c3.end(b, r2 + 1, key_char);
    (r3 - (r2 + 1) >= 8).then_some(r3)
}
