//! Where the built-in detectors can match, found in one pass over the bytes:
//! `@`s, runs of number characters, word starts with a key prefix or an
//! IBAN head, private key headers and `:`/`=` after a credential name. The
//! matchers in `detectors` then only look at these places, and each looks
//! at a byte a bounded number of times: scanning is linear in the text.
//! The byte classes and helpers the matchers share are here too.
//!
//! The pass reads one class table entry a byte, takes a run of number bytes
//! in a loop of its own, skips the rest of a word after its first letter,
//! and keeps the rare work (prefix checks, anchors) out of line.

/// The bytes regex `\s` matches (ASCII whitespace).
#[inline]
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// The bytes regex `\w` (and so `\b`) counts as word characters (ASCII).
#[inline]
pub fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The byte at `i`, or 0 past the end (0 is neither a word, digit nor space
/// byte, so word boundaries and classes see the end as the regexes do).
#[inline]
pub fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Whether `\b` holds at `i`.
#[inline]
pub fn boundary(b: &[u8], i: usize) -> bool {
    let before = i.checked_sub(1).is_some_and(|p| is_word(byte(b, p)));
    before != (i < b.len() && is_word(byte(b, i)))
}

/// Where the run of bytes in `class` starting at `from` ends.
#[inline]
pub fn run_end(b: &[u8], from: usize, class: impl Fn(u8) -> bool) -> usize {
    from + b
        .get(from..)
        .map_or(0, |r| r.iter().take_while(|c| class(**c)).count())
}

/// `b[at..]` starts with `p` (ASCII case-insensitive when `fold`).
#[inline]
pub fn starts_with(b: &[u8], at: usize, p: &[u8], fold: bool) -> bool {
    let same = |x: u8, y: u8| x == y || (fold && x.eq_ignore_ascii_case(&y));
    let mut pairs = b.get(at..).unwrap_or(&[]).iter().zip(p);
    p.len() <= b.len().saturating_sub(at) && pairs.all(|(x, y)| same(*x, *y))
}

// Byte classes of the detectors' patterns.
/// `[A-Za-z0-9]`
#[inline]
pub fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `[A-Za-z0-9_-]`
#[inline]
pub fn key_char(b: u8) -> bool {
    is_word(b) || b == b'-'
}

/// `[A-Za-z0-9-]`
#[inline]
pub fn domain_char(b: u8) -> bool {
    alnum(b) || b == b'-'
}

/// `[A-Z0-9]`
#[inline]
pub fn upper_or_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

#[inline]
pub fn digit_at(b: &[u8], i: usize) -> bool {
    byte(b, i).is_ascii_digit()
}

/// The values of the decimal digits in `s`, in order.
pub fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
}

/// Remembers the last class run measured, so anchors inside one long run
/// (`eyJ-eyJ-eyJ-...`) do not measure it again each.
#[derive(Default)]
pub struct RunCache {
    start: usize,
    end: usize,
}

impl RunCache {
    pub fn end(&mut self, b: &[u8], from: usize, class: fn(u8) -> bool) -> usize {
        if self.start <= from && from <= self.end && self.end > 0 {
            return self.end;
        }
        self.start = from;
        self.end = run_end(b, from, class);
        self.end
    }
}

// Byte classes for the pass, in one table lookup a byte.
const WORD: u8 = 1;
const NUMBER: u8 = 1 << 1;
const DIGIT: u8 = 1 << 2;
/// `@`, `:`, `=`, `-`: an anchor may sit here.
const MARK: u8 = 1 << 3;
/// A key prefix or an IBAN head may start with it.
const HEAD: u8 = 1 << 4;
/// `[A-Za-z_]`: a word character that is no digit.
const LETTER: u8 = 1 << 5;
// In number runs: `.`, `-` (also a `MARK`), `+` or `(`, and the bytes that
// join card digits (space, `-`).
const DOT: u8 = 1 << 6;
const DASH: u8 = MARK;
const OPENS: u8 = 1 << 7;
const JOINS: u8 = HEAD;

