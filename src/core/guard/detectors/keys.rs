//! API keys a provider marks with a prefix (AWS access keys, GitHub, Slack,
//! Stripe, Google, Anthropic, OpenAI): matched from the word starts where
//! `anchors` found the prefix.

use super::super::anchors::{
    alnum, boundary, byte, domain_char, is_word, key_char, run_end, starts_with, upper_or_digit,
    RunCache,
};
use super::{any, anywhere, Caches, Detector, Matcher};

pub const AWS_ACCESS_KEY: Detector = Detector {
    guardrail: "secrets",
    name: "aws_access_key",
    matcher: Matcher::Prefixed(&["AKIA", "ASIA"], aws),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
};

pub const GITHUB: Detector = Detector {
    guardrail: "secrets",
    name: "github_token",
    matcher: Matcher::Prefixed(
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        github,
    ),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
};

pub const SLACK: Detector = Detector {
    guardrail: "secrets",
    name: "slack_token",
    matcher: Matcher::Prefixed(&["xox"], slack),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
};

pub const STRIPE: Detector = Detector {
    guardrail: "secrets",
    name: "stripe_key",
    matcher: Matcher::Prefixed(&["sk_live_", "rk_live_"], stripe),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b",
};

pub const GOOGLE: Detector = Detector {
    guardrail: "secrets",
    name: "google_api_key",
    matcher: Matcher::Prefixed(&["AIza"], google),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\bAIza[0-9A-Za-z_-]{35}\b",
};

pub const ANTHROPIC: Detector = Detector {
    guardrail: "secrets",
    name: "anthropic_key",
    matcher: Matcher::Prefixed(&["sk-ant-"], anthropic),
    validate: any,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\bsk-ant-[A-Za-z0-9_-]{20,}",
};

pub const OPENAI: Detector = Detector {
    guardrail: "secrets",
    name: "openai_key",
    matcher: Matcher::Prefixed(&["sk-"], openai),
    validate: not_anthropic,
    context: anywhere,
    #[cfg(test)]
    pattern: r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
};

/// `\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`
fn aws(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    let ok = boundary(b, s)
        && (starts_with(b, s, b"AKIA", false) || starts_with(b, s, b"ASIA", false))
        && b.get(s + 4..s + 20)
            .is_some_and(|w| w.iter().all(|c| upper_or_digit(*c)))
        && boundary(b, s + 20);
    ok.then_some(s + 20)
}

/// `\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b`
fn github(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !boundary(b, s) {
        return None;
    }
    if starts_with(b, s, b"gh", false)
        && matches!(byte(b, s + 2), b'p' | b'o' | b'u' | b's' | b'r')
        && byte(b, s + 3) == b'_'
    {
        let r = run_end(b, s + 4, alnum);
        // Fewer characters leave a letter next: no boundary there either.
        if r - (s + 4) >= 36 && !is_word(byte(b, r)) {
            return Some(r);
        }
    }
    if starts_with(b, s, b"github_pat_", false) {
        let r = run_end(b, s + 11, is_word);
        if r - (s + 11) >= 22 {
            return Some(r);
        }
    }
    None
}

/// The slack run measured last, and for it the lowest position checked
/// below its end and the highest word boundary found there.
#[derive(Default)]
pub struct SlackCache {
    run: RunCache,
    boundary: (usize, usize, Option<usize>),
}

/// `\bxox[abposr]-[A-Za-z0-9-]{10,}\b`: the longest run that ends at a
/// word boundary.
fn slack(text: &str, s: usize, caches: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    let c = &mut caches.slack;
    if !(boundary(b, s)
        && starts_with(b, s, b"xox", false)
        && matches!(byte(b, s + 3), b'a' | b'b' | b'p' | b'o' | b's' | b'r')
        && byte(b, s + 4) == b'-')
    {
        return None;
    }
    let from = s + 5;
    let r = c.run.end(b, from, domain_char);
    let lowest = from + 10;
    if r < lowest {
        return None;
    }
    // The highest boundary at or below `r` is the same for every anchor in
    // this run: search down once, and only below what was searched.
    let (cached_r, checked, found) = c.boundary;
    let (mut e, mut best) = if cached_r == r && checked <= r {
        (checked, found)
    } else {
        (r + 1, None)
    };
    while best.is_none() && e > lowest {
        e -= 1;
        if boundary(b, e) {
            best = Some(e);
        }
    }
    c.boundary = (r, e, best);
    best.filter(|x| *x >= lowest)
}

/// `\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b`
fn stripe(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !(boundary(b, s)
        && (starts_with(b, s, b"sk_live_", false) || starts_with(b, s, b"rk_live_", false)))
    {
        return None;
    }
    let r = run_end(b, s + 8, alnum);
    (r - (s + 8) >= 16 && !is_word(byte(b, r))).then_some(r)
}

/// `\bAIza[0-9A-Za-z_-]{35}\b`
fn google(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    let ok = boundary(b, s)
        && starts_with(b, s, b"AIza", false)
        && b.get(s + 4..s + 39)
            .is_some_and(|w| w.iter().all(|c| key_char(*c)))
        && boundary(b, s + 39);
    ok.then_some(s + 39)
}

/// `\bsk-ant-[A-Za-z0-9_-]{20,}`
fn anthropic(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !(boundary(b, s) && starts_with(b, s, b"sk-ant-", false)) {
        return None;
    }
    let r = run_end(b, s + 7, key_char);
    (r - (s + 7) >= 20).then_some(r)
}

/// `\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}`: the optional prefix is
/// made of the same characters, so the match is the run after `sk-`.
fn openai(text: &str, s: usize, _: &mut Caches) -> Option<usize> {
    let b = text.as_bytes();
    if !(boundary(b, s) && starts_with(b, s, b"sk-", false)) {
        return None;
    }
    let r = run_end(b, s + 3, key_char);
    (r - (s + 3) >= 20).then_some(r)
}

/// An Anthropic key also matches the OpenAI pattern (when the Anthropic
/// detector is off).
fn not_anthropic(m: &str) -> bool {
    !m.starts_with("sk-ant-")
}
