//! Guardrail events counted by what fired: one entry per (guardrail, kind,
//! direction, action) with a count, so a prompt with 40,000 e-mail
//! addresses makes one entry in the usage report, the trace and the stats,
//! not 40,000. The guardrails already count within one text or answer;
//! this adds up a request's texts and stream chunks.

use super::guard::GuardEvent;

/// Events of one kind and how many there were (never the matched text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub guardrail: &'static str,
    pub kind: String,
    pub direction: &'static str,
    pub action: &'static str,
    pub count: u64,
}

impl EventCount {
    /// `guardrail/kind/direction/action`, with `*count` when above one.
    pub fn label(&self) -> String {
        let base = format!(
            "{}/{}/{}/{}",
            self.guardrail, self.kind, self.direction, self.action
        );
        if self.count > 1 {
            format!("{base}*{}", self.count)
        } else {
            base
        }
    }
}

/// Counts events in order of first appearance.
pub fn tally<'a>(events: impl IntoIterator<Item = &'a GuardEvent>) -> Vec<EventCount> {
    let mut out = Vec::new();
    add(&mut out, events);
    out
}

/// Adds events to counts; linear in events for the handful of distinct
/// kinds a request can have.
pub fn add<'a>(out: &mut Vec<EventCount>, events: impl IntoIterator<Item = &'a GuardEvent>) {
    for e in events {
        let (direction, action) = (e.direction.name(), e.action.name());
        match out.iter_mut().find(|c| {
            c.guardrail == e.guardrail
                && c.kind == e.kind
                && c.direction == direction
                && c.action == action
        }) {
            Some(c) => c.count += e.count,
            None => out.push(EventCount {
                guardrail: e.guardrail,
                kind: e.kind.clone(),
                direction,
                action,
                count: e.count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guard::{Direction, GuardAction};

    fn event(kind: &str, direction: Direction, count: u64) -> GuardEvent {
        GuardEvent {
            guardrail: "pii",
            kind: kind.into(),
            direction,
            action: GuardAction::Redact,
            count,
        }
    }

    #[test]
    fn counts_by_what_fired() {
        let mut events: Vec<GuardEvent> = (0..4)
            .map(|_| event("email", Direction::Input, 10_000))
            .collect();
        events.push(event("phone", Direction::Input, 1));
        events.push(event("email", Direction::Output, 1));
        let counts = tally(&events);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts[0].count, 40_000);
        assert_eq!(counts[0].label(), "pii/email/input/redact*40000");
        assert_eq!(counts[1].label(), "pii/phone/input/redact");
        assert_eq!(counts[2].direction, "output");
        assert!(tally(&[]).is_empty());
        let mut more = counts.clone();
        add(&mut more, &events[..2]);
        assert_eq!(more[0].count, 60_000);
    }
}
