//! A usage report as JSON, written by hand: one is written per request, and
//! serde_json's generic writer took 1.7 times as many instructions (10.9k
//! against 6.5k natively for a typical report). The bytes are
//! exactly what `serde_json::to_vec` writes for `UsageReport` (tested
//! below), so the sidecar reads it with the protocol's own derive.

use super::budget::{GuardrailEvent, LeaseAmount, UsageReport};
use super::hex;

/// `report` as compact JSON, field for field as serde writes it.
pub fn encode(report: &UsageReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let r = report;
    out.push(b'{');
    str_field(&mut out, "request_id", &r.request_id, true);
    opt_str_field(&mut out, "reservation_id", r.reservation_id.as_deref());
    opt_str_field(&mut out, "key_id", r.key_id.as_deref());
    opt_str_field(&mut out, "team", r.team.as_deref());
    opt_str_field(&mut out, "user", r.user.as_deref());
    str_field(&mut out, "model", &r.model, false);
    str_field(&mut out, "upstream_model", &r.upstream_model, false);
    str_field(&mut out, "provider", &r.provider, false);
    str_field(&mut out, "api", &r.api, false);
    u64_field(&mut out, "input_tokens", r.input_tokens);
    u64_field(&mut out, "output_tokens", r.output_tokens);
    u64_field(&mut out, "cached_tokens", r.cached_tokens);
    u64_field(&mut out, "reasoning_tokens", r.reasoning_tokens);
    u64_field(&mut out, "status", u64::from(r.status));
    u64_field(&mut out, "latency_ms", r.latency_ms);
    bool_field(&mut out, "estimated", r.estimated);
    bool_field(&mut out, "stream", r.stream);
    key(&mut out, "guardrail_events", false);
    list(&mut out, &r.guardrail_events, guardrail_event);
    bool_field(&mut out, "forwarded", r.forwarded);
    key(&mut out, "ts", false);
    if r.ts < 0 {
        out.push(b'-');
    }
    digits(&mut out, r.ts.unsigned_abs());
    if let Some(lease_id) = &r.lease_id {
        str_field(&mut out, "lease_id", lease_id, false);
    }
    if !r.lease_debits.is_empty() {
        key(&mut out, "lease_debits", false);
        list(&mut out, &r.lease_debits, lease_amount);
    }
    if r.cache_hit {
        bool_field(&mut out, "cache_hit", true);
    }
    for (name, value) in [
        ("request_digest", &r.request_digest),
        ("response_digest", &r.response_digest),
        ("region", &r.region),
        ("refused", &r.refused),
    ] {
        if let Some(value) = value {
            str_field(&mut out, name, value, false);
        }
    }
    out.push(b'}');
    out
}

fn guardrail_event(out: &mut Vec<u8>, e: &GuardrailEvent) {
    out.push(b'{');
    str_field(out, "guardrail", &e.guardrail, true);
    str_field(out, "kind", &e.kind, false);
    str_field(out, "direction", &e.direction, false);
    str_field(out, "action", &e.action, false);
    u64_field(out, "count", e.count);
    out.push(b'}');
}

fn lease_amount(out: &mut Vec<u8>, a: &LeaseAmount) {
    out.push(b'{');
    str_field(out, "budget_id", &a.budget_id, true);
    key(out, "amount", false);
    // serde_json's own float form (ryu; `null` when not finite): the rare
    // field where a hand-written form would drift.
    if serde_json::to_writer(&mut *out, &a.amount).is_err() {
        out.extend_from_slice(b"null");
    }
    out.push(b'}');
}

fn list<T>(out: &mut Vec<u8>, items: &[T], write: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// `"name":`, after a comma unless it is the object's first field. Field
/// names are the protocol's own plain ASCII: nothing to escape.
fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn str_field(out: &mut Vec<u8>, name: &str, value: &str, first: bool) {
    key(out, name, first);
    string(out, value);
}

fn opt_str_field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    key(out, name, false);
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn u64_field(out: &mut Vec<u8>, name: &str, value: u64) {
    key(out, name, false);
    digits(out, value);
}

/// The decimal digits of `v`, with no allocation.
fn digits(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(at..).unwrap_or_default());
}

fn bool_field(out: &mut Vec<u8>, name: &str, value: bool) {
    key(out, name, false);
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, the short forms of
/// \b \f \n \r \t, `\u00XX` for the other control bytes; the rest as is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Most bytes need nothing: one test for them, not one per escape.
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => b'u',
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.extend_from_slice(&hex::digits(b));
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no rand crate in the filter).
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn text(&mut self) -> String {
            const PIECES: &[&str] = &[
                "gpt-4o",
                "a",
                "\"",
                "\\",
                "\n",
                "\r",
                "\t",
                "\u{8}",
                "\u{c}",
                "\u{1}",
                "\u{1f}",
                "\u{7f}",
                "é",
                "€",
                "😀",
                "</script>",
                " ",
                "key_1",
                "",
                "\u{2028}",
            ];
            (0..self.next() % 6)
                .map(|_| PIECES[(self.next() as usize) % PIECES.len()])
                .collect()
        }
        fn opt(&mut self) -> Option<String> {
            (!self.next().is_multiple_of(3)).then(|| self.text())
        }
        fn n(&mut self) -> u64 {
            match self.next() % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => self.next() * self.next(),
            }
        }
    }

    fn report(g: &mut Gen) -> UsageReport {
        let amounts = [
            0.0,
            1.0,
            0.1,
            1e-7,
            123456789.125,
            1e300,
            -2.5,
            f64::NAN,
            f64::INFINITY,
        ];
        UsageReport {
            request_id: g.text(),
            reservation_id: g.opt(),
            key_id: g.opt(),
            team: g.opt(),
            user: g.opt(),
            model: g.text(),
            upstream_model: g.text(),
            provider: g.text(),
            api: g.text(),
            input_tokens: g.n(),
            output_tokens: g.n(),
            cached_tokens: g.n(),
            reasoning_tokens: g.n(),
            status: g.next() as u32,
            latency_ms: g.n(),
            estimated: g.next().is_multiple_of(2),
            stream: g.next().is_multiple_of(2),
            guardrail_events: (0..g.next() % 3)
                .map(|_| GuardrailEvent {
                    guardrail: g.text(),
                    kind: g.text(),
                    direction: g.text(),
                    action: g.text(),
                    count: g.n(),
                })
                .collect(),
            forwarded: g.next().is_multiple_of(2),
            ts: (g.n() as i64).wrapping_neg(),
            lease_id: g.opt(),
            lease_debits: (0..g.next() % 3)
                .map(|_| LeaseAmount {
                    budget_id: g.text(),
                    amount: amounts[(g.next() as usize) % amounts.len()],
                })
                .collect(),
            cache_hit: g.next().is_multiple_of(2),
            request_digest: g.opt(),
            response_digest: g.opt(),
            region: g.opt(),
            refused: g.opt(),
        }
    }

    #[test]
    fn the_same_bytes_as_serde_json() {
        let mut g = Gen(7);
        for case in 0..5000 {
            let r = report(&mut g);
            let ours = encode(&r);
            let theirs = serde_json::to_vec(&r).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "case {case}"
            );
        }
    }

    #[test]
    fn every_control_byte_is_escaped_as_serde_json_does() {
        for b in 0u8..0x80 {
            let s = (b as char).to_string();
            let mut ours = Vec::new();
            string(&mut ours, &s);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "byte {b:#x}");
        }
    }
}
