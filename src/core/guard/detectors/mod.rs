//! The built-in detectors, one file each (or per family sharing a
//! matcher), and their registry. A file defines its detector: its matcher,
//! written by hand to find exactly what its regular expression (the
//! `pattern`, checked by the `equivalence` tests) finds with leftmost-first
//! `find_iter` semantics; the validation that keeps only real ones
//! (checksums, number ranges, grammars, entropy); and the context that
//! rules some out. `detect` runs them in `BUILTINS` order.

mod assignment;
mod aws_secret;
mod card;
mod email;
mod iban;
mod identifier;
mod ip;
mod jwt;
mod keys;
mod password;
mod phone;
mod private_key;
#[cfg(test)]
pub(crate) mod reference;
mod secret_assignment;
mod ssn;

use super::anchors::NumberRun;
pub use identifier::RIGHT_CONTEXT;

/// One built-in detector.
pub struct Detector {
    pub guardrail: &'static str,
    pub name: &'static str,
    pub matcher: Matcher,
    /// Whether a match is one (a checksum, a range, not a placeholder).
    pub validate: fn(&str) -> bool,
    /// Whether the text around `start..end` leaves the match one.
    pub context: fn(&str, usize, usize) -> bool,
    /// The regex the matcher implements.
    #[cfg(test)]
    pub pattern: &'static str,
}

/// Where a detector's matches can be (which anchors), and its matcher.
pub enum Matcher {
    /// From word starts with one of these prefixes.
    Prefixed(&'static [&'static str], Starts),
    /// From IBAN heads (`[A-Z]{2}\d{2}` at a word start).
    IbanHead(Starts),
    /// From private key headers.
    PrivateKeyHeader(Starts),
    /// Around an `@`.
    At(Around),
    /// Around a `:`/`=` after a credential name.
    Assignment(Around),
    /// In the number runs the first function keeps (those that hold enough
    /// for a match).
    Numbers(fn(&NumberRun) -> bool, InRun),
}

/// Where the match from `start` ends, if there is one.
pub type Starts = fn(text: &str, start: usize, caches: &mut Caches) -> Option<usize>;

/// The match around the mark at `x` that starts at or after `at`.
pub type Around = fn(b: &[u8], x: usize, at: usize) -> Option<(usize, usize)>;

/// Every match in `text[from..to]`, in order and not overlapping.
pub type InRun = fn(text: &str, from: usize, to: usize, emit: &mut dyn FnMut(usize, usize));

/// The built-in detectors in the order they claim text: secrets before PII,
/// and an earlier detector wins an overlap. A detector's index here is its
/// `Finding::detector`.
pub const BUILTINS: [Detector; 18] = [
    keys::AWS_ACCESS_KEY,
    aws_secret::DETECTOR,
    keys::GITHUB,
    keys::SLACK,
    keys::STRIPE,
    keys::GOOGLE,
    keys::ANTHROPIC,
    keys::OPENAI,
    private_key::DETECTOR,
    jwt::DETECTOR,
    password::DETECTOR,
    secret_assignment::DETECTOR,
    email::DETECTOR,
    card::DETECTOR,
    ssn::DETECTOR,
    iban::DETECTOR,
    phone::DETECTOR,
    ip::DETECTOR,
];

/// Run caches the matchers share within one scan.
#[derive(Default)]
pub struct Caches {
    jwt: jwt::Cache,
    slack: keys::SlackCache,
}

/// Validation for detectors whose pattern is enough.
fn any(_: &str) -> bool {
    true
}

/// Context for detectors that do not look around their match.
fn anywhere(_: &str, _: usize, _: usize) -> bool {
    true
}

/// Tries `step` at each position of `from..to`: `Ok(Some(match))` is
/// emitted and the search goes on after it, `Ok(None)` goes on at the next
/// position, `Err(next)` at `next` (skipping what cannot hold a match).
/// `step` also gets the end of the last match (or `from`).
fn each_start(
    from: usize,
    to: usize,
    emit: &mut dyn FnMut(usize, usize),
    mut step: impl FnMut(usize, usize) -> Result<Option<(usize, usize)>, usize>,
) {
    let mut at = from;
    let mut s = from;
    while s < to {
        match step(s, at) {
            Ok(Some((start, e))) => {
                emit(start, e);
                s = e;
                at = e;
            }
            Ok(None) => s += 1,
            Err(next) => s = next.max(s + 1),
        }
    }
}
