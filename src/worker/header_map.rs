//! The header maps Envoy hands the filter (proxy-wasm's `proxy_get_header_map_pairs`), decoded
//! without ever failing on their bytes.
//!
//! Wire format: the pair count (u32, little endian), then each pair's name and value lengths (two
//! u32), then each name and value followed by a NUL byte. Envoy's codecs pass header values that
//! are not UTF-8 (obs-text bytes, RFC 9110 §5.5); the SDK's own reader stops the VM on them, so
//! one such request would fail every later request on its worker. Here a value that is not UTF-8
//! is read with U+FFFD in place of its bad bytes: keygate only compares values (a token, an API
//! key, a proof, a path), and a replaced value equals nothing a client could have meant, so the
//! request is decided like one with any other wrong value. Names are validated by Envoy's codecs
//! (token characters only); a map whose name is not UTF-8, or whose lengths do not add up, is
//! refused as a whole (`None`: the filter fails closed). Bytes after the last pair are ignored.

/// The `(name, value)` pairs of a serialized header map, or `None` when it is not well-formed.
pub fn decode_header_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let mut text = count.checked_mul(8)?.checked_add(4)?;
    // Each pair takes at least its two lengths and two NUL bytes.
    if count.checked_mul(10)? > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for n in 0..count {
        let at = 4 + n * 8;
        let name_len = usize::try_from(read_u32(bytes, at)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, at + 4)?).ok()?;
        let name = field(bytes, &mut text, name_len)?;
        let value = field(bytes, &mut text, value_len)?;
        let name = std::str::from_utf8(name).ok()?.to_owned();
        let value = match std::str::from_utf8(value) {
            Ok(value) => value.to_owned(),
            Err(_) => String::from_utf8_lossy(value).into_owned(),
        };
        pairs.push((name, value));
    }
    Some(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

/// `len` bytes at `*at` followed by a NUL; moves `*at` past both.
fn field<'b>(bytes: &'b [u8], at: &mut usize, len: usize) -> Option<&'b [u8]> {
    let end = at.checked_add(len)?;
    let field = bytes.get(*at..end)?;
    if bytes.get(end) != Some(&0) {
        return None;
    }
    *at = end + 1;
    Some(field)
}

/// Serializes pairs in the same format (what the host writes; for tests and the fake host).
pub fn encode_header_map(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_what_the_host_writes() {
        let map = encode_header_map(&[
            (b":path", b"/pets/v1/pets"),
            (b"authorization", b"Bearer abc"),
            (b"x-empty", b""),
        ]);
        assert_eq!(
            decode_header_map(&map),
            Some(pairs(&[
                (":path", "/pets/v1/pets"),
                ("authorization", "Bearer abc"),
                ("x-empty", ""),
            ]))
        );
        assert_eq!(decode_header_map(&[]), Some(Vec::new()));
        assert_eq!(decode_header_map(&encode_header_map(&[])), Some(Vec::new()));
    }

    #[test]
    fn values_that_are_not_utf8_are_read_with_replacement_characters() {
        let map = encode_header_map(&[
            (b"x-odd", b"\xff\xfe"),
            (b"authorization", b"Bearer caf\xe9"),
            (b"x-surrogate", b"\xed\xa0\x80"),
        ]);
        let decoded = decode_header_map(&map).unwrap();
        assert_eq!(decoded[0], ("x-odd".into(), "\u{fffd}\u{fffd}".into()));
        assert_eq!(
            decoded[1],
            ("authorization".into(), "Bearer caf\u{fffd}".into())
        );
        assert!(decoded[2].1.chars().all(|c| c == '\u{fffd}'));
    }

    #[test]
    fn a_map_that_does_not_add_up_is_refused() {
        let good = encode_header_map(&[(b"a", b"b"), (b"c", b"d")]);
        // Every truncation, a wrong NUL, lying counts and lengths.
        for cut in 1..good.len() {
            assert_eq!(decode_header_map(&good[..cut]), None, "cut at {cut}");
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(decode_header_map(&no_nul), None);
        let mut many = good.clone();
        many[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_header_map(&many), None);
        let mut long_name = good.clone();
        long_name[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_header_map(&long_name), None);
        // A name that is not UTF-8 (Envoy's codecs never pass one).
        let odd_name = encode_header_map(&[(b"x-\xff", b"v")]);
        assert_eq!(decode_header_map(&odd_name), None);
    }
}
