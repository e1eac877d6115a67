//! Output guardrails on streams. The invariant: for every chunking of an
//! answer into text deltas, the text a client assembles from the stream
//! equals the non-streamed redaction of the whole answer (same placeholders,
//! same numbers); with `block`, the stream is cut before any byte of the
//! blocked entity. `stream_props` checks it over random chunkings.
//!
//! So text is released only at a cut no built-in match can cross whatever
//! follows: held is the last word (a match without spaces may still grow
//! in it), the words a match with single spaces may join to it (digit and
//! capital groups: cards, phones, IBANs, a private key's header), an
//! assignment whose value may still come (`password =`), and any match that
//! reaches the end (a private key runs to its `-----END ... PRIVATE KEY-----`
//! line, or, unterminated, to the end of the answer, as the whole-text
//! detector has it). Ordinary prose holds one word (a long one without
//! spaces, such as base64, whole); what is held beyond that is a match or
//! a chain of number groups, held until it ends; a match is also held
//! until the `RIGHT_CONTEXT` bytes after it that can still drop it (a phone
//! followed by an operator and a number) have come. The hold rules read
//! the text as the detectors do (`normalize`: a spelled `[at]` still coming
//! holds the word before it). Held text is scanned with the last `CONTEXT`
//! bytes already sent before it (word boundaries, `version 1.2.3.4`),
//! extended back to the start of the last match sent or of a run of
//! number groups (matches in a run depend on where it starts), and past
//! `RESCAN_HELD` bytes only once it has doubled, so even an endless entity
//! in one-byte deltas costs time linear in the stream. Limits: custom
//! patterns get the same cuts (one that matches across spaces may be
//! split), and entities glued together with no separator (a value running
//! into the next credential name, two numbers in one digit chain) may be
//! split differently than in the whole answer; `stream_props` keeps its
//! samples apart.

use super::anchors::{credential_name, is_space};
use super::detect::RIGHT_CONTEXT;
use super::normalize::{self, partial_spelling};
use super::{
    blocked_notice, Blocked, Direction, GuardAction, GuardEvent, Guardrails, Placeholders, Policy,
};
use crate::core::wire::{Event, Finish};
use std::collections::HashMap;

/// `hold_start` on `text` as the detectors read it (`normalize`), mapped
/// back: a folded spelling keeps its words together.
fn hold_folded(text: &str, from: usize) -> usize {
    match normalize::fold(text) {
        None => hold_start(text, from),
        Some(f) => f.at(hold_start(&f.text, f.folded(from))).max(from),
    }
}

/// Bytes a match with single spaces (cards, phones, IBANs, a private key's
/// header) can hold next to a space.
fn chain(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase() || b"+-()./_".contains(&c)
}

/// A phone's extension word between number groups (`555-0199 ext. 123`),
/// or the start of one.
fn extension(w: &[u8]) -> bool {
    !w.is_empty()
        && (b"ext."
            .get(..w.len())
            .is_some_and(|e| e.eq_ignore_ascii_case(w))
            || w == b"x"
            || w == b"#")
}

/// A number group with its extension glued on (`0958x`, `0958ext.`): the
/// extension's digits may follow after a space.
fn glued_extension(w: &[u8]) -> bool {
    let digits = w.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && w.get(digits..).is_some_and(extension)
}

