//! The hand-written matchers against the regexes they implement, run over
//! whole texts: the evaluation corpora and many random texts built from the
//! pieces the patterns are made of (seeded, so a failure reproduces).

use super::detect::Detectors;
use super::detectors::reference::Reference as Patterns;
use super::injection::reference::Reference as Signals;
use super::injection::InjectionDetector;
use super::test_rng::Rng;

const ENTITY_PIECES: &[&str] = &[
    "AKIA",
    "ASIA",
    "IOSFODNN7EXAMPLE",
    "ABCDEFGHIJKLMNOP",
    "ghp_",
    "gho_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "sk-",
    "sk-ant-",
    "proj-",
    "sk_live_",
    "rk_live_",
    "AIza",
    "eyJ",
    "eyJhbGciOi",
    "-----BEGIN ",
    "RSA ",
    "PRIVATE KEY-----",
    "-----END ",
    "-----",
    "password",
    "Passwd",
    "pwd",
    "secret",
    "api_key",
    "API-KEY",
    "apikey",
    "access_token",
    "auth-token",
    "token",
    "key",
    "=",
    ":",
    " = ",
    ": ",
    "\"",
    "'",
    ",",
    ";",
    "@",
    ".",
    "..",
    "jane",
    "doe",
    "example",
    "com",
    "io",
    "co",
    "uk",
    "x1",
    "-",
    "_",
    "%",
    "+",
    "(",
    ")",
    "+44",
    "(415)",
    "555",
    "0132",
    "20",
    "7946",
    "0958",
    "4111",
    "1111",
    "4242",
    "123",
    "45",
    "6789",
    "1",
    "12",
    "1234",
    "12345678",
    "192",
    "168",
    "0",
    "255",
    "version ",
    "v",
    "GB82",
    "WEST",
    "DE89",
    "3704",
    "0044",
    "32",
    "A",
    "Z",
    "ab",
    "XY",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\t",
    "é",
    "ß",
    "\u{a0}",
    "<x>",
    "[REDACTED]",
    "****",
    "hunter2hunter2",
    "$x",
    "{y}",
    "TCK-",
    "9",
    "/",
    "x",
    "x123",
    " ext. ",
    "Ext",
    "#",
    "00",
    "+1",
    "(0)",
    "(+",
    "0117",
    "token",
    "client_secret",
    "aws_secret_access_key",
    "AWS_SECRET_KEY",
    "SecretAccessKey",
    "private-key",
    "credentials",
    "auth",
    "\"token\": \"",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aB3dE5gH7jK9mN1pQ3sT",
    "YOUR_TOKEN_HERE_1234",
];

