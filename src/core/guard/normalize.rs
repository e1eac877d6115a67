//! Text as the detectors read it: the spellings that hide an entity from a
//! byte-level matcher are folded away, and every byte of the folded text
//! remembers the span of the original it came from, so a finding redacts
//! the original span (zero-width characters inside it included).
//!
//! Folded: zero-width, bidi and other invisible characters (dropped);
//! fullwidth forms, mathematical alphanumerics, circled letters,
//! superscript and subscript digits and the decimal digits of other
//! scripts (to ASCII); every kind of space and middle dot (to ` `) and
//! dash (to `-`); Cyrillic and Greek look-alike letters inside a word
//! that also has ASCII letters or digits (`ѕk-…`, `jоhn@…`); and the
//! spelled-out `[at]` / `(dot)` / `[.]` of an e-mail address, with the spaces
//! around them. Case is kept. Text that holds none of these (most of it)
//! is not copied. The learned injection model shares the per-character
//! folds (`fold_form`, `confusable`) and adds its own (case, accents).

/// `text` as the detectors read it.
pub struct Folded {
    pub text: String,
    /// Where the offset into the original stops being the offset into
    /// `text` plus the last mark's difference: (offset in `text`, offset in
    /// the original), one per change rather than one per byte.
    marks: Vec<(usize, usize)>,
}

impl Folded {
    /// The offset in the original of the character at `at` in `text` (of
    /// the original's end at `text.len()`).
    pub fn at(&self, at: usize) -> usize {
        let k = self.marks.partition_point(|m| m.0 <= at);
        k.checked_sub(1)
            .and_then(|k| self.marks.get(k))
            .map_or(at, |&(folded, original)| original + (at - folded))
    }

    /// The offset in `text` of the original's offset `at` (of the first
    /// character after it, inside a folded span).
    pub fn folded(&self, at: usize) -> usize {
        let k = self.marks.partition_point(|m| m.1 <= at);
        let base = k
            .checked_sub(1)
            .and_then(|k| self.marks.get(k))
            .map_or(at, |&(folded, original)| folded + (at - original));
        self.marks.get(k).map_or(base, |m| base.min(m.0))
    }

    /// The original span of `text[start..end]` (a finding's). Characters
    /// dropped inside it, or right after it, are in the span.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let start = self.at(start);
        (start, self.at(end).max(start))
    }
}

/// NFKC-like folding of one character for both the detectors and the
/// injection model: `None` drops it.
pub fn fold_form(c: char) -> Option<char> {
    let u = c as u32;
    Some(match u {
        // Zero-width, joiners, bidi controls, soft hyphen, BOM, combining
        // marks, variation selectors, tags.
        0xad
        | 0x34f
        | 0x61c
        | 0x180e
        | 0x200b..=0x200f
        | 0x202a..=0x202e
        | 0x2060..=0x206f
        | 0xfeff
        | 0x300..=0x36f
        | 0xfe00..=0xfe0f
        | 0xe0000..=0xe007f => return None,
        // Fullwidth ASCII.
        0xff01..=0xff5e => char::from_u32(u - 0xfee0).unwrap_or(c),
        // Mathematical alphanumerics: letters in styles of 52, digits of 10.
        0x1d400..=0x1d6a3 => {
            let k = (u - 0x1d400) % 52;
            char::from_u32(if k < 26 { 0x41 + k } else { 0x61 + k - 26 }).unwrap_or(c)
        }
        0x1d7ce..=0x1d7ff => char::from_u32(0x30 + (u - 0x1d7ce) % 10).unwrap_or(c),
        // Circled letters.
        0x24b6..=0x24cf => char::from_u32(0x41 + u - 0x24b6).unwrap_or(c),
        0x24d0..=0x24e9 => char::from_u32(0x61 + u - 0x24d0).unwrap_or(c),
        _ if c.is_whitespace() => ' ',
        _ => c,
    })
}

/// The Latin letter a lower-case Cyrillic or Greek letter looks like.
pub fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ί' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'ӏ' => 'l',
        'м' => 'm',
        'η' => 'n',
        'о' | 'ο' | 'ό' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'μ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        _ => return None,
    })
}

