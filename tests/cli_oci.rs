//! `keygate oci` (what `make oci` runs) read by a standard tool: Debian's `skopeo` inspects the
//! layout, copies it to another layout and to a plain directory, and the layer taken from the
//! copy holds exactly the built `keygate.wasm` as `plugin.wasm`. The digests are reproducible.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{keygate, wasm_path, TempDir};

/// Runs skopeo; a missing skopeo fails the test with what to do (it is not skipped).
fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
            "skopeo is needed for this test and could not be run ({e}): `make deps` installs it \
             (Debian: apt-get install skopeo)"
        )
        });
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `keygate oci` into `dir`: (manifest digest, wasm sha256) as printed.
fn pack(wasm: &Path, dir: &Path, tag: &str) -> (String, String) {
    let run = keygate(
        &[
            "oci",
            "--wasm",
            wasm.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--tag",
            tag,
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "keygate oci: {}", run.stderr);
    let field = |prefix: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{}", run.stdout))
            .trim()
            .to_string()
    };
    (field("manifest digest: "), field("wasm sha256: "))
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The entries of a (ustar) tar archive: (name, contents).
fn untar(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
        let size_text = std::str::from_utf8(&header[124..136]).unwrap();
        let size = usize::from_str_radix(size_text.trim_matches(|c| c == '\0' || c == ' '), 8)
            .unwrap_or_else(|_| panic!("size field {size_text:?}"));
        let data = tar[at + 512..at + 512 + size].to_vec();
        entries.push((name, data));
        at += 512 + size.div_ceil(512) * 512;
    }
    entries
}

#[test]
fn the_layout_passes_a_skopeo_round_trip_with_the_module_intact() {
    let wasm = wasm_path();
    let module = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make wasm` first)", wasm.display()));
    let tmp = TempDir::new("oci");
    let layout = tmp.join("oci");
    let (manifest_digest, wasm_sha256) = pack(&wasm, &layout, "test-1");
    assert_eq!(wasm_sha256, hex(&module));

    // skopeo reads it as an image: the digest it computes is the one keygate printed.
    let reference = format!("oci:{}:test-1", layout.display());
    let inspected: Value = serde_json::from_str(&skopeo(&["inspect", &reference])).unwrap();
    assert_eq!(inspected["Digest"], manifest_digest.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    let raw = skopeo(&["inspect", "--raw", &reference]);
    assert_eq!(format!("sha256:{}", hex(raw.as_bytes())), manifest_digest);
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );

    // Copied to another layout (as a push would), the manifest keeps its digest.
    let copy = tmp.join("copy");
    let copied = format!("oci:{}:copied", copy.display());
    skopeo(&["copy", "--preserve-digests", &reference, &copied]);
    let again: Value = serde_json::from_str(&skopeo(&["inspect", &copied])).unwrap();
    assert_eq!(again["Digest"], manifest_digest.as_str());

    // From the copy to a plain directory; the layer there is a tar.gz with plugin.wasm = the
    // module, byte for byte.
    let plain = tmp.join("plain");
    skopeo(&["copy", &copied, &format!("dir:{}", plain.display())]);
    let dir_manifest: Value =
        serde_json::from_slice(&std::fs::read(plain.join("manifest.json")).unwrap()).unwrap();
    let layers = dir_manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let digest = layers[0]["digest"].as_str().unwrap();
    let blob = std::fs::read(plain.join(digest.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(format!("sha256:{}", hex(&blob)), digest);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob.as_slice())
        .read_to_end(&mut tar)
        .expect("the layer is gzip");
    let entries = untar(&tar);
    assert_eq!(entries.len(), 1, "one file in the layer");
    assert_eq!(entries[0].0, "plugin.wasm");
    assert!(
        entries[0].1 == module,
        "plugin.wasm differs from {}",
        wasm.display()
    );

    // Reproducible: the same module packed again gives the same manifest digest.
    let (repacked, _) = pack(&wasm, &tmp.join("again"), "test-1");
    assert_eq!(repacked, manifest_digest);
    // Packing over an existing layout replaces it (old blobs go, the new tag resolves).
    let (_, _) = pack(&wasm, &layout, "test-2");
    let blobs = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3, "layer, config, manifest");
    let retagged: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci:{}:test-2", layout.display()),
    ]))
    .unwrap();
    assert_eq!(retagged["Digest"], manifest_digest.as_str());
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let tmp = TempDir::new("oci-bad");
    let not_wasm = tmp.join("keygate.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\n").unwrap();
    let out = tmp.join("out");
    let run = keygate(
        &[
            "oci",
            "--wasm",
            not_wasm.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("not a WebAssembly module"),
        "{}",
        run.stderr
    );
    assert!(!out.exists(), "nothing written for a refused module");

    let run = keygate(
        &[
            "oci",
            "--wasm",
            wasm_path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--tag",
            "a/b",
        ],
        b"",
    );
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--tag"), "{}", run.stderr);

    // A directory that holds something else is not overwritten.
    let busy = tmp.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
    let run = keygate(
        &[
            "oci",
            "--wasm",
            wasm_path().to_str().unwrap(),
            "--out",
            busy.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("not an OCI image layout"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(busy.join("notes.txt")).unwrap(), b"mine");
}