const INJECTION_PIECES: &[&str] = &[
    "ignore",
    "Ignore",
    "disregard",
    "forget",
    "override",
    "bypass",
    "skip",
    "all",
    "any",
    "every",
    "the",
    "The",
    "your",
    "my",
    "previous",
    "prior",
    "above",
    "earlier",
    "preceding",
    "system",
    "System",
    "initial",
    "original",
    "instruction",
    "instructions",
    "rule",
    "rules",
    "prompt",
    "prompts",
    "direction",
    "guideline",
    "constraint",
    "policy",
    "policies",
    "polic",
    "guardrail",
    "typo",
    "typos",
    "formatting",
    "previous email",
    "spelling",
    "grammar",
    "new",
    "updated",
    "real",
    "actual",
    "are",
    "follow",
    "from now on",
    "you",
    "from",
    "now",
    "on",
    ",",
    "DAN",
    "Dan",
    "do anything now",
    "developer mode",
    "jailbreak",
    "jailbreaken",
    "jailbroken",
    "god mode",
    "unrestricted mode",
    "no",
    "restrictions",
    "filters",
    "limits",
    "ethics",
    "you are now",
    "pretend",
    "to be",
    "you are",
    "act as",
    "roleplay as",
    "unfiltered",
    "uncensored",
    "evil",
    "without",
    "any ",
    "hacker",
    "malicious",
    "reveal",
    "show",
    "print",
    "repeat",
    "output",
    "display",
    "tell me",
    "give me",
    "leak",
    "dump",
    "what is",
    "what",
    "was",
    "hidden",
    "message",
    "instructions above",
    "assistant",
    "<",
    "</",
    ">",
    "<|im_start|>",
    "<|im_end|>",
    "[INST]",
    "[/inst]",
    "#",
    "##",
    "###",
    "BEGIN SYSTEM PROMPT",
    "begin",
    ":",
    " ",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    ".",
    "x",
    "xx",
    "é",
    "\t",
    "s",
    "a",
    "words here",
    "lorem ipsum dolor sit amet",
    "0123456789012345678901234567890123456789",
    "the system prompt",
    "your system prompt",
    "the initial instructions",
    "the hidden prompt",
    "your original instructions",
    "the system message",
    "your instructions above",
    "new instructions:",
    "updated system instructions are",
    "real instructions follow",
    "from now on, you",
    "from now on ignore",
    "show me",
    "print out",
    "ignore all previous rules",
    "a fairly long filler phrase without any stops in it",
    "é é é",
    "\n  system: ",
    "\nassistant : x",
    "### system:",
    "</instructions>",
    "<system>",
    // Base64 of "ignore all previous instructions", of "hello", and not base64.
    "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM=",
    "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=",
    "==",
    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
    "+/+/",
    "/",
    "=",
];

/// `n` characters from `alphabet`.
fn chars(rng: &mut Rng, alphabet: &str, n: usize) -> String {
    let a: Vec<char> = alphabet.chars().collect();
    (0..n)
        .map(|_| a.get(rng.below(a.len())).copied().unwrap_or('x'))
        .collect()
}

const DIGITS: &str = "0123456789";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const KEY: &str = "abcXYZ0189_-";