/// Where the tail of `text[from..]` that may still belong to a match starts:
/// a word start (or `from`).
fn hold_start(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let word_start = |end: usize| {
        b.get(from..end)
            .and_then(|w| w.iter().rposition(|c| is_space(*c)))
            .map_or(from, |p| from + p + 1)
    };
    let assigns = |c: u8| matches!(c, b':' | b'=');
    // A spelled `@` or `.` still coming (`mary [a`) is held with the word
    // before it, as is the last word before spaces (`mary `).
    let spelling = partial_spelling(b).filter(|p| *p >= from);
    let mut start = spelling.map_or(word_start(b.len()), |p| p.min(word_start(b.len())));
    loop {
        let gap = b
            .get(from..start)
            .and_then(|w| w.iter().rposition(|c| !is_space(*c)))
            .map_or(from, |p| from + p + 1);
        if gap == from {
            break;
        }
        let prev_start = word_start(gap);
        let last = b.get(gap - 1).copied().unwrap_or(0);
        // The first byte of the held part, if any.
        let held = b.get(start).copied();
        let single_space = start == gap + 1 && b.get(gap) == Some(&b' ');
        let prev = b.get(prev_start..gap).unwrap_or_default();
        let held_word = b
            .get(start..)
            .and_then(|r| r.split(|c| is_space(*c)).next())
            .unwrap_or_default();
        let groups = single_space
            && ((chain(last) && (held.is_none_or(chain) || extension(held_word)))
                || ((extension(prev) || glued_extension(prev)) && held.is_none_or(chain)));
        // `name = value`: the value (or the `=`) may still come.
        let assignment = (assigns(last) && credential_name(b, gap - 1, None).is_some())
            || (held.is_some_and(assigns) && credential_name(b, start, None).is_some())
            || (held.is_none() && credential_name(b, gap, None).is_some());
        let spelled_next = (held.is_none() || Some(start) == spelling)
            && last.is_ascii_alphanumeric()
            && b.get(gap..start)
                .is_some_and(|g| g.iter().all(|c| *c == b' '));
        if !(groups || assignment || spelled_next) {
            break;
        }
        start = prev_start;
    }
    start
}

/// Held text longer than this (an entity still growing) is scanned again
/// only once it has doubled: a long entity streamed in small deltas costs
/// linear time, not a rescan per delta.
const RESCAN_HELD: usize = 192;

/// Bytes of released text kept to scan held text with: matches look back
/// (word boundaries; `version` up to 12 bytes before an address).
const CONTEXT: usize = 64;

/// How far back the start of the last released match still anchors the
/// context (see `keep_context`).
const SYNC_WINDOW: usize = 256;

#[derive(Debug, Default)]
pub struct OutputGuard {
    /// Some released text (the context), then the held text.
    text: String,
    /// Where the held text starts in `text`.
    released: usize,
    placeholders: Placeholders,
    pub events: Vec<GuardEvent>,
    /// Hold deltas without scanning until this many bytes are held.
    rescan_at: usize,
    /// Where the last released match starts in `text`, if kept.
    sync: Option<usize>,
    /// Bytes scanned so far (tests check the work stays linear).
    #[cfg(test)]
    scanned: usize,
}

impl OutputGuard {
    /// Adds a delta; returns the text that is safe to send now.
    pub fn push(&mut self, g: &Guardrails, p: &Policy, text: &str) -> Result<String, Blocked> {
        self.text.push_str(text);
        self.release_own(g, p, false)
    }

    /// Releases everything held (before a tool call, or at the end).
    pub fn flush(&mut self, g: &Guardrails, p: &Policy) -> Result<String, Blocked> {
        self.release_own(g, p, true)
    }

    /// `release`, numbering with this guard's own placeholders.
    fn release_own(&mut self, g: &Guardrails, p: &Policy, all: bool) -> Result<String, Blocked> {
        let mut placeholders = std::mem::take(&mut self.placeholders);
        let released = self.release(g, p, all, &mut placeholders);
        self.placeholders = placeholders;
        released
    }

