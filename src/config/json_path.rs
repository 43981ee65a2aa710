//! The field path of a serde error in a JSON text (`apis[0].resources[1].scopes`), found after the
//! fact from the error's line and column instead of tracking the path while deserializing: a
//! tracking deserializer wraps every visitor of every configuration type and costs the module
//! about 140 KB of code (docs/performance.md, Module size); this walker is one small function that
//! runs only when a configuration is refused.
//!
//! serde_json reports an error at the byte after the last one it read. The walker reads the text
//! up to there and keeps the open objects and arrays: an object is in the path with its key once
//! the key's `:` is read (or while the key itself is being read), an array with its index. Errors a container raises about itself (`missing field`, `invalid
//! length`, `duplicate field`) are at the container's own path.

/// Where an object or array is: before a key or element (`Start`), after a key (`Key`), in a
/// value (`Value`), after a value (`Done`).
#[derive(Clone, Copy, PartialEq)]
enum State {
    Start,
    Key,
    Value,
    Done,
}

enum Frame {
    Object { key: String, state: State },
    Array { index: usize, state: State },
}

impl Frame {
    fn state(&mut self) -> &mut State {
        match self {
            Frame::Object { state, .. } | Frame::Array { state, .. } => state,
        }
    }
}

/// The path of `error`, which deserializing `text` produced, as `serde_path_to_error` spells it:
/// `.` for the top level, `.`-joined keys, `[i]` for array elements, `?` for a key not read.
pub(crate) fn error_path(text: &[u8], error: &serde_json::Error) -> String {
    let end = offset(text, error.line(), error.column());
    let mut read = text.get(..end).unwrap_or(text);
    let message = error.to_string();
    // A syntax error is at a byte serde_json peeked and did not read, except for a number it
    // read whole; an end of input is after the last byte read.
    let number =
        message.starts_with("number out of range") || message.starts_with("invalid number");
    let mut peeked = None;
    if error.is_syntax() && !number {
        if let Some((last, before)) = read.split_last() {
            read = before;
            peeked = Some(*last);
        }
    }
    let syntax = error.is_syntax() || error.is_eof();
    let (mut frames, ended_in_key) = walk(read, peeked.is_some() || error.is_eof());
    if ended_in_key {
        if message.starts_with("unknown variant `") {
            // `{"variant": ...}` naming no variant: at the enum's own path.
            frames.pop();
        } else if !syntax && !message.starts_with("duplicate field `") {
            // An unknown or bad key is in the path.
            if let Some(Frame::Object { state, .. }) = frames.last_mut() {
                *state = State::Value;
            }
        }
    }
    // `{}` is refused only where an enum's variant belongs: at the enum's own path.
    if peeked == Some(b'}') && read.trim_ascii_end().last() == Some(&b'{') {
        frames.pop();
    }
    // A peeked byte other than `]` starts an element.
    let starts_element = !matches!(peeked, Some(b']') | None);
    let last = frames.len().saturating_sub(1);
    let mut path = String::new();
    for (depth, frame) in frames.iter().enumerate() {
        match frame {
            Frame::Object { key, state } => {
                let segment = match state {
                    State::Value => key.as_str(),
                    State::Done if !syntax => key.as_str(),
                    State::Start | State::Done if syntax => "?",
                    _ => continue,
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(segment);
            }
            Frame::Array { index, state } => {
                let element = match state {
                    State::Value => true,
                    State::Start => !syntax || (depth == last && starts_element),
                    _ => !syntax,
                };
                if element {
                    path.push('[');
                    path.push_str(&index.to_string());
                    path.push(']');
                }
            }
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    path
}

/// The byte offset of serde_json's 1-based line and 0-based column (bytes since the line start).
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    let mut seen = 1;
    while seen < line {
        match text
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            Some(at) => start += at + 1,
            None => return text.len(),
        }
        seen += 1;
    }
    (start + column).min(text.len())
}

/// A value starts in the innermost frame.
fn begin(frames: &mut [Frame]) {
    if let Some(frame) = frames.last_mut() {
        let state = frame.state();
        if *state != State::Key {
            *state = State::Value;
        }
    }
}

/// The innermost frame's value ended.
fn finish(frames: &mut [Frame]) {
    if let Some(frame) = frames.last_mut() {
        *frame.state() = State::Done;
    }
}

/// The open objects and arrays at the end of `text`, and whether it ends in an object's key. For
/// a syntax error, a whole value the text ends in was read without error; otherwise the error is
/// about it.
fn walk(text: &[u8], syntax: bool) -> (Vec<Frame>, bool) {
    let mut frames: Vec<Frame> = Vec::new();
    let mut in_scalar = false;
    let mut scalar_start = 0;
    let mut ended_in_key = false;
    let mut i = 0;
    while let Some(&byte) = text.get(i) {
        i += 1;
        // serde_json refuses a key after the whitespace that follows it.
        if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            ended_in_key = false;
        }
        let token = !matches!(
            byte,
            b'{' | b'[' | b'}' | b']' | b',' | b':' | b'"' | b' ' | b'\n' | b'\r' | b'\t'
        );
        if in_scalar && !token {
            in_scalar = false;
            finish(&mut frames);
        }
        match byte {
            b'{' => {
                begin(&mut frames);
                frames.push(Frame::Object {
                    key: String::new(),
                    state: State::Start,
                });
            }
            b'[' => {
                begin(&mut frames);
                frames.push(Frame::Array {
                    index: 0,
                    state: State::Start,
                });
            }
            b'}' | b']' => {
                frames.pop();
                finish(&mut frames);
            }
            b',' => match frames.last_mut() {
                Some(Frame::Object { state, .. }) => *state = State::Start,
                Some(Frame::Array { index, state }) => {
                    *index += 1;
                    *state = State::Start;
                }
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { state, .. }) = frames.last_mut() {
                    *state = State::Value;
                }
            }
            b'"' => {
                let (string, closed, next) = read_string(text, i);
                i = next;
                match frames.last_mut() {
                    // A key still being read (the input ends in it) is a key not read.
                    Some(Frame::Object { key, state }) if *state == State::Start => {
                        if closed {
                            *key = string;
                            *state = State::Key;
                            ended_in_key = true;
                        }
                    }
                    _ => {
                        begin(&mut frames);
                        if closed && (i < text.len() || syntax) {
                            finish(&mut frames);
                        }
                    }
                }
            }
            _ if token && !in_scalar => {
                begin(&mut frames);
                in_scalar = true;
                scalar_start = i - 1;
            }
            _ => {}
        }
    }
    if in_scalar && syntax {
        let scalar = text.get(scalar_start..).unwrap_or_default();
        if matches!(scalar, b"true" | b"false" | b"null")
            || scalar.last().is_some_and(u8::is_ascii_digit)
        {
            finish(&mut frames);
        }
    }
    (frames, ended_in_key)
}

