//! Phone numbers: a chain of digit groups (`PhoneChain`), and the grammar
//! that tells a phone number from other numbers of that shape: the calling
//! codes and national number lengths, national forms, dates, versions and
//! numbers grouped in thousands; then identifiers (`identifier`).

use super::super::anchors::{byte, digit_at, is_word, run_end, starts_with, NumberRun};
use super::identifier::identifier;
use super::{each_start, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "phone",
    matcher: Matcher::Numbers(|r: &NumberRun| r.digits >= 8, phones),
    validate: phone,
    context,
    #[cfg(test)]
    pattern: r"(?:\+|\(\+?|\b)\d+(?:(?:\)[ ./_-]?\(?|[ ./_-]\(?|\()\d+)*(?: ?(?:[eE]xt\.?|x|#) ?\d{1,6})?\b",
};

/// Country calling codes and the lengths of their national numbers (ITU-T
/// E.164 plans, widened where numbers in use differ), a trunk 0 not counted.
const CALLING_CODES: &[(u16, u8, u8)] = &[
    (1, 10, 10),
    (7, 10, 10),
    (20, 8, 10),
    (27, 9, 9),
    (30, 10, 10),
    (31, 9, 9),
    (32, 8, 9),
    (33, 9, 9),
    (34, 9, 9),
    (36, 8, 9),
    (39, 6, 11),
    (40, 9, 9),
    (41, 9, 9),
    (43, 7, 13),
    (44, 9, 10),
    (45, 8, 8),
    (46, 7, 9),
    (47, 8, 8),
    (48, 9, 9),
    (49, 7, 12),
    (51, 8, 9),
    (52, 10, 10),
    (54, 10, 10),
    (55, 10, 11),
    (56, 9, 9),
    (57, 10, 10),
    (58, 10, 10),
    (60, 8, 10),
    (61, 9, 9),
    (62, 8, 12),
    (63, 8, 10),
    (64, 8, 10),
    (65, 8, 8),
    (66, 8, 9),
    (81, 9, 10),
    (82, 8, 10),
    (84, 8, 10),
    (86, 10, 11),
    (90, 10, 10),
    (91, 10, 10),
    (92, 9, 10),
    (93, 9, 9),
    (94, 9, 9),
    (95, 8, 10),
    (98, 10, 10),
    (212, 9, 9),
    (213, 9, 9),
    (234, 8, 10),
    (243, 9, 9),
    (251, 9, 9),
    (254, 9, 9),
    (351, 9, 9),
    (353, 7, 9),
    (358, 6, 10),
    (380, 9, 9),
    (420, 9, 9),
    (852, 8, 8),
    (880, 8, 10),
    (886, 8, 9),
    (962, 8, 9),
    (966, 9, 9),
    (971, 8, 9),
    (972, 8, 9),
];

/// Digits after `+` or `00`: a known calling code and a national number of
/// a length it uses (a trunk 0 may stay: `+44 (0)20`); with `+`, an unknown
/// code and 8 to 15 digits in all.
fn international(d: &[u8], plus: bool) -> bool {
    let code = (1..=3).find_map(|n| {
        let cc = d.get(..n)?.iter().fold(0u16, |a, x| a * 10 + u16::from(*x));
        CALLING_CODES
            .iter()
            .find(|c| c.0 == cc)
            .map(|c| (n, c.1, c.2))
    });
    match code {
        Some((n, min, max)) => {
            let national = d.get(n..).unwrap_or(&[]);
            let len = national.len();
            let trunk = usize::from(national.first() == Some(&0));
            let range = usize::from(min)..=usize::from(max);
            range.contains(&len) || range.contains(&(len - trunk))
        }
        None => plus && (8..=15).contains(&d.len()),
    }
}