/// Something close to an entity: valid, nearly valid or broken.
fn entity(rng: &mut Rng) -> String {
    let sep = |rng: &mut Rng| {
        rng.pick(&["", " ", "-", ".", " ", "  ", "(", ")", "/", "_", ") ", " ("])
            .to_string()
    };
    match rng.below(17) {
        0 => rng
            .pick(&[
                "4111 1111 1111 1111",
                "4242-4242-4242-4242",
                "GB82 WEST 1234 5698 7654 32",
                "DE89370400440532013000",
                "192.168.1.20",
                "123-45-6789",
                "+44 20 7946 0958",
                "(415) 555-0132",
                "415-555-0132",
                "jane.doe@example.co.uk",
                "AKIAIOSFODNN7EXAMPLE",
                "password = hunter2hunter2",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmN",
            ])
            .to_string(),
        1 => {
            let groups = rng.below(7) + 1;
            let mut s = String::new();
            for g in 0..groups {
                if g > 0 {
                    s.push_str(&sep(rng));
                }
                let n = rng.below(6) + 1;
                s.push_str(&chars(rng, DIGITS, n));
            }
            s
        }
        2 => {
            let local = rng.below(6) + 1;
            let mut s = chars(rng, "ab9._%+-", local);
            s.push('@');
            for l in 0..rng.below(4) + 1 {
                if l > 0 {
                    s.push('.');
                }
                let n = rng.below(5);
                s.push_str(&chars(rng, "abcXY09-", n));
            }
            s
        }
        3 => {
            let n = rng.below(3) + 3;
            (0..n)
                .map(|_| rng.below(400).to_string())
                .collect::<Vec<_>>()
                .join(".")
        }
        4 => {
            let mut s = String::from("eyJ");
            let n = rng.below(12) + 4;
            s.push_str(&chars(rng, KEY, n));
            s.push('.');
            if rng.below(3) > 0 {
                s.push_str("eyJ");
            }
            let n = rng.below(12) + 4;
            s.push_str(&chars(rng, KEY, n));
            if rng.below(3) > 0 {
                s.push('.');
                let n = rng.below(12) + 4;
                s.push_str(&chars(rng, KEY, n));
            }
            s
        }
        5 => {
            let prefix = rng.pick(&[
                "AKIA",
                "ASIA",
                "ghp_",
                "ghs_",
                "github_pat_",
                "xoxb-",
                "xoxr-",
                "sk-",
                "sk-ant-",
                "sk-proj-",
                "sk_live_",
                "rk_live_",
                "AIza",
            ]);
            let n = rng.below(45) + 5;
            let body = if prefix.starts_with('A') && rng.below(2) == 0 {
                chars(rng, UPPER, n)
            } else {
                chars(rng, KEY, n)
            };
            format!("{prefix}{body}")
        }
        6 => {
            let mut s = chars(rng, "AZGBDE", 2);
            s.push_str(&chars(rng, DIGITS, 2));
            for _ in 0..rng.below(9) {
                if rng.below(2) == 0 {
                    s.push(' ');
                }
                let n = rng.below(5) + 1;
                s.push_str(&chars(rng, UPPER, n));
            }
            s
        }
        7 => {
            let mut s = String::from("+");
            let n = rng.below(4) + 1;
            s.push_str(&chars(rng, DIGITS, n));
            s.push_str(&sep(rng));
            if rng.below(3) == 0 {
                let n = rng.below(5) + 1;
                s.push_str(&format!("({})", chars(rng, DIGITS, n)));
                s.push_str(&sep(rng));
            }
            for _ in 0..rng.below(6) {
                let n = rng.below(6) + 1;
                s.push_str(&chars(rng, DIGITS, n));
                s.push_str(&sep(rng));
            }
            s
        }
        8 => {
            let (a, b, c) = (rng.below(4) + 2, rng.below(3) + 1, rng.below(3) + 3);
            format!(
                "{}-{}-{}",
                chars(rng, DIGITS, a),
                chars(rng, DIGITS, b + 1),
                chars(rng, DIGITS, c)
            )
        }
        9 => {
            let name = rng.pick(&[
                "password",
                "DB_PASSWORD",
                "pwd",
                "api-key",
                "my_secret",
                "auth_token",
                "key",
            ]);
            let ws = rng.pick(&["", " ", "  ", "\t"]);
            let op = rng.pick(&["=", ":", "=="]);
            let quote = rng.pick(&["", "\"", "'"]);
            let n = rng.below(10) + 2;
            let value = chars(rng, "abXY09*$<>[]é.:=", n);
            format!("{name}{ws}{op}{ws}{quote}{value}{quote}")
        }
        10 => {
            let mut s = String::from("-----BEGIN ");
            s.push_str(rng.pick(&["", "RSA ", "EC ", "OPENSSH "]));
            s.push_str("PRIVATE KEY-----\nMIIB");
            if rng.below(2) == 0 {
                s.push_str(rng.pick(&[
                    "\n-----END RSA PRIVATE KEY-----",
                    "\n-----END PRIVATE KEY-----",
                    "-----END X-----",
                ]));
            }
            s
        }
        11 | 12 => {
            // Phones: an optional `+`, `00` or `(`, digit groups, separators
            // and brackets, an optional extension.
            let mut s = rng.pick(&["", "", "+", "00", "(", "(+", "0"]).to_string();
            for g in 0..rng.below(6) + 1 {
                if g > 0 {
                    s.push_str(&sep(rng));
                }
                let n = rng.below(5) + 1;
                s.push_str(&chars(rng, DIGITS, n));
            }
            if rng.below(3) == 0 {
                s.push_str(rng.pick(&["x", " x", " ext. ", "ext", "#", " # ", "xx", "e"]));
                let n = rng.below(8);
                s.push_str(&chars(rng, DIGITS, n));
            }
            s
        }
        13 => {
            let name = rng.pick(&[
                "aws_secret_access_key",
                "AWS_SECRET_KEY",
                "SecretAccessKey",
                "client_secret",
                "api_token",
                "token",
                "x-auth",
                "private_key",
                "credentials",
                "my-secret_key",
                "\"access_key\"",
                "password",
            ]);
            let ws = rng.pick(&["", " ", "\t"]);
            let op = rng.pick(&["=", ":", "'=", "\": "]);
            let quote = rng.pick(&["", "\"", "'"]);
            let n = rng.below(50) + 4;
            let value = if rng.below(2) == 0 {
                chars(rng, "abXY09/+=_-$<.", n)
            } else {
                chars(rng, "abcdXYZ0123456789/+", n)
            };
            format!("{name}{ws}{op}{ws}{quote}{value}{quote}")
        }
        _ => rng.pick(ENTITY_PIECES).to_string(),
    }
}

