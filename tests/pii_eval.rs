//! PII and secrets evaluation on Faker data (eval/guardrails/build_pii.py):
//! recall per kind and per phone locale, and false positives on hard
//! negatives, for the dev split (tuned on) and the held-out split (never
//! tuned on; its targets are asserted). Evasion variants (zero-width
//! characters, fullwidth digits, `[at]`, en dashes, middle dots), which
//! `normalize` folds before the detectors, are a group of their own.
//! `cargo test --release --test pii_eval -- --nocapture` prints the figures.
#![allow(clippy::indexing_slicing)] // test code: a panic is a failure report

use serde_json::Value;
use std::collections::BTreeMap;
use tollgate::core::guard::{Direction, GuardrailConfig, Guardrails};

#[derive(Default)]
struct Rate {
    hit: usize,
    all: usize,
}

impl Rate {
    fn add(&mut self, hit: bool) {
        self.hit += usize::from(hit);
        self.all += 1;
    }
    fn value(&self) -> f64 {
        self.hit as f64 / self.all.max(1) as f64
    }
}

struct Figures {
    /// Recall by group (pii, secrets, evasion).
    groups: BTreeMap<String, Rate>,
    /// Recall by group/kind, and of phones by locale.
    kinds: BTreeMap<String, Rate>,
    locales: BTreeMap<String, Rate>,
    benign: Rate,
}

fn evaluate(name: &str, corpus: &str) -> Figures {
    let g = Guardrails::new(&GuardrailConfig::default()).unwrap_or_else(|e| unreachable!("{e}"));
    let policy = g.policy(None, None);
    let mut f = Figures {
        groups: BTreeMap::new(),
        kinds: BTreeMap::new(),
        locales: BTreeMap::new(),
        benign: Rate::default(),
    };
    for line in corpus.lines() {
        let s: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let (text, group) = (
            s["text"].as_str().unwrap_or(""),
            s["group"].as_str().unwrap_or(""),
        );
        let (kind, value) = (
            s["kind"].as_str().unwrap_or(""),
            s["value"].as_str().unwrap_or(""),
        );
        let found = g.scan(text, &policy, Direction::Input);
        if group == "benign" {
            let hit = found
                .iter()
                .any(|x| matches!(x.guardrail, "pii" | "secrets"));
            f.benign.add(hit);
            if hit {
                let kinds: Vec<String> = found
                    .iter()
                    .map(|x| format!("{}: {:?}", &*x.kind, &text[x.start..x.end]))
                    .collect();
                println!("{name} false positive {kinds:?} in {text:?}");
            }
            continue;
        }
        // Found: a pii or secrets finding that overlaps the entity.
        let at = text.find(value).unwrap_or(0);
        let span = at..at + value.len();
        let hit = found.iter().any(|x| {
            matches!(x.guardrail, "pii" | "secrets") && x.start < span.end && span.start < x.end
        });
        if !hit {
            println!("{name} missed {group} {kind} ({}): {value:?}", s["locale"]);
        }
        f.groups.entry(group.to_string()).or_default().add(hit);
        let label = if group == "evasion" { "evasion" } else { kind };
        f.kinds.entry(label.to_string()).or_default().add(hit);
        if kind == "phone" && group == "pii" {
            let locale = s["locale"].as_str().unwrap_or("").to_string();
            f.locales.entry(locale).or_default().add(hit);
        }
    }
    f
}

fn print(name: &str, f: &Figures) {
    let table = |m: &BTreeMap<String, Rate>| {
        m.iter()
            .map(|(k, r)| format!("{k} {:.3} ({}/{})", r.value(), r.hit, r.all))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\n## {name}");
    println!("recall by group: {}", table(&f.groups));
    println!("recall by kind: {}", table(&f.kinds));
    println!("phone recall by locale: {}", table(&f.locales));
    println!(
        "benign false positives: {:.3} ({}/{})",
        f.benign.value(),
        f.benign.hit,
        f.benign.all
    );
}

#[test]
fn faker_pii_and_secrets_meet_their_targets_on_heldout() {
    let dev = evaluate("dev", include_str!("../eval/guardrails/pii_dev.jsonl"));
    let heldout = evaluate(
        "heldout",
        include_str!("../eval/guardrails/pii_heldout.jsonl"),
    );
    print("dev", &dev);
    print("heldout", &heldout);
    for group in ["pii", "secrets"] {
        let recall = heldout.groups.get(group).map_or(0.0, Rate::value);
        assert!(recall >= 0.97, "heldout {group} recall {recall:.3} < 0.97");
    }
    // The evasion group holds the hardest numbers (no separators left once
    // zero-width characters go), so its bar is what it reached, rounded down.
    let evasion = heldout.groups.get("evasion").map_or(0.0, Rate::value);
    assert!(
        evasion >= 0.95,
        "heldout evasion recall {evasion:.3} < 0.95"
    );
    let fp = heldout.benign.value();
    assert!(fp <= 0.01, "heldout benign false positives {fp:.3} > 0.01");
}
