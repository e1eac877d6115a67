//! Detectors: regular expressions find candidates, validation (Luhn,
//! mod-97, number ranges) keeps only real ones. Regexes are compiled once,
//! when the configuration is loaded.

use regex_lite::Regex;

/// One detected entity: which guardrail, what kind, and where (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub guardrail: &'static str,
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

struct Pattern {
    guardrail: &'static str,
    kind: &'static str,
    regex: Regex,
    validate: fn(&str) -> bool,
    /// A cheap test that a match is possible at all: regex-lite has no
    /// literal optimizations, so most text must skip most regexes.
    maybe: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

fn luhn(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || d.iter().all(|x| *x == d.first().copied().unwrap_or(0)) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, x)| {
            if i % 2 == 1 {
                if x * 2 > 9 {
                    x * 2 - 9
                } else {
                    x * 2
                }
            } else {
                *x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        for d in v.to_string().chars().filter_map(|c| c.to_digit(10)) {
            rem = (rem * 10 + d) % 97;
        }
    }
    rem == 1
}

fn ssn(s: &str) -> bool {
    let d = digits(s);
    let area = d.iter().take(3).fold(0, |a, x| a * 10 + x);
    let group = d.iter().skip(3).take(2).fold(0, |a, x| a * 10 + x);
    let serial = d.iter().skip(5).fold(0, |a, x| a * 10 + x);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| p.parse::<u16>().is_ok_and(|n| n <= 255) && !(p.len() > 1 && p.starts_with('0')))
        // Version strings like 1.2.3.4 are rarer than addresses, but 0.x and
        // 255.255.255.x masks are not personal data.
        && !s.starts_with("0.")
        && !s.starts_with("255.")
}

fn phone(s: &str) -> bool {
    let n = digits(s).len();
    (8..=15).contains(&n)
}

fn password(s: &str) -> bool {
    let value = s
        .rsplit(['=', ':'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\'']);
    value.len() >= 6
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "<password>" | "password" | "******" | "changeme" | "example"
        )
        && !value.starts_with('$')
        && !value.starts_with('{')
}

/// Whether `text` has `min` digits in one run broken only by number
/// separators (`4111 1111 ...`, `+44 (20) 7946-0958`).
fn digit_run(text: &str, min: usize) -> bool {
    let mut digits = 0;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits >= min {
                    return true;
                }
            }
            b' ' | b'-' | b'(' | b')' | b'+' | b'.' => {}
            _ => digits = 0,
        }
    }
    false
}

/// `d.d`: the shape every IPv4 address has.
fn dotted_digits(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| matches!(w, [a, b'.', c] if a.is_ascii_digit() && c.is_ascii_digit()))
}

/// Two capital letters then two digits: how every IBAN starts.
fn iban_start(text: &str) -> bool {
    text.as_bytes().windows(4).any(iban_start_bytes)
}

fn prefilter(kind: &str) -> fn(&str) -> bool {
    match kind {
        "email" => |t| t.contains('@'),
        "card" => |t| digit_run(t, 13),
        "ssn" => |t| digit_run(t, 9),
        "phone" => |t| digit_run(t, 8),
        "ip_address" => dotted_digits,
        "iban" => iban_start,
        "aws_access_key" => |t| t.contains("AKIA") || t.contains("ASIA"),
        "github_token" => |t| t.contains("gh") || t.contains("github_pat_"),
        "slack_token" => |t| t.contains("xox"),
        "stripe_key" => |t| t.contains("_live_"),
        "google_api_key" => |t| t.contains("AIza"),
        "anthropic_key" | "openai_key" => |t| t.contains("sk-"),
        "private_key" => |t| t.contains("PRIVATE KEY"),
        "jwt" => |t| t.contains("eyJ"),
        "password" => |t| t.contains('=') || t.contains(':'),
        _ => |_| true,
    }
}

