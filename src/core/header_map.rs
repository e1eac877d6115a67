//! The proxy-wasm ABI's serialized header map, read in one host call instead
//! of one call per header: a little-endian u32 count, then a (name length,
//! value length) u32 pair per header, then each name and value followed by a
//! NUL byte.

/// Encodes pairs in that layout (e.g. headers of a local reply).
pub fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(0).to_le_bytes();
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(n, v)| 10 + n.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// A decoded map that keeps the host's bytes and points into them: reading
/// a request's headers allocates two vectors, not two strings per header.
#[derive(Debug, Default)]
pub struct Headers {
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) in `bytes`.
    spans: Vec<(usize, usize, usize, usize)>,
}

impl Headers {
    /// Decodes a serialized map; `None` if the bytes do not follow the layout.
    pub fn decode(bytes: Vec<u8>) -> Option<Headers> {
        let u32_at = |at: usize| -> Option<usize> {
            let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(raw)).ok()
        };
        let count = u32_at(0)?;
        let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
        if data > bytes.len() {
            return None;
        }
        let mut spans = Vec::with_capacity(count);
        for i in 0..count {
            let name_len = u32_at(4 + i * 8)?;
            let value_len = u32_at(8 + i * 8)?;
            let name_end = data.checked_add(name_len)?;
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            if value_end > bytes.len() {
                return None;
            }
            spans.push((data, name_end, value_start, value_end));
            data = value_end.checked_add(1)?;
        }
        Some(Headers { bytes, spans })
    }

    /// A map from name and value views (a native host's headers).
    pub fn from_pairs<'a>(
        pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Headers {
        let size = pairs.clone().map(|(n, v)| n.len() + v.len()).sum();
        let mut headers = Headers {
            bytes: Vec::with_capacity(size),
            spans: Vec::with_capacity(pairs.len()),
        };
        for (name, value) in pairs {
            let ns = headers.bytes.len();
            headers.bytes.extend_from_slice(name);
            let vs = headers.bytes.len();
            headers.bytes.extend_from_slice(value);
            headers.spans.push((ns, vs, vs, headers.bytes.len()));
        }
        headers
    }

    /// The first UTF-8 value of `name` (names are lowercase): a pair that
    /// is not UTF-8 reads as absent. Names are compared as bytes (a name
    /// that is not UTF-8 matches none), and only the values of the name
    /// looked up are checked, not every pair of the map.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.spans
            .iter()
            .filter(|&&(ns, ne, _, _)| self.bytes.get(ns..ne) == Some(name.as_bytes()))
            .find_map(|&(_, _, vs, ve)| std::str::from_utf8(self.bytes.get(vs..ve)?).ok())
    }

    /// A response's `:status`; 0 when it is missing or not a number.
    pub fn status(&self) -> u32 {
        self.get(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_from_views_reads_like_a_decoded_one() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/v1/chat/completions"),
            (b"x-bad", b"\xff"),
            (b"authorization", b"Bearer k"),
            (b"authorization", b"second"),
        ];
        let headers = Headers::from_pairs(pairs.into_iter());
        assert_eq!(headers.get(":path"), Some("/v1/chat/completions"));
        assert_eq!(headers.get("authorization"), Some("Bearer k"));
        assert_eq!(headers.get("x-bad"), None);
        assert_eq!(headers.get("absent"), None);
    }

    #[test]
    fn round_trips_and_rejects_truncation() {
        let pairs = [
            (":path", "/v1/messages"),
            ("x-api-key", "tg-1"),
            ("empty", ""),
        ];
        let bytes = encode(&pairs);
        let decoded = Headers::decode(bytes.clone()).unwrap();
        for (name, value) in pairs {
            assert_eq!(decoded.get(name), Some(value), "{name}");
        }
        assert_eq!(decoded.spans.len(), 3);
        assert_eq!(decoded.get("empty"), Some(""));
        assert_eq!(decoded.get("absent"), None);
        for cut in 0..bytes.len() - 1 {
            assert!(
                Headers::decode(bytes[..cut].to_vec()).is_none(),
                "cut at {cut}"
            );
        }
        assert!(Headers::decode(vec![255, 255, 255, 255]).is_none());
        assert!(Headers::decode(encode(&[])).unwrap().spans.is_empty());
        // A value that is not UTF-8 reads as absent; the others still read.
        let mut bad = encode(&[("a", "x"), ("b", "y")]);
        let at = bad.len() - 2;
        bad[at] = 0xff;
        let bad = Headers::decode(bad).unwrap();
        assert_eq!((bad.get("a"), bad.get("b")), (Some("x"), None));
        // A name twice whose first value is not UTF-8: the second is its value.
        let mut twice = encode(&[("a", "x"), ("a", "y")]);
        let at = twice.len() - 6;
        twice[at] = 0xff;
        assert_eq!(Headers::decode(twice).unwrap().get("a"), Some("y"));
    }

    #[test]
    fn a_status_that_is_missing_or_not_a_number_reads_as_0() {
        let status = |pairs: &[(&str, &str)]| Headers::decode(encode(pairs)).unwrap().status();
        assert_eq!(status(&[(":status", "429")]), 429);
        assert_eq!(status(&[(":status", "4x9")]), 0);
        assert_eq!(status(&[(":status", "-1")]), 0);
        assert_eq!(status(&[("content-type", "text/plain")]), 0);
    }
}
