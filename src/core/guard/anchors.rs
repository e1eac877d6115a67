//! Where each built-in detector can match, found in one pass over the bytes.
//! regex-lite has no literal optimizations and costs ~100 ns a byte, so the
//! regexes only run on these few windows. Each window holds every match that
//! can contain its anchor, and ends one character after it so that `\b` and
//! the other assertions see the same context as in the whole text.

/// How a detector's matches are found.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    /// An `@` and the address characters around it.
    Email,
    /// A run of digits and number separators with at least `min` digits
    /// (and a dot if `dotted`).
    Number { min: usize, dotted: bool },
    /// Two capitals and two digits at a word start, then IBAN characters.
    Iban,
    /// One of these prefixes at a word start, then token characters.
    Prefix(&'static [&'static str]),
    /// A `-----BEGIN ... PRIVATE KEY-----` header, to its end marker.
    PrivateKey,
    /// `:` or `=` after a credential-like name: the name and the value.
    Assignment,
}

/// The bytes regex-lite's `\s` matches.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// The bytes regex-lite's `\w` (and so `\b`) counts as word characters.
pub fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the character starting at `at` (or `at` at the end).
pub fn next_char_end(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .map_or(at.min(text.len()), |c| at + c.len_utf8())
}

fn number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'(' | b')' | b'+' | b'.')
}

struct NumberRun {
    start: usize,
    end: usize,
    digits: usize,
    dotted: bool,
}

/// Name endings the password pattern's names all have.
const CREDENTIAL_NAMES: &[&str] = &["password", "passwd", "pwd", "secret", "key", "token"];
const BEGIN: &str = "-----BEGIN ";
const END_MARKER: &str = "PRIVATE KEY-----";

/// The anchors of one text, shared by all detectors.
pub struct Anchors<'t> {
    text: &'t str,
    ats: Vec<usize>,
    numbers: Vec<NumberRun>,
    ibans: Vec<usize>,
    prefixes: Vec<(usize, &'static str)>,
    private_keys: Vec<usize>,
    assignments: Vec<usize>,
}