/// The string starting after the quote at `from` (escapes decoded as serde_json decodes them), if
/// it was closed before the text ends, and the offset after it.
fn read_string(text: &[u8], from: usize) -> (String, bool, usize) {
    let mut i = from;
    while let Some(&byte) = text.get(i) {
        match byte {
            b'"' => {
                let raw = text.get(from.saturating_sub(1)..=i).unwrap_or_default();
                let decoded = serde_json::from_slice::<String>(raw).unwrap_or_else(|_| {
                    String::from_utf8_lossy(text.get(from..i).unwrap_or_default()).into_owned()
                });
                return (decoded, true, i + 1);
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    let rest = text.get(from..).unwrap_or_default();
    (
        String::from_utf8_lossy(rest).into_owned(),
        false,
        text.len(),
    )
}

/// The walker against `serde_path_to_error` (the tracking deserializer the CLI still uses): every
/// field of the policy fixture, in compact and pretty text, replaced by values of every wrong
/// kind, removed, and joined by an unknown sibling.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::error_path;
    use crate::config::PluginConfig;
    use serde::Deserialize;
    use serde_json::{json, Value};

    const FIXTURE: &str = include_str!("../../tests/fixtures/policy_fixture.json");

    fn tracked(text: &[u8]) -> Option<String> {
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize::<_, PluginConfig>(&mut de)
            .err()
            .map(|e| e.path().to_string())
    }

    fn walked(text: &[u8]) -> Option<String> {
        let mut de = serde_json::Deserializer::from_slice(text);
        PluginConfig::deserialize(&mut de)
            .err()
            .map(|e| error_path(text, &e))
    }

    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(v, p, out);
            }),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }),
            _ => {}
        }
    }

    fn check(cfg: &Value, cases: &mut usize) {
        for text in [
            serde_json::to_vec(cfg).unwrap(),
            serde_json::to_vec_pretty(cfg).unwrap(),
        ] {
            let want = tracked(&text);
            assert_eq!(walked(&text), want, "{}", String::from_utf8_lossy(&text));
            *cases += usize::from(want.is_some());
        }
    }

    #[test]
    fn the_walker_finds_the_path_the_tracking_deserializer_finds() {
        let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
        let mut all = Vec::new();
        pointers(&fixture, String::new(), &mut all);
        let wrong = [
            json!(null),
            json!(true),
            json!(-1),
            json!(1.5),
            json!("text"),
            json!([]),
            json!([1, "x"]),
            json!({}),
            json!({"unknown_field": 1}),
        ];
        let mut cases = 0;
        for pointer in &all {
            for value in &wrong {
                let mut cfg = fixture.clone();
                *cfg.pointer_mut(pointer).unwrap() = value.clone();
                check(&cfg, &mut cases);
            }
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let mut cfg = fixture.clone();
            if let Some(Value::Object(map)) = cfg.pointer_mut(parent) {
                map.remove(key);
                check(&cfg, &mut cases);
            }
            if let Some(Value::Object(map)) = cfg.pointer_mut(parent) {
                map.insert("zz_unknown".into(), json!(1));
                check(&cfg, &mut cases);
            }
        }
        assert!(cases > 500, "{cases} refused cases");
    }

    /// Every prefix of the fixture (an end of input at every place) and a stray `,` or `]` at
    /// every place.
    #[test]
    fn syntax_errors_everywhere() {
        let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
        for text in [
            serde_json::to_vec(&fixture).unwrap(),
            serde_json::to_vec_pretty(&fixture).unwrap(),
        ] {
            for end in 0..text.len() {
                let prefix = text.get(..end).unwrap();
                assert_eq!(walked(prefix), tracked(prefix), "{end}");
                for stray in [b',', b']', b'}', b'{'] {
                    let mut broken = text.clone();
                    broken.insert(end, stray);
                    assert_eq!(
                        walked(&broken),
                        tracked(&broken),
                        "{}",
                        String::from_utf8_lossy(&broken)
                    );
                }
            }
        }
    }

    #[test]
    fn syntax_errors_and_escaped_keys() {
        for text in [
            &b"{\"environment\": \"x\",}"[..],
            b"{\"environment\": \"x\", \"apis\": [{\"name\": \"a\", \"b\\u0061se\": 1}]}",
            b"{\"environment\": \"x\", \"apis\": [{\"name\": \"a\",",
            b"{\"environment\": \"x\", \"apis\": [}",
            b"{\"environment\": \"x\", \"environment\": \"y\"}",
            b"{\"settings\": {\"leeway_seconds\": 1e400}}",
            b"",
            b"[]",
        ] {
            assert_eq!(
                walked(text),
                tracked(text),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
