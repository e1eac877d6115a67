//! Output guardrails on streams: text deltas pass through a small hold-back
//! window so an entity split across chunks is still caught and redacted in
//! flight. Only what could still grow into an entity is held: the last word,
//! digit groups before it (cards, phones, IBANs), the name of an assignment
//! (`password = ...`), or a partial match; at most `HOLD_BACK` characters,
//! unless a match reaches into it (held whole, as it may still grow). Held
//! text is scanned again with each delta; past `RESCAN_HELD` bytes only once
//! it has doubled, so even an endless entity in one-byte deltas costs time
//! linear in the stream.

use super::{
    blocked_notice, Blocked, Direction, GuardAction, GuardEvent, Guardrails, Placeholders, Policy,
};
use crate::core::convert::stream::Event;
use crate::core::convert::Finish;

/// Most bytes held back at the end of the text seen so far.
pub const HOLD_BACK: usize = 48;

/// Where the possibly-unfinished tail of `text` starts.
fn hold_start(text: &str) -> usize {
    let bytes = text.as_bytes();
    let floor = text.len().saturating_sub(HOLD_BACK);
    let word_start = |end: usize| {
        bytes
            .get(..end)
            .and_then(|b| b.iter().rposition(u8::is_ascii_whitespace))
            .map_or(0, |p| p + 1)
    };
    let mut start = word_start(text.len());
    loop {
        // The word before the held part, and what separates them.
        let gap_start = bytes.get(..start).map_or(0, |b| {
            b.iter()
                .rposition(|c| !c.is_ascii_whitespace())
                .map_or(0, |p| p + 1)
        });
        if gap_start == 0 || gap_start <= floor {
            break;
        }
        let prev_start = word_start(gap_start);
        let prev = text.get(prev_start..gap_start).unwrap_or("");
        let held = text
            .get(start..)
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        // Digit groups (cards, phones) or upper-case groups (IBANs); a word
        // with lower-case letters (`word12`) cannot continue either.
        let groups = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || "+-()./_".contains(c))
        };
        let assignment = prev.ends_with(['=', ':']) || held.starts_with(['=', ':']);
        if (groups(prev) && (held.is_empty() || groups(held))) || assignment {
            start = prev_start;
        } else {
            break;
        }
    }
    start.max(floor)
}

/// Held text longer than this (an entity still growing) is scanned again
/// only once it has doubled: a long entity streamed in small deltas costs
/// linear time, not a rescan per delta.
const RESCAN_HELD: usize = 4 * HOLD_BACK;

#[derive(Debug, Default)]
pub struct OutputGuard {
    pending: String,
    placeholders: Placeholders,
    pub events: Vec<GuardEvent>,
    /// Hold deltas without scanning until `pending` is this long.
    rescan_at: usize,
    /// A block ended the stream; later events are dropped.
    stopped: bool,
    /// Bytes scanned so far (tests check the work stays linear).
    #[cfg(test)]
    scanned: usize,
}

impl OutputGuard {
    /// Runs a batch of decoded stream events through the guard: text deltas
    /// are released as the hold-back window allows (and flushed before any
    /// other event); a block replaces the rest with a notice and a
    /// content-filter finish. `at_end`: the stream is over, flush it all.
    pub fn filter_events(
        &mut self,
        g: &Guardrails,
        p: &Policy,
        batch: &mut Vec<Event>,
        at_end: bool,
    ) {
        let mut out = Vec::with_capacity(batch.len());
        for event in batch.drain(..) {
            if self.stopped {
                break;
            }
            match event {
                Event::TextDelta(text) => {
                    let released = self.push(g, p, &text);
                    self.emit(released, &mut out);
                }
                other => {
                    let released = self.flush(g, p);
                    self.emit(released, &mut out);
                    if !self.stopped {
                        out.push(other);
                    }
                }
            }
        }
        if at_end && !self.stopped {
            let released = self.flush(g, p);
            self.emit(released, &mut out);
        }
        *batch = out;
    }