    fn release(
        &mut self,
        g: &Guardrails,
        p: &Policy,
        all: bool,
        placeholders: &mut Placeholders,
    ) -> Result<String, Blocked> {
        if !all && self.held() < self.rescan_at {
            return Ok(String::new());
        }
        let from = self.released;
        let mut cut = if all {
            self.text.len()
        } else {
            hold_folded(&self.text, from)
        };
        // Nothing could be released (a delta inside a word): no scan.
        if cut == from && !all {
            self.wait();
            return Ok(String::new());
        }
        #[cfg(test)]
        {
            self.scanned += self.text.len();
        }
        // Matches that start in the context were dealt with when released.
        let mut findings = g.scan(&self.text, p, Direction::Output);
        findings.retain(|f| f.start >= from);
        // Never release part of a match, nor one that reaches the end: it
        // may still grow (an unterminated private key runs to the end, so
        // one streamed line by line ends at each line's newline).
        // Nor one whose verdict may still change: a phone followed by an
        // operator and a number is an operand (`RIGHT_CONTEXT`).
        let end = self.text.len();
        for f in &findings {
            if f.start < cut && (f.end > cut || (f.end + RIGHT_CONTEXT > end && !all)) {
                cut = f.start;
            }
        }
        findings.retain(|f| f.end <= cut);
        if let Some(f) = findings.last() {
            self.sync = Some(f.start);
        }
        for f in &findings {
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
        let redact: Vec<_> = findings
            .iter_mut()
            .filter(|f| p.action(f.guardrail, Direction::Output) == GuardAction::Redact)
            .map(|f| {
                f.start -= from;
                f.end -= from;
                &*f
            })
            .collect();
        let out = placeholders.redact(self.text.get(from..cut).unwrap_or(""), &redact);
        self.keep_context(cut);
        self.wait();
        Ok(out)
    }

    /// Held text past `RESCAN_HELD` waits until it has doubled.
    fn wait(&mut self) {
        self.rescan_at = if self.held() > RESCAN_HELD {
            2 * self.held()
        } else {
            0
        };
    }

    /// Marks `text[..cut]` released, keeping up to `CONTEXT` bytes of it:
    /// from a word start when one is far enough back (a word cut in two
    /// could look like a match start).
    /// A match released within `SYNC_WINDOW` bytes keeps the context from
    /// its start instead: scanning from there finds the matches after it as
    /// the whole text has them (from elsewhere, a match starting in the
    /// context could swallow the start of the next: `...password = x` glued
    /// to a name).
    fn keep_context(&mut self, cut: usize) {
        let b = self.text.as_bytes();
        let want = cut.saturating_sub(CONTEXT);
        let word = b
            .get(want..cut.saturating_sub(CONTEXT / 4))
            .and_then(|w| w.iter().position(|c| is_space(*c)))
            .map(|p| want + p + 1);
        let mut keep = word.unwrap_or_else(|| self.text.floor_char_boundary(want));
        if let Some(sync) = self.sync.filter(|s| s + SYNC_WINDOW >= cut) {
            keep = keep.min(sync);
        }
        // Nor inside a run of number groups (`4111 1111 ... 1111-4111 ...`):
        // matches in it depend on where it starts. Bytes beyond ASCII may
        // fold into digits (fullwidth), so they count as the run's too.
        let floor = keep.saturating_sub(SYNC_WINDOW);
        while keep > floor {
            // The word before `keep`, one space aside, or `keep`'s own.
            let end = if b.get(keep - 1) == Some(&b' ') {
                keep - 1
            } else {
                keep
            };
            let start = b
                .get(floor..end)
                .and_then(|w| w.iter().rposition(|c| is_space(*c)))
                .map_or(floor, |p| floor + p + 1);
            let word = b.get(start..end).unwrap_or_default();
            if start == keep
                || word.is_empty()
                || !(word.iter().all(|c| chain(*c) || !c.is_ascii())
                    || extension(word)
                    || glued_extension(word))
            {
                break;
            }
            keep = start;
        }
        let keep = self.text.floor_char_boundary(keep);
        self.text.drain(..keep);
        self.released = cut - keep;
        self.sync = self.sync.and_then(|s| s.checked_sub(keep));
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.text.len() - self.released
    }
}

/// The guard slot of a canonical event carrying generated text, and the
/// text: 0 answer text, 1 refusal, 2 reasoning, 3 + index tool arguments
/// (a provider's absurd index near `usize::MAX` shares the last slot: it is
/// still scanned).
fn canonical_slot(e: &Event) -> Option<(usize, &str)> {
    match e {
        Event::TextDelta(t) => Some((0, t)),
        Event::RefusalDelta(t) => Some((1, t)),
        Event::ReasoningDelta(t) => Some((2, t)),
        Event::ToolArgs { index, json } => Some((index.saturating_add(3), json)),
        _ => None,
    }
}

/// The event `canonical_slot` read `text` from.
fn canonical_event(slot: usize, text: String) -> Event {
    match slot {
        0 => Event::TextDelta(text),
        1 => Event::RefusalDelta(text),
        2 => Event::ReasoningDelta(text),
        _ => Event::ToolArgs {
            index: slot - 3,
            json: text,
        },
    }
}

/// Output guardrails for a stream: one guard per text slot (a choice's
/// content, a content block, an output part, a tool call's arguments),
/// with placeholders numbered across the answer as the non-streamed check
/// does. An in-place edited stream (`wire::edit`) names its slots; a
/// translated one goes through `filter_events`.
#[derive(Debug, Default)]
pub struct SlotGuards {
    guards: Vec<OutputGuard>,
    /// Slot number -> its guard in `guards` (a translated stream's tool
    /// indices are the provider's, so slot numbers may be sparse).
    by_slot: HashMap<usize, usize>,
    placeholders: Placeholders,
    /// Guardrail events since the caller last took them.
    pub events: Vec<GuardEvent>,
    /// `filter_events`: the one slot that may hold text (every other was
    /// flushed before its delta came).
    holding: Option<usize>,
    /// A block ended the translated stream.
    stopped: bool,
}

impl SlotGuards {
    /// `text` came in `slot` (`end`: the slot is over): the text to send
    /// now and how many bytes of what came are still held, or the notice
    /// a block ends the stream with.
    pub fn filter(
        &mut self,
        g: &Guardrails,
        p: &Policy,
        slot: usize,
        text: &str,
        end: bool,
    ) -> Result<(String, usize), String> {
        let guards = &mut self.guards;
        let at = *self.by_slot.entry(slot).or_insert_with(|| {
            guards.push(OutputGuard::default());
            guards.len() - 1
        });
        let Some(guard) = self.guards.get_mut(at) else {
            return Err(String::new());
        };
        guard.text.push_str(text);
        let released = guard.release(g, p, end, &mut self.placeholders);
        self.events.append(&mut guard.events);
        match released {
            Ok(out) => Ok((out, guard.held())),
            Err(b) => Err(format!(" {}", blocked_notice(&b))),
        }
    }