/// The parts of `text` a pattern can match in: around its anchor (an `@`,
/// the start of a digit run, a key prefix), widened to whitespace and merged.
/// Running the regex on these few windows instead of the whole text is what
/// keeps an 8 KB request cheap.
fn windows(kind: &str, text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let (before, after, anchors): (usize, usize, Vec<usize>) = match kind {
        "email" => (64, 256, positions(bytes, |i| bytes.get(i) == Some(&b'@'))),
        "card" | "ssn" | "phone" | "ip_address" => (
            8,
            64,
            positions(bytes, |i| {
                bytes.get(i).is_some_and(u8::is_ascii_digit)
                    && (i == 0 || !bytes.get(i - 1).is_some_and(u8::is_ascii_digit))
            }),
        ),
        "iban" => (
            4,
            48,
            positions(bytes, |i| bytes.get(i..i + 4).is_some_and(iban_start_bytes)),
        ),
        "private_key" => (32, 16_384, literal(text, "PRIVATE KEY")),
        "password" => (
            48,
            96,
            positions(bytes, |i| matches!(bytes.get(i), Some(b'=' | b':'))),
        ),
        "aws_access_key" => (
            8,
            40,
            [literal(text, "AKIA"), literal(text, "ASIA")].concat(),
        ),
        "github_token" => (
            8,
            120,
            [literal(text, "gh"), literal(text, "github_pat_")].concat(),
        ),
        "slack_token" => (8, 120, literal(text, "xox")),
        "stripe_key" => (8, 120, literal(text, "_live_")),
        "google_api_key" => (8, 60, literal(text, "AIza")),
        "anthropic_key" | "openai_key" => (8, 200, literal(text, "sk-")),
        "jwt" => (8, 2048, literal(text, "eyJ")),
        _ => return vec![(0, text.len())],
    };
    let mut out: Vec<(usize, usize)> = Vec::new();
    for at in anchors {
        let mut from = at.saturating_sub(before);
        let mut to = (at + after).min(text.len());
        // Widen to whitespace so `\b` at a window edge means what it says.
        while from > 0
            && !bytes.get(from - 1).is_some_and(u8::is_ascii_whitespace)
            && at - from < before * 4
        {
            from -= 1;
        }
        while to < text.len()
            && !bytes.get(to).is_some_and(u8::is_ascii_whitespace)
            && to - at < after * 4
        {
            to += 1;
        }
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        while !text.is_char_boundary(to) {
            to += 1;
        }
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

fn positions(bytes: &[u8], hit: impl Fn(usize) -> bool) -> Vec<usize> {
    (0..bytes.len()).filter(|i| hit(*i)).collect()
}

fn literal(text: &str, needle: &str) -> Vec<usize> {
    text.match_indices(needle).map(|(i, _)| i).collect()
}

fn iban_start_bytes(w: &[u8]) -> bool {
    matches!(w, [a, b, c, d] if a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_digit() && d.is_ascii_digit())
}

/// `version 1.2.3.4` and `v1.2.3.4` are versions, not addresses.
fn version_number(kind: &str, text: &str, start: usize) -> bool {
    if kind != "ip_address" {
        return false;
    }
    let before = text
        .get(start.saturating_sub(12)..start)
        .unwrap_or("")
        .to_ascii_lowercase();
    let before = before.trim_end();
    before.ends_with("version")
        || before.ends_with('v')
        || before.ends_with("release")
        || before.ends_with("build")
}

fn pattern(
    guardrail: &'static str,
    kind: &'static str,
    re: &str,
    validate: fn(&str) -> bool,
) -> Result<Pattern, String> {
    let regex = Regex::new(re).map_err(|e| format!("built-in pattern {kind}: {e}"))?;
    Ok(Pattern {
        guardrail,
        kind,
        regex,
        validate,
        maybe: prefilter(kind),
    })
}

/// The compiled built-in detectors.
pub struct Detectors {
    patterns: Vec<Pattern>,
    custom: Vec<(String, Regex)>,
}

impl Detectors {
    pub fn new(custom: &[(String, String)]) -> Result<Detectors, String> {
        let patterns = vec![
            pattern(
                "pii",
                "email",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                any,
            )?,
            pattern("pii", "card", r"\b(?:\d[ -]?){12,18}\d\b", luhn)?,
            pattern("pii", "ssn", r"\b\d{3}-\d{2}-\d{4}\b", ssn)?,
            pattern(
                "pii",
                "iban",
                r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
                iban,
            )?,
            pattern(
                "pii",
                "phone",
                r"(?:\+\d{1,3}[ .-]?)(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}\b|\(\d{3}\) ?\d{3}-\d{4}\b|\b\d{3}-\d{3}-\d{4}\b",
                phone,
            )?,
            pattern("pii", "ip_address", r"\b(?:\d{1,3}\.){3}\d{1,3}\b", ipv4)?,
            pattern(
                "secrets",
                "aws_access_key",
                r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
                any,
            )?,
            pattern(
                "secrets",
                "github_token",
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
                any,
            )?,
            pattern(
                "secrets",
                "slack_token",
                r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
                any,
            )?,
            pattern(
                "secrets",
                "stripe_key",
                r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b",
                any,
            )?,
            pattern(
                "secrets",
                "google_api_key",
                r"\bAIza[0-9A-Za-z_-]{35}\b",
                any,
            )?,
            pattern(
                "secrets",
                "anthropic_key",
                r"\bsk-ant-[A-Za-z0-9_-]{20,}",
                any,
            )?,
            pattern(
                "secrets",
                "openai_key",
                r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
                |s| !s.starts_with("sk-ant-"),
            )?,
            pattern(
                "secrets",
                "private_key",
                r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
                any,
            )?,
            pattern(
                "secrets",
                "jwt",
                r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
                any,
            )?,
            pattern(
                "secrets",
                "password",
                r#"(?i)\b[a-z0-9_]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)\s*[:=]\s*["']?[^\s"',;]{6,}"#,
                password,
            )?,
        ];
        let custom = custom
            .iter()
            .map(|(name, re)| {
                Regex::new(re)
                    .map(|r| (name.clone(), r))
                    .map_err(|e| format!("custom pattern `{name}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Detectors { patterns, custom })
    }

    /// PII, secrets and custom patterns in `text`, without overlaps (the
    /// earlier-listed detector wins: secrets are checked before PII below).
    pub fn scan(&self, text: &str, wanted: impl Fn(&str, &str) -> bool) -> Vec<Finding> {
        let mut found: Vec<Finding> = Vec::new();
        let ordered = self
            .patterns
            .iter()
            .filter(|p| p.guardrail == "secrets")
            .chain(self.patterns.iter().filter(|p| p.guardrail != "secrets"));
        for p in ordered {
            if !wanted(p.guardrail, p.kind) || !(p.maybe)(text) {
                continue;
            }
            for (from, to) in windows(p.kind, text) {
                let Some(slice) = text.get(from..to) else {
                    continue;
                };
                for m in p.regex.find_iter(slice) {
                    let (start, end) = (from + m.start(), from + m.end());
                    let overlaps = found.iter().any(|f| start < f.end && f.start < end);
                    if !overlaps && (p.validate)(m.as_str()) && !version_number(p.kind, text, start)
                    {
                        found.push(Finding {
                            guardrail: p.guardrail,
                            kind: p.kind.into(),
                            start,
                            end,
                        });
                    }
                }
            }
        }
        for (name, regex) in &self.custom {
            if !wanted("custom", name) {
                continue;
            }
            for m in regex.find_iter(text) {
                if !found.iter().any(|f| m.start() < f.end && f.start < m.end()) {
                    found.push(Finding {
                        guardrail: "custom",
                        kind: name.clone(),
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        found.sort_by_key(|f| f.start);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<String> {
        let d = Detectors::new(&[("ticket".into(), r"TCK-\d{6}".into())]).unwrap();
        d.scan(text, |_, _| true)
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn pii_with_validation() {
        assert_eq!(kinds("mail jane.doe@example.co.uk now"), ["email"]);
        assert_eq!(kinds("card 4111 1111 1111 1111 ok"), ["card"]);
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
        assert_eq!(
            kinds("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"),
            ["private_key"]
        );
        assert_eq!(kinds("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"), ["jwt"]);
    }
}
