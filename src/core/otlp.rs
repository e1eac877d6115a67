//! OTLP trace export encoding: `ExportTraceServiceRequest` as protobuf (the
//! default OTLP/HTTP content type, `application/x-protobuf`), written by hand
//! because the message subset is small and a protobuf crate would cost the
//! .wasm far more bytes. Field numbers follow opentelemetry-proto
//! (collector/trace/v1, trace/v1, common/v1, resource/v1).

/// An attribute value, borrowed from the request's record: spans are
/// encoded as soon as they are made, so nothing is copied into them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    StrArray(&'a [String]),
}

pub type Attributes<'a> = Vec<(&'static str, AttrValue<'a>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes<'a>,
    /// `Some(message)` marks the span as an error.
    pub error: Option<String>,
}

/// Appends `span` as one entry of `ScopeSpans.spans`; `encode_export`
/// wraps a run of such entries. Exporters queue spans encoded this way, so
/// a span costs one write into a buffer and no copy of its strings.
pub fn encode_span_entry(out: &mut Vec<u8>, span: &Span) {
    nested(out, 2, |s| encode_span(s, span));
}

/// Encodes one export request holding `spans` (entries written by
/// `encode_span_entry`, back to back) under one resource and scope.
/// Nested messages are written in place (see `nested`), so a batch costs
/// one growing buffer instead of a temporary vector per message.
pub fn encode_export(resource: &[(&str, AttrValue)], scope: &str, spans: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len());
    nested(&mut out, 1, |rs| {
        nested(rs, 1, |r| {
            for (key, value) in resource {
                key_value(r, 1, key, value);
            }
        });
        nested(rs, 2, |ss| {
            nested(ss, 1, |s| {
                string(s, 1, scope);
                string(s, 2, env!("CARGO_PKG_VERSION"));
            });
            ss.extend_from_slice(spans);
        });
    });
    out
}

fn encode_span(out: &mut Vec<u8>, span: &Span) {
    bytes(out, 1, &span.trace_id);
    bytes(out, 2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        bytes(out, 4, parent);
    }
    string(out, 5, &span.name);
    varint_field(out, 6, span.kind as u64);
    fixed64(out, 7, span.start_ns);
    fixed64(out, 8, span.end_ns);
    for (key, value) in &span.attributes {
        key_value(out, 9, key, value);
    }
    nested(out, 15, |status| match &span.error {
        Some(msg) => {
            string(status, 2, msg);
            varint_field(status, 3, 2); // STATUS_CODE_ERROR
        }
        None => varint_field(status, 3, 0), // STATUS_CODE_UNSET
    });
}

fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &AttrValue) {
    nested(out, field, |kv| {
        string(kv, 1, key);
        nested(kv, 2, |v| any_value(v, value));
    });
}

fn any_value(out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::Str(s) => string(out, 1, s),
        AttrValue::Bool(b) => varint_field(out, 2, u64::from(*b)),
        // int64 is a plain varint of the two's complement value.
        AttrValue::Int(i) => varint_field(out, 3, *i as u64),
        AttrValue::Double(d) => {
            tag(out, 4, 1);
            out.extend_from_slice(&d.to_le_bytes());
        }
        AttrValue::StrArray(items) => nested(out, 5, |array| {
            for item in items.iter() {
                nested(array, 1, |v| string(v, 1, item));
            }
        }),
    }
}

