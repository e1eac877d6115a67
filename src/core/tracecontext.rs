//! W3C trace context (`traceparent`), and span ids the filter can mint
//! without a random source: SHA-256 of values unique to the request.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

fn hex_into(hex: &str, out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

/// Parses `00-<trace id>-<parent id>-<flags>`; invalid or all-zero ids are
/// ignored as the spec requires (the gateway then starts a new trace).
pub fn parse(header: &str) -> Option<TraceParent> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let mut v = [0u8; 1];
    hex_into(version, &mut v)?;
    if version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let mut tp = TraceParent {
        trace_id: [0; 16],
        parent_id: [0; 8],
        sampled: false,
    };
    hex_into(trace, &mut tp.trace_id)?;
    hex_into(parent, &mut tp.parent_id)?;
    let mut flag = [0u8; 1];
    hex_into(flags, &mut flag)?;
    tp.sampled = flag.first().is_some_and(|f| f & 1 == 1);
    if tp.trace_id == [0; 16] || tp.parent_id == [0; 8] {
        return None;
    }
    Some(tp)
}

pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        hex(trace_id),
        hex(span_id),
        if sampled { "01" } else { "00" }
    )
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.extend(char::from_digit(u32::from(nibble), 16));
        }
    }
    out
}

/// 24 bytes of id material from `seed` (e.g. request id, time, counter).
pub fn mint_ids(seed: &str) -> ([u8; 16], [u8; 8]) {
    let digest = Sha256::digest(seed.as_bytes());
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    if let (Some(t), Some(s)) = (digest.get(..16), digest.get(16..24)) {
        trace.copy_from_slice(t);
        span.copy_from_slice(s);
    }
    (trace, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = parse(h).unwrap();
        assert!(tp.sampled);
        assert_eq!(format(&tp.trace_id, &tp.parent_id, true), h);
        assert_eq!(
            parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            None
        );
        assert_eq!(
            parse("zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01"),
            None
        );
    }

    #[test]
    fn minted_ids_differ_by_seed() {
        let (t1, s1) = mint_ids("a");
        let (t2, s2) = mint_ids("b");
        assert_ne!(t1, t2);
        assert_ne!(s1, s2);
        assert_ne!(t1, [0; 16]);
    }
}
