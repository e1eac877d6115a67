//! Payment card numbers: 12 to 19 digits, maybe grouped, from an issuer's
//! range, grouped as cards are printed and passing the Luhn check.

use super::super::anchors::{byte, digit_at, digits, is_word, NumberRun};
use super::identifier::identifier;
use super::{each_start, Detector, Matcher};

pub const DETECTOR: Detector = Detector {
    guardrail: "pii",
    name: "card",
    matcher: Matcher::Numbers(|r: &NumberRun| r.chain >= 12, cards),
    validate: card_number,
    context,
    #[cfg(test)]
    pattern: r"\b(?:\d[ -]?){11,18}\d\b",
};

/// 13 to 19 digits (12 for Maestro, which starts with 5 or 6), not all the
/// same, passing the Luhn check; one pass.
fn luhn(s: &str) -> bool {
    let (mut n, mut sum, mut same, mut last) = (0usize, 0u32, true, None);
    for x in s
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
    {
        sum += match (n % 2 == 1, x * 2) {
            (true, d) if d > 9 => d - 9,
            (true, d) => d,
            _ => x,
        };
        same &= last.is_none_or(|l| l == x);
        last = Some(x);
        n += 1;
    }
    let length = (13..=19).contains(&n) || (n == 12 && matches!(last, Some(5 | 6)));
    length && !same && sum.is_multiple_of(10)
}

/// Card numbers start with an issuer's digit: 2 to 6 (banks, travel and
/// entertainment), or 1800 (JCB); ISBNs and EANs (978, 979) do not. Split,
/// they are printed in fours (the last shorter) or 4-6-5 / 4-6-4 (Amex,
/// Diners), not as `37782904 200 4199` (an id, a status, a size).
fn card_number(s: &str) -> bool {
    let mut d = digits(s);
    let first = d.next();
    let jcb = first == Some(1) && d.take(3).eq([8, 0, 0]);
    let groups: Vec<usize> = s.split([' ', '-']).map(str::len).collect();
    let (last, fours) = groups.split_last().unwrap_or((&0, &[]));
    let grouped = groups.len() == 1
        || (fours.iter().all(|g| *g == 4) && (1..=4).contains(last))
        || groups == [4, 6, 5]
        || groups == [4, 6, 4];
    (matches!(first, Some(2..=6)) || jcb) && grouped && luhn(s)
}

/// Not after a `+` (a phone), nor, unseparated, in code or named an
/// identifier (`identifier`).
fn context(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let before = start.checked_sub(1).map(|p| byte(b, p));
    let bare = b
        .get(start..end)
        .is_some_and(|m| m.iter().all(u8::is_ascii_digit));
    before != Some(b'+') && !(bare && identifier(b, start, end))
}

/// `\b(?:\d[ -]?){11,18}\d\b` from the digit at `s`: digits joined by at
/// most one space or hyphen; the longest of 12 to 19 that ends at a word
/// boundary. `Err`: the chain from `s` has fewer than 12 digits, and ends
/// there.
fn card(b: &[u8], s: usize) -> Result<Option<usize>, usize> {
    let mut n = 1;
    let mut p = s;
    let mut best = None;
    loop {
        if n >= 12 && !is_word(byte(b, p + 1)) {
            best = Some(p + 1);
        }
        if n == 19 {
            break;
        }
        if digit_at(b, p + 1) {
            p += 1;
        } else if matches!(byte(b, p + 1), b' ' | b'-') && digit_at(b, p + 2) {
            p += 2;
        } else {
            break;
        }
        n += 1;
    }
    if n < 12 {
        return Err(p + 1);
    }
    Ok(best)
}

/// Cards in `text[from..to]` (a number run): from each digit after a
/// non-word byte, skipping chains too short to hold one.
fn cards(text: &str, from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
    let b = text.as_bytes();
    each_start(from, to, emit, |i, _| {
        let starts = digit_at(b, i) && !i.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
        if !starts {
            return Ok(None);
        }
        // `Err`: too few digits from here, and none from inside the chain.
        card(b, i).map(|m| m.map(|e| (i, e)))
    })
}
