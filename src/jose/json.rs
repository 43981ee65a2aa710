//! Strict JSON object parsing for token headers, payloads and JWKS documents.
//!
//! serde_json keeps the last of repeated member names; two parsers that disagree on which one
//! counts is how signature-bypass bugs start, so a repeated name anywhere refuses the document.
//! Nesting is bounded well below serde_json's own recursion limit.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

use super::error::Malformation;

/// Parses `bytes` as one JSON value that must be an object.
/// Plain JSON (no escapes, whole numbers) is read by [`super::plain_json`]; everything else, and
/// every refusal, by serde with the checks below.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, Malformation> {
    let text = std::str::from_utf8(bytes).map_err(|_| Malformation::NotUtf8)?;
    match super::plain_json::object(text, max_depth) {
        Some(map) => Ok(map),
        None => parse_with_serde(text, max_depth),
    }
}

/// [`parse_object`]'s full path.
pub(super) fn parse_with_serde(
    text: &str,
    max_depth: usize,
) -> Result<Map<String, Value>, Malformation> {
    let fault = Cell::new(None);
    let seed = StrictValue {
        depth: 0,
        max_depth,
        fault: &fault,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|_| fault.get().unwrap_or(Malformation::NotJson))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Malformation::NotObject),
    }
}

/// Builds a `serde_json::Value`, recording in `fault` why it gave up (serde errors are strings).
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    depth: usize,
    max_depth: usize,
    fault: &'a Cell<Option<Malformation>>,
}

impl StrictValue<'_> {
    fn nested(self) -> Result<Self, Malformation> {
        let depth = self.depth.saturating_add(1);
        if depth > self.max_depth {
            return Err(Malformation::TooDeep);
        }
        Ok(StrictValue { depth, ..self })
    }

    fn fail<E: serde::de::Error>(self, fault: Malformation) -> E {
        self.fault.set(Some(fault));
        E::custom("strict JSON")
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
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
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested().map_err(|m| self.fail::<A::Error>(m))?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.nested().map_err(|m| self.fail::<A::Error>(m))?;
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(self.fail(Malformation::DuplicateMember));
            }
            let value = access.next_value_seed(inner)?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects_and_refuses_the_rest() {
        let map = parse_object(br#"{"a":1,"b":{"c":[1,2.5,"x",null,true]}}"#, 8).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(parse_object(b"[1]", 8), Err(Malformation::NotObject));
        assert_eq!(parse_object(b"\"x\"", 8), Err(Malformation::NotObject));
        assert_eq!(parse_object(b"{\"a\":1", 8), Err(Malformation::NotJson));
        assert_eq!(parse_object(b"{} {}", 8), Err(Malformation::NotJson));
        assert_eq!(parse_object(b"\xff", 8), Err(Malformation::NotUtf8));
    }

    #[test]
    fn refuses_duplicate_names_at_any_depth() {
        let top = br#"{"alg":"HS256","alg":"none"}"#;
        assert_eq!(parse_object(top, 8), Err(Malformation::DuplicateMember));
        let deep = br#"{"a":[{"x":1,"x":2}]}"#;
        assert_eq!(parse_object(deep, 8), Err(Malformation::DuplicateMember));
        // escaped spelling of the same name is the same name
        let escaped = br#"{"alg":"HS256","\u0061lg":"none"}"#;
        assert_eq!(parse_object(escaped, 8), Err(Malformation::DuplicateMember));
    }

    #[test]
    fn bounds_nesting() {
        assert!(parse_object(br#"{"a":{"b":{}}}"#, 3).is_ok());
        assert_eq!(
            parse_object(br#"{"a":{"b":{"c":{}}}}"#, 3),
            Err(Malformation::TooDeep)
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(
            parse_object(deep.as_bytes(), 16),
            Err(Malformation::TooDeep)
        );
    }
}
