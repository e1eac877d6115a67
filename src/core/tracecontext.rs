//! W3C trace context (`traceparent`), and the ids the filter mints for a
//! request from its per-VM random seed and the request's number.

use super::hex;

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
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    hex::push(&mut out, trace_id);
    out.push('-');
    hex::push(&mut out, span_id);
    out.push_str(if sampled { "-01" } else { "-00" });
    out
}

/// A request's trace id, its span id and its upstream span id, from a
/// random per-VM `seed` and the request's number `n`. Trace ids need to be
/// unique and evenly spread (sampling reads them), not secret, so a
/// SplitMix64 mix does it, which is much cheaper than a hash in the VM.
pub fn mint_ids(seed: u64, n: u64) -> ([u8; 16], [u8; 8], [u8; 8]) {
    let state = seed ^ splitmix64(n);
    let word = |i: u64| {
        // Never zero: an all-zero id is invalid.
        splitmix64(state.wrapping_add(i.wrapping_mul(GOLDEN))).max(1)
    };
    let mut trace = [0u8; 16];
    let (high, low) = trace.split_at_mut(8);
    high.copy_from_slice(&word(1).to_be_bytes());
    low.copy_from_slice(&word(2).to_be_bytes());
    (trace, word(3).to_be_bytes(), word(4).to_be_bytes())
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    fn minted_ids_differ_by_seed_and_number() {
        let mut seen = std::collections::HashSet::new();
        for (seed, n) in [(1, 0), (1, 1), (2, 0), (2, 1), (0, 0), (u64::MAX, u64::MAX)] {
            let (trace, span, upstream) = mint_ids(seed, n);
            assert!(seen.insert(trace), "{seed} {n}");
            assert!(seen.insert([span, upstream].concat().try_into().unwrap()));
            assert_ne!(span, upstream);
            assert_ne!(trace, [0; 16]);
        }
        // Evenly spread: the sampling byte takes most values over 4096 requests.
        let firsts: std::collections::HashSet<u8> =
            (0..4096).map(|n| mint_ids(7, n).0[0]).collect();
        assert!(firsts.len() > 250, "{}", firsts.len());
    }
}
