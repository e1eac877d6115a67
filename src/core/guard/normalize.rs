//! Text as the detectors read it: the spellings that hide an entity from a
//! byte-level matcher are folded away, and every byte of the folded text
//! remembers the span of the original it came from, so a finding redacts
//! the original span (zero-width characters inside it included).
//!
//! Folded: zero-width, bidi and other invisible characters (dropped);
//! fullwidth forms, mathematical alphanumerics, circled letters,
//! superscript and subscript digits and the decimal digits of other
//! scripts (to ASCII); every kind of space (to ` `), dash (to `-`) and
//! middle dot (to `.`); Cyrillic and Greek look-alike letters inside a word
//! that also has ASCII letters or digits (`ѕk-…`, `jоhn@…`); and the
//! spelled-out `[at]` / `(dot)` of an e-mail address, with the spaces
//! around them. Case is kept. Text that holds none of these (most of it)
//! is not copied. The learned injection model shares the per-character
//! folds (`fold_form`, `confusable`) and adds its own (case, accents).

/// `text` as the detectors read it, or `None` when folding changes nothing.
pub struct Folded {
    pub text: String,
    /// For each byte of `text`, the original span it stands for.
    spans: Vec<(u32, u32)>,
}

impl Folded {
    /// The original span of `text[start..end]` (a finding's).
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let first = self.spans.get(start).map_or(0, |s| s.0);
        let last = end
            .checked_sub(1)
            .and_then(|e| self.spans.get(e))
            .map_or(first, |s| s.1);
        (first as usize, last.max(first) as usize)
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
        0xb7 | 0x2027 | 0x2219 | 0x22c5 | 0x30fb | 0xff65 => '.',
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

/// `[at]`, `(dot)`, `{at}`, `<dot>` (any case, spaces inside allowed) at
/// `b[i]`: the character it spells and its length.
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
    let (c, n) = if word(b"at") {
        ('@', 2)
    } else if word(b"dot") {
        ('.', 3)
    } else {
        return None;
    };
    j += n;
    skip(&mut j);
    (b.get(j) == Some(&close)).then_some((c, j + 1 - i))
}

/// Whether folding could change `text`: a character that folds or looks
/// like a Latin letter, or a bracket that spells `at` or `dot`.
fn may_fold(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'[' | b'(' | b'{' | b'<' => spelled(b, i).is_some(),
        // The first byte of a character beyond ASCII.
        0xc0.. => text
            .get(i..)
            .and_then(|t| t.chars().next())
            .is_some_and(|c| fold_for_detectors(c) != Some(c) || look_alike(c).is_some()),
        _ => false,
    })
}

/// One character of the folded text and the original span it stands for.
type Piece = (char, u32, u32);

/// `text` folded for the detectors, or `None` if nothing changes. Linear:
/// each character is folded once and each word looked at twice.
pub fn fold(text: &str) -> Option<Folded> {
    if !may_fold(text) {
        return None;
    }
    let b = text.as_bytes();
    let mut pieces: Vec<Piece> = Vec::with_capacity(text.len());
    let mut changed = false;
    // The current word's first piece, and what it holds.
    let (mut word, mut ascii, mut alike) = (0usize, false, false);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = chars.peek().map_or(text.len(), |(j, _)| *j);
        let (s, e) = (i as u32, end as u32);
        if let Some((spelled, len)) = spelled(b, i) {
            // The spaces around a spelled `@` or `.` go with it.
            let mut start = s;
            while pieces.last().is_some_and(|p| p.0 == ' ') {
                start = pieces.pop().map_or(start, |p| p.1);
            }
            let mut stop = i + len;
            while b.get(stop) == Some(&b' ') {
                stop += 1;
            }
            while chars.peek().is_some_and(|(j, _)| *j < stop) {
                chars.next();
            }
            pieces.push((spelled, start, stop as u32));
            changed = true;
            word = pieces.len();
            (ascii, alike) = (false, false);
            continue;
        }
        let folded = if c.is_ascii() {
            Some(c)
        } else {
            fold_for_detectors(c)
        };
        let Some(f) = folded else {
            changed = true;
            continue;
        };
        changed |= f != c;
        if f.is_ascii_alphanumeric() {
            ascii = true;
        } else if look_alike(f).is_some() {
            alike = true;
        } else if !f.is_alphanumeric() {
            // A word ends: its look-alikes fold if it mixes scripts.
            fold_word(pieces.get_mut(word..), ascii && alike, &mut changed);
            word = pieces.len() + 1;
            (ascii, alike) = (false, false);
        }
        pieces.push((f, s, e));
    }
    fold_word(pieces.get_mut(word..), ascii && alike, &mut changed);
    if !changed {
        return None;
    }
    let mut folded = Folded {
        text: String::with_capacity(pieces.len()),
        spans: Vec::with_capacity(pieces.len()),
    };
    for (c, s, e) in pieces {
        folded.text.push(c);
        folded
            .spans
            .extend(std::iter::repeat_n((s, e), c.len_utf8()));
    }
    Some(folded)
}

/// Folds the look-alike letters of one word when it mixes scripts.
fn fold_word(word: Option<&mut [Piece]>, mixed: bool, changed: &mut bool) {
    let Some(word) = word.filter(|_| mixed) else {
        return;
    };
    for p in word {
        if let Some(l) = look_alike(p.0) {
            p.0 = l;
            *changed = true;
        }
    }
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
        assert_eq!(folded("５５５–１２３·4567"), "555-123.4567");
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
        for unit in ["\u{200b}a", "[at]", "о1", "( dot ) ", "ａ "] {
            let text = unit.repeat(n);
            let t = std::time::Instant::now();
            let f = fold(&text);
            assert!(f.is_some());
            assert!(t.elapsed().as_millis() < 200, "{unit}");
        }
    }
}
