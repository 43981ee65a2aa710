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

/// A full snapshot: every application at `version`, or one page of it (`next`: the cursor of the
/// following page; absent on the last page or when the source does not page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub applications: Vec<ApplicationConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The page size the gateway asks for (`?limit=`).
pub const SNAPSHOT_PAGE: usize = 1000;
/// The largest `limit` a keygate source serves in one page (a larger one is served this many).
pub const MAX_PAGE: usize = 10_000;

/// A snapshot page asked for: `limit` applications (`None`: all, the unpaged snapshot) from
/// position `offset` of the version's applications (in name order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub offset: usize,
}

/// Why a snapshot query is refused: 400 (the text says why) or 410 (the cursor belongs to
/// another version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRefusal {
    BadRequest(&'static str),
    Gone,
}

/// The cursor of the page starting at `offset` of `version` (opaque to the gateway).
pub fn page_cursor(version: &str, offset: usize) -> String {
    format!("{version}/{offset}")
}

/// A snapshot's `limit` and `after` (already percent-decoded) against the source's current
/// `version`: the protocol's paging rules for every source.
pub fn page_query(
    limit: Option<&str>,
    after: Option<&str>,
    version: &str,
) -> Result<PageQuery, PageRefusal> {
    let limit = match limit {
        None => None,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Some(n.min(MAX_PAGE)),
            _ => return Err(PageRefusal::BadRequest("`limit` is a positive integer")),
        },
    };
    let offset = match after {
        None => 0,
        Some(cursor) => {
            let Some((of, offset)) = cursor.rsplit_once('/') else {
                return Err(PageRefusal::BadRequest(
                    "`after` is not a cursor of this source",
                ));
            };
            let Ok(offset) = offset.parse::<usize>() else {
                return Err(PageRefusal::BadRequest(
                    "`after` is not a cursor of this source",
                ));
            };
            if of != version {
                return Err(PageRefusal::Gone);
            }
            offset
        }
    };
    if after.is_some() && limit.is_none() {
        return Err(PageRefusal::BadRequest("`after` needs `limit`"));
    }
    Ok(PageQuery { limit, offset })
}

impl PageQuery {
    /// The range of `total` applications this page holds, and the cursor of the next page.
    pub fn range(&self, total: usize, version: &str) -> (std::ops::Range<usize>, Option<String>) {
        let start = self.offset.min(total);
        let end = match self.limit {
            None => total,
            Some(limit) => start.saturating_add(limit).min(total),
        };
        let next = (end < total).then(|| page_cursor(version, end));
        (start..end, next)
    }
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
    read_page(body, snapshot, each).map(|(version, _)| version)
}

/// [`read_answer`], with the snapshot page's `next` cursor (`None`: the last page).
pub fn read_page(
    body: impl std::io::Read,
    snapshot: bool,
    each: &mut dyn FnMut(Entry),
) -> Result<(String, Option<String>), String> {
    let mut de = serde_json::Deserializer::from_reader(body);
    let (version, next) = Top { snapshot, each }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let version = version.ok_or_else(|| "the answer has no `version`".to_string())?;
    Ok((version, next.filter(|n| !n.is_empty())))
}

struct Top<'f> {
    snapshot: bool,
    each: &'f mut dyn FnMut(Entry),
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = (Option<String>, Option<String>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = (Option<String>, Option<String>);
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a directory answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut version = None;
        let mut next = None;
        let list = if self.snapshot {
            "applications"
        } else {
            "changes"
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "version" {
                version = Some(map.next_value::<String>()?);
            } else if key == "next" && self.snapshot {
                next = map.next_value::<Option<String>>()?;
            } else if key == list {
                map.next_value_seed(List {
                    snapshot: self.snapshot,
                    each: &mut *self.each,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((version, next))
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
    fn pages_follow_the_protocol() {
        let all = page_query(None, None, "v1").unwrap();
        assert_eq!(all.range(5, "v1"), (0..5, None));
        let first = page_query(Some("2"), None, "v1").unwrap();
        assert_eq!(first.range(5, "v1"), (0..2, Some("v1/2".to_string())));
        let last = page_query(Some("2"), Some("v1/4"), "v1").unwrap();
        assert_eq!(last.range(5, "v1"), (4..5, None));
        assert_eq!(
            page_query(Some("2"), Some("v0/2"), "v1"),
            Err(PageRefusal::Gone)
        );
        for (limit, after) in [
            (Some("0"), None),
            (Some("x"), None),
            (Some("2"), Some("v1")),
            (None, Some("v1/2")),
        ] {
            assert!(matches!(
                page_query(limit, after, "v1"),
                Err(PageRefusal::BadRequest(_))
            ));
        }
        assert_eq!(
            page_query(Some("99999"), None, "v").unwrap().limit,
            Some(MAX_PAGE)
        );
    }

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
        let page = br#"{"version": "v1", "applications": [], "next": "v1/1000"}"#;
        assert_eq!(
            read_page(&page[..], true, &mut |_| {}).unwrap(),
            ("v1".to_string(), Some("v1/1000".to_string()))
        );
        assert!(read_answer(&b"["[..], true, &mut |_| {}).is_err());
    }
}
