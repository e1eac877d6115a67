//! Detectors: each built-in kind has a hand-written matcher that finds
//! exactly what its regular expression (documented on the matcher, kept in
//! `reference` and checked against by the `equivalence` tests) finds with
//! leftmost-first `find_iter` semantics; validation (Luhn, mod-97, number
//! ranges) then keeps only real ones, and an earlier detector wins an
//! overlap. The matchers look only at the places `anchors` found in one
//! pass and examine each byte a bounded number of times; findings are
//! merged in order, so the overlap check is a moving cursor. A scan is
//! linear in the text with a small constant. (The regexes used to run in
//! windows around anchors: with anchors every few bytes the windows covered
//! the whole text at ~100 ns a byte, and each finding was checked against
//! every earlier one.) Custom patterns are regexes run over the whole text.

use super::anchors::{
    boundary, byte, credential_name, is_space, is_word, prefix_table, run_end, starts_with,
    Anchors, Named, NumberRun, PrefixTable,
};
use regex_lite::Regex;
use std::sync::Arc;

/// A detector's kind name: built-in ones are static, so a finding costs no
/// reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Builtin(&'static str),
    Custom(Arc<str>),
}

impl std::ops::Deref for Kind {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Kind::Builtin(k) => k,
            Kind::Custom(k) => k,
        }
    }
}

/// One detected entity: which guardrail, what kind, and where (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub guardrail: &'static str,
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Which detector found it: built-ins in `BUILTINS` order, then the
    /// custom patterns.
    pub detector: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Aws,
    AwsSecret,
    Github,
    Slack,
    Stripe,
    Google,
    Anthropic,
    Openai,
    PrivateKey,
    Jwt,
    Password,
    Secret,
    Email,
    Card,
    Ssn,
    Iban,
    Phone,
    Ip,
}

/// The built-in detectors in the order they claim text: secrets before PII,
/// and an earlier detector wins an overlap.
const BUILTINS: [(Builtin, &str, &str); 18] = [
    (Builtin::Aws, "secrets", "aws_access_key"),
    (Builtin::AwsSecret, "secrets", "aws_secret_key"),
    (Builtin::Github, "secrets", "github_token"),
    (Builtin::Slack, "secrets", "slack_token"),
    (Builtin::Stripe, "secrets", "stripe_key"),
    (Builtin::Google, "secrets", "google_api_key"),
    (Builtin::Anthropic, "secrets", "anthropic_key"),
    (Builtin::Openai, "secrets", "openai_key"),
    (Builtin::PrivateKey, "secrets", "private_key"),
    (Builtin::Jwt, "secrets", "jwt"),
    (Builtin::Password, "secrets", "password"),
    (Builtin::Secret, "secrets", "secret_assignment"),
    (Builtin::Email, "pii", "email"),
    (Builtin::Card, "pii", "card"),
    (Builtin::Ssn, "pii", "ssn"),
    (Builtin::Iban, "pii", "iban"),
    (Builtin::Phone, "pii", "phone"),
    (Builtin::Ip, "pii", "ip_address"),
];

/// Word-start prefixes that anchor the key matchers.
fn prefixes(kind: Builtin) -> &'static [&'static str] {
    match kind {
        Builtin::Aws => &["AKIA", "ASIA"],
        Builtin::Github => &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        Builtin::Slack => &["xox"],
        Builtin::Stripe => &["sk_live_", "rk_live_"],
        Builtin::Google => &["AIza"],
        Builtin::Anthropic => &["sk-ant-"],
        Builtin::Openai => &["sk-"],
        Builtin::Jwt => &["eyJ"],
        _ => &[],
    }
}

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
}

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

/// Words right before a number (or before its `number`, `no`) that make it
/// an identifier, not a phone or card number.
const IDENTIFIER_WORDS: &[&str] = &[
    "count",
    "total",
    "sum",
    "size",
    "length",
    "len",
    "amount",
    "max",
    "min",
    "timestamp",
    "ts",
    "seed",
    "port",
    "pid",
    "uid",
    "order",
    "invoice",
    "id",
    "ref",
    "reference",
    "ticket",
    "account",
    "acct",
    "sku",
    "serial",
    "tracking",
    "isbn",
    "ean",
    "upc",
    "gtin",
    "item",
    "case",
    "transaction",
    "txn",
    "po",
    "build",
];

/// The most bytes after a match a detector reads to keep or drop it (a
/// phone's `identifier` check): a stream holds a match until they came.
pub const RIGHT_CONTEXT: usize = 8;

/// Operators around an operand in code (not `<`, `>`, `|`, `&`: tags,
/// arrows, tables and prose have them around phone numbers).
fn operator(c: u8) -> bool {
    matches!(c, b'=' | b'*' | b'/' | b'%' | b'^')
}

