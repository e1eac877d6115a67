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
    Anchors, NumberRun, PrefixTable,
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
    Github,
    Slack,
    Stripe,
    Google,
    Anthropic,
    Openai,
    PrivateKey,
    Jwt,
    Password,
    Email,
    Card,
    Ssn,
    Iban,
    Phone,
    Ip,
}

/// The built-in detectors in the order they claim text: secrets before PII,
/// and an earlier detector wins an overlap.
const BUILTINS: [(Builtin, &str, &str); 16] = [
    (Builtin::Aws, "secrets", "aws_access_key"),
    (Builtin::Github, "secrets", "github_token"),
    (Builtin::Slack, "secrets", "slack_token"),
    (Builtin::Stripe, "secrets", "stripe_key"),
    (Builtin::Google, "secrets", "google_api_key"),
    (Builtin::Anthropic, "secrets", "anthropic_key"),
    (Builtin::Openai, "secrets", "openai_key"),
    (Builtin::PrivateKey, "secrets", "private_key"),
    (Builtin::Jwt, "secrets", "jwt"),
    (Builtin::Password, "secrets", "password"),
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

/// 13 to 19 digits, not all the same, passing the Luhn check; one pass.
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
    (13..=19).contains(&n) && !same && sum.is_multiple_of(10)
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

fn phone(s: &str) -> bool {
    (8..=15).contains(&digits(s).count())
}

fn password(s: &str) -> bool {
    let value = s
        .rsplit(['=', ':'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\'']);
    // Placeholders, not secrets: `<password>`, `[REDACTED]`, `********`.
    let placeholder = (value.starts_with('<') && value.ends_with('>'))
        || (value.starts_with('[') && value.ends_with(']'))
        || value
            .bytes()
            .all(|b| matches!(b, b'*' | b'x' | b'X' | b'.'));
    value.len() >= 6
        && !placeholder
        && !["password", "changeme", "example", "redacted"]
            .iter()
            .any(|w| value.eq_ignore_ascii_case(w))
        && !value.starts_with('$')
        && !value.starts_with('{')
}

fn validate(kind: Builtin, m: &str) -> bool {
    match kind {
        Builtin::Card => luhn(m),
        Builtin::Ssn => ssn(m),
        Builtin::Iban => iban(m),
        Builtin::Phone => phone(m),
        Builtin::Ip => ipv4(m),
        Builtin::Password => password(m),
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
/// `[ .-]`
#[inline]
fn phone_sep(b: u8) -> bool {
    matches!(b, b' ' | b'.' | b'-')
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

/// `(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)\s*[:=]\s*["']?[^\s"',;]{6,}`
/// for the `:`/`=` at `c`, starting at or after `at`. The name must end
/// right before the `:`/`=` (whitespace aside) and the word before it is
/// part of the match; at most one name fits, so the match is unique.
fn password_at(b: &[u8], c: usize, at: usize) -> Option<(usize, usize)> {
    let (name, _) = credential_name(b, c)?;
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
    let value = |x: u8| !is_space(x) && !matches!(x, b'"' | b'\'' | b',' | b';');
    let end = run_end(b, v, value);
    // Six characters, not bytes.
    let chars = b.get(v..end).map_or(0, |w| {
        w.iter().filter(|x| (**x & 0xC0) != 0x80).take(6).count()
    });
    (chars >= 6).then_some((start, end))
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

/// `\b(?:\d[ -]?){12,18}\d\b` from the digit at `s`: digits joined by at
/// most one space or hyphen; the longest of 13 to 19 that ends at a word
/// boundary. `Err`: the chain from `s` has fewer than 13 digits, and ends
/// there.
fn card(b: &[u8], s: usize) -> Result<Option<usize>, usize> {
    let mut n = 1;
    let mut p = s;
    let mut best = None;
    loop {
        if n >= 13 && !is_word(byte(b, p + 1)) {
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
    if n < 13 {
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

/// Phone, the first alternative: `\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}\b`,
/// searched depth-first in the regex's order (greedy counts first), with
/// failed states remembered so no state is tried twice.
fn phone_plus(b: &[u8], s: usize) -> Option<usize> {
    // Six digits at least (country, first group, two more groups) among
    // the 36 bytes the pattern can reach: most `+` signs fail here.
    let digits = b
        .get(s + 1..)
        .unwrap_or(&[])
        .iter()
        .take(36)
        .take_while(|c| c.is_ascii_digit() || matches!(c, b' ' | b'.' | b'-' | b'(' | b')'))
        .filter(|c| c.is_ascii_digit())
        .count();
    if digits < 6 {
        return None;
    }
    // Failed states by groups matched, a bit per offset from `s` (the
    // pattern reaches at most 36 bytes).
    let mut failed = [0u64; 5];
    fn groups(b: &[u8], s: usize, p: usize, k: usize, failed: &mut [u64; 5]) -> Option<usize> {
        let bit = 1u64.checked_shl(u32::try_from(p - s).unwrap_or(u32::MAX))?;
        if failed.get(k).is_none_or(|f| f & bit != 0) {
            return None;
        }
        if k < 4 {
            let seps = if phone_sep(byte(b, p)) {
                [Some(p + 1), Some(p)]
            } else {
                [Some(p), None]
            };
            for q in seps.into_iter().flatten() {
                for n in (2..=4).rev() {
                    if digits_at(b, q, n) {
                        if let Some(e) = groups(b, s, q + n, k + 1, failed) {
                            return Some(e);
                        }
                    }
                }
            }
        }
        if k >= 2 && !is_word(byte(b, p)) {
            return Some(p);
        }
        if let Some(f) = failed.get_mut(k) {
            *f |= bit;
        }
        None
    }
    let seps = |p: usize| {
        if phone_sep(byte(b, p)) {
            [Some(p + 1), Some(p)]
        } else {
            [Some(p), None]
        }
    };
    let mut body = |p: usize| {
        (1..=4)
            .rev()
            .filter(|n| digits_at(b, p, *n))
            .find_map(|n| groups(b, s, p + n, 0, &mut failed))
    };
    if byte(b, s) != b'+' {
        return None;
    }
    for n1 in (1..=3).rev() {
        if !digits_at(b, s + 1, n1) {
            continue;
        }
        for p2 in seps(s + 1 + n1).into_iter().flatten() {
            if byte(b, p2) == b'(' {
                for n in (1..=4).rev() {
                    if digits_at(b, p2 + 1, n) && byte(b, p2 + 1 + n) == b')' {
                        for p3 in seps(p2 + 2 + n).into_iter().flatten() {
                            if let Some(e) = body(p3) {
                                return Some(e);
                            }
                        }
                    }
                }
            }
            if let Some(e) = body(p2) {
                return Some(e);
            }
        }
    }
    None
}

/// Phone, the other alternatives: `\(\d{3}\) ?\d{3}-\d{4}\b` at a `(`,
/// `\b\d{3}-\d{3}-\d{4}\b` at a digit.
fn phone_at(b: &[u8], s: usize) -> Option<usize> {
    match byte(b, s) {
        b'+' => phone_plus(b, s),
        b'(' => {
            if !(digits_at(b, s + 1, 3) && byte(b, s + 4) == b')') {
                return None;
            }
            let q = if byte(b, s + 5) == b' ' { s + 6 } else { s + 5 };
            dashed_digits(b, q, &[3, 4])
        }
        _ => dashed_digits(b, s, &[3, 3, 4]),
    }
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
                    && !(*kind == Builtin::Ip && version_number(text, start))
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
        Builtin::Password => {
            for &c in &a.assignments {
                if c > at {
                    found(password_at(b, c, at), &mut at);
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
                Builtin::Card => r.chain >= 13,
                Builtin::Ssn => r.digits >= 9 && r.dashed,
                Builtin::Phone => r.digits >= 8 && (r.dashed || r.marked),
                _ => r.dotted,
            };
            for run in a.numbers.iter().filter(|r| possible(r)) {
                let from = run.start.max(at);
                match kind {
                    Builtin::Card => {
                        cards(b, from, run.end, &mut |s, e| found(Some((s, e)), &mut at))
                    }
                    _ => separated(kind, b, from, run.end, &mut |s, e| {
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
/// few places one can start: an SSN or a `ddd-ddd-dddd` phone has a `-`
/// three digits in, every other phone starts with `+` or `(`, an IP address
/// has a `.` after its first one to three digits. One cheap test a byte.
fn separated(kind: Builtin, b: &[u8], from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)) {
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
                let start = c == b'+'
                    || c == b'('
                    || (byte(b, s + 3) == b'-' && c.is_ascii_digit() && !word_before(s));
                start.then(|| phone_at(b, s)).flatten().map(|e| (s, e))
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

    pub const PATTERNS: [&str; 16] = [
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
        r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b",
        r"\bAIza[0-9A-Za-z_-]{35}\b",
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
        r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        r#"(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)\s*[:=]\s*["']?[^\s"',;]{6,}"#,
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        r"\b(?:\d[ -]?){12,18}\d\b",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        r"(?:\+\d{1,3}[ .-]?)(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}\b|\(\d{3}\) ?\d{3}-\d{4}\b|\b\d{3}-\d{3}-\d{4}\b",
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    ];

    pub struct Reference(Vec<Regex>);

    impl Reference {
        pub fn new() -> Reference {
            Reference(PATTERNS.iter().map(|p| Regex::new(p).unwrap()).collect())
        }

        /// (kind, start, end) of each finding, sorted.
        pub fn scan(&self, text: &str) -> Vec<(&'static str, usize, usize)> {
            let mut found: Vec<(&'static str, usize, usize)> = Vec::new();
            for ((kind, _, name), regex) in BUILTINS.iter().zip(&self.0) {
                let mut at = 0;
                while let Some(m) = regex.find_at(text, at) {
                    let (start, end) = (m.start(), m.end());
                    if end == start {
                        break;
                    }
                    at = end;
                    let overlaps = found.iter().any(|f| start < f.2 && f.1 < end);
                    if !overlaps
                        && validate(*kind, m.as_str())
                        && !(*kind == Builtin::Ip && version_number(text, start))
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
