//! US social security numbers: `123-45-6789` in the ranges the SSA issues.

use super::super::anchors::{byte, digits, is_word, NumberRun};
use super::{anywhere, each_start, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "ssn",
    matcher: Matcher::Numbers(|r: &NumberRun| r.digits >= 9 && r.dashed, ssns),
    validate: ssn,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\b\d{3}-\d{2}-\d{4}\b",
};

/// No area 000, 666 or 900 and up, no group 00, no serial 0000.
fn ssn(s: &str) -> bool {
    let (mut area, mut group, mut serial) = (0u32, 0u32, 0u32);
    for (i, d) in digits(s).enumerate() {
        let n = match i {
            0..=2 => &mut area,
            3..=4 => &mut group,
            _ => &mut serial,
        };
        *n = n.saturating_mul(10).saturating_add(d);
    }
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// `n` digits at `i`.
#[inline]
fn digits_at(b: &[u8], i: usize, n: usize) -> bool {
    b.get(i..i + n)
        .is_some_and(|w| w.iter().all(u8::is_ascii_digit))
}

/// Digit groups of the given lengths joined by `-` from `s`, then a word
/// boundary (`\d{3}-\d{2}-\d{4}\b` is `[3, 2, 4]`): where they end.
fn dashed_digits(b: &[u8], s: usize, groups: &[usize]) -> Option<usize> {
    let mut at = s;
    for (i, &n) in groups.iter().enumerate() {
        if i > 0 {
            if byte(b, at) != b'-' {
                return None;
            }
            at += 1;
        }
        if !digits_at(b, at, n) {
            return None;
        }
        at += n;
    }
    (!is_word(byte(b, at))).then_some(at)
}

/// `\b\d{3}-\d{2}-\d{4}\b` in `text[from..to]` (a number run): from each
/// digit after a non-word byte with a `-` three bytes on.
fn ssns(text: &str, from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
    let b = text.as_bytes();
    let word_before = |s: usize| s.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
    each_start(from, to, emit, |s, _| {
        let starts = byte(b, s + 3) == b'-' && byte(b, s).is_ascii_digit() && !word_before(s);
        Ok(starts
            .then(|| dashed_digits(b, s, &[3, 2, 4]))
            .flatten()
            .map(|e| (s, e)))
    })
}