/// A number at `start..end` that is an operand in code (`id = 4795295414`,
/// `x / 23`) or named an identifier (`order 4795295414`, `EAN ...`); it
/// looks at a few bytes only.
fn identifier(b: &[u8], start: usize, end: usize) -> bool {
    let window = b.get(start.saturating_sub(24)..start).unwrap_or(&[]);
    // Before it, an operand then an operator (`x * `, not a `* ` bullet;
    // not `=`: `phone=5093828416` is as common as `id = 4795295414`, and
    // the name tells them apart).
    let mut before = window.iter().rev().take(8).filter(|c| **c != b' ');
    let prev = before
        .next()
        .filter(|c| **c != b'=' && operator(**c))
        .and(before.next())
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b')' | b']' | b'_'));
    // After it, an operator then a number (`/ 23`, not `/ fax`).
    let mut after = b
        .get(end..)
        .unwrap_or(&[])
        .iter()
        .take(RIGHT_CONTEXT)
        .filter(|c| **c != b' ');
    let next = after
        .next()
        .filter(|c| operator(**c))
        .and(after.next())
        .is_some_and(u8::is_ascii_digit);
    let mut words = window
        .rsplit(|c| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    let is = |w: Option<&[u8]>, list: &[&str]| {
        w.is_some_and(|w| list.iter().any(|x| w.eq_ignore_ascii_case(x.as_bytes())))
    };
    let mut last = words.next();
    if is(last, &["number", "no", "nr", "num"]) {
        last = words.next();
    }
    prev || next || is(last, IDENTIFIER_WORDS)
}

/// What is around a match rules out some kinds: `version 1.2.3.4`; card
/// digits after a `+` (a phone); a card or national phone number inside an
/// identifier (`INV-2024-000123`, a UUID), after `#`, or in code or named
/// an identifier (`identifier`; for cards only unseparated digits).
fn context(kind: Builtin, text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let before = start.checked_sub(1).map(|p| byte(b, p));
    match kind {
        Builtin::Ip => !version_number(text, start),
        Builtin::Card => {
            let bare = b
                .get(start..end)
                .is_some_and(|m| m.iter().all(u8::is_ascii_digit));
            before != Some(b'+') && !(bare && identifier(b, start, end))
        }
        Builtin::Phone if !matches!(byte(b, start), b'+' | b'(') => {
            !(matches!(before, Some(b'#' | b'-' | b'.' | b'/')) || identifier(b, start, end))
        }
        _ => true,
    }
}

/// The value of an assignment match (`name = "value"`): after the first
/// `:`/`=`, spaces and one quote aside.
fn assigned(s: &str) -> &str {
    s.split_once(['=', ':'])
        .map_or("", |(_, v)| v)
        .trim()
        .trim_start_matches(['"', '\''])
}

/// Shannon entropy of at least this many bits a byte: random keys of 16 or
/// more characters have about 3.5 to 4.5, words and repeats far less.
const MIN_ENTROPY: f32 = 3.0;

/// Looks like a generated secret: letters and digits, no template or
/// expression syntax, no placeholder word, and high entropy.
fn high_entropy(v: &str) -> bool {
    // As for placeholders, the first 256 bytes tell.
    let v = v.get(..v.floor_char_boundary(256)).unwrap_or(v);
    let b = v.as_bytes();
    let syntax = b.iter().any(|c| {
        matches!(
            c,
            b'$' | b'<' | b'>' | b'{' | b'}' | b'(' | b')' | b'[' | b']' | b'*' | b'%'
        )
    });
    if syntax
        || placeholder(v)
        || !b.iter().any(u8::is_ascii_digit)
        || !b.iter().any(u8::is_ascii_alphabetic)
    {
        return false;
    }
    let mut counts = [0u32; 256];
    for &c in b {
        if let Some(n) = counts.get_mut(usize::from(c)) {
            *n += 1;
        }
    }
    let len = b.len() as f32;
    let bits: f32 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f32 / len;
            -p * p.log2()
        })
        .sum();
    bits >= MIN_ENTROPY
}

/// Placeholders, not secrets: `<password>`, `[REDACTED]`, `********`,
/// `${DB_PASSWORD}`, `YOUR_API_KEY`.
fn placeholder(v: &str) -> bool {
    // The first 256 bytes tell: a long value costs no more.
    let v = v.get(..v.floor_char_boundary(256)).unwrap_or(v);
    let b = v.as_bytes();
    (v.starts_with('<') && v.ends_with('>'))
        || (v.starts_with('[') && v.ends_with(']'))
        || b.iter().all(|c| matches!(c, b'*' | b'x' | b'X' | b'.'))
        || v.starts_with('$')
        || v.starts_with('{')
        || ["password", "changeme"]
            .iter()
            .any(|w| v.eq_ignore_ascii_case(w))
        || [
            "your",
            "example",
            "xxxx",
            "placeholder",
            "redacted",
            "dummy",
            "sample",
            "insert",
            "replace",
        ]
        .iter()
        .any(|w| {
            b.windows(w.len())
                .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
        })
}

