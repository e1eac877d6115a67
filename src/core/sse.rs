//! Server-sent events framing over arbitrary body chunks: an event, a UTF-8
//! character or a CRLF may be split across two callbacks.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Largest pending (unterminated) line kept; beyond it the line is dropped so
/// a broken upstream cannot grow the VM's memory without bound.
const MAX_PENDING: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseFramer {
    pending: Vec<u8>,
    current: SseEvent,
    has_fields: bool,
    data_lines: usize,
    /// Set when a `\r` ended the last chunk: a `\n` starting the next belongs to it.
    after_cr: bool,
    /// Lines dropped for exceeding `MAX_PENDING`.
    pub overflows: usize,
}

impl SseFramer {
    pub fn new() -> SseFramer {
        SseFramer::default()
    }

    /// Feeds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (line, tail) = rest.split_at(end);
            if self.pending.is_empty() {
                self.line(line, &mut events);
            } else {
                // The line began in an earlier chunk; keep the buffer's capacity.
                self.pending.extend_from_slice(line);
                let mut whole = std::mem::take(&mut self.pending);
                self.line(&whole, &mut events);
                whole.clear();
                self.pending = whole;
            }
            rest = match tail {
                [b'\r', b'\n', more @ ..] => more,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, more @ ..] => more,
                [] => &[],
            };
        }
        if self.pending.len() + rest.len() > MAX_PENDING {
            self.pending.clear();
            self.overflows += 1;
        } else {
            self.pending.extend_from_slice(rest);
        }
        events
    }

    /// Ends the stream: an event not closed by a blank line is still delivered.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.pending);
        let mut events = Vec::new();
        if !line.is_empty() {
            self.line(&line, &mut events);
        }
        self.line(b"", &mut events);
        events.pop()
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_fields {
                events.push(std::mem::take(&mut self.current));
                self.has_fields = false;
                self.data_lines = 0;
            }
            return;
        }
        if line.first() == Some(&b':') {
            return; // comment, e.g. keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => {
                self.current.event = Some(value.to_string());
                self.has_fields = true;
            }
            "data" => {
                if self.data_lines > 0 {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.data_lines += 1;
                self.has_fields = true;
            }
            _ => {} // id, retry and unknown fields carry nothing we use
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\r\ndata: {\"a\":\"é\"}\r\n\r\n: ping\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";

    fn all_at_once() -> Vec<SseEvent> {
        let mut f = SseFramer::new();
        f.push(STREAM.as_bytes())
    }

    #[test]
    fn frames_events() {
        let events = all_at_once();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "{\"a\":\"é\"}");
        assert_eq!(events[1].data, "line1\nline2");
        assert_eq!(events[2].data, "[DONE]");
    }

    #[test]
    fn same_events_at_every_split_point() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            for cut2 in cut..=bytes.len() {
                let mut f = SseFramer::new();
                let mut got = f.push(&bytes[..cut]);
                got.extend(f.push(&bytes[cut..cut2]));
                got.extend(f.push(&bytes[cut2..]));
                assert_eq!(got, all_at_once(), "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn lone_cr_and_unterminated_tail() {
        let mut f = SseFramer::new();
        let got = f.push(b"data: a\r\rdata: b");
        assert_eq!(got.len(), 1);
        assert_eq!(f.finish().map(|e| e.data), Some("b".into()));
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn overlong_line_is_dropped() {
        let mut f = SseFramer::new();
        let big = vec![b'x'; MAX_PENDING + 1];
        assert!(f.push(&big).is_empty());
        assert_eq!(f.overflows, 1);
        assert_eq!(f.push(b"\ndata: ok\n\n").len(), 1);
    }
}
