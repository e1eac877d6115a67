//! OTLP trace export encoding: `ExportTraceServiceRequest` as protobuf (the
//! default OTLP/HTTP content type, `application/x-protobuf`), written by hand
//! because the message subset is small and a protobuf crate would cost the
//! .wasm far more bytes. Field numbers follow opentelemetry-proto
//! (collector/trace/v1, trace/v1, common/v1, resource/v1).

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    StrArray(Vec<String>),
}

pub type Attributes = Vec<(&'static str, AttrValue)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time_ns: u64,
    pub name: &'static str,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    /// `Some(message)` marks the span as an error.
    pub error: Option<String>,
}

/// Encodes one export request holding `spans` under one resource and scope.
pub fn encode_export(resource: &[(String, AttrValue)], scope: &str, spans: &[Span]) -> Vec<u8> {
    let mut resource_msg = Vec::new();
    for (key, value) in resource {
        message(&mut resource_msg, 1, &key_value(key, value));
    }
    let mut scope_spans = Vec::new();
    let mut scope_msg = Vec::new();
    string(&mut scope_msg, 1, scope);
    string(&mut scope_msg, 2, env!("CARGO_PKG_VERSION"));
    message(&mut scope_spans, 1, &scope_msg);
    for span in spans {
        message(&mut scope_spans, 2, &encode_span(span));
    }
    let mut resource_spans = Vec::new();
    message(&mut resource_spans, 1, &resource_msg);
    message(&mut resource_spans, 2, &scope_spans);
    let mut out = Vec::new();
    message(&mut out, 1, &resource_spans);
    out
}

fn encode_span(span: &Span) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + span.attributes.len() * 48);
    bytes(&mut out, 1, &span.trace_id);
    bytes(&mut out, 2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        bytes(&mut out, 4, parent);
    }
    string(&mut out, 5, &span.name);
    varint_field(&mut out, 6, span.kind as u64);
    fixed64(&mut out, 7, span.start_ns);
    fixed64(&mut out, 8, span.end_ns);
    for (key, value) in &span.attributes {
        message(&mut out, 9, &key_value(key, value));
    }
    for event in &span.events {
        let mut e = Vec::new();
        fixed64(&mut e, 1, event.time_ns);
        string(&mut e, 2, event.name);
        for (key, value) in &event.attributes {
            message(&mut e, 3, &key_value(key, value));
        }
        message(&mut out, 11, &e);
    }
    let mut status = Vec::new();
    match &span.error {
        Some(msg) => {
            string(&mut status, 2, msg);
            varint_field(&mut status, 3, 2); // STATUS_CODE_ERROR
        }
        None => varint_field(&mut status, 3, 0), // STATUS_CODE_UNSET
    }
    message(&mut out, 15, &status);
    out
}

fn key_value(key: &str, value: &AttrValue) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, key);
    message(&mut out, 2, &any_value(value));
    out
}

fn any_value(value: &AttrValue) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        AttrValue::Str(s) => string(&mut out, 1, s),
        AttrValue::Bool(b) => varint_field(&mut out, 2, u64::from(*b)),
        // int64 is a plain varint of the two's complement value.
        AttrValue::Int(i) => varint_field(&mut out, 3, *i as u64),
        AttrValue::Double(d) => {
            tag(&mut out, 4, 1);
            out.extend_from_slice(&d.to_le_bytes());
        }
        AttrValue::StrArray(items) => {
            let mut array = Vec::new();
            for item in items {
                message(&mut array, 1, &any_value(&AttrValue::Str(item.clone())));
            }
            message(&mut out, 5, &array);
        }
    }
    out
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

fn message(out: &mut Vec<u8>, field: u32, encoded: &[u8]) {
    bytes(out, field, encoded);
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
            events: vec![],
            error: None,
        };
        let out = encode_export(
            &[("service.name".into(), AttrValue::Str("tollgate".into()))],
            "tollgate",
            &[span],
        );
        // Field 1 (resource_spans), length-delimited.
        assert_eq!(out.first(), Some(&0x0a));
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"chat gpt-4o"));
        assert!(has(b"gen_ai.usage.input_tokens"));
        assert!(has(&[0x0a, 16, 1, 1, 1])); // trace_id: field 1, 16 bytes
    }
}