// In bounds: `i < 256` indexes a `[u8; 256]`, at compile time.
#[allow(clippy::indexing_slicing)]
const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric() || b == b'_' {
            c |= WORD;
        }
        if b.is_ascii_alphabetic() || b == b'_' {
            c |= LETTER;
        }
        if b.is_ascii_digit() {
            c |= NUMBER | DIGIT;
        }
        // `/` and `_` join phone digit groups too.
        if matches!(b, b' ' | b'-' | b'(' | b')' | b'+' | b'.' | b'/' | b'_') {
            c |= NUMBER;
        }
        if matches!(b, b'@' | b':' | b'=' | b'-') {
            c |= MARK;
        }
        // IBANs start with capitals; key prefixes with these.
        if b.is_ascii_uppercase() || matches!(b, b'g' | b'x' | b's' | b'r' | b'e') {
            c |= HEAD;
        }
        // Number runs reuse bits that mean something else elsewhere
        // (`HEAD` is only read for word bytes, `JOINS` only in runs).
        if matches!(b, b' ' | b'-') {
            c |= JOINS;
        }
        if b == b'.' {
            c |= DOT;
        }
        if matches!(b, b'+' | b'(') {
            c |= OPENS;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASSES: [u8; 256] = classes();

#[inline]
fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// A maximal run of digits and number separators (` -()+./_`), with what the
/// number detectors need to find in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumberRun {
    pub start: usize,
    pub end: usize,
    pub digits: usize,
    pub dotted: bool,
    pub dashed: bool,
    /// Holds a `+` or a `(`.
    pub marked: bool,
    /// The most digits joined by at most one space or hyphen (cards).
    pub chain: usize,
}

/// The run of number bytes from `start`, and what it holds; private key
/// headers in it (a `-----BEGIN ` starts with its dashes) go to `headers`.
fn number_run(bytes: &[u8], start: usize, headers: &mut Vec<usize>) -> NumberRun {
    let mut r = NumberRun {
        start,
        ..NumberRun::default()
    };
    // Digits joined so far, and whether the last byte was a digit, or a
    // space or hyphen after one; the classes of every byte, or-ed.
    let (mut chain, mut digit, mut joint, mut seen) = (0, false, false, 0u8);
    let mut i = start;
    while let Some(&x) = bytes.get(i) {
        let c = class(x);
        if c & NUMBER == 0 {
            break;
        }
        seen |= c;
        if c & DIGIT != 0 {
            r.digits += 1;
            chain = if digit || joint { chain + 1 } else { 1 };
            r.chain = r.chain.max(chain);
            digit = true;
            joint = false;
        } else {
            joint = digit && c & JOINS != 0;
            digit = false;
            if c & MARK != 0 && starts_with(bytes, i, BEGIN, false) {
                headers.push(i);
            }
        }
        i += 1;
    }
    r.dotted = seen & DOT != 0;
    r.dashed = seen & DASH != 0;
    r.marked = seen & OPENS != 0;
    r.end = i;
    r
}

/// Runs with fewer digits than this are not kept: no number detector can
/// match in them (IPv4 addresses need four).
pub const MIN_RUN_DIGITS: usize = 4;

/// Which detector an assignment name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Password,
    AwsSecret,
    Secret,
}

/// Names an assignment can end with (before `:`/`=`, a quote aside),
/// lowercase, by detector.
pub const CREDENTIAL_NAMES: &[(&str, Named)] = &[
    ("password", Named::Password),
    ("passwd", Named::Password),
    ("pwd", Named::Password),
    ("secret", Named::Password),
    ("apikey", Named::Password),
    ("api_key", Named::Password),
    ("api-key", Named::Password),
    ("accesstoken", Named::Password),
    ("access_token", Named::Password),
    ("access-token", Named::Password),
    ("authtoken", Named::Password),
    ("auth_token", Named::Password),
    ("auth-token", Named::Password),
    ("secret_access_key", Named::AwsSecret),
    ("secretaccesskey", Named::AwsSecret),
    ("secret_accesskey", Named::AwsSecret),
    ("secretaccess_key", Named::AwsSecret),
    ("aws_secret_key", Named::AwsSecret),
    ("awssecretkey", Named::AwsSecret),
    ("aws_secretkey", Named::AwsSecret),
    ("awssecret_key", Named::AwsSecret),
    ("token", Named::Secret),
    ("secrets", Named::Secret),
    ("secret_key", Named::Secret),
    ("secretkey", Named::Secret),
    ("access_key", Named::Secret),
    ("accesskey", Named::Secret),
    ("private_key", Named::Secret),
    ("privatekey", Named::Secret),
    ("credential", Named::Secret),
    ("credentials", Named::Secret),
    ("auth", Named::Secret),
];

