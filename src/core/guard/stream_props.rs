//! Property test of the stream guard: for random answers built from entity
//! samples and random chunkings into deltas, what a client assembles from
//! the redacted stream equals the non-streamed redaction of the answer, and
//! a blocking stream is cut before any byte of the blocked entity. Add new
//! entity formats to `SAMPLES`: every case draws from it.

use super::stream::OutputGuard;
use super::test_rng::Rng;
use super::{Direction, GuardAction, GuardrailConfig, Guardrails, Placeholders, Policy};
use crate::core::api::Api;

/// (kind, text) of entities the built-in detectors find.
pub const SAMPLES: &[(&str, &str)] = &[
    ("email", "jane.doe@example.com"),
    ("email", "bob+news@mail.example.co.uk"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("card", "4012888888881881"),
    ("ssn", "123-45-6789"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(415) 555-0132"),
    ("phone", "415-555-0199"),
    ("ip_address", "192.168.1.20"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("github_token", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghij"),
    ("slack_token", "xoxb-1234567890-abcdefghij"),
    ("stripe_key", "sk_live_abcdefghijklmnop1234"),
    ("google_api_key", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("anthropic_key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
    ("openai_key", "sk-proj-abcdefghijklmnopqrstuvwx1234"),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\n\
         MIIEpAIBAAKCAQEA7bq0Lq3yW5kZl0rJc8Qw2mS9pVbXn4T1uHgFzYaKdEoR\n\
         hG6vN2xC8jL5sP0qW3eT9yU1iO7aS4dF6gH8jK2lZ0xC5vB3nM1qW9eR7tY\n\
         c2FtcGxlIGJvZHkgbGluZQ==\n\
         -----END RSA PRIVATE KEY-----",
    ),
    (
        "private_key",
        "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\nAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----",
    ),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("password", "password = hunter2hunter2"),
    ("password", "DB_PASSWORD: 's3cr3t-Pa55'"),
    ("password", "api_key=abcdef123456"),
    ("phone", "(0117) 496 0767"),
    ("phone", "07 33 21 02 81"),
    ("phone", "5093828416"),
    ("phone", "592-613-3671x41062"),
    ("phone", "+86 138 0013 8000"),
    ("phone", "555-123-4567 ext. 123"),
    ("phone", "+49 (0)30 901820"),
    ("card", "5038 5007 8521"),
    ("card", "503801942726"),
    (
        "aws_secret_key",
        "aws_secret_access_key = pPOu/P8o3Lm5gOCb2zVk4hioHRna6csP059T8qtz",
    ),
    ("secret_assignment", "refresh_token: jNM9HqUHND-wWJ98kHZ8"),
    // Spellings `normalize` folds: the original span is redacted.
    ("email", "jo\u{200b}hn@exa\u{200d}mple.com"),
    ("email", "mary [at] example (dot) org"),
    ("email", "j\u{43e}hn@ex\u{430}mple.com"),
    ("card", "\u{ff14}\u{ff11}\u{ff11}\u{ff11} \u{ff11}\u{ff11}\u{ff11}\u{ff11} \u{ff11}\u{ff11}\u{ff11}\u{ff11} \u{ff11}\u{ff11}\u{ff11}\u{ff11}"),
    ("ssn", "123\u{2013}45\u{2013}6789"),
    ("phone", "+44\u{a0}20\u{a0}7946\u{a0}0958"),
    ("anthropic_key", "\u{455}k-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
];

/// Text around entities: words that look like entity parts (`version`
/// before an address, a credential name, digit groups), punctuation and
/// non-ASCII text.
const FILLER: &[&str] = &[
    "",
    " ",
    "  ",
    "\n",
    ", ",
    ". ",
    " and ",
    "the answer is ",
    "version ",
    "password ",
    "key: ",
    "Call ",
    "1234 ",
    "AB12 ",
    "x",
    "é ",
    "Grüße, ",
    "日本語の文 ",
    " — ",
    "(",
    ")",
    "\"",
    "-",
    "=",
    "@",
    "----- ",
    "sk-",
    "eyJ",
    "mail me at ",
];

/// Cases per property: 2000, or `STREAM_PROP_CASES` for a longer run.
fn cases() -> usize {
    std::env::var("STREAM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A random answer: up to six entities (some repeated, some adjacent, at
/// the start and end too; or none) between filler.
fn answer(rng: &mut Rng) -> String {
    let mut text = String::new();
    let mut used: Vec<&str> = Vec::new();
    for _ in 0..rng.below(7) {
        match rng.below(4) {
            0 => {}
            1 => text.push_str(rng.pick(FILLER)),
            _ => {
                text.push_str(rng.pick(FILLER));
                text.push_str(rng.pick(FILLER));
            }
        }
        let sample = match used.last() {
            Some(last) if rng.below(4) == 0 => last,
            _ => SAMPLES.get(rng.below(SAMPLES.len())).map_or("", |s| s.1),
        };
        used.push(sample);
        // Entities glued into one run (`0767(0117) 496`, a value running
        // into the next name, `hunter2=password = ...`) are split by where
        // the run starts, which a stream can see differently (a known
        // limit, stream.rs): keep them apart.
        let glues = |c: char| c.is_ascii_alphanumeric() || "()+_".contains(c);
        let joins = |c: char| glues(c) || "=:".contains(c);
        if text.ends_with(joins) && sample.starts_with(glues) {
            text.push_str(" and ");
        }
        text.push_str(sample);
    }
    if rng.below(2) == 0 {
        text.push_str(rng.pick(FILLER));
    }
    text
}

/// `text` cut into deltas of 1 to `max` bytes, at character boundaries.
fn chunks<'t>(rng: &mut Rng, text: &'t str, max: usize) -> Vec<&'t str> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + 1 + rng.below(max)).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.extend(text.get(at..end));
        at = end;
    }
    out
}

/// The non-streamed redaction: the answer as a whole chat completion.
fn whole(g: &Guardrails, p: &Policy, text: &str) -> String {
    let mut body = serde_json::json!({"choices": [{"message": {"content": text}}]});
    g.check_response(Api::ChatCompletions, &mut body, p);
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// What the client assembles from `deltas`, and whether the stream was
/// blocked.
fn streamed(g: &Guardrails, p: &Policy, deltas: &[&str]) -> (String, bool) {
    let mut guard = OutputGuard::default();
    let mut out = String::new();
    for d in deltas {
        match guard.push(g, p, d) {
            Ok(text) => out.push_str(&text),
            Err(_) => return (out, true),
        }
    }
    match guard.flush(g, p) {
        Ok(text) => (out + &text, false),
        Err(_) => (out, true),
    }
}

#[test]
fn every_sample_is_found_alone() {
    let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
    let p = g.policy(None, None);
    for (kind, sample) in SAMPLES {
        let found = g.scan(sample, &p, Direction::Output);
        // A closing quote is not part of a password.
        let got: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.kind.to_string(),
                    f.start,
                    sample[f.end..].trim_matches('\''),
                )
            })
            .collect();
        assert_eq!(got, [(kind.to_string(), 0, "")], "{sample:?}");
    }
}

#[test]
fn a_redacted_stream_equals_the_whole_redaction_for_any_chunking() {
    let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
    let p = g.policy(None, None);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..cases() {
        let text = answer(&mut rng);
        let expected = whole(&g, &p, &text);
        let max = [1, 2, 3, 7, 16, 64][case % 6];
        let deltas = chunks(&mut rng, &text, max);
        let (got, blocked) = streamed(&g, &p, &deltas);
        assert!(!blocked);
        assert_eq!(got, expected, "case {case}: {text:?} in {deltas:?}");
    }
}

#[test]
fn a_blocking_stream_is_cut_before_the_entity() {
    let config: GuardrailConfig =
        serde_json::from_str(r#"{"secrets": {"output": "block"}}"#).unwrap();
    let g = Guardrails::new(&config).unwrap();
    let p = g.policy(None, None);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for case in 0..cases() / 2 {
        let text = answer(&mut rng);
        let findings = g.scan(&text, &p, Direction::Output);
        let block = findings
            .iter()
            .position(|f| p.action(f.guardrail, Direction::Output) == GuardAction::Block);
        // The answer up to the first blocked entity, PII redacted.
        let before = block.map_or(&findings[..], |i| &findings[..i]);
        let end = block
            .and_then(|i| findings.get(i))
            .map_or(text.len(), |f| f.start);
        let redact: Vec<_> = before.iter().collect();
        let allowed = Placeholders::default().redact(&text[..end], &redact);
        let deltas = chunks(&mut rng, &text, [1, 3, 7, 16][case % 4]);
        let (got, blocked) = streamed(&g, &p, &deltas);
        assert_eq!(blocked, block.is_some(), "case {case}: {text:?}");
        assert!(
            allowed.starts_with(&got),
            "case {case}: {text:?} in {deltas:?} gave {got:?}, allowed {allowed:?}"
        );
        if !blocked {
            assert_eq!(got, allowed);
        }
    }
}