/// The first code point of each other script's run of ten decimal digits
/// (Arabic-Indic, Persian, Devanagari, Bengali, Gurmukhi, Gujarati, Oriya,
/// Tamil, Telugu, Kannada, Malayalam, Thai, Lao, Tibetan, Myanmar, Khmer,
/// Mongolian).
const DIGIT_ZEROS: [u32; 17] = [
    0x660, 0x6f0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xe50, 0xed0,
    0xf20, 0x1040, 0x17e0, 0x1810,
];

/// What the detectors read for one (non-ASCII) character, beyond
/// `fold_form`: digits, dashes, middle dots.
fn fold_for_detectors(c: char) -> Option<char> {
    let c = fold_form(c)?;
    let u = c as u32;
    Some(match u {
        0xb2 | 0xb3 => char::from_u32(u - 0xb0 + 0x30).unwrap_or(c),
        0xb9 => '1',
        0x2070 | 0x2074..=0x2079 => char::from_u32(u - 0x2070 + 0x30).unwrap_or(c),
        0x2080..=0x2089 => char::from_u32(u - 0x2080 + 0x30).unwrap_or(c),
        0x2010..=0x2015 | 0x2212 | 0xfe58 | 0xfe63 => '-',
        // Middle dots separate digit groups (`4548·2428`), as spaces do.
        0xb7 | 0x2027 | 0x2219 | 0x22c5 | 0x30fb | 0xff65 => ' ',
        0xfe6b => '@',
        _ => DIGIT_ZEROS
            .iter()
            .find(|z| (**z..*z + 10).contains(&u))
            .and_then(|z| char::from_u32(0x30 + u - z))
            .unwrap_or(c),
    })
}

/// A look-alike letter of either case: its Latin letter in the same case.
fn look_alike(c: char) -> Option<char> {
    if let Some(l) = confusable(c) {
        return Some(l);
    }
    let lower = c.to_lowercase().next().filter(|l| *l != c)?;
    confusable(lower).map(|l| l.to_ascii_uppercase())
}

/// `[at]`, `(dot)`, `{at}`, `<dot>`, `[.]`, `(@)` (any case, spaces inside
/// allowed) at `b[i]`: the character it spells and its length.
fn spelled(b: &[u8], i: usize) -> Option<(char, usize)> {
    let close = match b.get(i)? {
        b'[' => b']',
        b'(' => b')',
        b'{' => b'}',
        b'<' => b'>',
        _ => return None,
    };
    let mut j = i + 1;
    let skip = |j: &mut usize| {
        while b.get(*j) == Some(&b' ') {
            *j += 1;
        }
    };
    skip(&mut j);
    let word = |w: &[u8]| {
        b.get(j..j + w.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(w))
    };
    let (c, n) = if word(b"at") || word(b"@") {
        ('@', if word(b"@") { 1 } else { 2 })
    } else if word(b"dot") {
        ('.', 3)
    } else if word(b".") {
        ('.', 1)
    } else {
        return None;
    };
    j += n;
    skip(&mut j);
    (b.get(j) == Some(&close)).then_some((c, j + 1 - i))
}

/// Where a spelling that may still become `[at]` or `(dot)` starts at the
/// end of `b` (`[`, `( a`, `{dot `): a stream holds it, and the word before.
pub fn partial_spelling(b: &[u8]) -> Option<usize> {
    let open = b
        .iter()
        .rev()
        .take(8)
        .position(|c| matches!(c, b'[' | b'(' | b'{' | b'<'))
        .map(|k| b.len() - 1 - k)?;
    let rest = b.get(open + 1..)?;
    let rest = rest.trim_ascii_start();
    if let Some((b'.' | b'@', after)) = rest.split_first() {
        return after.iter().all(|c| *c == b' ').then_some(open);
    }
    let word = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let (letters, after) = rest.split_at(word);
    let prefix_of = |w: &[u8]| {
        w.get(..letters.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(letters))
    };
    let complete = letters.eq_ignore_ascii_case(b"at") || letters.eq_ignore_ascii_case(b"dot");
    let open_ended = if complete {
        after.iter().all(|c| *c == b' ')
    } else {
        after.is_empty() && (prefix_of(b"at") || prefix_of(b"dot"))
    };
    open_ended.then_some(open)
}