    /// Runs a batch of decoded events of a translated stream through the
    /// guards: text, refusal and reasoning deltas and each tool call's
    /// arguments (a slot each, `canonical_slot`) are released as the hold
    /// rules allow, and what a slot holds
    /// is flushed before another slot's delta or any other event; a block
    /// replaces the rest with a notice and a content-filter finish.
    /// `at_end`: the stream is over, flush it all.
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
            let Some((slot, text)) = canonical_slot(&event) else {
                self.flush_except(g, p, None, &mut out);
                if !self.stopped {
                    out.push(event);
                }
                continue;
            };
            self.flush_except(g, p, Some(slot), &mut out);
            if !self.stopped {
                let released = self.filter(g, p, slot, text, false);
                self.holding = matches!(released, Ok((_, held)) if held > 0).then_some(slot);
                self.emit(slot, released, &mut out);
            }
        }
        if at_end {
            self.flush_except(g, p, None, &mut out);
        }
        *batch = out;
    }

    /// Releases what the holding slot holds, unless it is `keep`.
    fn flush_except(
        &mut self,
        g: &Guardrails,
        p: &Policy,
        keep: Option<usize>,
        out: &mut Vec<Event>,
    ) {
        let Some(slot) = self.holding.filter(|h| Some(*h) != keep) else {
            return;
        };
        self.holding = None;
        if !self.stopped {
            let released = self.filter(g, p, slot, "", true);
            self.emit(slot, released, out);
        }
    }

    fn emit(
        &mut self,
        slot: usize,
        released: Result<(String, usize), String>,
        out: &mut Vec<Event>,
    ) {
        match released {
            Ok((text, _)) if text.is_empty() => {}
            Ok((text, _)) => out.push(canonical_event(slot, text)),
            Err(notice) => {
                out.push(Event::TextDelta(notice));
                out.push(Event::Finish(Finish::ContentFilter));
                self.stopped = true;
            }
        }
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
        let mut guard = SlotGuards::default();
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
        let mut guard = SlotGuards::default();
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
        // Tool call arguments are guarded too, each call on its own, and
        // text held before a call goes out before it.
        let mut guard = SlotGuards::default();
        let mut batch = vec![
            Event::TextDelta("Sending it to".into()),
            Event::ToolStart {
                index: 0,
                id: "c1".into(),
                name: "send".into(),
            },
            Event::ToolArgs {
                index: 0,
                json: "{\"to\": \"jane.do".into(),
            },
            Event::ToolArgs {
                index: 0,
                json: "e@example.com\"}".into(),
            },
            Event::Finish(Finish::ToolCalls),
        ];
        guard.filter_events(&g, &p, &mut batch, true);
        let (mut text, mut args) = (String::new(), String::new());
        for e in &batch {
            match e {
                Event::TextDelta(t) => text.push_str(t),
                Event::ToolArgs { json, .. } => args.push_str(json),
                _ => {}
            }
        }
        assert_eq!(
            (text.as_str(), args.as_str()),
            ("Sending it to", "{\"to\": \"[EMAIL_1]\"}")
        );
        let start = batch
            .iter()
            .position(|e| matches!(e, Event::ToolStart { .. }));
        let last_text = batch.iter().rposition(|e| matches!(e, Event::TextDelta(_)));
        assert!(last_text < start, "{batch:?}");
        assert_eq!(batch.last(), Some(&Event::Finish(Finish::ToolCalls)));
        // A provider's tool index is the slot number: a huge one costs one
        // guard, not a guard per number below it.
        let mut guard = SlotGuards::default();
        let far = 4_000_000_000;
        let mut batch = vec![Event::ToolArgs {
            index: far,
            json: "{\"to\": \"jane.doe@example.com\"}".into(),
        }];
        guard.filter_events(&g, &p, &mut batch, true);
        let args: String = batch
            .iter()
            .map(|e| match e {
                Event::ToolArgs { index, json } if *index == far => json.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(args, "{\"to\": \"[EMAIL_1]\"}");
        assert_eq!(guard.guards.len(), 1);
        // So are refusals and reasoning, each in its own kind of event.
        let mut guard = SlotGuards::default();
        let mut batch = vec![
            Event::ReasoningDelta("Find jane.do".into()),
            Event::ReasoningDelta("e@example.com first".into()),
            Event::RefusalDelta("No mail to jane.doe@example.com".into()),
        ];
        guard.filter_events(&g, &p, &mut batch, true);
        let (mut reasoning, mut refusal) = (String::new(), String::new());
        for e in &batch {
            match e {
                Event::ReasoningDelta(t) => reasoning.push_str(t),
                Event::RefusalDelta(t) => refusal.push_str(t),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(reasoning, "Find [EMAIL_1] first");
        assert_eq!(refusal, "No mail to [EMAIL_1]");
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
        // An unterminated private key is held to the end of the stream and
        // redacted whole there, as the whole answer is; with an end line,
        // what follows it is released.
        let body = "MIIEpAIBAAKCAQEA7bq0Lq3yW5kZl0rJc8Qw2mS9pVbXn4T1uHgFzYaKdEoR\n".repeat(4000);
        let pem = format!("key -----BEGIN RSA PRIVATE KEY-----\n{body}");
        let (out, scanned) = stream(&g, &p, &pem, 1);
        assert_eq!(out, "key [PRIVATE_KEY_1]");
        assert!(
            scanned < 8 * pem.len(),
            "scanned {scanned} of {}",
            pem.len()
        );
        let ended = format!("{pem}-----END RSA PRIVATE KEY-----\nthanks");
        assert_eq!(stream(&g, &p, &ended, 3).0, "key [PRIVATE_KEY_1]\nthanks");
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
            hold_start("Hello there, my friend", 0),
            "Hello there, my ".len()
        );
        assert_eq!(hold_start("card 4111 1111 11", 0), "card ".len());
        assert_eq!(hold_start("set password = hun", 0), "set ".len());
        // The last word stays until the next starts: `[at]` may come.
        assert_eq!(hold_start("ends with space ", 0), "ends with ".len());
        assert_eq!(hold_start("mail mary [a", 0), "mail ".len());
        assert_eq!(hold_start("mail mary ( do", 0), "mail ".len());
        assert_eq!(hold_start("mail mary [b", 0), "mail mary ".len());
        assert_eq!(hold_folded("mail mary [at] example ", 0), "mail ".len());
        assert_eq!(hold_start("iban DE89 3704 00", 0), "iban ".len());
        assert_eq!(hold_start("call +44 20 79", 0), "call ".len());
        // Words with lower-case letters are not number groups.
        assert_eq!(hold_start("word1 word2 wor", 0), "word1 word2 ".len());
    }

    #[test]
    fn prose_holds_a_word_and_blocks() {
        let g = Guardrails::new(&GuardrailConfig::default()).unwrap();
        let p = g.policy(None, None);
        let mut guard = OutputGuard::default();
        for _ in 0..100 {
            guard.push(&g, &p, "a perfectly benign sentence, ").unwrap();
            assert_eq!(guard.held(), 0);
        }
        guard.push(&g, &p, "and a wor").unwrap();
        assert_eq!(guard.held(), "wor".len());
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