impl<'t> Anchors<'t> {
    /// One pass over `text`, looking for the prefixes in `prefixes`, which
    /// lists them by their first byte.
    pub fn find(text: &'t str, prefixes: &[Vec<&'static str>]) -> Anchors<'t> {
        let bytes = text.as_bytes();
        let mut a = Anchors {
            text,
            ats: Vec::new(),
            numbers: Vec::new(),
            ibans: Vec::new(),
            prefixes: Vec::new(),
            private_keys: Vec::new(),
            assignments: Vec::new(),
        };
        let mut run: Option<NumberRun> = None;
        let mut after_word = false;
        for (i, &b) in bytes.iter().enumerate() {
            let word = is_word(b);
            let starts_word = word && !after_word;
            after_word = word;
            if number_byte(b) {
                let r = run.get_or_insert(NumberRun {
                    start: i,
                    end: i,
                    digits: 0,
                    dotted: false,
                });
                r.digits += usize::from(b.is_ascii_digit());
                r.dotted |= b == b'.';
                r.end = i + 1;
            } else if let Some(r) = run.take().filter(|r| r.digits > 0) {
                a.numbers.push(r);
            }
            match b {
                b'@' => a.ats.push(i),
                b':' | b'=' if credential_before(bytes, i) => a.assignments.push(i),
                b'-' if private_key_header(bytes, i) => a.private_keys.push(i),
                _ if starts_word => {
                    let rest = bytes.get(i..).unwrap_or(&[]);
                    if rest.get(..4).is_some_and(iban_start) {
                        a.ibans.push(i);
                    }
                    for p in prefixes.get(usize::from(b)).into_iter().flatten() {
                        if starts_with(rest, p) {
                            a.prefixes.push((i, p));
                        }
                    }
                }
                _ => {}
            }
        }
        a.numbers.extend(run.filter(|r| r.digits > 0));
        a
    }

    /// True when no anchored pattern can match: no anchor but number runs
    /// with fewer than `min_digits` digits.
    pub fn none(&self, min_digits: usize) -> bool {
        self.ats.is_empty()
            && self.ibans.is_empty()
            && self.prefixes.is_empty()
            && self.private_keys.is_empty()
            && self.assignments.is_empty()
            && self.numbers.iter().all(|r| r.digits < min_digits)
    }

    /// The merged `(start, end)` windows where `anchor`'s matches lie: search
    /// `text[..end]` from `start`.
    pub fn windows(&self, anchor: Anchor) -> Vec<(usize, usize)> {
        let text = self.text;
        let bytes = text.as_bytes();
        let skip = |from: usize, keep: fn(u8) -> bool| {
            from + bytes
                .get(from..)
                .map_or(0, |b| b.iter().take_while(|c| keep(**c)).count())
        };
        // Anchors come in order, and one inside the previous run ends where
        // that run ended: `sk-sk-sk-...` is not rescanned per anchor.
        let mut last: Option<(usize, usize)> = None;
        let mut fwd = |from: usize, keep: fn(u8) -> bool| {
            let end = match last {
                Some((start, end)) if start <= from && from <= end => end,
                _ => skip(from, keep),
            };
            last = Some((from, end));
            next_char_end(text, end)
        };
        let raw: Vec<(usize, usize)> = match anchor {
            Anchor::Email => self
                .ats
                .iter()
                .map(|&at| {
                    let local = bytes.get(..at).map_or(0, |b| {
                        b.iter()
                            .rev()
                            .take_while(|c| c.is_ascii_alphanumeric() || b"._%+-".contains(c))
                            .count()
                    });
                    (
                        at - local,
                        fwd(at + 1, |c| c.is_ascii_alphanumeric() || b".-".contains(&c)),
                    )
                })
                .collect(),
            Anchor::Number { min, dotted } => self
                .numbers
                .iter()
                .filter(|r| r.digits >= min && (r.dotted || !dotted))
                .map(|r| (r.start, next_char_end(text, r.end)))
                .collect(),
            Anchor::Iban => self
                .ibans
                .iter()
                .map(|&i| {
                    (
                        i,
                        fwd(i, |c| {
                            c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
                        }),
                    )
                })
                .collect(),
            Anchor::Prefix(list) => self
                .prefixes
                .iter()
                .filter(|(_, p)| list.contains(p))
                .map(|&(i, _)| (i, fwd(i, |c| is_word(c) || c == b'-' || c == b'.')))
                .collect(),
            Anchor::PrivateKey => {
                // The end marker found for one header is the first after every
                // later header before it: a run of headers is searched once.
                let mut last: Option<(usize, usize)> = None;
                self.private_keys
                    .iter()
                    .map(|&i| {
                        let (marker, end) = match last {
                            Some((marker, end)) if marker >= i + BEGIN.len() => (marker, end),
                            _ => private_key_end(text, i),
                        };
                        last = Some((marker, end));
                        (i, end)
                    })
                    .collect()
            }
            Anchor::Assignment => self
                .assignments
                .iter()
                .map(|&c| {
                    let name_end = bytes.get(..c).map_or(0, |b| {
                        b.iter().rposition(|x| !is_space(*x)).map_or(0, |p| p + 1)
                    });
                    let name = bytes.get(..name_end).map_or(0, |b| {
                        b.iter()
                            .rev()
                            .take_while(|x| is_word(**x) || **x == b'-')
                            .count()
                    });
                    let value = skip(c + 1, is_space);
                    let value = value + usize::from(matches!(bytes.get(value), Some(b'"' | b'\'')));
                    (
                        name_end - name,
                        fwd(value, |x| !is_space(x) && !b"\"',;".contains(&x)),
                    )
                })
                .collect(),
        };
        merge(raw)
    }
}