    fn emit(&mut self, released: Result<String, Blocked>, out: &mut Vec<Event>) {
        match released {
            Ok(text) if !text.is_empty() => out.push(Event::TextDelta(text)),
            Ok(_) => {}
            Err(b) => {
                out.push(Event::TextDelta(format!(" {}", blocked_notice(&b))));
                out.push(Event::Finish(Finish::ContentFilter));
                self.stopped = true;
            }
        }
    }

    /// Adds a delta; returns the text that is safe to send now.
    pub fn push(&mut self, g: &Guardrails, p: &Policy, text: &str) -> Result<String, Blocked> {
        self.pending.push_str(text);
        self.release(g, p, false)
    }

    /// Releases everything held (before a tool call, or at the end).
    pub fn flush(&mut self, g: &Guardrails, p: &Policy) -> Result<String, Blocked> {
        self.release(g, p, true)
    }

    fn release(&mut self, g: &Guardrails, p: &Policy, all: bool) -> Result<String, Blocked> {
        if !all && self.pending.len() < self.rescan_at {
            return Ok(String::new());
        }
        #[cfg(test)]
        {
            self.scanned += self.pending.len();
        }
        let findings = g.scan(&self.pending, p, Direction::Output);
        let mut cut = self.pending.floor_char_boundary(if all {
            self.pending.len()
        } else {
            hold_start(&self.pending)
        });
        // Never release part of a match: it may still grow.
        for f in &findings {
            if f.start < cut && f.end > cut {
                cut = f.start;
            }
        }
        let released: Vec<_> = findings.iter().filter(|f| f.end <= cut).collect();
        for f in &released {
            let action = p.action(f.guardrail, Direction::Output);
            super::note(
                &mut self.events,
                f.guardrail,
                &f.kind,
                Direction::Output,
                action,
            );
            if action == GuardAction::Block {
                return Err(Blocked {
                    guardrail: f.guardrail,
                    kind: f.kind.to_string(),
                });
            }
        }
        let redact: Vec<_> = released
            .into_iter()
            .filter(|f| p.action(f.guardrail, Direction::Output) == GuardAction::Redact)
            .collect();
        let out = self
            .placeholders
            .redact(self.pending.get(..cut).unwrap_or(""), &redact);
        self.pending = self.pending.get(cut..).unwrap_or("").to_string();
        self.rescan_at = if self.pending.len() > RESCAN_HELD {
            2 * self.pending.len()
        } else {
            0
        };
        Ok(out)
    }

    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guard::GuardrailConfig;

    #[test]
    fn a_block_ends_the_batch_with_a_notice_and_drops_the_rest() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let mut config = GuardrailConfig::default();
        config.secrets.output = Some(GuardAction::Block);
        let g_block = Guardrails::new(&config).unwrap();
        let p = g_block.policy(None, None);
        let mut guard = OutputGuard::default();
        let mut batch = vec![
            Event::TextDelta("Here it is: AKIAIOSFODNN".into()),
            Event::TextDelta("7EXAMPLE and more".into()),
            Event::Finish(Finish::Stop),
        ];
        guard.filter_events(&g_block, &p, &mut batch, false);
        assert_eq!(batch.last(), Some(&Event::Finish(Finish::ContentFilter)));
        let text = format!("{batch:?}");
        assert!(
            text.contains("Here it") && text.contains("secrets"),
            "{text}"
        );
        assert!(!text.contains("AKIA") && !text.contains("EXAMPLE") && !text.contains("more"));
        let mut later = vec![Event::TextDelta("more".into())];
        guard.filter_events(&g_block, &p, &mut later, true);
        assert!(later.is_empty(), "nothing after a block");
        // Redaction holds back, then flushes at the end.
        let p = g.policy(None, None);
        let mut guard = OutputGuard::default();
        let mut batch = vec![Event::TextDelta("mail jane@exa".into())];
        guard.filter_events(&g, &p, &mut batch, false);
        let mut end = vec![Event::TextDelta("mple.com".into())];
        guard.filter_events(&g, &p, &mut end, true);
        let text: String = batch
            .iter()
            .chain(&end)
            .filter_map(|e| match e {
                Event::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "mail [EMAIL_1]");
    }

