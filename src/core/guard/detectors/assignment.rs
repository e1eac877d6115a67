//! The grammar the credential assignments (`password`, `aws_secret_key`,
//! `secret_assignment`) share: `(?i)\b[a-z0-9_]*(?:NAMES)["']?\s*[:=]\s*["']?`
//! then a value, and the tests that tell a secret value from a placeholder.

use super::super::anchors::{boundary, byte, credential_name, is_space, is_word, run_end, Named};

/// The start of an assignment to a name of `group` (see the patterns:
/// `(?i)\b[a-z0-9_]*(?:NAMES)["']?\s*[:=]\s*["']?`) for the `:`/`=` at `c`,
/// starting at or after `at`, and where its value starts. The name must end
/// right before the `:`/`=` (whitespace, then a quote aside) and the word
/// before it is part of the match; the match is unique.
pub fn assignment(b: &[u8], c: usize, at: usize, group: Named) -> Option<(usize, usize)> {
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
pub fn assignment_at(
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

/// The value of an assignment match (`name = "value"`): after the first
/// `:`/`=`, spaces and one quote aside.
pub fn assigned(s: &str) -> &str {
    s.split_once(['=', ':'])
        .map_or("", |(_, v)| v)
        .trim()
        .trim_start_matches(['"', '\''])
}

/// An assignment match whose value looks generated (`high_entropy`).
pub fn generated_value(m: &str) -> bool {
    high_entropy(assigned(m))
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
pub fn placeholder(v: &str) -> bool {
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
