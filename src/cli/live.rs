//! Writing `generate`'s output so that a running Envoy can pick it up: every file is replaced by
//! write-temp-then-rename (Envoy never reads half a file, and a rename is what its file watch
//! reacts to), and only when its contents change (an unchanged file is not touched, so Envoy does
//! not reload it). Also: what in a bootstrap changed, since a running Envoy never rereads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// There was no file.
    Created,
    /// The file had other contents.
    Replaced,
    /// The file had these contents already; it was not touched.
    Unchanged,
}

impl Written {
    pub fn label(self) -> &'static str {
        match self {
            Written::Created => "created",
            Written::Replaced => "replaced",
            Written::Unchanged => "unchanged",
        }
    }
}

/// Writes `contents` to `path` unless it holds them already: into a temporary file in the same
/// directory first (same file system, so the rename is atomic), flushed, then renamed over `path`.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<Written> {
    let contents = contents.as_ref();
    let before = match std::fs::read(path) {
        Ok(old) if old == contents => return Ok(Written::Unchanged),
        Ok(_) => Written::Replaced,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Written::Created,
        Err(err) => return Err(err),
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map(|()| before)
}

/// `.<name>.tmp.<pid>` next to `path`: hidden, and never the name Envoy watches.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// What differs between two bootstraps, in words an operator acts on (empty: nothing does).
pub fn bootstrap_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut changes = Vec::new();
    let listener = "/static_resources/listeners/0";
    let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
    if old.pointer("/admin") != new.pointer("/admin") {
        changes.push("admin address".to_string());
    }
    if old.pointer(&format!("{listener}/address")) != new.pointer(&format!("{listener}/address")) {
        changes.push("listener address".to_string());
    }
    let old_clusters = clusters(old);
    let new_clusters = clusters(new);
    for (name, cluster) in &new_clusters {
        match old_clusters.iter().find(|(n, _)| n == name) {
            None => changes.push(format!("new cluster {name}")),
            Some((_, before)) if before != cluster => changes.push(format!("cluster {name}")),
            Some(_) => {}
        }
    }
    for (name, _) in &old_clusters {
        if !new_clusters.iter().any(|(n, _)| n == name) {
            changes.push(format!("cluster {name} removed"));
        }
    }
    let routes = format!("{hcm}/route_config");
    if old.pointer(&routes) != new.pointer(&routes) {
        changes.push("routes (an API's base path or upstream)".to_string());
    }
    if changes.is_empty() && old != new {
        // Anything else: the access log format (header prefix), timeouts, the live file's path.
        changes.push("listener settings".to_string());
    }
    changes
}

fn clusters(bootstrap: &Value) -> Vec<(String, Value)> {
    bootstrap
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                    (name.to_string(), c.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn boot(listen: u16, clusters: &[&str], route: &str) -> Value {
        let clusters: Vec<Value> = clusters
            .iter()
            .map(|n| json!({"name": n, "type": "STATIC"}))
            .collect();
        json!({
            "admin": {"address": {"socket_address": {"port_value": 9901}}},
            "static_resources": {
                "listeners": [{"address": {"socket_address": {"port_value": listen}},
                    "filter_chains": [{"filters": [{"typed_config": {
                        "route_config": {"routes": [route]}, "stat_prefix": "keygate"}}]}]}],
                "clusters": clusters,
            },
        })
    }

    #[test]
    fn names_what_a_restart_would_apply() {
        let old = boot(8080, &["a", "b"], "/pets");
        assert!(bootstrap_changes(&old, &old.clone()).is_empty());
        let new = boot(8081, &["a", "c"], "/orders");
        assert_eq!(
            bootstrap_changes(&old, &new),
            [
                "listener address",
                "new cluster c",
                "cluster b removed",
                "routes (an API's base path or upstream)"
            ]
        );
        let mut other = old.clone();
        other["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["stat_prefix"] = json!("x");
        assert_eq!(bootstrap_changes(&old, &other), ["listener settings"]);
    }

    #[test]
    fn writes_by_rename_and_only_when_contents_change() {
        let dir = std::env::temp_dir().join(format!("keygate-live-{}", std::process::id()));
        let path = dir.join("sub").join("f.yaml");
        assert_eq!(write_atomic(&path, "a\n").unwrap(), Written::Created);
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).unwrap().ino()
        };
        let first = inode(&path);
        assert_eq!(write_atomic(&path, "a\n").unwrap(), Written::Unchanged);
        assert_eq!(inode(&path), first, "an unchanged file is not touched");
        assert_eq!(write_atomic(&path, "b\n").unwrap(), Written::Replaced);
        assert_ne!(
            inode(&path),
            first,
            "a changed file is a new file renamed over the old"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
