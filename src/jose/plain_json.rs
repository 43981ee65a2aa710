//! The JSON key managers actually write, read without serde's machinery: objects, arrays, strings
//! without escapes, whole non-negative numbers below 10^18, `true`, `false` and `null`. That is
//! every member of a token header and of nearly every access-token payload. Anything else (an
//! escape, a fraction, a negative number, a control character, a repeated name, nesting past the
//! bound, trailing text) gives `None` and [`super::json::parse_object`] takes its full path, which
//! decides exactly as before: this reader only accepts a subset of what that one accepts and
//! builds the same value for it (the tests compare the two on every mutation of real payloads).
//!
//! What it saves on a new token is serde's visitor calls, its number parser and a separate lookup
//! for repeated names (the insertion itself reports one).

use serde_json::{Map, Value};

/// Whole numbers with at most this many digits are read here (below 10^18, so they fit the
/// `u64` serde_json would make of them).
const MAX_DIGITS: usize = 18;

struct Reader<'a> {
    text: &'a str,
    at: usize,
    max_depth: usize,
}

/// The object `text` holds, or `None` for anything outside the subset (see the module's doc).
pub(super) fn object(text: &str, max_depth: usize) -> Option<Map<String, Value>> {
    let mut reader = Reader {
        text,
        at: 0,
        max_depth,
    };
    reader.space();
    if reader.peek()? != b'{' {
        return None;
    }
    let map = reader.object(1)?;
    reader.space();
    (reader.at == text.len()).then_some(map)
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string().map(|s| Value::String(s.to_owned())),
            b'{' => self.object(depth.checked_add(1)?).map(Value::Object),
            b'[' => self.array(depth.checked_add(1)?),
            b'0'..=b'9' => self.number(),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Null),
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Option<Value> {
        let rest = self.text.get(self.at..)?;
        rest.starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// A string without escapes or control characters: its text between the quotes.
    fn string(&mut self) -> Option<&str> {
        let bytes = self.text.as_bytes();
        let start = self.at.checked_add(1)?;
        let mut end = start;
        loop {
            match *bytes.get(end)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => end += 1,
            }
        }
        self.at = end + 1;
        // Both ends sit next to an ASCII quote, so they are character boundaries.
        self.text.get(start..end)
    }

    fn number(&mut self) -> Option<Value> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut end = start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let digits = bytes.get(start..end)?;
        let leading_zero = digits.len() > 1 && digits.first() == Some(&b'0');
        if digits.len() > MAX_DIGITS
            || leading_zero
            || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.at = end;
        let value = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        Some(Value::Number(value.into()))
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        if depth > self.max_depth {
            return None;
        }
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Value::Array(items));
        }
        loop {
            self.space();
            items.push(self.value(depth)?);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.at += 1;
        Some(Value::Array(items))
    }

    fn object(&mut self, depth: usize) -> Option<Map<String, Value>> {
        if depth > self.max_depth {
            return None;
        }
        self.at += 1;
        let mut map = Map::new();
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(map);
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return None;
            }
            let name = self.string()?.to_owned();
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.space();
            let value = self.value(depth)?;
            // A repeated name: the full path refuses it.
            if map.insert(name, value).is_some() {
                return None;
            }
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.at += 1;
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full path (serde, strict) makes of `text`.
    fn full(text: &str, depth: usize) -> Option<Map<String, Value>> {
        super::super::json::parse_with_serde(text, depth).ok()
    }

    /// Whether the quick reader took `text`; when it did, it agrees with the full path.
    fn agree(text: &str, depth: usize) -> bool {
        match object(text, depth) {
            None => false,
            Some(quick) => {
                assert_eq!(Some(&quick), full(text, depth).as_ref(), "{text}");
                true
            }
        }
    }

    const PAYLOAD: &str = r#"{"iss":"https://idp.example","aud":"api://pets","client_id":"app-1","scope":"pets:read pets:write","iat":1733500000,"exp":1733503600,"jti":"3f2a","sub":"user-1","auth_time":0,"allowed-origins":["https://shop.example.com"],"realm_access":{"roles":["default-roles","offline_access"]},"email_verified":false,"acr":null,"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},"nested":[[],{},[{"a":[1,true]}]]}"#;

    #[test]
    fn reads_what_key_managers_write_like_the_full_path() {
        assert!(agree(PAYLOAD, 16));
        for text in [
            "{}",
            " { } ",
            "{\"a\":[]}",
            "{\n\t\"a\" : 0 ,\r\n \"b\":999999999999999999 }",
            r#"{"ü":"€ and 😀","":""}"#,
            r#"{"alg":"RS256","typ":"at+jwt","kid":"rsa1"}"#,
        ] {
            assert!(agree(text, 16), "{text}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_path() {
        for text in [
            "",
            "[]",
            "\"x\"",
            "1",
            "{",
            "{} {}",
            "{},",
            r#"{"a":1,"a":1}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"\n":1}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":-1}"#,
            r#"{"a":-0}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":1E3}"#,
            r#"{"a":01}"#,
            r#"{"a":1000000000000000000}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "\u{feff}{}",
            "{}\u{0}",
        ] {
            assert_eq!(object(text, 16), None, "{text}");
        }
    }

    #[test]
    fn depth_is_bounded_like_the_full_path() {
        assert!(agree(r#"{"a":{"b":[]}}"#, 3));
        let too_deep = r#"{"a":{"b":{"c":[]}}}"#;
        assert_eq!(object(too_deep, 3), None);
        assert!(full(too_deep, 3).is_none());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(object(&deep, 16), None);
    }

    /// Every one-byte change, insertion and removal in a real payload: whatever the quick reader
    /// accepts, the full path reads the same way (and refuses nothing it accepted).
    #[test]
    fn never_disagrees_with_the_full_path_on_mutations() {
        let bytes: &[u8] = b"{}[]\",:\\ \t\n0123456789.eE+-tfnulxy\x00\x1f\x7f";
        let base = PAYLOAD.as_bytes();
        let mut accepted = 0;
        for at in 0..base.len() {
            for &b in bytes {
                let mut changed = base.to_vec();
                if let Some(place) = changed.get_mut(at) {
                    *place = b;
                }
                let mut inserted = base.to_vec();
                inserted.insert(at, b);
                let mut removed = base.to_vec();
                removed.remove(at);
                for text in [changed, inserted, removed] {
                    if let Ok(text) = std::str::from_utf8(&text) {
                        accepted += usize::from(agree(text, 16));
                    }
                }
            }
        }
        assert!(accepted > 10_000, "{accepted}");
    }
}
