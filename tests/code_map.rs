//! README's "Code map" is the layering rule: each top-level module lists the others it may
//! import. This reads the map from README and every `crate::` path in `src/`, and fails when a
//! file imports outside its module's list, when a module is missing from the map, or when the
//! map itself has a cycle.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module → the modules it may import, as README's code map says.
fn code_map() -> BTreeMap<String, BTreeSet<String>> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("## Code map")
        .expect("README has a Code map section");
    let block = &readme[start..];
    let block = &block[block.find("```text").expect("the map is a text block")..];
    let end = block[7..].find("```").expect("the block ends") + 7;
    let mut map = BTreeMap::new();
    for line in block[..end].lines() {
        let Some((_, allowed)) = line.split_once("(imports: ") else {
            continue;
        };
        let name = line.split_whitespace().next().expect("a module name");
        let name = name.trim_end_matches('/').to_string();
        let allowed = allowed.trim_end().trim_end_matches(')');
        let allowed: BTreeSet<String> = if allowed == "none" {
            BTreeSet::new()
        } else {
            allowed.split(", ").map(str::to_string).collect()
        };
        map.insert(name, allowed);
    }
    map
}

/// The top-level module of a file under `src/` (`policy/routes.rs` → `policy`).
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().expect("a path under src");
    let first = first.as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module named in a `crate::` path of this source (comments left out).
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + 7..];
            if let Some(group) = after.strip_prefix('{') {
                // `use crate::{a::X, b};`: each item's first segment.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("").trim();
                    if !head.is_empty() && head.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    {
                        found.insert(head.to_string());
                    }
                }
            } else {
                let head: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    found.insert(head);
                }
            }
            rest = after;
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_imports_only_what_the_code_map_allows() {
    let map = code_map();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        if relative == Path::new("lib.rs") {
            continue;
        }
        let module = module_of(relative);
        let Some(allowed) = map.get(&module) else {
            broken.push(format!(
                "{}: module `{module}` is not in README's code map",
                relative.display()
            ));
            continue;
        };
        let source = fs::read_to_string(&file).expect("read source");
        for import in imports(&source) {
            if import != module && !allowed.contains(&import) {
                broken.push(format!(
                    "{} imports `{import}`, which the code map does not allow for `{module}`",
                    relative.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_code_map_has_no_cycle() {
    let map = code_map();
    assert!(map.len() >= 10, "the map lists every module: {map:?}");
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        map: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in map.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, map, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in map.keys() {
        if let Some(cycle) = visit(node, &map, &mut Vec::new(), &mut done) {
            panic!("the code map has a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_through_grouped_imports_and_comments() {
    let found = imports(
        "use crate::{decision::Denial, policy};\n// crate::cli is only mentioned\nlet x = crate::jose::verify;",
    );
    let want: BTreeSet<String> = ["decision", "jose", "policy"].map(String::from).into();
    assert_eq!(found, want);
}
