//! IPv4 addresses, not masks, `0.x` or version numbers.

use super::super::anchors::{byte, is_word, run_end, NumberRun};
use super::{each_start, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "ip_address",
    matcher: Matcher::Numbers(|r: &NumberRun| r.dotted, ips),
    validate: ipv4,
    context: |text, start, _| !version_number(text, start),
    #[cfg(test)]
    pattern: r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
};

fn ipv4(s: &str) -> bool {
    // Four parts of one to three digits, each at most 255 and without a
    // leading zero; in one pass.
    let (mut parts, mut len, mut value, mut lead_zero) = (0, 0, 0u32, false);
    for &c in s.as_bytes().iter().chain(b".") {
        if c == b'.' {
            if !(1..=3).contains(&len) || value > 255 || (len > 1 && lead_zero) {
                return false;
            }
            parts += 1;
            (len, value) = (0, 0);
        } else if c.is_ascii_digit() {
            lead_zero = if len == 0 { c == b'0' } else { lead_zero };
            len += 1;
            value = value.saturating_mul(10).saturating_add(u32::from(c - b'0'));
        } else {
            return false;
        }
    }
    // Version strings like 1.2.3.4 are rarer than addresses, but 0.x and
    // 255.255.255.x masks are not personal data.
    parts == 4 && !s.starts_with("0.") && !s.starts_with("255.")
}

/// `version 1.2.3.4` and `v1.2.3.4` are versions, not addresses.
fn version_number(text: &str, start: usize) -> bool {
    // Most addresses follow a space or punctuation: no word can end there.
    let last = text
        .as_bytes()
        .get(start.saturating_sub(12)..start)
        .and_then(|b| {
            b.iter()
                .rev()
                .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r'))
        });
    if last.is_some_and(|c| c.is_ascii() && !c.is_ascii_alphabetic()) || last.is_none() {
        return false;
    }
    let before = text
        .get(start.saturating_sub(12)..start)
        .unwrap_or("")
        .trim_end()
        .as_bytes();
    ["version", "v", "release", "build"].iter().any(|w| {
        before.len() >= w.len()
            && before
                .get(before.len() - w.len()..)
                .is_some_and(|t| t.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// `\b(?:\d{1,3}\.){3}\d{1,3}\b`: four digit runs of one to three.
fn ip(b: &[u8], s: usize) -> Option<usize> {
    let mut p = s;
    for i in 0..4 {
        let r = run_end(b, p, |c| c.is_ascii_digit());
        if !(1..=3).contains(&(r - p)) {
            return None;
        }
        if i < 3 {
            if byte(b, r) != b'.' {
                return None;
            }
            p = r + 1;
        } else if is_word(byte(b, r)) {
            return None;
        } else {
            p = r;
        }
    }
    Some(p)
}

/// Addresses in `text[from..to]` (a number run): from each `.` after one
/// to three digits, which start it.
fn ips(text: &str, from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
    let b = text.as_bytes();
    let word_before = |s: usize| s.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
    each_start(from, to, emit, |s, at| {
        if byte(b, s) != b'.' {
            return Ok(None);
        }
        let digits = b.get(..s).map_or(0, |w| {
            w.iter()
                .rev()
                .take(4)
                .take_while(|c| c.is_ascii_digit())
                .count()
        });
        let start = s - digits;
        let starts = (1..=3).contains(&digits) && start >= at && !word_before(start);
        Ok(starts.then(|| ip(b, start).map(|e| (start, e))).flatten())
    })
}
