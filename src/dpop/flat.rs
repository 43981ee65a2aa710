//! The claims of an ordinary proof payload read without building a JSON tree: a flat object whose
//! names and string values carry no escapes, as every DPoP client writes it. Anything else
//! (nesting, escapes, a repeated name, a missing or mistyped claim, more than [`MAX_MEMBERS`]
//! members) gives `None` and the caller takes the full path (`jose::parse_object`), which
//! decides exactly as before; so this reader only has to accept a subset of what that one
//! accepts, and give the same values for it (the tests compare the two).

/// Members read at most (a proof has five or six).
const MAX_MEMBERS: usize = 32;

/// The claims a proof check needs (RFC 9449 §4.2), borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Claims<'a> {
    pub jti: &'a str,
    pub htm: &'a str,
    pub htu: &'a str,
    pub iat: f64,
    pub ath: &'a str,
}

#[derive(Clone, Copy)]
enum Member<'a> {
    Str(&'a str),
    Num(&'a str),
    Other,
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn word(&mut self, word: &str) -> Option<()> {
        self.text
            .get(self.at..)?
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// A string without escapes or control characters (its text between the quotes).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let text = self.text.get(start..self.at)?;
        self.at += 1;
        Some(text)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A JSON number (RFC 8259 §6), as written.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        self.text.get(start..self.at)
    }

    fn value(&mut self) -> Option<Member<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Member::Str),
            b'-' | b'0'..=b'9' => self.number().map(Member::Num),
            b't' => self.word("true").map(|()| Member::Other),
            b'f' => self.word("false").map(|()| Member::Other),
            b'n' => self.word("null").map(|()| Member::Other),
            _ => None,
        }
    }
}

/// A number written as a whole count of at most 15 digits (every proof's `iat` in practice),
/// exact in an `f64`; anything else (a fraction, an exponent) is left to the full path, which
/// also spares the module a decimal-to-float parser.
fn whole_seconds(number: &str) -> Option<f64> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, number),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits
        .bytes()
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    // Below 2^53, so the conversion is exact.
    let value = value as f64;
    Some(if negative { -value } else { value })
}