const BEGIN: &[u8] = b"-----BEGIN ";

/// Key prefixes by their first byte: (prefix, detector index).
pub type PrefixTable = Vec<Vec<(&'static str, usize)>>;

pub fn prefix_table(prefixes: impl Iterator<Item = (&'static str, usize)>) -> PrefixTable {
    let mut table: PrefixTable = vec![Vec::new(); 256];
    for (p, kind) in prefixes {
        if let Some(list) = table.get_mut(usize::from(p.bytes().next().unwrap_or(0))) {
            list.push((p, kind));
        }
    }
    table
}

/// The anchors of one text, shared by all detectors. Every list is sorted.
#[derive(Debug, Default)]
pub struct Anchors {
    pub ats: Vec<usize>,
    pub numbers: Vec<NumberRun>,
    pub ibans: Vec<usize>,
    /// Word starts with a key prefix, by detector index.
    pub prefixes: Vec<Vec<usize>>,
    pub private_keys: Vec<usize>,
    pub assignments: Vec<usize>,
}

impl Anchors {
    /// One pass over `text`; `kinds` is the number of detector indexes
    /// `table` uses.
    pub fn find(text: &str, table: &PrefixTable, kinds: usize) -> Anchors {
        let bytes = text.as_bytes();
        let mut a = Anchors::default();
        let mut after_word = false;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let c = class(b);
            if c & NUMBER != 0 {
                // A whole run of number bytes at once (no key prefix starts
                // in one).
                let run = number_run(bytes, i, &mut a.private_keys);
                if run.digits >= MIN_RUN_DIGITS {
                    a.numbers.push(run);
                }
                after_word = run.end > i && is_word(byte(bytes, run.end - 1));
                i = run.end.max(i + 1);
                continue;
            }
            let word = c & WORD != 0;
            if word && !after_word && c & HEAD != 0 {
                a.word_start(bytes, i, table, kinds);
            }
            after_word = word;
            if c & MARK != 0 {
                a.mark(bytes, i);
            }
            i += 1;
            // The letters after a letter need nothing: skip them.
            if c & LETTER != 0 && class(byte(bytes, i)) & LETTER != 0 {
                i = run_end(bytes, i, |x| class(x) & LETTER != 0);
            }
        }
        a
    }

    /// Key prefixes and IBAN heads at the word start `i`. Out of line, as
    /// the rare paths are: inlined, they slow the loop over every byte.
    #[inline(never)]
    fn word_start(&mut self, bytes: &[u8], i: usize, table: &PrefixTable, kinds: usize) {
        if iban_head(bytes, i) {
            self.ibans.push(i);
        }
        for (p, kind) in table.get(usize::from(byte(bytes, i))).into_iter().flatten() {
            if starts_with(bytes, i, p.as_bytes(), false) {
                if self.prefixes.len() < kinds {
                    self.prefixes.resize(kinds, Vec::new());
                }
                if let Some(list) = self.prefixes.get_mut(*kind) {
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
    }

    /// `@` and `:`/`=` (a `-` is in a number run, see `number_run`).
    #[inline(never)]
    fn mark(&mut self, bytes: &[u8], i: usize) {
        match byte(bytes, i) {
            b'@' => self.ats.push(i),
            b':' | b'=' if credential_before(bytes, i) => self.assignments.push(i),
            _ => {}
        }
    }

    /// True when no built-in detector can match.
    pub fn none(&self) -> bool {
        self.ats.is_empty()
            && self.numbers.is_empty()
            && self.ibans.is_empty()
            && self.prefixes.iter().all(Vec::is_empty)
            && self.private_keys.is_empty()
            && self.assignments.is_empty()
    }

    /// The prefix anchors of detector `kind`.
    pub fn prefixed(&self, kind: usize) -> &[usize] {
        self.prefixes.get(kind).map_or(&[], Vec::as_slice)
    }
}

/// `[A-Z]{2}\d{2}` at `i`.
fn iban_head(b: &[u8], i: usize) -> bool {
    matches!(b.get(i..i + 4), Some([a, c, d, e]) if a.is_ascii_uppercase() && c.is_ascii_uppercase() && d.is_ascii_digit() && e.is_ascii_digit())
}

/// A credential name of `group` (`CREDENTIAL_NAMES`, any case; any group
/// if `None`) that ends where the text before `at` ends, whitespace and then
/// one quote aside (`"name": v`): its start.
pub fn credential_name(bytes: &[u8], at: usize, group: Option<Named>) -> Option<usize> {
    let mut end = bytes
        .get(..at)?
        .iter()
        .rposition(|x| !is_space(*x))
        .map_or(0, |p| p + 1);
    if matches!(byte(bytes, end.checked_sub(1)?), b'"' | b'\'') {
        end -= 1;
    }
    // Every name ends in one of these: most `:` in JSON or code stop here,
    // and the rest compare only names with their last letter.
    let last = byte(bytes, end.checked_sub(1)?).to_ascii_lowercase();
    if !matches!(last, b'd' | b't' | b'y' | b'n' | b'l' | b's' | b'h') {
        return None;
    }
    CREDENTIAL_NAMES
        .iter()
        .filter(|(n, g)| n.as_bytes().last() == Some(&last) && group.is_none_or(|w| w == *g))
        .find_map(|(n, _)| {
            let start = end.checked_sub(n.len())?;
            starts_with(bytes, start, n.as_bytes(), true).then_some(start)
        })
}

fn credential_before(bytes: &[u8], at: usize) -> bool {
    credential_name(bytes, at, None).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_each_kind_of_anchor() {
        let text = "mail jo@x.io, card 4111 1111 1111 1111x, key AKIAIOSFODNN7EXAMPLE. \
                    -----BEGIN RSA PRIVATE KEY----- DB_Password = 'x' GB82 WEST 12";
        let table = prefix_table([("AKIA", 0), ("sk-", 1)].into_iter());
        let a = Anchors::find(text, &table, 2);
        assert_eq!(a.ats, [text.find('@').unwrap()]);
        assert_eq!(a.prefixed(0), [text.find("AKIA").unwrap()]);
        assert!(a.prefixed(1).is_empty());
        assert_eq!(a.private_keys, [text.find("-----BEGIN").unwrap()]);
        assert_eq!(a.assignments, [text.find('=').unwrap()]);
        assert_eq!(a.ibans, [text.find("GB82").unwrap()]);
        let card = &a.numbers[0];
        assert_eq!(card.digits, 16);
        assert_eq!(&text[card.start..card.end], " 4111 1111 1111 1111");
        assert!(!a.none());
        assert!(Anchors::find("plain words, 12 and 3.4", &table, 2).none());
    }

    #[test]
    fn boundaries_and_credential_names() {
        let b = b"ab cd";
        assert!(boundary(b, 0) && boundary(b, 2) && boundary(b, 3) && boundary(b, 5));
        assert!(!boundary(b, 1) && !boundary(b, 4));
        assert_eq!(credential_name(b"my API-Key  :", 12, None), Some(3));
        assert_eq!(credential_name(b"\"api_token\": ", 11, None), Some(5));
        assert_eq!(
            credential_name(b"AWS_SECRET_ACCESS_KEY=", 21, Some(Named::AwsSecret)),
            Some(4)
        );
        assert_eq!(credential_name(b"keyboard:", 8, None), None);
    }
}