/// A phone-shaped match that is a phone number: international with a
/// calling code, or a national form (area code in brackets, a trunk 0 or 8,
/// NANP, Chinese mobile, groups of two or more digits); not a date, an
/// address or version, or a number grouped in thousands.
fn phone(s: &str) -> bool {
    let b = s.as_bytes();
    // The number before an extension.
    let main = b
        .iter()
        .position(|c| matches!(c, b'x' | b'e' | b'E' | b'#'))
        .and_then(|p| b.get(..p))
        .unwrap_or(b)
        .trim_ascii_end();
    // Digits (at most 17: `00` and 15), lengths of the first eight groups
    // and the byte before each.
    let (mut d, mut n) = ([0u8; 17], 0);
    let (mut groups, mut joins, mut g) = ([0u8; 8], [0u8; 8], 0);
    let (mut in_group, mut join) = (false, 0u8);
    for &c in main {
        if c.is_ascii_digit() {
            let Some(x) = d.get_mut(n) else {
                return false;
            };
            *x = c - b'0';
            n += 1;
            if !in_group {
                if let Some(j) = joins.get_mut(g) {
                    *j = join;
                }
                g += 1;
                in_group = true;
            }
            if let Some(l) = groups.get_mut(g - 1) {
                *l = l.saturating_add(1);
            }
        } else {
            in_group = false;
            join = c;
        }
    }
    let digits = d.get(..n).unwrap_or(&[]);
    let at = |i: usize| digits.get(i).copied().unwrap_or(0);
    if main.starts_with(b"+") || main.starts_with(b"(+") {
        return international(digits, true);
    }
    // `00` then a calling code; else (as written by some) a trunk 0.
    if at(0) == 0 && at(1) == 0 && international(digits.get(2..).unwrap_or(&[]), false) {
        return true;
    }
    let groups = groups.get(..g).unwrap_or(&[]);
    let len = |i: usize| groups.get(i).copied().unwrap_or(0);
    let joins = joins.get(1..g).unwrap_or(&[]);
    let same_join = joins.windows(2).all(|w| w.first() == w.get(1));
    let date = g >= 3
        && joins.first() == joins.get(1)
        && matches!(joins.first(), Some(b'.' | b'/' | b'-'))
        && ((len(0) <= 2 && len(1) <= 2 && len(2) == 4)
            || (len(0) == 4 && len(1) <= 2 && len(2) <= 2));
    let dotted = joins.contains(&b'.') && groups.iter().all(|l| *l <= 3);
    if g > 8 || !(8..=12).contains(&n) || groups.last().is_none_or(|l| *l < 2) || date || dotted {
        return false;
    }
    if g == 1 {
        // One run of digits: only where it is clearly a phone (a NANP
        // number has no 0 or 1 before its area code or exchange, so unix
        // times do not match), a Chinese mobile, a Russian trunk 8, a
        // trunk 0.
        return (n == 10 && at(0) >= 2 && at(3) >= 2)
            || (n == 11 && at(0) == 1 && at(1) >= 3)
            || (n == 11 && at(0) == 8 && at(1) >= 3)
            || ((9..=11).contains(&n) && at(0) == 0 && at(1) != 0);
    }
    let thousands = groups.iter().skip(1).all(|l| *l == 3) && same_join;
    main.first() == Some(&b'(')
        || (at(0) == 0 && n >= 9)
        || (len(0) == 1 && matches!(at(0), 1 | 8) && n == 11)
        || ((10..=11).contains(&n) && groups.iter().all(|l| *l >= 2) && !thousands)
}

/// A national number (not after `+` or `(`) is not one after `#`, `-`,
/// `.` or `/` (inside an identifier such as `INV-2024-000123` or a UUID),
/// nor in code or named an identifier (`identifier`).
fn context(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    if matches!(byte(b, start), b'+' | b'(') {
        return true;
    }
    let before = start.checked_sub(1).map(|p| byte(b, p));
    !(matches!(before, Some(b'#' | b'-' | b'.' | b'/')) || identifier(b, start, end))
}

/// `[ ./_-]`
#[inline]
fn phone_sep(b: u8) -> bool {
    matches!(b, b' ' | b'.' | b'/' | b'_' | b'-')
}

/// ` ?(?:[eE]xt\.?|x|#) ?\d{1,6}\b` at `p`: where a phone extension ends.
fn extension(b: &[u8], p: usize) -> Option<usize> {
    let mut q = p + usize::from(byte(b, p) == b' ');
    q = match byte(b, q) {
        b'x' | b'#' => q + 1,
        b'e' | b'E' if starts_with(b, q + 1, b"xt", false) => {
            q + 3 + usize::from(byte(b, q + 3) == b'.')
        }
        _ => return None,
    };
    q += usize::from(byte(b, q) == b' ');
    let r = run_end(b, q, |c| c.is_ascii_digit());
    ((1..=6).contains(&(r - q)) && !is_word(byte(b, r))).then_some(r)
}