/// Prefixes listed by their first byte, for `Anchors::find`.
pub fn by_first_byte(prefixes: impl Iterator<Item = &'static str>) -> Vec<Vec<&'static str>> {
    let mut table = vec![Vec::new(); 256];
    for p in prefixes {
        if let Some(list) = table.get_mut(usize::from(p.bytes().next().unwrap_or(0))) {
            if !list.contains(&p) {
                list.push(p);
            }
        }
    }
    table
}

/// `bytes.starts_with(p)`, inlined: a `memcmp` call per candidate costs more
/// than the compare itself.
fn starts_with(bytes: &[u8], p: &str) -> bool {
    bytes.len() >= p.len() && bytes.iter().zip(p.bytes()).all(|(a, b)| *a == b)
}

/// Sorts and joins overlapping windows.
fn merge(mut raw: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    raw.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(raw.len());
    for (from, to) in raw {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

fn iban_start(w: &[u8]) -> bool {
    matches!(w, [a, b, c, d] if a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_digit() && d.is_ascii_digit())
}

/// Whether a name ending like a credential comes before the `:`/`=` at `at`.
fn credential_before(bytes: &[u8], at: usize) -> bool {
    let name = bytes.get(..at).map_or(&[][..], |b| {
        let end = b.iter().rposition(|x| !is_space(*x)).map_or(0, |p| p + 1);
        b.get(..end).unwrap_or(&[])
    });
    CREDENTIAL_NAMES.iter().any(|n| {
        name.len() >= n.len()
            && name
                .get(name.len() - n.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// `-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----` at `at`.
fn private_key_header(bytes: &[u8], at: usize) -> bool {
    let Some(rest) = bytes
        .get(at..)
        .and_then(|r| r.strip_prefix(BEGIN.as_bytes()))
    else {
        return false;
    };
    let word = rest.iter().take_while(|c| c.is_ascii_uppercase()).count();
    rest.starts_with(END_MARKER.as_bytes())
        || (rest.get(word) == Some(&b' ')
            && rest
                .get(word + 1..)
                .is_some_and(|r| r.starts_with(END_MARKER.as_bytes())))
}

/// Where the first `-----END (?:[A-Z]+ )?PRIVATE KEY-----` after the header
/// at `at` has its `PRIVATE KEY-----`, and just past it; or the end of the
/// text for both (the pattern then runs to `$`).
fn private_key_end(text: &str, at: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let mut from = at + BEGIN.len();
    while let Some(q) = text.get(from..).and_then(|t| t.find(END_MARKER)) {
        let q = from + q;
        let before = bytes.get(..q).unwrap_or(&[]);
        let named = before.strip_suffix(b" ").is_some_and(|b| {
            let word = b
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_uppercase())
                .count();
            word > 0
                && b.get(..b.len() - word)
                    .is_some_and(|b| b.ends_with(b"-----END "))
        });
        if named || before.ends_with(b"-----END ") {
            return (q, next_char_end(text, q + END_MARKER.len()));
        }
        from = q + END_MARKER.len();
    }
    (text.len(), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_the_entity_and_one_more_character() {
        let text = "mail jo@x.io, card 4111 1111 1111 1111x, key AKIAIOSFODNN7EXAMPLE.";
        let a = Anchors::find(text, &by_first_byte(["AKIA"].into_iter()));
        let slice = |w: &[(usize, usize)]| {
            w.iter()
                .map(|(s, e)| text.get(*s..*e).unwrap_or(""))
                .collect::<Vec<_>>()
        };
        assert_eq!(slice(&a.windows(Anchor::Email)), ["jo@x.io,"]);
        assert_eq!(
            slice(&a.windows(Anchor::Number {
                min: 13,
                dotted: false
            })),
            [" 4111 1111 1111 1111x"]
        );
        assert_eq!(
            slice(&a.windows(Anchor::Prefix(&["AKIA"]))),
            ["AKIAIOSFODNN7EXAMPLE."]
        );
        let text = "x -----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\ntail";
        let a = Anchors::find(text, &[]);
        assert_eq!(
            a.windows(Anchor::PrivateKey),
            [(2, text.len() - "tail".len())]
        );
        let a = Anchors::find("set DB_Password = 'hunter22' now", &[]);
        assert_eq!(a.windows(Anchor::Assignment), [(4, 28)]);
    }
}
