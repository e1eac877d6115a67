//! Detectors: regular expressions find candidates, validation (Luhn,
//! mod-97, number ranges) keeps only real ones. Regexes are compiled once,
//! when the configuration is loaded, and run only in the windows `anchors`
//! finds in one pass over the text.

use super::anchors::{by_first_byte, Anchor, Anchors};
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
    /// Where matches can be: the regex runs only there.
    anchor: Anchor,
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
    // Placeholders, not secrets: `<password>`, `[REDACTED]`, `********`.
    let placeholder = (value.starts_with('<') && value.ends_with('>'))
        || (value.starts_with('[') && value.ends_with(']'))
        || value
            .bytes()
            .all(|b| matches!(b, b'*' | b'x' | b'X' | b'.'));
    value.len() >= 6
        && !placeholder
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "password" | "changeme" | "example" | "redacted"
        )
        && !value.starts_with('$')
        && !value.starts_with('{')
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
        anchor: anchor(kind),
    })
}

/// What each kind's matches must contain, so its regex runs only around it.
fn anchor(kind: &str) -> Anchor {
    match kind {
        "email" => Anchor::Email,
        "card" => Anchor::Number {
            min: 13,
            dotted: false,
        },
        "ssn" => Anchor::Number {
            min: 9,
            dotted: false,
        },
        "phone" => Anchor::Number {
            min: 8,
            dotted: false,
        },
        "ip_address" => Anchor::Number {
            min: 4,
            dotted: true,
        },
        "iban" => Anchor::Iban,
        "aws_access_key" => Anchor::Prefix(&["AKIA", "ASIA"]),
        "github_token" => Anchor::Prefix(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        "slack_token" => Anchor::Prefix(&["xox"]),
        "stripe_key" => Anchor::Prefix(&["sk_live_", "rk_live_"]),
        "google_api_key" => Anchor::Prefix(&["AIza"]),
        "anthropic_key" => Anchor::Prefix(&["sk-ant-"]),
        "openai_key" => Anchor::Prefix(&["sk-"]),
        "jwt" => Anchor::Prefix(&["eyJ"]),
        "private_key" => Anchor::PrivateKey,
        _ => Anchor::Assignment, // password
    }
}

/// The compiled built-in detectors.
pub struct Detectors {
    patterns: Vec<Pattern>,
    custom: Vec<(String, Regex)>,
    /// Every prefix an `Anchor::Prefix` pattern needs, by first byte.
    prefixes: Vec<Vec<&'static str>>,
    /// The fewest digits any number pattern needs.
    min_digits: usize,
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
        let prefixes = by_first_byte(
            patterns
                .iter()
                .flat_map(|p| match p.anchor {
                    Anchor::Prefix(list) => list,
                    _ => &[],
                })
                .copied(),
        );
        let min_digits = patterns
            .iter()
            .filter_map(|p| match p.anchor {
                Anchor::Number { min, .. } => Some(min),
                _ => None,
            })
            .min()
            .unwrap_or(usize::MAX);
        Ok(Detectors {
            patterns,
            custom,
            prefixes,
            min_digits,
        })
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
        let anchors = Anchors::find(text, &self.prefixes);
        // Most stream deltas and short texts hold no anchor at all.
        if self.custom.is_empty() && anchors.none(self.min_digits) {
            return found;
        }
        for p in ordered {
            if !wanted(p.guardrail, p.kind) {
                continue;
            }
            for (from, to) in anchors.windows(p.anchor) {
                let Some(window) = text.get(..to) else {
                    continue;
                };
                let mut at = from;
                while let Some(m) = p.regex.find_at(window, at) {
                    let (start, end) = (m.start(), m.end());
                    if end == start {
                        break;
                    }
                    at = end;
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
    }
}
