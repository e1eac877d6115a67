//! JSON read the strict way for bytes that go upstream unchanged: an object
//! with a key twice is refused. Parsers disagree on duplicates (serde_json
//! keeps the last, others the first), so a body with one would let the
//! provider read something other than what the filter checked.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Keys quoted in errors are cut to this many bytes.
const MAX_QUOTED_KEY: usize = 64;

/// Parses JSON like `serde_json::from_slice::<Value>`, but fails on a
/// duplicate key in any object at any depth.
pub fn parse_strict(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            // One lookup per key: the entry says whether it was there.
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(earlier) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key `{}`",
                        quoted(earlier.key())
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A key cut to `MAX_QUOTED_KEY` bytes at a character boundary.
fn quoted(key: &str) -> &str {
    key.get(..key.floor_char_boundary(MAX_QUOTED_KEY))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json_without_duplicates() {
        for text in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1,"t":0.5,"s":null,"b":true}"#,
            r#"[1,-2,3.25,"\u00e9",{"a":{"b":[]}}]"#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808}"#,
            "\"plain\"",
        ] {
            let strict = parse_strict(text.as_bytes()).unwrap();
            let loose: Value = serde_json::from_str(text).unwrap();
            assert_eq!(strict, loose, "{text}");
        }
    }

    #[test]
    fn duplicate_keys_fail_at_any_depth() {
        for text in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"messages":[{"role":"user","content":"x","content":"y"}]}"#,
            r#"{"a":{"b":{"c":{"d":1,"d":1}}}}"#,
            // Escapes spell the same key.
            r#"{"model":"a","mod\u0065l":"b"}"#,
        ] {
            let e = parse_strict(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("duplicate key"), "{text}: {e}");
        }
        // The same key in sibling objects is fine.
        assert!(parse_strict(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn long_keys_are_cut_in_errors() {
        let key = "é".repeat(100);
        let text = format!(r#"{{"{key}":1,"{key}":2}}"#);
        let e = parse_strict(text.as_bytes()).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(parse_strict("[".repeat(100_000).as_bytes()).is_err());
        assert!(parse_strict("{\"a\":".repeat(100_000).as_bytes()).is_err());
    }
}
