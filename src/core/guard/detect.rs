//! The scan: the built-in detectors (`detectors`, each a hand-written
//! matcher that finds exactly what its regular expression finds, then
//! validation and context) run in registry order over the places `anchors`
//! found in one pass, each byte examined a bounded number of times;
//! findings are merged in order, so the overlap check (an earlier detector
//! wins) is a moving cursor. A scan is linear in the text with a small
//! constant. (The regexes used to run in windows around anchors: with
//! anchors every few bytes the windows covered the whole text at ~100 ns a
//! byte, and each finding was checked against every earlier one.) Custom
//! patterns are regexes run over the whole text.

use super::anchors::{prefix_table, Anchors, PrefixTable};
use super::detectors::{Caches, Detector, Matcher, Starts, BUILTINS};
use regex_lite::Regex;
use std::sync::Arc;

pub use super::detectors::RIGHT_CONTEXT;

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
            .map(|d| Kind::Builtin(d.name))
            .chain(custom.iter().map(|(n, _)| Kind::Custom(n.clone())))
            .collect();
        let prefixes = prefix_table(
            BUILTINS
                .iter()
                .enumerate()
                .flat_map(|(i, d)| prefixes(d).iter().map(move |p| (*p, i))),
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
        for (id, d) in BUILTINS.iter().enumerate() {
            if !wanted(d.guardrail, d.name) {
                continue;
            }
            let Some(kind_name) = self.kinds.get(id) else {
                continue;
            };
            let mut cursor = 0;
            matches(d, text, &anchors, id, &mut caches, &mut |start, end| {
                let m = text.get(start..end).unwrap_or("");
                if (d.validate)(m)
                    && (d.context)(text, start, end)
                    && !overlaps(&found, &mut cursor, start, end)
                {
                    fresh.push(Finding {
                        guardrail: d.guardrail,
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

/// Word-start prefixes that anchor a detector.
fn prefixes(d: &Detector) -> &'static [&'static str] {
    match d.matcher {
        Matcher::Prefixed(p, _) => p,
        _ => &[],
    }
}

/// Calls `emit` with every match of built-in detector `d` (index `id`) in
/// `text`, in order and not overlapping, as `find_iter` with its regex
/// would.
fn matches(
    d: &Detector,
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
    // Matches that start at an anchor.
    let mut starts = |anchors: &[usize], m: Starts, caches: &mut Caches| {
        for &s in anchors {
            if s >= at {
                found(m(text, s, caches).map(|e| (s, e)), &mut at);
            }
        }
    };
    match d.matcher {
        Matcher::Prefixed(_, m) => starts(a.prefixed(id), m, caches),
        Matcher::IbanHead(m) => starts(&a.ibans, m, caches),
        Matcher::PrivateKeyHeader(m) => starts(&a.private_keys, m, caches),
        Matcher::At(m) => {
            for &x in &a.ats {
                if x > at {
                    found(m(b, x, at), &mut at);
                }
            }
        }
        Matcher::Assignment(m) => {
            for &c in &a.assignments {
                if c > at {
                    found(m(b, c, at), &mut at);
                }
            }
        }
        Matcher::Numbers(possible, m) => {
            for run in a.numbers.iter().filter(|r| possible(r)) {
                let from = run.start.max(at);
                m(text, from, run.end, &mut |s, e| {
                    found(Some((s, e)), &mut at)
                });
            }
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