/// Phone: `(?:\+|\(\+?|\b)\d+(?:(?:\)[ ./_-]?\(?|[ ./_-]\(?|\()\d+)*(?: ?(?:[eE]xt\.?|x|#) ?\d{1,6})?\b`
/// from `s` is a chain of digit groups joined by one separator and
/// brackets, maybe with an extension. The phone is its longest prefix that
/// is a valid number and ends at a group end a non-word byte follows, or at
/// the match's end: so `+44 20 7946 0958 10.0.0.7` and numbers listed with
/// spaces give their phones; the search goes on after it, or after the
/// match (before its extension) if no prefix is valid (`GB82 WEST 1234
/// 5698 7654 33` gives none from its middle).
#[derive(Default)]
struct PhoneChain {
    /// Candidate ends from the current start, in order, among its first
    /// `PHONE_DIGITS` digits (more are never valid).
    ends: Vec<usize>,
    /// The chain walked last: up to where, and the match's end before its
    /// extension (where the search goes on if no prefix is valid: an
    /// extension's digits may start a phone).
    walked: usize,
    end: Option<usize>,
}

impl PhoneChain {
    /// Walks the chain from `s` (only the first digits again when `s` is
    /// inside the chain walked last, after a phone in it): each byte is
    /// walked a bounded number of times.
    fn walk(&mut self, b: &[u8], s: usize) {
        self.ends.clear();
        let mut p = match byte(b, s) {
            b'+' => s + 1,
            b'(' => s + 1 + usize::from(byte(b, s + 1) == b'+' && digit_at(b, s + 2)),
            _ if s.checked_sub(1).is_some_and(|q| is_word(byte(b, q))) => return,
            _ => s,
        };
        // Inside, the match ends where the one walked last does.
        let inside = s < self.walked;
        let mut last = None;
        let mut digits = 0;
        loop {
            let end = run_end(b, p, |c| c.is_ascii_digit());
            if end == p {
                break;
            }
            digits += end - p;
            let candidate = digits <= PHONE_DIGITS;
            if inside && !candidate {
                return;
            }
            let ext = extension(b, end);
            if !is_word(byte(b, end)) {
                if candidate {
                    self.ends.push(end);
                }
                last = Some(end);
            }
            if let Some(e) = ext {
                if candidate {
                    self.ends.push(e);
                }
                last = Some(end);
                break;
            }
            // The joiner: `)`, a separator, `(`, each optional, one at least.
            let mut q = end + usize::from(byte(b, end) == b')');
            q += usize::from(phone_sep(byte(b, q)));
            q += usize::from(byte(b, q) == b'(');
            if q == end || !digit_at(b, q) {
                p = end;
                break;
            }
            p = q;
        }
        if !inside {
            self.end = last;
            self.walked = p;
        }
    }
}

/// Most digits a phone number has (`00` and 15).
const PHONE_DIGITS: usize = 17;

/// The phone from `s`, `Ok(end)`, or `Err(where the search goes on)`.
fn phone_at(text: &str, s: usize, chain: &mut PhoneChain) -> Result<usize, usize> {
    chain.walk(text.as_bytes(), s);
    let valid = chain.ends.iter().rev().copied().find(|e| {
        text.get(s..*e)
            .is_some_and(|m| phone(m) && context(text, s, *e))
    });
    valid.ok_or(chain.end.filter(|e| *e > s).unwrap_or(s + 1))
}

/// Phones in `text[from..to]` (a number run): from each `+`, `(` or digit
/// after a non-word byte.
fn phones(text: &str, from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
    let b = text.as_bytes();
    let mut chain = PhoneChain::default();
    let word_before = |s: usize| s.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
    each_start(from, to, emit, |s, _| {
        let c = byte(b, s);
        if c == b'+' || c == b'(' || (c.is_ascii_digit() && !word_before(s)) {
            phone_at(text, s, &mut chain).map(|e| Some((s, e)))
        } else {
            Ok(None)
        }
    })
}