fn password(s: &str) -> bool {
    let value = assigned(s);
    value.len() >= 6 && !placeholder(value)
}

fn validate(kind: Builtin, m: &str) -> bool {
    match kind {
        Builtin::Card => card_number(m),
        Builtin::Ssn => ssn(m),
        Builtin::Iban => iban(m),
        Builtin::Phone => phone(m),
        Builtin::Ip => ipv4(m),
        Builtin::Password => password(m),
        Builtin::AwsSecret | Builtin::Secret => high_entropy(assigned(m)),
        Builtin::Openai => !m.starts_with("sk-ant-"),
        _ => true,
    }
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

// Byte classes of the patterns.
#[inline]
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
/// `[A-Za-z0-9_-]`
#[inline]
fn key_char(b: u8) -> bool {
    is_word(b) || b == b'-'
}
/// `[A-Za-z0-9-]`
#[inline]
fn domain_char(b: u8) -> bool {
    alnum(b) || b == b'-'
}
/// `[A-Za-z0-9._%+-]`
#[inline]
fn local_char(b: u8) -> bool {
    alnum(b) || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}
/// `[A-Z0-9]`
#[inline]
fn upper_or_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
#[inline]
fn digit_at(b: &[u8], i: usize) -> bool {
    byte(b, i).is_ascii_digit()
}
/// `n` digits at `i`.
#[inline]
fn digits_at(b: &[u8], i: usize, n: usize) -> bool {
    b.get(i..i + n)
        .is_some_and(|w| w.iter().all(u8::is_ascii_digit))
}
/// `[ ./_-]`
#[inline]
fn phone_sep(b: u8) -> bool {
    matches!(b, b' ' | b'.' | b'/' | b'_' | b'-')
}

/// Remembers the last class run measured, so anchors inside one long run
/// (`eyJ-eyJ-eyJ-...`) do not measure it again each.
#[derive(Default)]
struct RunCache {
    start: usize,
    end: usize,
}

impl RunCache {
    fn end(&mut self, b: &[u8], from: usize, class: fn(u8) -> bool) -> usize {
        if self.start <= from && from <= self.end && self.end > 0 {
            return self.end;
        }
        self.start = from;
        self.end = run_end(b, from, class);
        self.end
    }
}

/// Caches the matchers share within one scan.
#[derive(Default)]
struct Caches {
    jwt: [RunCache; 3],
    slack: RunCache,
    /// For the slack pattern: the run end, the lowest position checked
    /// below it, and the highest word boundary found there.
    slack_boundary: (usize, usize, Option<usize>),
}

/// `\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`
fn aws(b: &[u8], s: usize) -> Option<usize> {
    let ok = boundary(b, s)
        && (starts_with(b, s, b"AKIA", false) || starts_with(b, s, b"ASIA", false))
        && b.get(s + 4..s + 20)
            .is_some_and(|w| w.iter().all(|c| upper_or_digit(*c)))
        && boundary(b, s + 20);
    ok.then_some(s + 20)
}

/// `\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b`
fn github(b: &[u8], s: usize) -> Option<usize> {
    if !boundary(b, s) {
        return None;
    }
    if starts_with(b, s, b"gh", false)
        && matches!(byte(b, s + 2), b'p' | b'o' | b'u' | b's' | b'r')
        && byte(b, s + 3) == b'_'
    {
        let r = run_end(b, s + 4, alnum);
        // Fewer characters leave a letter next: no boundary there either.
        if r - (s + 4) >= 36 && !is_word(byte(b, r)) {
            return Some(r);
        }
    }
    if starts_with(b, s, b"github_pat_", false) {
        let r = run_end(b, s + 11, is_word);
        if r - (s + 11) >= 22 {
            return Some(r);
        }
    }
    None
}

/// `\bxox[abposr]-[A-Za-z0-9-]{10,}\b`: the longest run that ends at a
/// word boundary.
fn slack(b: &[u8], s: usize, c: &mut Caches) -> Option<usize> {
    if !(boundary(b, s)
        && starts_with(b, s, b"xox", false)
        && matches!(byte(b, s + 3), b'a' | b'b' | b'p' | b'o' | b's' | b'r')
        && byte(b, s + 4) == b'-')
    {
        return None;
    }
    let from = s + 5;
    let r = c.slack.end(b, from, domain_char);
    let lowest = from + 10;
    if r < lowest {
        return None;
    }
    // The highest boundary at or below `r` is the same for every anchor in
    // this run: search down once, and only below what was searched.
    let (cached_r, checked, found) = c.slack_boundary;
    let (mut e, mut best) = if cached_r == r && checked <= r {
        (checked, found)
    } else {
        (r + 1, None)
    };
    while best.is_none() && e > lowest {
        e -= 1;
        if boundary(b, e) {
            best = Some(e);
        }
    }
    c.slack_boundary = (r, e, best);
    best.filter(|x| *x >= lowest)
}

/// `\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b`
fn stripe(b: &[u8], s: usize) -> Option<usize> {
    if !(boundary(b, s)
        && (starts_with(b, s, b"sk_live_", false) || starts_with(b, s, b"rk_live_", false)))
    {
        return None;
    }
    let r = run_end(b, s + 8, alnum);
    (r - (s + 8) >= 16 && !is_word(byte(b, r))).then_some(r)
}

/// `\bAIza[0-9A-Za-z_-]{35}\b`
fn google(b: &[u8], s: usize) -> Option<usize> {
    let ok = boundary(b, s)
        && starts_with(b, s, b"AIza", false)
        && b.get(s + 4..s + 39)
            .is_some_and(|w| w.iter().all(|c| key_char(*c)))
        && boundary(b, s + 39);
    ok.then_some(s + 39)
}

/// `\bsk-ant-[A-Za-z0-9_-]{20,}`
fn anthropic(b: &[u8], s: usize) -> Option<usize> {
    if !(boundary(b, s) && starts_with(b, s, b"sk-ant-", false)) {
        return None;
    }
    let r = run_end(b, s + 7, key_char);
    (r - (s + 7) >= 20).then_some(r)
}

/// `\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}`: the optional prefix is
/// made of the same characters, so the match is the run after `sk-`.
fn openai(b: &[u8], s: usize) -> Option<usize> {
    if !(boundary(b, s) && starts_with(b, s, b"sk-", false)) {
        return None;
    }
    let r = run_end(b, s + 3, key_char);
    (r - (s + 3) >= 20).then_some(r)
}

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
fn private_key(text: &str, s: usize) -> Option<usize> {
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

/// `\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`
fn jwt(b: &[u8], s: usize, c: &mut Caches) -> Option<usize> {
    if !(boundary(b, s) && starts_with(b, s, b"eyJ", false)) {
        return None;
    }
    let [c1, c2, c3] = &mut c.jwt;
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

/// The start of an assignment to a name of `group` (see `PATTERNS`:
/// `(?i)\b[a-z0-9_]*(?:NAMES)["']?\s*[:=]\s*["']?`) for the `:`/`=` at `c`,
/// starting at or after `at`, and where its value starts. The name must end
/// right before the `:`/`=` (whitespace, then a quote aside) and the word
/// before it is part of the match; the match is unique.
fn assignment(b: &[u8], c: usize, at: usize, group: Named) -> Option<(usize, usize)> {
    let name = credential_name(b, c, Some(group))?;
    let word = b
        .get(..name)
        .map_or(0, |w| w.iter().rev().take_while(|x| is_word(**x)).count());
    let start = name - word;
    if start < at || !boundary(b, start) {
        return None;
    }
    let mut v = run_end(b, c + 1, is_space);
    if matches!(byte(b, v), b'"' | b'\'') {
        v += 1;
    }
    Some((start, v))
}

/// An assignment (`password`, `secret_assignment`) whose value is at least
/// `min` characters of `[^\s"',;]`.
fn assignment_at(
    b: &[u8],
    c: usize,
    at: usize,
    group: Named,
    min: usize,
) -> Option<(usize, usize)> {
    let (start, v) = assignment(b, c, at, group)?;
    let value = |x: u8| !is_space(x) && !matches!(x, b'"' | b'\'' | b',' | b';');
    let end = run_end(b, v, value);
    // Characters, not bytes.
    let chars = b.get(v..end).map_or(0, |w| {
        w.iter().filter(|x| (**x & 0xC0) != 0x80).take(min).count()
    });
    (chars >= min).then_some((start, end))
}

/// An AWS secret access key assignment: a value of exactly 40
/// `[A-Za-z0-9/+]` (the first 40 if longer).
fn aws_secret_at(b: &[u8], c: usize, at: usize) -> Option<(usize, usize)> {
    let (start, v) = assignment(b, c, at, Named::AwsSecret)?;
    let key = |x: u8| alnum(x) || matches!(x, b'/' | b'+');
    b.get(v..v + 40)
        .is_some_and(|w| w.iter().all(|x| key(*x)))
        .then_some((start, v + 40))
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

/// `\b\d{3}-\d{2}-\d{4}\b`
fn ssn_at(b: &[u8], s: usize) -> Option<usize> {
    dashed_digits(b, s, &[3, 2, 4])
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

/// `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`, with the
/// regex's backtracking order: most groups first, then the tail.
fn iban_at(b: &[u8], s: usize) -> Option<usize> {
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
            .is_some_and(|m| phone(m) && context(Builtin::Phone, text, s, *e))
    });
    valid.ok_or(chain.end.filter(|e| *e > s).unwrap_or(s + 1))
}

/// The compiled detectors.
pub struct Detectors {
    custom: Vec<(Arc<str>, Regex)>,
    /// Kind names by detector index (built-ins, then custom).
    kinds: Vec<Kind>,
    prefixes: PrefixTable,
}

impl Detectors {
    pub fn new(custom: &[(String, String)]) -> Result<Detectors, String> {
        let custom: Vec<(Arc<str>, Regex)> = custom
            .iter()
            .map(|(name, re)| {
                Regex::new(re)
                    .map(|r| (Arc::from(name.as_str()), r))
                    .map_err(|e| format!("custom pattern `{name}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kinds = BUILTINS
            .iter()
            .map(|(_, _, k)| Kind::Builtin(k))
            .chain(custom.iter().map(|(n, _)| Kind::Custom(n.clone())))
            .collect();
        let prefixes = prefix_table(
            BUILTINS
                .iter()
                .enumerate()
                .flat_map(|(i, (b, _, _))| prefixes(*b).iter().map(move |p| (*p, i))),
        );
        Ok(Detectors {
            custom,
            kinds,
            prefixes,
        })
    }

    /// PII, secrets and custom patterns in `text`, sorted and without
    /// overlaps (the earlier-listed detector wins: secrets before PII, then
    /// custom patterns).
    pub fn scan(&self, text: &str, wanted: impl Fn(&str, &str) -> bool) -> Vec<Finding> {
        let mut found: Vec<Finding> = Vec::new();
        let anchors = Anchors::find(text, &self.prefixes, BUILTINS.len());
        // Most stream deltas and short texts hold no anchor at all.
        if self.custom.is_empty() && anchors.none() {
            return found;
        }
        let mut fresh: Vec<Finding> = Vec::new();
        let mut caches = Caches::default();
        for (id, (kind, guardrail, name)) in BUILTINS.iter().enumerate() {
            if !wanted(guardrail, name) {
                continue;
            }
            let Some(kind_name) = self.kinds.get(id) else {
                continue;
            };
            let mut cursor = 0;
            matches(*kind, text, &anchors, id, &mut caches, &mut |start, end| {
                let m = text.get(start..end).unwrap_or("");
                if validate(*kind, m)
                    && context(*kind, text, start, end)
                    && !overlaps(&found, &mut cursor, start, end)
                {
                    fresh.push(Finding {
                        guardrail,
                        kind: kind_name.clone(),
                        start,
                        end,
                        detector: id,
                    });
                }
            });
            merge(&mut found, &mut fresh);
        }
        for (i, (name, regex)) in self.custom.iter().enumerate() {
            if !wanted("custom", name) {
                continue;
            }
            let mut cursor = 0;
            for m in regex.find_iter(text) {
                if !overlaps(&found, &mut cursor, m.start(), m.end()) {
                    fresh.push(Finding {
                        guardrail: "custom",
                        kind: Kind::Custom(name.clone()),
                        start: m.start(),
                        end: m.end(),
                        detector: BUILTINS.len() + i,
                    });
                }
            }
            merge(&mut found, &mut fresh);
        }
        found
    }
}

/// Calls `emit` with every match of built-in `kind` in `text`, in order and
/// not overlapping, as `find_iter` with its regex would.
fn matches(
    kind: Builtin,
    text: &str,
    a: &Anchors,
    id: usize,
    caches: &mut Caches,
    emit: &mut dyn FnMut(usize, usize),
) {
    let b = text.as_bytes();
    let mut at = 0;
    let mut found = |m: Option<(usize, usize)>, at: &mut usize| {
        if let Some((s, e)) = m {
            emit(s, e);
            *at = e;
        }
    };
    match kind {
        Builtin::Email => {
            for &x in &a.ats {
                if x > at {
                    found(email(b, x, at), &mut at);
                }
            }
        }
        Builtin::Password | Builtin::AwsSecret | Builtin::Secret => {
            for &c in &a.assignments {
                if c > at {
                    let m = match kind {
                        Builtin::Password => assignment_at(b, c, at, Named::Password, 6),
                        Builtin::AwsSecret => aws_secret_at(b, c, at),
                        _ => assignment_at(b, c, at, Named::Secret, 16),
                    };
                    found(m, &mut at);
                }
            }
        }
        Builtin::PrivateKey => {
            for &s in &a.private_keys {
                if s >= at {
                    found(private_key(text, s).map(|e| (s, e)), &mut at);
                }
            }
        }
        Builtin::Iban => {
            for &s in &a.ibans {
                if s >= at {
                    found(iban_at(b, s).map(|e| (s, e)), &mut at);
                }
            }
        }
        Builtin::Card | Builtin::Ssn | Builtin::Phone | Builtin::Ip => {
            // What a run must hold for the kind to match in it.
            let possible = |r: &NumberRun| match kind {
                Builtin::Card => r.chain >= 12,
                Builtin::Ssn => r.digits >= 9 && r.dashed,
                Builtin::Phone => r.digits >= 8,
                _ => r.dotted,
            };
            for run in a.numbers.iter().filter(|r| possible(r)) {
                let from = run.start.max(at);
                match kind {
                    Builtin::Card => {
                        cards(b, from, run.end, &mut |s, e| found(Some((s, e)), &mut at))
                    }
                    _ => separated(kind, text, from, run.end, &mut |s, e| {
                        found(Some((s, e)), &mut at)
                    }),
                }
            }
        }
        _ => {
            for &s in a.prefixed(id) {
                if s < at {
                    continue;
                }
                let m = match kind {
                    Builtin::Aws => aws(b, s),
                    Builtin::Github => github(b, s),
                    Builtin::Slack => slack(b, s, caches),
                    Builtin::Stripe => stripe(b, s),
                    Builtin::Google => google(b, s),
                    Builtin::Anthropic => anthropic(b, s),
                    Builtin::Openai => openai(b, s),
                    _ => jwt(b, s, caches),
                };
                found(m.map(|e| (s, e)), &mut at);
            }
        }
    }
}

/// Cards in `b[from..to]` (a number run): from each digit after a non-word
/// byte, skipping chains too short to hold one.
fn cards(b: &[u8], from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
    let mut i = from;
    while i < to {
        let starts = digit_at(b, i) && !i.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
        if !starts {
            i += 1;
            continue;
        }
        match card(b, i) {
            Ok(Some(e)) => {
                emit(i, e);
                i = e;
            }
            Ok(None) => i += 1,
            // Too few digits from here: none from inside the chain either.
            Err(chain_end) => i = chain_end.max(i + 1),
        }
    }
}

/// SSNs, phones and IP addresses in `b[from..to]` (a number run), from the
/// few places one can start: an SSN has a `-` three digits in, a phone
/// starts with `+`, `(` or a digit after a non-word byte, an IP address has
/// a `.` after its first one to three digits. One cheap test a byte.
fn separated(
    kind: Builtin,
    text: &str,
    from: usize,
    to: usize,
    emit: &mut dyn FnMut(usize, usize),
) {
    let b = text.as_bytes();
    let mut chain = PhoneChain::default();
    let word_before = |s: usize| s.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
    // Where the search goes on: the start, then the end of each match.
    let mut at = from;
    let mut s = from;
    while s < to {
        let c = byte(b, s);
        let m = match kind {
            Builtin::Ip => {
                if c == b'.' {
                    // The one to three digits before the dot start it.
                    let digits = b.get(..s).map_or(0, |w| {
                        w.iter()
                            .rev()
                            .take(4)
                            .take_while(|c| c.is_ascii_digit())
                            .count()
                    });
                    let start = s - digits;
                    if (1..=3).contains(&digits) && start >= at && !word_before(start) {
                        ip(b, start).map(|e| (start, e))
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            Builtin::Ssn => (byte(b, s + 3) == b'-' && c.is_ascii_digit() && !word_before(s))
                .then(|| ssn_at(b, s))
                .flatten()
                .map(|e| (s, e)),
            _ => {
                if c == b'+' || c == b'(' || (c.is_ascii_digit() && !word_before(s)) {
                    match phone_at(text, s, &mut chain) {
                        Ok(e) => Some((s, e)),
                        Err(next) => {
                            s = next.max(s + 1);
                            continue;
                        }
                    }
                } else {
                    None
                }
            }
        };
        match m {
            Some((start, e)) => {
                emit(start, e);
                s = e;
                at = e;
            }
            None => s += 1,
        }
    }
}

/// Whether `[start, end)` overlaps a finding in `found` (sorted, not
/// overlapping); `cursor` moves forward only, as the candidates' starts do.
fn overlaps(found: &[Finding], cursor: &mut usize, start: usize, end: usize) -> bool {
    while found.get(*cursor).is_some_and(|f| f.end <= start) {
        *cursor += 1;
    }
    found
        .get(*cursor)
        .is_some_and(|f| start < f.end && f.start < end)
}

/// Merges `fresh` (sorted) into `found` (sorted), the older first on ties.
fn merge(found: &mut Vec<Finding>, fresh: &mut Vec<Finding>) {
    if fresh.is_empty() {
        return;
    }
    if found.is_empty() {
        std::mem::swap(found, fresh);
        return;
    }
    let mut out = Vec::with_capacity(found.len() + fresh.len());
    let mut old = std::mem::take(found).into_iter().peekable();
    let mut new = fresh.drain(..).peekable();
    loop {
        let take_new = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => n.start < o.start,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => break,
        };
        let next = if take_new { new.next() } else { old.next() };
        out.extend(next);
    }
    *found = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<String> {
        let d = Detectors::new(&[("ticket".into(), r"TCK-\d{6}".into())]).unwrap();
        d.scan(text, |_, _| true)
            .into_iter()
            .map(|f| f.kind.to_string())
            .collect()
    }

    #[test]
    fn pii_with_validation() {
        assert_eq!(kinds("mail jane.doe@example.co.uk now"), ["email"]);
        assert_eq!(kinds("card 4111 1111 1111 1111 ok"), ["card"]);
        assert!(kinds("id 4111111111111111x").is_empty(), "no word boundary");
        assert!(kinds("order 4111 1111 1111 1112").is_empty(), "fails Luhn");
        assert_eq!(kinds("ssn 123-45-6789"), ["ssn"]);
        assert!(kinds("id 000-12-3456").is_empty());
        assert_eq!(kinds("IBAN GB82 WEST 1234 5698 7654 32 please"), ["iban"]);
        assert!(
            kinds("GB82 WEST 1234 5698 7654 33").is_empty(),
            "fails mod-97"
        );
        assert_eq!(kinds("call +44 20 7946 0958 today"), ["phone"]);
        assert_eq!(kinds("call (415) 555-0132"), ["phone"]);
        assert_eq!(kinds("from 192.168.1.20"), ["ip_address"]);
        assert!(kinds("version 1.2.300.4").is_empty());
        assert_eq!(kinds("see TCK-123456"), ["ticket"]);
    }

    #[test]
    fn phones_in_national_and_international_forms() {
        for phone in [
            "5093828416",
            "(0117) 496 0767",
            "07 33 21 02 81",
            "592-613-3671x41062",
            "555-123-4567 ext. 89",
            "030/1234567",
            "360_948_4223",
            "+44(0)115 4960914",
            "+90(040)860-7462",
            "(+30) 2439 150008",
            "8 (495) 123-45-67",
            "13812345678",
            "138 1234 5678",
            "0049 30 1234567",
            "+62 (070) 669-0743",
            "98765 43210",
        ] {
            assert_eq!(kinds(&format!("call {phone} now")), ["phone"], "{phone}");
        }
        for other in [
            "at 1700000000 (a unix time)",
            "on 05.01.2024 10:15",
            "ISBN 0-306-40615-2",
            "id = 4795295414",
            "order 4795295414",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "INV-2024-000123",
            "pop. 12 345 678 901",
            "1 234 567 890 units",
        ] {
            assert!(kinds(other).is_empty(), "{other}");
        }
        assert_eq!(kinds("from 10.100.200.123"), ["ip_address"]);
        // The longest valid prefix of a chain of groups; none from inside
        // a chain without one.
        assert_eq!(
            kinds("+44 20 7946 0958 10.0.0.7 192.168.1.20"),
            ["phone", "ip_address", "ip_address"]
        );
        assert_eq!(kinds("5093828416 5093828417 x12"), ["phone", "phone"]);
        assert!(kinds("1234 5698 7654 3321 9999").is_empty());
    }

    #[test]
    fn twelve_digit_maestro_and_card_grouping() {
        assert_eq!(kinds("maestro 5020 9553 7218"), ["card"]);
        assert_eq!(kinds("maestro 583974310836"), ["card"]);
        assert!(kinds("isbn 978-1-932770-74-2 ok").is_empty());
        assert!(kinds("GET /items/37782904 200 4199 bytes").is_empty());
    }

    #[test]
    fn secrets() {
        assert_eq!(kinds("AKIAIOSFODNN7EXAMPLE"), ["aws_access_key"]);
        assert_eq!(
            kinds("token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
            ["github_token"]
        );
        assert_eq!(
            kinds("sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
            ["anthropic_key"]
        );
        assert_eq!(
            kinds("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx1234"),
            ["openai_key"]
        );
        assert_eq!(kinds("password = hunter2hunter2"), ["password"]);
        assert!(kinds("password = <password>").is_empty());
        // "gh" inside the token once hid it from the search.
        assert_eq!(
            kinds("github_pat_11ABCDEFG0123456789_abcdefghij"),
            ["github_token"]
        );
        assert!(kinds("api_key: [REDACTED], pwd=********").is_empty());
        assert_eq!(
            kinds("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"),
            ["private_key"]
        );
        assert_eq!(kinds("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"), ["jwt"]);
        assert_eq!(kinds("xoxb-1234567890-abcdefghij"), ["slack_token"]);
        assert_eq!(
            kinds("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY0123456KEY"),
            ["aws_secret_key"]
        );
        assert_eq!(
            kinds(r#"{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY0123456KEY"}"#),
            ["aws_secret_key"]
        );
        assert_eq!(
            kinds("API_TOKEN=9f8e7d6c5b4a39281706f5e4"),
            ["secret_assignment"]
        );
        assert_eq!(kinds(r#""password": "hunter2hunter2""#), ["password"]);
        for benign in [
            "token_count = 1234567890123456",
            "api_token = settings.API_TOKEN_FROM_VAULT",
            "AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY}",
            "client_secret: xxxxxxxxxxxxxxxxxxxx",
            "api_key = \"YOUR_API_KEY\"",
            "auth: required",
        ] {
            assert!(kinds(benign).is_empty(), "{benign}");
        }
        assert_eq!(kinds("sk_live_abcdefghijklmnop1234"), ["stripe_key"]);
        assert_eq!(
            kinds("AIzaSyA-1234567890abcdefghijklmnopqrstu"),
            ["google_api_key"]
        );
    }
}

/// The regexes the matchers implement, and a scan that runs them over the
/// whole text: the reference the matchers are checked against.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;

    pub const PATTERNS: [&str; 18] = [
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        r#"(?i)\b[a-z0-9_]*(?:secret_?access_?key|aws_?secret_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}"#,
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
        r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b",
        r"\bAIza[0-9A-Za-z_-]{35}\b",
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
        r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r#"(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)["']?\s*[:=]\s*["']?[^\s"',;]{6,}"#,
        r#"(?i)\b[a-z0-9_]*(?:token|secrets|secret_?key|access_?key|private_?key|credentials?|auth)["']?\s*[:=]\s*["']?[^\s"',;]{16,}"#,
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        r"\b(?:\d[ -]?){11,18}\d\b",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        r"(?:\+|\(\+?|\b)\d+(?:(?:\)[ ./_-]?\(?|[ ./_-]\(?|\()\d+)*(?: ?(?:[eE]xt\.?|x|#) ?\d{1,6})?\b",
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    ];

    pub struct Reference(Vec<Regex>);

    /// Phones: from each start where the regex matches, the longest prefix
    /// of its match ending at a group end a non-word byte follows (before
    /// the extension) or at the match's end, that validates; the search
    /// goes on after it, or after the match (before its extension) if none
    /// does.
    fn phones(
        regex: &Regex,
        text: &str,
        name: &'static str,
        found: &mut Vec<(&'static str, usize, usize)>,
    ) {
        let b = text.as_bytes();
        let mut at = 0;
        while let Some(m) = regex.find_at(text, at) {
            let s = m.start();
            let ext = m
                .as_str()
                .find(['x', 'e', 'E', '#'])
                .map_or(m.end(), |p| s + m.as_str()[..p].trim_end().len());
            let mut ends: Vec<usize> = (s + 1..=ext)
                .filter(|e| b[e - 1].is_ascii_digit() && !is_word(byte(b, *e)))
                .collect();
            ends.push(m.end());
            let phone_end = ends
                .into_iter()
                .rev()
                .find(|e| phone(&text[s..*e]) && context(Builtin::Phone, text, s, *e));
            match phone_end {
                Some(e) => {
                    if !found.iter().any(|f| s < f.2 && f.1 < e) {
                        found.push((name, s, e));
                    }
                    at = e;
                }
                None => at = ext,
            }
        }
    }

    impl Reference {
        pub fn new() -> Reference {
            Reference(PATTERNS.iter().map(|p| Regex::new(p).unwrap()).collect())
        }

        /// (kind, start, end) of each finding, sorted.
        pub fn scan(&self, text: &str) -> Vec<(&'static str, usize, usize)> {
            let mut found: Vec<(&'static str, usize, usize)> = Vec::new();
            for ((kind, _, name), regex) in BUILTINS.iter().zip(&self.0) {
                if *kind == Builtin::Phone {
                    phones(regex, text, name, &mut found);
                    continue;
                }
                let mut at = 0;
                while let Some(m) = regex.find_at(text, at) {
                    let (start, end) = (m.start(), m.end());
                    if end == start {
                        break;
                    }
                    at = end;
                    let overlaps = found.iter().any(|f| start < f.2 && f.1 < end);
                    if !overlaps && validate(*kind, m.as_str()) && context(*kind, text, start, end)
                    {
                        found.push((name, start, end));
                    }
                }
            }
            found.sort_by_key(|f| f.1);
            found
        }
    }
}
