//! International bank account numbers: a country, check digits and four to
//! eight groups, passing the mod-97 check.

use super::super::anchors::{boundary, byte, run_end, upper_or_digit};
use super::{anywhere, Caches, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "iban",
    matcher: Matcher::IbanHead(iban_at),
    validate: iban,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
};

/// 15 to 34 characters (spaces aside) whose mod-97 check (the first four
/// moved to the end, letters as 10 to 35) gives 1.
fn iban(s: &str) -> bool {
    let compact = || s.bytes().filter(|c| !c.is_ascii_whitespace());
    let len = compact().count();
    // Only ASCII: anything else cannot be in an IBAN (the matcher never
    // passes it, but a `char::is_whitespace` space would not count).
    if !(15..=34).contains(&len) || !s.is_ascii() {
        return false;
    }
    let mut rem: u32 = 0;
    for c in compact().skip(4).chain(compact().take(4)) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            b'a'..=b'z' => u32::from(c - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`, with the
/// regex's backtracking order: most groups first, then the tail.
fn iban_at(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    let group = |x: usize, len: usize| {
        let y = if byte(b, x) == b' ' { x + 1 } else { x };
        let n = run_end(b, y, upper_or_digit).min(y + len) - y;
        (y, n)
    };
    let mut ends = [0usize; 8];
    let mut n = 0;
    let mut x = s + 4;
    while n < 7 {
        let (y, len) = group(x, 4);
        if len < 4 {
            break;
        }
        x = y + 4;
        n += 1;
        if let Some(slot) = ends.get_mut(n) {
            *slot = x;
        }
    }
    for k in (2..=n).rev() {
        let p = ends.get(k).copied().unwrap_or(0);
        let (y, len) = group(p, 4);
        if let Some(e) = (1..=len).rev().map(|t| y + t).find(|e| boundary(b, *e)) {
            return Some(e);
        }
        if boundary(b, p) {
            return Some(p);
        }
    }
    None
}
