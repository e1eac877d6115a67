//! Numbers that are identifiers, not phone or card numbers: operands in
//! code and numbers named by the word before them (`order 4795295414`).

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
pub fn identifier(b: &[u8], start: usize, end: usize) -> bool {
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
