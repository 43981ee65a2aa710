//! The checks on the `istio` block: Kubernetes names and labels, where the WasmPlugin attaches,
//! and the module's source and checksum.

use super::check::invalid;
use super::{DeclarationError, IstioProblem, ValueProblem};
use crate::cli::declaration::istio::{self, Attach, KubeProblem};
use crate::cli::declaration::model::{line_of, IstioDecl, Located};

/// The `istio` block: names and labels as the API server accepts them, where the WasmPlugin
/// attaches (never silently to a whole namespace), where the module comes from.
pub(super) fn check_istio(istio: &IstioDecl, block_line: u64, errors: &mut Vec<DeclarationError>) {
    let kube = |problem| ValueProblem::Kubernetes { problem };
    let block = |field: &str, problem| DeclarationError::Istio {
        field: field.to_string(),
        line: block_line,
        problem,
    };
    if let Some(namespace) = &istio.namespace {
        if !istio::is_dns_label(&namespace.value) {
            errors.push(invalid(
                "istio.namespace",
                namespace,
                kube(KubeProblem::NotDnsLabel),
            ));
        }
    }
    let attach = match &istio.attach {
        None => Some(Attach::Sidecar),
        Some(text) => match Attach::parse(&text.value) {
            Ok(attach) => Some(attach),
            Err(problem) => {
                errors.push(invalid("istio.attach", text, kube(problem)));
                None
            }
        },
    };
    for (key, value) in &istio.selector {
        if !istio::is_label_key(key) {
            let key = Located::new(key.clone(), value.referenced, value.defined);
            errors.push(invalid(
                "istio.selector",
                &key,
                kube(KubeProblem::NotLabelKey),
            ));
        } else if !istio::is_label_value(&value.value) {
            errors.push(invalid(
                &format!("istio.selector.{key}"),
                value,
                kube(KubeProblem::NotLabelValue),
            ));
        }
    }
    let first_selector_line = istio.selector.values().map(line_of).min();
    match (&attach, istio.selector.is_empty(), istio.mesh_wide) {
        (Some(Attach::Sidecar), true, false) => {
            errors.push(block("istio.selector", IstioProblem::SelectorRequired))
        }
        (Some(Attach::Gateway(_) | Attach::Waypoint(_)), false, _) => {
            errors.push(DeclarationError::Istio {
                field: "istio.selector".into(),
                line: first_selector_line.unwrap_or(block_line),
                problem: IstioProblem::SelectorWithTarget,
            })
        }
        _ => {}
    }
    if istio.mesh_wide && (!istio.selector.is_empty() || attach != Some(Attach::Sidecar)) {
        errors.push(block("istio.mesh_wide", IstioProblem::MeshWideNotWide));
    }
    if let Some(image) = &istio.image {
        if !istio::is_image(&image.value) {
            errors.push(invalid("istio.image", image, kube(KubeProblem::NotImage)));
        }
    }
    if let Some(url) = &istio.wasm_url {
        if istio.image.is_some() {
            errors.push(DeclarationError::Istio {
                field: "istio.wasm_url".into(),
                line: line_of(url),
                problem: IstioProblem::TwoSources,
            });
        } else if !istio::has_wasm_scheme(&url.value) {
            errors.push(invalid(
                "istio.wasm_url",
                url,
                kube(KubeProblem::NotWasmScheme),
            ));
        }
    }
    if let Some(sha256) = &istio.wasm_sha256 {
        if parse_sha256(&sha256.value).is_none() {
            errors.push(invalid(
                "istio.wasm_sha256",
                sha256,
                ValueProblem::NotSha256,
            ));
        }
    }
    if let Some(path) = &istio.ca_certificates {
        if !path.value.starts_with('/') || path.value.chars().any(char::is_control) {
            errors.push(invalid(
                "istio.ca_certificates",
                path,
                kube(KubeProblem::NotAbsolutePath),
            ));
        }
    }
}

/// A SHA-256 as 64 lower-case hex digits (`sha256:` prefix and upper case accepted).
pub fn parse_sha256(text: &str) -> Option<String> {
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}
