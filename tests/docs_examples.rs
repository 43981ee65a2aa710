//! The worked example in docs/declaration.md ("Example: Asgardeo") stays true: its `keygate.yaml`
//! is run through `keygate generate`, and every line the page shows of what `generate` prints and
//! of each generated file appears there, in that order (the page may shorten a file, never
//! change it; a shown line with `...` marks an elision). Paths under the page's
//! `/home/me/keygate/out` stand for the output folder, others under `/home/me/keygate` for the
//! checkout.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

/// `(what the paragraph before it names first, the block's text)` for each fenced block of the
/// example section.
fn example_blocks() -> Vec<(String, String)> {
    let page =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/declaration.md"))
            .expect("docs/declaration.md");
    let start = page
        .find("## Example: Asgardeo")
        .expect("the example section");
    let section = &page[start..];
    let mut blocks = Vec::new();
    let mut paragraph_start: Option<String> = None;
    let mut in_block: Option<(String, Vec<&str>)> = None;
    let mut previous_blank = true;
    for line in section.lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        if let Some((name, body)) = in_block.as_mut() {
            if line.starts_with("```") {
                blocks.push((name.clone(), body.join("\n")));
                in_block = None;
                previous_blank = true;
            } else {
                body.push(line);
            }
            continue;
        }
        if line.starts_with("```") {
            let name = paragraph_start.clone().unwrap_or_default();
            in_block = Some((name, Vec::new()));
            continue;
        }
        if line.trim().is_empty() {
            previous_blank = true;
            continue;
        }
        if previous_blank {
            // The first `code` of the paragraph names what the block shows.
            paragraph_start = line.split('`').nth(1).map(str::to_string);
        }
        previous_blank = false;
    }
    blocks
}

/// Whether every line of `shown` appears in `actual`, in order.
fn shown_in(shown: &str, actual: &str) -> Result<(), String> {
    let mut rest = actual.lines();
    for want in shown.lines().filter(|line| !line.contains("...")) {
        if !rest.any(|line| line == want) {
            return Err(format!("line not found (in order): {want:?}"));
        }
    }
    Ok(())
}

#[test]
fn the_asgardeo_example_is_what_generate_writes() {
    let blocks = example_blocks();
    let (first, declaration) = &blocks[0];
    assert_eq!(
        first, "keygate.yaml",
        "the example starts with its declaration"
    );
    let dir = support::canned::temp_dir("docs-example");
    fs::write(dir.join("keygate.yaml"), declaration).expect("write the declaration");
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["generate", "--input", "keygate.yaml", "--out", "out"])
        .current_dir(&dir)
        .output()
        .expect("run keygate");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let out_dir = dir.join("out");
    // The page's checkout is /home/me/keygate, its output folder /home/me/keygate/out.
    let here = |text: &str| {
        text.replace("/home/me/keygate/out", &out_dir.to_string_lossy())
            .replace("/home/me/keygate", env!("CARGO_MANIFEST_DIR"))
    };
    let mut checked = 0;
    for (name, shown) in &blocks[1..] {
        let actual = if name.starts_with("keygate generate") {
            printed.clone()
        } else if let Some(file) = name.strip_prefix("out/") {
            fs::read_to_string(out_dir.join(file)).unwrap_or_else(|e| {
                panic!("the page shows out/{file}, which generate did not write: {e}")
            })
        } else {
            continue;
        };
        if let Err(problem) = shown_in(&here(shown), &actual) {
            panic!(
                "docs/declaration.md, the block for `{name}`: {problem}\n--- generated:\n{actual}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "the example shows the output and three files: {checked} checked"
    );
}