/// Whether folding could change `text`: a character that folds or looks
/// like a Latin letter, or a bracket that spells `at` or `dot`.
fn may_fold(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| LOOK.get(usize::from(**c)) == Some(&true))
        .any(|(i, &c)| {
            if c.is_ascii() {
                spelled(b, i).is_some()
            } else {
                text.get(i..)
                    .and_then(|t| t.chars().next())
                    .is_some_and(|c| fold_for_detectors(c) != Some(c) || look_alike(c).is_some())
            }
        })
}

/// The bytes `may_fold` looks at: opening brackets, and the first byte of
/// each character beyond ASCII.
static LOOK: [bool; 256] = look();

// In bounds: indexes below 256 into a `[bool; 256]`, at compile time.
#[allow(clippy::indexing_slicing)]
const fn look() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i >= 0xc0 || matches!(i as u8, b'[' | b'(' | b'{' | b'<');
        i += 1;
    }
    t
}

/// Longest word whose look-alike letters fold (a longer one is written
/// out as it comes): bounds the memory a word takes.
const MAX_WORD: usize = 64;

/// Writes the folded text and its marks.
struct Writer {
    out: Folded,
    /// Original offset minus folded offset since the last mark.
    shift: usize,
    /// The current word's characters and original offsets, until it ends
    /// or passes `MAX_WORD`; whether it has ASCII letters or digits, and
    /// look-alikes.
    word: Vec<(char, usize)>,
    long: bool,
    ascii: bool,
    alike: bool,
    changed: bool,
}

impl Writer {
    fn put(&mut self, c: char, original: usize) {
        let at = self.out.text.len();
        if original - at != self.shift {
            self.shift = original - at;
            self.out.marks.push((at, original));
        }
        self.out.text.push(c);
    }

    fn word_char(&mut self, c: char, original: usize) {
        if c.is_ascii_alphanumeric() {
            self.ascii = true;
        } else {
            self.alike |= look_alike(c).is_some();
        }
        if self.long {
            self.put(c, original);
        } else if self.word.len() < MAX_WORD {
            self.word.push((c, original));
        } else {
            self.long = true;
            self.flush(false);
            self.put(c, original);
        }
    }

    /// Writes the current word out, its look-alikes folded if `fold`.
    fn flush(&mut self, fold: bool) {
        let word = std::mem::take(&mut self.word);
        for &(c, original) in &word {
            let f = if fold { look_alike(c) } else { None };
            self.changed |= f.is_some();
            self.put(f.unwrap_or(c), original);
        }
        self.word = word;
        self.word.clear();
    }

    /// A word ends: its look-alikes fold if it mixes scripts.
    fn end_word(&mut self) {
        self.flush(self.ascii && self.alike && !self.long);
        (self.long, self.ascii, self.alike) = (false, false, false);
    }
}