fn random_text(rng: &mut Rng, pieces: &[&str], max: usize) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(max) + 1 {
        s.push_str(pieces.get(rng.below(pieces.len())).copied().unwrap_or(""));
        if rng.below(4) == 0 {
            s.push(' ');
        }
    }
    s
}

fn random_entities(rng: &mut Rng, max: usize) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(max) + 1 {
        if rng.below(3) == 0 {
            s.push_str(rng.pick(ENTITY_PIECES));
        } else {
            s.push_str(&entity(rng));
        }
        if rng.below(3) > 0 {
            s.push_str(rng.pick(&[" ", " ", ", ", "\n", ".", "x", ":", "("]));
        }
    }
    s
}

fn corpus() -> Vec<String> {
    [
        include_str!("../../../eval/guardrails/corpus.jsonl"),
        include_str!("../../../eval/guardrails/pii_dev.jsonl"),
        include_str!("../../../eval/guardrails/pii_heldout.jsonl"),
    ]
    .iter()
    .flat_map(|c| c.lines())
    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    .filter_map(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
    .collect()
}

fn iterations() -> usize {
    std::env::var("EQUIVALENCE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

#[test]
fn detectors_find_what_their_regexes_find() {
    let d = Detectors::new(&[]).unwrap();
    let reference = Patterns::new();
    let check = |text: &str| {
        let ours: Vec<(String, usize, usize)> = d
            .scan(text, |_, _| true)
            .into_iter()
            .map(|f| (f.kind.to_string(), f.start, f.end))
            .collect();
        let theirs: Vec<(String, usize, usize)> = reference
            .scan(text)
            .into_iter()
            .map(|(k, s, e)| (k.to_string(), s, e))
            .collect();
        assert_eq!(ours, theirs, "text: {text:?}");
    };
    for text in corpus() {
        check(&text);
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..iterations() {
        let text = random_entities(&mut rng, 12);
        check(&text);
    }
}

#[test]
fn injection_signals_match_their_regexes() {
    let d = InjectionDetector::new().unwrap();
    let reference = Signals::new();
    let check = |text: &str| {
        assert_eq!(d.signals(text), reference.signals(text), "text: {text:?}");
        assert_eq!(d.score(text), reference.score(text), "text: {text:?}");
    };
    for text in corpus() {
        check(&text);
    }
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..iterations() {
        let text = random_text(&mut rng, INJECTION_PIECES, 30);
        check(&text);
    }
}

/// How often each kind and signal fires in the random texts above (run
/// with `--ignored --nocapture` after changing the generators; with
/// `EQUIVALENCE_ITERATIONS=200000` every kind fires hundreds of times).
#[test]
#[ignore]
fn coverage_probe() {
    let d = Detectors::new(&[]).unwrap();
    let i = InjectionDetector::new().unwrap();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut sig = [0usize; 6];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..iterations() {
        let text = random_entities(&mut rng, 12);
        for f in d.scan(&text, |_, _| true) {
            *kinds.entry(f.kind.to_string()).or_default() += 1;
        }
    }
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..iterations() {
        let text = random_text(&mut rng, INJECTION_PIECES, 30);
        for (k, s) in i.signals(&text).iter().enumerate() {
            sig[k] += usize::from(*s);
        }
    }
    println!("{kinds:?}\n{sig:?}");
}
