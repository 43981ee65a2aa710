//! `keygate oci`: the filter module as an OCI image layout that Istio's `WasmPlugin` pulls with
//! an `oci://` URL once it is pushed to a registry.
//!
//! Format: the *compat* variant of the Wasm image specification, a standard OCI image (manifest
//! `application/vnd.oci.image.manifest.v1+json`, config `application/vnd.oci.image.config.v1+json`)
//! with one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`. Istio's
//! image fetcher takes the last layer of such an image and reads `plugin.wasm` out of it; it also
//! reads the artifact variant (`application/vnd.module.wasm.content.layer.v1+wasm` with an
//! `application/vnd.module.wasm.config.v1+json` config), but standard tools treat that one as a
//! non-image artifact: `skopeo inspect` refuses it ("unsupported image-specific operation on
//! artifact"). The compat image is an ordinary image to skopeo, crane and oras alike.
//!
//! The output is reproducible: the tar entry has mtime 0, uid/gid 0 and mode 0644, the gzip
//! header no time or name, the config no creation date, so one `.wasm` always gives one manifest
//! digest. That digest (hex) is what `WasmPlugin.spec.sha256` holds for an `oci://` URL: Istio
//! compares it with the digest of the manifest it pulled. For `file://` and `https://` URLs the
//! field holds the SHA-256 of the `.wasm` itself; both are printed.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file Istio looks for in the layer.
pub const WASM_FILE: &str = "plugin.wasm";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The filter module (default: target/wasm32-wasip1/release/keygate.wasm).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The OCI image layout directory to write (created; an existing layout is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The image tag (`org.opencontainers.image.ref.name`).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

/// A blob of the layout: its digest (`sha256:<hex>`) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            bytes,
        }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image built in memory: the blobs (layer, config, manifest) and the layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
    pub index_json: Vec<u8>,
    /// SHA-256 of the `.wasm`, hex.
    pub wasm_sha256: String,
}

impl Image {
    /// The manifest digest as hex, the form `WasmPlugin.spec.sha256` takes for `oci://` URLs.
    pub fn manifest_hex(&self) -> &str {
        self.manifest
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&self.manifest.digest)
    }
}

#[derive(Debug)]
pub enum OciError {
    NotWasm { path: PathBuf },
    BadTag { tag: String },
    NotALayout { path: PathBuf },
    Io { path: PathBuf, detail: String },
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciError::NotWasm { path } => write!(
                f,
                "{}: not a WebAssembly module (no \\0asm header); build it with `make wasm`",
                path.display()
            ),
            OciError::BadTag { tag } => write!(
                f,
                "--tag {tag:?}: a tag is 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
            ),
            OciError::NotALayout { path } => write!(
                f,
                "{}: exists and is not an OCI image layout (no oci-layout file); refusing to write into it",
                path.display()
            ),
            OciError::Io { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl OciError {
    fn exit_code(&self) -> i32 {
        match self {
            OciError::BadTag { .. } => 2,
            _ => 1,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Docker/OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// One ustar entry `name` (mode 0644, owner 0:0, mtime 0) holding `data`, then the end-of-archive
/// blocks.
pub fn tar_single_file(name: &str, data: &[u8]) -> Vec<u8> {
    fn put(header: &mut [u8; 512], at: usize, field: &[u8]) {
        for (i, byte) in field.iter().enumerate() {
            if let Some(slot) = header.get_mut(at + i) {
                *slot = *byte;
            }
        }
    }
    let mut header = [0u8; 512];
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    );
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 148, b"        ");
    put(&mut header, 156, b"0");
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    put(&mut header, 329, b"0000000\0");
    put(&mut header, 337, b"0000000\0");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let checksum = format!("{sum:06o}\0 ");
    put(&mut header, 148, checksum.as_bytes());
    let mut out = Vec::with_capacity(512 + data.len() + 512 * 3);
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    let padding = (512 - data.len() % 512) % 512;
    out.resize(out.len() + padding + 1024, 0);
    out
}

/// gzip with no file name and mtime 0 (so the same tar always compresses to the same bytes).
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The image for `wasm`, tagged `tag`.
pub fn build(wasm: &[u8], tag: &str) -> std::io::Result<Image> {
    let tar = tar_single_file(WASM_FILE, wasm);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let layer = Blob::new(gzip(&tar)?);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .map_err(std::io::Error::other)?,
    );
    let mut layer_descriptor = layer.descriptor(LAYER_MEDIA_TYPE);
    if let Some(obj) = layer_descriptor.as_object_mut() {
        obj.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.title": WASM_FILE}),
        );
    }
    let manifest = Blob::new(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(CONFIG_MEDIA_TYPE),
            "layers": [layer_descriptor],
            "annotations": {
                "org.opencontainers.image.title": "keygate",
                "org.opencontainers.image.description": "keygate proxy-wasm filter (Istio WasmPlugin)",
            },
        }))
        .map_err(std::io::Error::other)?,
    );
    let mut manifest_descriptor = manifest.descriptor(MANIFEST_MEDIA_TYPE);
    if let Some(obj) = manifest_descriptor.as_object_mut() {
        obj.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.ref.name": tag}),
        );
    }
    let index_json = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest_descriptor],
    }))
    .map_err(std::io::Error::other)?;
    Ok(Image {
        layer,
        config,
        manifest,
        index_json,
        wasm_sha256: sha256_hex(wasm),
    })
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> OciError + '_ {
    move |err| OciError::Io {
        path: path.to_path_buf(),
        detail: err.to_string(),
    }
}

