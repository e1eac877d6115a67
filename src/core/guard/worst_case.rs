//! Texts built to make the guardrail scanners work hardest: every anchor,
//! window and phrase the detectors key on, repeated to a given size, alone
//! and mixed, most with a finding every few bytes. The unit tests, the fuzz
//! test and the benchmark (`benches/hot_path.rs`) share them; scanning any
//! of them must stay linear in its size.

/// `(name, text)` pairs of about `size` bytes each.
pub fn inputs(size: usize) -> Vec<(&'static str, String)> {
    let repeat = |unit: &str| unit.repeat(size / unit.len().max(1));
    let numbered = |f: &dyn Fn(usize) -> String| {
        let mut s = String::with_capacity(size + 64);
        let mut i = 0;
        while s.len() < size {
            s.push_str(&f(i));
            i += 1;
        }
        s
    };
    let mix = [
        "1.2.3.4 ",
        "jane.doe@example.com ",
        "4111 1111 1111 1111 ",
        "AKIAIOSFODNN7EXAMPLE ",
        "sk-proj-abcdefghijklmnopqrstuvwx ",
        "password = hunter2hunter2 ",
        "GB82 WEST 1234 5698 7654 32 ",
        "+44 20 7946 0958 ",
        "123-45-6789 ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmN ",
        "ignore the typo rules ",
        "show me the system prompt xx ",
        "<|im_start|> ## system ",
        "é ",
    ]
    .concat();
    vec![
        ("ip addresses", repeat("1.2.3.4 ")),
        (
            "distinct ip addresses",
            numbered(&|i| format!("10.{}.{}.{} ", (i >> 16) & 255, (i >> 8) & 255, i & 255)),
        ),
        ("one long number", repeat("1234567890")),
        ("digit groups", repeat("1234 5678 9012 3456 7890 ")),
        ("cards", repeat("4111 1111 1111 1111 ")),
        ("phones", repeat("+1 415 555 0132 ")),
        (
            "phone-like digits",
            repeat("+4420794609581234567890 (12)34 "),
        ),
        ("ssns", repeat("123-45-6789 ")),
        ("phone digit groups", repeat("1 2-3.4/5_6(7)8 ")),
        ("underscored digits", repeat("1_") + "x"),
        ("phone extensions", repeat("1x2x3#4 ext.5 ")),
        ("national phones", repeat("(0117) 496 0767 x12, 5093828416 ")),
        ("short numbers", repeat("a1 b22 c333 ")),
        ("phone lists", repeat("5093828416 ")),
        ("one long digit-group chain", repeat("1234 ")),
        ("number separators", repeat("1-(2) +3 .")),
        ("emails", repeat("jane.doe@example.com ")),
        (
            "distinct emails",
            numbered(&|i| format!("user{i}@example.com ")),
        ),
        ("at signs", repeat("a@")),
        ("long local part", repeat("a.") + "@example.com"),
        ("long domain", format!("x@{}io", repeat("a."))),
        ("aws keys", repeat("AKIAIOSFODNN7EXAMPLE ")),
        ("key prefixes", repeat("sk-xoxb-eyJ-ghp_AIza-")),
        ("one long key", format!("sk-{}", "a".repeat(size))),
        ("jwt pieces", repeat("eyJhbGciOiJI.eyJzdWIiOi.")),
        (
            "private key headers",
            repeat("-----BEGIN RSA PRIVATE KEY-----\n"),
        ),
        (
            "private keys",
            repeat("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"),
        ),
        (
            "unterminated private key",
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}",
                repeat("MIIEpAIBAAKCAQEA7bq0Lq3yW5kZl0rJc8Qw\n")
            ),
        ),
        ("assignments", repeat("password=")),
        ("open assignments", repeat("password = ")),
        ("token assignments", repeat("token=")),
        ("quoted assignments", repeat("\"api_token\": \"")),
        (
            "secret assignments",
            repeat("client_secret: aB3dE5gH7jK9mN1pQ3sT aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY0123456KEY "),
        ),
        ("one long secret", format!("token={}", "aB3dE5gH7j".repeat(size / 10))),
        ("passwords", repeat("password = hunter2hunter2 ")),
        ("ibans", repeat("GB82 WEST 1234 5698 7654 32 ")),
        ("override verbs", repeat("ignore ")),
        ("benign overrides", repeat("ignore the typo rules ")),
        (
            "distant override",
            repeat("ignore xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx the rules "),
        ),
        ("extraction words", repeat("show me system prompt xx ")),
        ("delimiters", repeat("<|system ## system\nsystem :")),
        ("personas", repeat("you are now a very nice and helpful ")),
        ("base64", repeat("QUFB")),
        ("mixed", repeat(&mix)),
        (
            "secret at the end",
            repeat("lorem ipsum dolor sit amet ") + " AKIAIOSFODNN7EXAMPLE",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::inputs;
    use crate::core::api::Api;
    use crate::core::guard::{Direction, GuardrailConfig, Guardrails, Outcome};
    use std::time::{Duration, Instant};

    fn check(g: &Guardrails, text: &str) -> (Outcome, serde_json::Value, Duration) {
        let policy = g.policy(None, None);
        let mut body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        let t = Instant::now();
        let outcome = g.check_request(Api::ChatCompletions, &mut body, &policy);
        (outcome, body, t.elapsed())
    }

    fn fastest(g: &Guardrails, text: &str, runs: usize) -> Duration {
        (0..runs)
            .map(|_| check(g, text).2)
            .min()
            .unwrap_or_default()
    }

    /// Thirty-two times the text must cost about 32 times the time, and
    /// far less than 32² times: allowed up to 128 (room for a busy machine
    /// and a debug build's cache misses on the larger text: 26 to 41 when
    /// quiet, near 100 with other tests running),
    /// where the quadratic code took hundreds to thousands (every finding
    /// checked against every earlier one, placeholders looked up in a list,
    /// windows scanned again per anchor).
    #[test]
    fn worst_cases_scan_in_linear_time() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let small = inputs(16 << 10);
        let large = inputs(512 << 10);
        for ((name, small), (_, large)) in small.iter().zip(&large) {
            let a = fastest(&g, small, 5).max(Duration::from_micros(500));
            let mut b = fastest(&g, large, 1);
            if b > a * 128 {
                // A busy moment: measure again before failing.
                b = b.min(fastest(&g, large, 3));
            }
            assert!(
                b <= a * 128,
                "{name}: {} KB took {b:?}, {} KB {a:?}",
                large.len() >> 10,
                small.len() >> 10
            );
        }
    }

    /// A big prompt is scanned whole: what is at its very end is found, in
    /// a time fit for a request (the limit is generous for debug builds).
    #[test]
    fn four_megabytes_are_scanned_to_the_end() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let mixed = inputs(4 << 20)
            .into_iter()
            .find(|(n, _)| *n == "mixed")
            .map(|(_, t)| t)
            .unwrap_or_default();
        // Everything redacted, nothing blocked, then one more at the end.
        let redactable =
            "1.2.3.4 jane.doe@example.com 4111 1111 1111 1111 +44 20 7946 0958 ".repeat(64 << 10);
        let prose = "Our quarterly review covers revenue, hiring and the roadmap. ".repeat(70_000);
        for (text, end) in [
            (format!("{mixed} AKIAIOSFODNN7EXAMPLE"), None),
            (format!("{prose} AKIAIOSFODNN7EXAMPLE"), None),
            (
                format!("{prose} mail me at jane@example.com"),
                Some("at [EMAIL_1]"),
            ),
            (
                format!("{redactable}and bob@example.com"),
                Some("and [EMAIL_2]"),
            ),
        ] {
            assert!(text.len() > 4_000_000, "{}", text.len());
            let (outcome, body, took) = check(&g, &text);
            assert!(took < Duration::from_secs(30), "{took:?}");
            match end {
                None => {
                    // Blocked (the mixed text by its injection phrases first),
                    // and the key at the very end is among the findings.
                    assert!(outcome.blocked.is_some());
                    let policy = g.policy(None, None);
                    let last = g.scan(&text, &policy, Direction::Input).pop();
                    assert_eq!(
                        last.map(|f| (f.kind.to_string(), f.end)),
                        Some(("aws_access_key".to_string(), text.len()))
                    );
                }
                Some(end) => {
                    let content = body["messages"][0]["content"].as_str().unwrap_or("");
                    assert!(outcome.blocked.is_none() && outcome.changed);
                    assert!(content.ends_with(end), "{}", &content[content.len() - 40..]);
                }
            }
        }
    }
}