    #[test]
    fn entity_split_at_every_offset_is_redacted() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let p = g.policy(None, None);
        let text = "Contact me at jane.doe@example.com or card 4111 1111 1111 1111, thanks a lot for everything!";
        for cut in 0..=text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let mut guard = OutputGuard::default();
            let mut out = guard.push(&g, &p, &text[..cut]).unwrap();
            out += &guard.push(&g, &p, &text[cut..]).unwrap();
            out += &guard.flush(&g, &p).unwrap();
            assert_eq!(
                out, "Contact me at [EMAIL_1] or card [CARD_1], thanks a lot for everything!",
                "cut {cut}"
            );
        }
    }

    /// Streams `text` in `step`-byte deltas; what comes out, and the bytes
    /// the guard scanned.
    fn stream(g: &Guardrails, p: &Policy, text: &str, step: usize) -> (String, usize) {
        let mut guard = OutputGuard::default();
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            out += &guard.push(g, p, &text[at..end]).unwrap();
            at = end;
        }
        out += &guard.flush(g, p).unwrap();
        (out, guard.scanned)
    }

    #[test]
    fn a_long_entity_in_small_deltas_is_scanned_in_linear_time() {
        // A match that keeps growing is held whole; it used to be scanned
        // again for every delta (quadratic: 10^10 bytes here).
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let p = g.policy(None, None);
        let token = format!("key sk-{} done", "a".repeat(200_000));
        let (out, scanned) = stream(&g, &p, &token, 1);
        assert_eq!(out, "key [OPENAI_KEY_1] done");
        assert!(
            scanned < 8 * token.len(),
            "scanned {scanned} bytes of {}",
            token.len()
        );
        // Many short entities: each byte is scanned a bounded number of times.
        let ips = "10.1.2.3 ".repeat(20_000);
        let (out, scanned) = stream(&g, &p, &ips, 7);
        assert_eq!(out, "[IP_ADDRESS_1] ".repeat(20_000));
        assert!(
            scanned < 16 * ips.len(),
            "scanned {scanned} bytes of {}",
            ips.len()
        );
    }

    #[test]
    fn worst_cases_stream_in_linear_work() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let p = g.policy(None, None);
        for (name, text) in crate::core::guard::worst_case::inputs(64 << 10) {
            let mut guard = OutputGuard::default();
            let mut at = 0;
            while at < text.len() {
                let mut end = (at + 16).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                if guard.push(&g, &p, &text[at..end]).is_err() {
                    break;
                }
                at = end;
            }
            let _ = guard.flush(&g, &p);
            assert!(
                guard.scanned < 16 * text.len(),
                "{name}: scanned {} bytes of {}",
                guard.scanned,
                text.len()
            );
        }
    }

    #[test]
    fn holds_only_what_may_grow() {
        assert_eq!(
            hold_start("Hello there, my friend"),
            "Hello there, my ".len()
        );
        assert_eq!(hold_start("card 4111 1111 11"), "card ".len());
        assert_eq!(hold_start("set password = hun"), "set ".len());
        assert_eq!(hold_start("ends with space "), "ends with space ".len());
        assert_eq!(hold_start("iban DE89 3704 00"), "iban ".len());
        assert_eq!(hold_start("call +44 20 79"), "call ".len());
        // Words with lower-case letters are not number groups.
        assert_eq!(hold_start("word1 word2 wor"), "word1 word2 ".len());
    }

    #[test]
    fn holds_back_only_a_window_and_blocks() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let p = g.policy(None, None);
        let mut guard = OutputGuard::default();
        for _ in 0..100 {
            guard.push(&g, &p, "a perfectly benign sentence, ").unwrap();
            assert!(guard.held() <= HOLD_BACK);
        }
        let config: GuardrailConfig =
            serde_json::from_str(r#"{"secrets": {"output": "block"}}"#).unwrap();
        let g = Guardrails::new(&config).unwrap();
        let p = g.policy(None, None);
        let mut guard = OutputGuard::default();
        let mut blocked = guard.push(
            &g,
            &p,
            "here: AKIAIOSFODNN7EXAMPLE and more text to push it out of the window ....",
        );
        if blocked.is_ok() {
            blocked = guard.flush(&g, &p);
        }
        assert_eq!(
            blocked.err().map(|b| b.kind),
            Some("aws_access_key".to_string())
        );
    }
}
