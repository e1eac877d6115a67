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

/// Decodes a serialized map; `None` if the bytes do not follow the layout.
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = u32_at(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let pairs = [
            (":path", "/v1/messages"),
            ("x-api-key", "tg-1"),
            ("empty", ""),
        ];
        let bytes = encode(&pairs);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], ("x-api-key".to_string(), "tg-1".to_string()));
        for cut in 0..bytes.len() - 1 {
            assert!(
                decode(&bytes[..cut]).is_none() || cut >= bytes.len() - 1,
                "cut at {cut}"
            );
        }
        assert_eq!(decode(&[255, 255, 255, 255]), None);
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }
}
