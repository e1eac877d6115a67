//! The regexes the matchers implement (each detector's `pattern`), and a
//! scan that runs them over the whole text: the reference the matchers are
//! checked against.

use super::super::anchors::{byte, is_word};
use super::{Detector, BUILTINS};
use regex_lite::Regex;

pub struct Reference(Vec<Regex>);

/// Phones: from each start where the regex matches, the longest prefix
/// of its match ending at a group end a non-word byte follows (before
/// the extension) or at the match's end, that validates; the search
/// goes on after it, or after the match (before its extension) if none
/// does.
fn phones(regex: &Regex, d: &Detector, text: &str, found: &mut Vec<(&'static str, usize, usize)>) {
    let b = text.as_bytes();
    let mut at = 0;
    while let Some(m) = regex.find_at(text, at) {
        let s = m.start();
        let ext = m
            .as_str()
            .find(['x', 'e', 'E', '#'])
            .map_or(m.end(), |p| s + m.as_str()[..p].trim_end().len());
        let mut ends: Vec<usize> = (s + 1..=ext)
            .filter(|e| b[e - 1].is_ascii_digit() && !is_word(byte(b, *e)))
            .collect();
        ends.push(m.end());
        let phone_end = ends
            .into_iter()
            .rev()
            .find(|e| (d.validate)(&text[s..*e]) && (d.context)(text, s, *e));
        match phone_end {
            Some(e) => {
                if !found.iter().any(|f| s < f.2 && f.1 < e) {
                    found.push((d.name, s, e));
                }
                at = e;
            }
            None => at = ext,
        }
    }
}

impl Reference {
    pub fn new() -> Reference {
        Reference(
            BUILTINS
                .iter()
                .map(|d| Regex::new(d.pattern).unwrap())
                .collect(),
        )
    }

    /// (kind, start, end) of each finding, sorted.
    pub fn scan(&self, text: &str) -> Vec<(&'static str, usize, usize)> {
        let mut found: Vec<(&'static str, usize, usize)> = Vec::new();
        for (d, regex) in BUILTINS.iter().zip(&self.0) {
            if d.name == "phone" {
                phones(regex, d, text, &mut found);
                continue;
            }
            let mut at = 0;
            while let Some(m) = regex.find_at(text, at) {
                let (start, end) = (m.start(), m.end());
                if end == start {
                    break;
                }
                at = end;
                let overlaps = found.iter().any(|f| start < f.2 && f.1 < end);
                if !overlaps && (d.validate)(m.as_str()) && (d.context)(text, start, end) {
                    found.push((d.name, start, end));
                }
            }
        }
        found.sort_by_key(|f| f.1);
        found
    }
}
