//! The prompt-injection model's featuriser and scorer, for the training
//! script (eval/injection/train.py), so training and inference share one
//! implementation.
//!
//! Reads JSON lines with a "text" field on stdin and writes one line per
//! input:
//!
//! - `features BITS`: the feature bucket ids (space-separated, repeats kept)
//! - `score [MODEL_FILE]`: the model score (the compiled-in model without a
//!   file), then a tab and the rule-based score from `injection.rs`
//! - `time [MODEL_FILE]`: nanoseconds per call for each text (best of runs)
//! - `time-features`: the same for the featuriser alone
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufWriter, Write};
use tollgate::core::guard::injection::InjectionDetector;
use tollgate::core::guard::injection_model::{features, FeatureSink, Model};

struct Ids<'a> {
    shift: u32,
    out: &'a mut String,
}

impl FeatureSink for Ids<'_> {
    fn feature(&mut self, hash: u32) {
        use std::fmt::Write;
        let _ = write!(self.out, "{} ", hash >> self.shift);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("features", String::as_str);
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let file = match mode {
        "score" | "time" => args.get(2).map(|p| std::fs::read(p).expect("model file")),
        _ => None,
    };
    let compiled = file.is_none();
    let file = file.unwrap_or_default();
    let model = if compiled {
        None
    } else {
        Some(Model::parse(&file).expect("a model file"))
    };
    let rules = InjectionDetector::new().unwrap();
    let bits: u32 = args.get(2).and_then(|b| b.parse().ok()).unwrap_or(18);
    let mut line_out = String::new();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let text = v["text"].as_str().unwrap_or("");
        let score = |t: &str| match &model {
            Some(m) => m.score(t),
            None => tollgate::core::guard::injection_model::score(t),
        };
        match mode {
            "features" => {
                line_out.clear();
                features(
                    text,
                    &mut Ids {
                        shift: 32 - bits,
                        out: &mut line_out,
                    },
                );
                writeln!(out, "{}", line_out.trim_end()).unwrap();
            }
            "score" => {
                writeln!(out, "{}\t{}", score(text), rules.score(text).0).unwrap();
            }
            "time-features" => {
                struct Sum(u32);
                impl FeatureSink for Sum {
                    fn feature(&mut self, hash: u32) {
                        self.0 = self.0.wrapping_add(hash);
                    }
                }
                let mut best = u128::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    for _ in 0..20 {
                        let mut s = Sum(0);
                        features(std::hint::black_box(text), &mut s);
                        std::hint::black_box(s.0);
                    }
                    best = best.min(t.elapsed().as_nanos() / 20);
                }
                writeln!(out, "{}\t{best}", text.len()).unwrap();
            }
            "time" => {
                let mut best = u128::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    let runs = 20;
                    for _ in 0..runs {
                        std::hint::black_box(score(std::hint::black_box(text)));
                    }
                    best = best.min(t.elapsed().as_nanos() / runs);
                }
                writeln!(out, "{}\t{best}", text.len()).unwrap();
            }
            other => panic!("unknown mode {other}"),
        }
    }
}