/// A length-delimited field whose content `write` appends to `out`. The
/// length is not known up front: one byte is reserved for it (enough below
/// 128 bytes, the common case) and the content is shifted when it needs more.
fn nested(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, 2);
    let at = out.len();
    out.push(0);
    write(out);
    let mut len = (out.len() - at - 1) as u64;
    if len < 0x80 {
        if let Some(b) = out.get_mut(at) {
            *b = len as u8;
        }
        return;
    }
    let mut prefix = [0u8; 10];
    let mut n = 0;
    for b in prefix.iter_mut() {
        n += 1;
        if len < 0x80 {
            *b = len as u8;
            break;
        }
        *b = (len as u8) | 0x80;
        len >>= 7;
    }
    // One move of the content to make room (a splice costs far more).
    let end = out.len();
    out.resize(end + n - 1, 0);
    out.copy_within(at + 1..end, at + n);
    if let (Some(dst), Some(src)) = (out.get_mut(at..at + n), prefix.get(..n)) {
        dst.copy_from_slice(src);
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 0);
    varint(out, v);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    tag(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_protobuf() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        varint_field(&mut out, 3, -1i64 as u64);
        assert_eq!(
            out.len(),
            11,
            "negative int64 takes ten varint bytes plus the tag"
        );
    }

    /// Walks a message's fields; false when a length runs past its bytes.
    /// `depth` levels of length-delimited fields are walked as messages.
    fn well_formed(mut b: &[u8], depth: u32) -> bool {
        fn read_varint(b: &mut &[u8]) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first()?;
                *b = rest;
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return Some(v);
                }
            }
            None
        }
        while !b.is_empty() {
            let Some(key) = read_varint(&mut b) else {
                return false;
            };
            let skip = match key & 7 {
                0 => read_varint(&mut b).map(|_| 0),
                1 => Some(8),
                2 => read_varint(&mut b),
                _ => None,
            };
            let Some(skip) = skip.and_then(|n| usize::try_from(n).ok()) else {
                return false;
            };
            let Some((field, rest)) = (skip <= b.len()).then(|| b.split_at(skip)) else {
                return false;
            };
            if key & 7 == 2 && depth > 0 && key >> 3 != 1 && !well_formed(field, depth - 1) {
                return false;
            }
            b = rest;
        }
        true
    }

    #[test]
    fn long_nested_messages_get_multi_byte_lengths() {
        let long = "x".repeat(300);
        let tags = [long.clone(), "b".into()];
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: "chat".into(),
            kind: SpanKind::Client,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![
                ("gen_ai.input.messages", AttrValue::Str(&long)),
                ("tags", AttrValue::StrArray(&tags)),
            ],
            error: Some("boom".into()),
        };
        let mut spans = Vec::new();
        encode_span_entry(&mut spans, &span);
        encode_span_entry(&mut spans, &span);
        let out = encode_export(&[], "tollgate", &spans);
        // resource_spans: tag 0x0a, then a two-byte length covering the rest.
        assert_eq!(out.first(), Some(&0x0a));
        let len = usize::from(out[1] & 0x7f) | usize::from(out[2]) << 7;
        assert_eq!(len, out.len() - 3);
        assert!(well_formed(&out, 3));
        assert_eq!(
            out.windows(300)
                .filter(|w| w.iter().all(|&c| c == b'x'))
                .count(),
            4
        );
    }

    #[test]
    fn three_byte_lengths_round_trip() {
        let long = "y".repeat(20_000);
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: "chat".into(),
            kind: SpanKind::Server,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![("gen_ai.output.messages", AttrValue::Str(&long))],
            error: None,
        };
        let mut spans = Vec::new();
        encode_span_entry(&mut spans, &span);
        // Field 2, then 20,000-odd bytes: a three-byte length.
        assert_eq!(spans.first(), Some(&0x12));
        assert!(spans[1] & 0x80 != 0 && spans[2] & 0x80 != 0 && spans[3] & 0x80 == 0);
        let out = encode_export(&[], "tollgate", &spans);
        assert!(well_formed(&out, 4));
        assert!(out.windows(20_000).any(|w| w.iter().all(|&c| c == b'y')));
    }

    #[test]
    fn encodes_a_span() {
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "chat gpt-4o".into(),
            kind: SpanKind::Server,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![("gen_ai.usage.input_tokens", AttrValue::Int(12))],
            error: None,
        };
        let mut spans = Vec::new();
        encode_span_entry(&mut spans, &span);
        let out = encode_export(
            &[("service.name", AttrValue::Str("tollgate"))],
            "tollgate",
            &spans,
        );
        // Field 1 (resource_spans), length-delimited.
        assert_eq!(out.first(), Some(&0x0a));
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"chat gpt-4o"));
        assert!(has(b"gen_ai.usage.input_tokens"));
        assert!(has(&[0x0a, 16, 1, 1, 1])); // trace_id: field 1, 16 bytes
    }
}