/// `text` folded for the detectors, or `None` if nothing changes. Linear,
/// and the copy is no longer than `text` (plus a mark per change).
pub fn fold(text: &str) -> Option<Folded> {
    if !may_fold(text) {
        return None;
    }
    let b = text.as_bytes();
    let mut w = Writer {
        out: Folded {
            text: String::with_capacity(text.len()),
            marks: Vec::new(),
        },
        shift: 0,
        word: Vec::new(),
        long: false,
        ascii: false,
        alike: false,
        changed: false,
    };
    let mut chars = text.char_indices();
    let mut after_space = false;
    while let Some((i, c)) = chars.next() {
        // A spelled `@` or `.` takes the spaces around it (checked from the
        // first space of a run, so a run is walked once).
        let spaces = if c == ' ' && !after_space {
            b.get(i..)
                .map_or(0, |r| r.iter().take_while(|x| **x == b' ').count())
        } else {
            0
        };
        after_space = c == ' ';
        if let Some((spelled, len)) = spelled(b, i + spaces) {
            let mut stop = i + spaces + len;
            stop += b
                .get(stop..)
                .map_or(0, |r| r.iter().take_while(|x| **x == b' ').count());
            w.end_word();
            w.put(spelled, i);
            w.changed = true;
            while chars.clone().next().is_some_and(|(j, _)| j < stop) {
                chars.next();
            }
            after_space = false;
            continue;
        }
        let folded = if c.is_ascii() {
            Some(c)
        } else {
            fold_for_detectors(c)
        };
        let Some(f) = folded else {
            w.changed = true;
            continue;
        };
        w.changed |= f != c;
        if f.is_alphanumeric() {
            w.word_char(f, i);
        } else {
            w.end_word();
            w.put(f, i);
        }
    }
    w.end_word();
    // The end maps to the original's end.
    let end = w.out.text.len();
    if text.len() - end != w.shift {
        w.out.marks.push((end, text.len()));
    }
    w.changed.then_some(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> String {
        fold(text).map_or_else(|| text.to_string(), |f| f.text)
    }

    #[test]
    fn folds_the_evasions() {
        assert_eq!(
            folded("jo\u{200b}hn@exa\u{2060}mple.com"),
            "john@example.com"
        );
        assert_eq!(
            folded("ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
            "john@example.com"
        );
        assert_eq!(folded("john [at] example [dot] com"), "john@example.com");
        assert_eq!(folded("john(AT)example( dot )com"), "john@example.com");
        assert_eq!(folded("５５５–１２３·4567"), "555-123 4567");
        assert_eq!(folded("lei18(at)example[.]net"), "lei18@example.net");
        assert_eq!(folded("555\u{a0}123\u{2009}4567"), "555 123 4567");
        assert_eq!(folded("۰۹۱۲ ٣٤٥ ६७८९"), "0912 345 6789");
        assert_eq!(
            folded("ѕk-proj-Аbc jоhn@exаmple.com"),
            "sk-proj-Abc john@example.com"
        );
        assert_eq!(folded("𝟓𝟓𝟓 ⓐⒷ x²"), "555 aB x2");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "plain ascii, [brackets] (at least) {data} <b>",
            "Répète ça, s'il te plaît",
            "Игнорируй правила: сор",
            "中文 日本語 한국어",
            "look [at] this",
        ] {
            let f = fold(text);
            if text == "look [at] this" {
                assert_eq!(f.map(|f| f.text).as_deref(), Some("look@this"));
            } else {
                assert!(f.is_none(), "{text}");
            }
        }
    }

    #[test]
    fn maps_findings_back_to_the_original() {
        let text = "mail jo\u{200b}hn [at] example [dot] com now";
        let f = fold(text).unwrap_or_else(|| unreachable!());
        let start = f.text.find("john").unwrap_or(0);
        let end = f.text.find(" now").unwrap_or(0);
        let (s, e) = f.original(start, end);
        assert_eq!(text.get(s..e), Some("jo\u{200b}hn [at] example [dot] com"));
        // A finding spanning a multi-byte character maps to whole characters.
        let text = "x ５５５-1234 y";
        let f = fold(text).unwrap_or_else(|| unreachable!());
        let (s, e) = f.original(2, 10);
        assert_eq!(text.get(s..e), Some("５５５-1234"));
        // A finding at the very end, its last character folded.
        let text = "x 1234-５";
        let f = fold(text).unwrap_or_else(|| unreachable!());
        assert_eq!(f.original(2, f.text.len()), (2, text.len()));
    }

    #[test]
    fn odd_inputs_are_safe_and_linear() {
        for text in [
            "",
            "[",
            "[at",
            "(dot",
            "\u{200b}",
            "а",
            "\u{10ffff}",
            "[ at ]",
        ] {
            let _ = fold(text);
        }
        let n = 20_000;
        for unit in ["\u{200b}a", "[at]", "о1 ", "( dot ) ", "ａ ", " \u{a0}"] {
            let text = unit.repeat(n);
            let t = std::time::Instant::now();
            let f = fold(&text);
            assert!(f.is_some());
            assert!(t.elapsed().as_millis() < 200, "{unit}");
        }
        // One endless mixed-script word is written out as it comes.
        let word = "о1".repeat(n);
        assert!(fold(&word).is_none());
    }
}