/// The five claims of `payload` (decoded bytes), or `None` when it is not a flat object of
/// plain members holding them with their types (see the module's doc).
pub(super) fn claims<'a>(payload: &'a [u8]) -> Option<Claims<'a>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut cursor = Cursor { text, at: 0 };
    let mut names: [&str; MAX_MEMBERS] = [""; MAX_MEMBERS];
    let mut count = 0;
    let (mut jti, mut htm, mut htu, mut iat, mut ath) = (None, None, None, None, None);
    cursor.space();
    cursor.eat(b'{')?;
    loop {
        cursor.space();
        let name = cursor.string()?;
        if names.get(..count)?.contains(&name) {
            return None;
        }
        *names.get_mut(count)? = name;
        count += 1;
        cursor.space();
        cursor.eat(b':')?;
        cursor.space();
        let value = cursor.value()?;
        let mut ignored = None;
        let slot = match name {
            "jti" => &mut jti,
            "htm" => &mut htm,
            "htu" => &mut htu,
            "iat" => &mut iat,
            "ath" => &mut ath,
            _ => &mut ignored,
        };
        *slot = Some(value);
        cursor.space();
        match cursor.peek()? {
            b',' => cursor.at += 1,
            b'}' => break,
            _ => return None,
        }
    }
    cursor.at += 1;
    cursor.space();
    if cursor.at != text.len() {
        return None;
    }
    let string = |member: Option<Member<'a>>| match member? {
        Member::Str(s) => Some(s),
        _ => None,
    };
    let iat = match iat? {
        Member::Num(n) => whole_seconds(n)?,
        _ => return None,
    };
    Some(Claims {
        jti: string(jti)?,
        htm: string(htm)?,
        htu: string(htu)?,
        iat,
        ath: string(ath)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the full path makes of `payload`: the strict parser, then the claims by type.
    fn full(payload: &[u8]) -> Option<Claims<'static>> {
        let map = crate::jose::parse_object(payload, 16).ok()?;
        let s = |name: &str| -> Option<&'static str> {
            map.get(name)
                .and_then(Value::as_str)
                .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
        };
        Some(Claims {
            jti: s("jti")?,
            htm: s("htm")?,
            htu: s("htu")?,
            iat: map.get("iat").and_then(Value::as_f64)?,
            ath: s("ath")?,
        })
    }

    fn agree(payload: &[u8]) -> bool {
        match claims(payload) {
            None => false,
            Some(quick) => {
                assert_eq!(
                    Some(quick),
                    full(payload),
                    "{}",
                    String::from_utf8_lossy(payload)
                );
                true
            }
        }
    }

    const PLAIN: &str = r#"{"jti":"p-1","htm":"GET","htu":"https://api.example.com/pets","iat":1733500000,"ath":"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"}"#;

    #[test]
    fn reads_ordinary_proofs_like_the_full_path() {
        assert!(agree(PLAIN.as_bytes()));
        for payload in [
            r#" { "jti" : "a" , "htm":"POST","htu":"http://h/","iat":1500000000,"ath":"x", "nonce":"n", "x": null, "y": true, "z": -0.25E-3 } "#,
            r#"{"iat":0,"ath":"","jti":"","htm":"","htu":"ü/€"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":-12,"ath":"b","extra":false}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":999999999999999,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":-0,"ath":"b"}"#,
        ] {
            assert!(agree(payload.as_bytes()), "{payload}");
        }
        // Fractions, exponents and long numbers are read by the full path only.
        for iat in [
            "1.5",
            "1e9",
            "1733500000.000001",
            "18446744073709551616",
            "1000000000000000",
        ] {
            let payload = PLAIN.replace("1733500000", iat);
            assert_eq!(claims(payload.as_bytes()), None, "{iat}");
            assert!(full(payload.as_bytes()).is_some(), "{iat}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_path() {
        for payload in [
            "",
            "{}",
            "[]",
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b","jti":"a"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b","x":1,"x":2}"#,
            r#"{"jti":"a\u0041","htm":"GET","htu":"h","iat":1,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b","cnf":{"jkt":"k"}}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b","l":[1]}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":"1","ath":"b"}"#,
            r#"{"jti":1,"htm":"GET","htu":"h","iat":1,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":01,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1.,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1e,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":+1,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1e999,"ath":"b"}"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b"} x"#,
            r#"{"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b",}"#,
            "\u{feff}{\"jti\":\"a\",\"htm\":\"GET\",\"htu\":\"h\",\"iat\":1,\"ath\":\"b\"}",
            "{\"jti\":\"a\tb\",\"htm\":\"GET\",\"htu\":\"h\",\"iat\":1,\"ath\":\"b\"}",
        ] {
            assert_eq!(claims(payload.as_bytes()), None, "{payload}");
        }
        assert_eq!(
            claims(b"{\"jti\":\"\xff\",\"htm\":\"G\",\"htu\":\"h\",\"iat\":1,\"ath\":\"b\"}"),
            None
        );
        let many = (0..40).map(|i| format!(r#""m{i}":1,"#)).collect::<String>();
        let crowded = format!(r#"{{{many}"jti":"a","htm":"GET","htu":"h","iat":1,"ath":"b"}}"#);
        assert_eq!(claims(crowded.as_bytes()), None);
    }

    /// Every single-byte change of an ordinary payload: whatever this reader accepts, the full
    /// path reads the same way.
    #[test]
    fn never_disagrees_with_the_full_path_on_mutations() {
        let base = PLAIN.as_bytes();
        let bytes: &[u8] = b"{}[]\",:\\ \t0123456789.eE+-tfnulxy\x00\x1f\x7f\xc3";
        let mut accepted = 0;
        for at in 0..base.len() {
            for &b in bytes {
                let mut changed = base.to_vec();
                if let Some(place) = changed.get_mut(at) {
                    *place = b;
                }
                accepted += usize::from(agree(&changed));
                let mut inserted = base.to_vec();
                inserted.insert(at, b);
                accepted += usize::from(agree(&inserted));
                let mut removed = base.to_vec();
                removed.remove(at);
                accepted += usize::from(agree(&removed));
            }
        }
        assert!(accepted > 1_000, "{accepted}");
    }
}