/// Writes `image` as the layout `dir`: `oci-layout`, `index.json` (this image only) and
/// `blobs/sha256/*`. Blobs of an earlier image in the same layout are removed.
pub fn write(image: &Image, dir: &Path) -> Result<(), OciError> {
    let marker = dir.join("oci-layout");
    if dir.exists() && !marker.is_file() {
        let empty = std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .next()
            .is_none();
        if !empty {
            return Err(OciError::NotALayout {
                path: dir.to_path_buf(),
            });
        }
    }
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
    let ours = [&image.layer, &image.config, &image.manifest];
    for entry in std::fs::read_dir(&blobs).map_err(io_error(&blobs))? {
        let entry = entry.map_err(io_error(&blobs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_blob = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
        let kept = ours.iter().any(|b| b.digest.ends_with(&name));
        if is_blob && !kept {
            std::fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
        }
    }
    for blob in ours {
        let hex = blob.digest.trim_start_matches("sha256:");
        let path = blobs.join(hex);
        std::fs::write(&path, &blob.bytes).map_err(io_error(&path))?;
    }
    let index = dir.join("index.json");
    std::fs::write(&index, &image.index_json).map_err(io_error(&index))?;
    std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_error(&marker))?;
    Ok(())
}

fn run_inner(args: &Args) -> Result<(), OciError> {
    if !valid_tag(&args.tag) {
        return Err(OciError::BadTag {
            tag: args.tag.clone(),
        });
    }
    let wasm_path = args
        .wasm
        .clone()
        .unwrap_or_else(crate::cli::generate::default_wasm_path);
    let wasm = std::fs::read(&wasm_path).map_err(io_error(&wasm_path))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(OciError::NotWasm { path: wasm_path });
    }
    let image = build(&wasm, &args.tag).map_err(io_error(&args.out))?;
    write(&image, &args.out)?;
    println!(
        "keygate oci: {} (OCI image layout, tag {}, layer {} bytes)",
        args.out.display(),
        args.tag,
        image.layer.bytes.len()
    );
    println!("manifest digest: {}", image.manifest.digest);
    println!("wasm sha256: {}", image.wasm_sha256);
    println!(
        "WasmPlugin: url oci://REGISTRY/keygate:{} with sha256 {} (the manifest digest); \
         for a file:// or https:// url the sha256 is {}",
        args.tag,
        image.manifest_hex(),
        image.wasm_sha256
    );
    Ok(())
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Args) -> i32 {
    match run_inner(&args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("keygate oci: {err}");
            err.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const WASM: &[u8] = b"\0asm\x01\0\0\0 a module of sorts";

    #[test]
    fn the_same_module_always_gives_the_same_digests() {
        let a = build(WASM, "1.0").unwrap();
        let b = build(WASM, "1.0").unwrap();
        assert_eq!(a, b);
        let other = build(b"\0asm\x01\0\0\0 another", "1.0").unwrap();
        assert_ne!(a.manifest.digest, other.manifest.digest);
        // The tag names the image in the index; the image itself does not change.
        let retagged = build(WASM, "2.0").unwrap();
        assert_eq!(a.manifest, retagged.manifest);
        assert_ne!(a.index_json, retagged.index_json);
        assert_eq!(a.wasm_sha256, sha256_hex(WASM));
        assert_eq!(a.manifest.digest, format!("sha256:{}", a.manifest_hex()));
    }

    #[test]
    fn the_layer_is_a_gzipped_tar_with_plugin_wasm() {
        let image = build(WASM, "t").unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[..11], WASM_FILE.as_bytes());
        assert_eq!(tar[11], 0);
        let size = std::str::from_utf8(&tar[124..135]).unwrap();
        assert_eq!(usize::from_str_radix(size, 8).unwrap(), WASM.len());
        assert_eq!(&tar[257..263], b"ustar\0");
        // Header checksum: the sum of the header with the checksum field read as spaces.
        let mut header = tar[..512].to_vec();
        let recorded = std::str::from_utf8(&header[148..154]).unwrap().to_string();
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(&recorded, 8).unwrap(), sum);
        assert_eq!(&tar[512..512 + WASM.len()], WASM);
        assert!(tar[512 + WASM.len()..].iter().all(|b| *b == 0));
        // The config's diff_id is the uncompressed layer.
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", sha256_hex(&tar))
        );
    }

    #[test]
    fn the_manifest_points_at_its_blobs() {
        let image = build(WASM, "v1").unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["digest"], image.layer.digest);
        assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());
        let index: serde_json::Value = serde_json::from_slice(&image.index_json).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.manifest.digest);
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
    }

    #[test]
    fn tags_follow_the_distribution_rules() {
        for good in ["0.1.0", "latest", "v1_2-rc.3", "_x"] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
