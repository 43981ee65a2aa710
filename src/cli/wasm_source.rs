//! Where Istio proxies load the module from, and the checksum they verify: `--wasm-url`, else
//! `oci://` + `istio.image` (what `make oci` builds, as pushed), else `istio.wasm_url`; the
//! SHA-256 from `--wasm-sha256`, else `istio.wasm_sha256`, else computed from the local module
//! (`--wasm`): for `oci://` the manifest digest of the image `keygate oci` packs from it (the
//! packing is reproducible), for `file://` and `http(s)://` the module's own SHA-256.

use std::path::Path;

use crate::cli::declaration::istio::has_wasm_scheme;
use crate::cli::declaration::model::{line_of, IstioDecl};
use crate::cli::declaration::validate::{DeclarationError, IstioProblem};
use crate::cli::oci;
use crate::cli::render::istio::WasmSource;
use serde_saphyr::Spanned;

/// Why no source could be chosen.
#[derive(Debug)]
pub enum SourceError {
    /// A command-line value is wrong (`flag` names it).
    Flag { flag: &'static str, detail: String },
    /// The declaration says nothing the module could come from.
    Declaration(DeclarationError),
}

/// The source, and a warning when the checksum could not be computed.
pub fn resolve(
    istio: &Spanned<IstioDecl>,
    flag_url: Option<&str>,
    flag_sha256: Option<&str>,
    module: &Path,
) -> Result<(WasmSource, Option<String>), SourceError> {
    let decl = &istio.value;
    let url = match (flag_url, &decl.image, &decl.wasm_url) {
        (Some(url), _, _) => {
            if !has_wasm_scheme(url) {
                return Err(SourceError::Flag {
                    flag: "--wasm-url",
                    detail: format!(
                        "{url:?} has a scheme Istio does not load modules from (oci://, file://, \
                         http://, https://)"
                    ),
                });
            }
            url.to_string()
        }
        (None, Some(image), _) => format!("oci://{}", image.value),
        (None, None, Some(url)) => url.value.clone(),
        (None, None, None) => {
            return Err(SourceError::Declaration(DeclarationError::Istio {
                field: "istio.image".into(),
                line: line_of(istio),
                problem: IstioProblem::SourceRequired,
            }))
        }
    };
    let given = flag_sha256.or(decl.wasm_sha256.as_ref().map(|s| s.value.as_str()));
    if given.is_some() {
        let source = WasmSource::new(url, given).map_err(|detail| SourceError::Flag {
            flag: "--wasm-sha256",
            detail,
        })?;
        return Ok((source, None));
    }
    let oci = url
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("oci://"));
    let computed = std::fs::read(module)
        .map_err(|err| err.to_string())
        .and_then(|bytes| {
            if !bytes.starts_with(b"\0asm") {
                Err("not a WebAssembly module".to_string())
            } else if oci {
                oci::build(&bytes, "latest")
                    .map(|image| image.manifest_hex().to_string())
                    .map_err(|err| err.to_string())
            } else {
                Ok(oci::sha256_hex(&bytes))
            }
        });
    match computed {
        Ok(hex) => Ok((
            WasmSource {
                url,
                sha256: Some(hex),
            },
            None,
        )),
        Err(detail) => Ok((
            WasmSource { url, sha256: None },
            Some(format!(
                "cannot compute the WasmPlugin sha256 from {}: {detail}; the WasmPlugin has no \
                 sha256, so Istio loads whatever the URL holds (build it with `make wasm`, or set \
                 istio.wasm_sha256 or --wasm-sha256)",
                module.display()
            )),
        )),
    }
}
