//! E-mail addresses, around each `@`.

use super::super::anchors::{alnum, byte, domain_char, run_end};
use super::{any, anywhere, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "email",
    matcher: Matcher::At(email),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
};

/// `[A-Za-z0-9._%+-]`
#[inline]
fn local_char(b: u8) -> bool {
    alnum(b) || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}` for
/// the `@` at `x`, starting at or after `at`: the local part is the run
/// before the `@`; the match ends after the letters that start the last
/// label (after the first) with two or more.
fn email(b: &[u8], x: usize, at: usize) -> Option<(usize, usize)> {
    let local = b.get(..x).map_or(0, |w| {
        w.iter().rev().take_while(|c| local_char(**c)).count()
    });
    let start = (x - local).max(at);
    if start >= x {
        return None;
    }
    let mut p = run_end(b, x + 1, domain_char);
    if p == x + 1 {
        return None;
    }
    let mut end = None;
    while byte(b, p) == b'.' {
        let label = run_end(b, p + 1, domain_char);
        if label == p + 1 {
            break;
        }
        let letters = run_end(b, p + 1, |c| c.is_ascii_alphabetic());
        if letters - (p + 1) >= 2 {
            end = Some(letters);
        }
        p = label;
    }
    end.map(|e| (start, e))
}
