//! The directory protocol's JSON (`docs/directory.md`), shared by the gateway and
//! `keygate directory serve`. An application is exactly the plugin config's application object
//! ([`ApplicationConfig`]).

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::config::ApplicationConfig;

/// `GET {url}/v1/snapshot`.
pub const SNAPSHOT_PATH: &str = "/v1/snapshot";
/// `GET {url}/v1/changes?since=V`.
pub const CHANGES_PATH: &str = "/v1/changes";

/// A full snapshot: every application at `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub applications: Vec<ApplicationConfig>,
}

/// The changes from the version asked for up to `version`, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    pub version: String,
    pub changes: Vec<Change>,
}

/// One change: an application replaced (or added) whole, or removed by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Upsert { application: ApplicationConfig },
    Remove { name: String },
}

/// The error body of every refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub error_description: String,
}

/// One element of an answer as the gateway reads it: parsed, or why not (with the name when the
/// entry has one), so a bad entry is skipped alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Upsert(ApplicationConfig),
    Remove(String),
    Bad {
        name: Option<String>,
        reason: String,
    },
}

fn entry_from_application(value: Value) -> Entry {
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    match ApplicationConfig::deserialize(&value) {
        Ok(app) => Entry::Upsert(app),
        Err(err) => Entry::Bad {
            name,
            reason: format!("{}: {err}", refused_path(&value)),
        },
    }
}

/// The field path of an entry that does not deserialize, found again from its text (only for a
/// refused entry: `crate::config::error_path`).
fn refused_path(value: &Value) -> String {
    let text = serde_json::to_vec(value).unwrap_or_default();
    match serde_json::from_slice::<ApplicationConfig>(&text) {
        Ok(_) => ".".to_string(),
        Err(err) => crate::config::error_path(&text, &err),
    }
}

fn entry_from_change(mut value: Value) -> Entry {
    match value.get("op").and_then(Value::as_str) {
        Some("upsert") => match value.get_mut("application").map(Value::take) {
            Some(app) => entry_from_application(app),
            None => Entry::Bad {
                name: None,
                reason: "an upsert without `application`".to_string(),
            },
        },
        Some("remove") => match value.get("name").and_then(Value::as_str) {
            Some(name) => Entry::Remove(name.to_string()),
            None => Entry::Bad {
                name: None,
                reason: "a remove without `name`".to_string(),
            },
        },
        _ => Entry::Bad {
            name: None,
            reason: "`op` is neither upsert nor remove".to_string(),
        },
    }
}

/// Reads a snapshot or changes body, handing each entry to `each` as it is parsed (a snapshot of
/// 100,000 applications is never held as a whole). Returns the body's `version`, or a syntax
/// error for the body as a whole.
pub fn read_answer(
    body: impl std::io::Read,
    snapshot: bool,
    each: &mut dyn FnMut(Entry),
) -> Result<String, String> {
    let mut de = serde_json::Deserializer::from_reader(body);
    let version = Top { snapshot, each }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    version.ok_or_else(|| "the answer has no `version`".to_string())
}

struct Top<'f> {
    snapshot: bool,
    each: &'f mut dyn FnMut(Entry),
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a directory answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut version = None;
        let list = if self.snapshot {
            "applications"
        } else {
            "changes"
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "version" {
                version = Some(map.next_value::<String>()?);
            } else if key == list {
                map.next_value_seed(List {
                    snapshot: self.snapshot,
                    each: &mut *self.each,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(version)
    }
}

struct List<'f> {
    snapshot: bool,
    each: &'f mut dyn FnMut(Entry),
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let entry = if self.snapshot {
                entry_from_application(value)
            } else {
                entry_from_change(value)
            };
            (self.each)(entry);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_one_by_one_and_bad_ones_named() {
        let body = br#"{"applications": [{"name": "a"}, {"name": "b", "state": "frozen"}, 7],
                        "version": "v1", "next": null}"#;
        let mut seen = Vec::new();
        let version = read_answer(&body[..], true, &mut |e| seen.push(e)).unwrap();
        assert_eq!(version, "v1");
        assert!(matches!(&seen[0], Entry::Upsert(app) if app.name == "a"));
        assert!(matches!(&seen[1], Entry::Bad { name: Some(n), .. } if n == "b"));
        assert!(matches!(&seen[2], Entry::Bad { name: None, .. }));
        let changes = br#"{"version": "v2", "changes": [{"op": "remove", "name": "a"},
            {"op": "upsert", "application": {"name": "c"}}, {"op": "rename"}]}"#;
        let mut seen = Vec::new();
        assert_eq!(
            read_answer(&changes[..], false, &mut |e| seen.push(e)).unwrap(),
            "v2"
        );
        assert_eq!(seen[0], Entry::Remove("a".into()));
        assert!(matches!(&seen[1], Entry::Upsert(app) if app.name == "c"));
        assert!(matches!(&seen[2], Entry::Bad { .. }));
        assert!(read_answer(&br#"{"applications": []}"#[..], true, &mut |_| {}).is_err());
        assert!(read_answer(&b"["[..], true, &mut |_| {}).is_err());
    }
}
