//! The `istio` block's own rules: Kubernetes name and label syntax (as the API server checks it,
//! so a refused manifest is caught before `kubectl apply`), where the WasmPlugin attaches, and
//! where the module comes from.

use std::fmt;

/// Which proxies run the filter (`istio.attach`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// The workloads' sidecars, inbound traffic only (`match: [{mode: SERVER}]`).
    Sidecar,
    /// A Gateway API `Gateway` (ingress), by name (`targetRefs`).
    Gateway(String),
    /// An ambient waypoint (a Gateway API `Gateway` of class `istio-waypoint`), by name.
    Waypoint(String),
}

impl Attach {
    /// `sidecar`, `gateway NAME` or `waypoint NAME` (NAME a DNS-1123 subdomain).
    pub fn parse(text: &str) -> Result<Attach, KubeProblem> {
        let mut words = text.split_whitespace();
        let attach = match (words.next(), words.next(), words.next()) {
            (Some("sidecar"), None, None) => Attach::Sidecar,
            (Some("gateway"), Some(name), None) => Attach::Gateway(name.to_string()),
            (Some("waypoint"), Some(name), None) => Attach::Waypoint(name.to_string()),
            _ => return Err(KubeProblem::NotAttach),
        };
        match &attach {
            Attach::Gateway(name) | Attach::Waypoint(name) if !is_dns_subdomain(name) => {
                Err(KubeProblem::NotDnsSubdomain)
            }
            _ => Ok(attach),
        }
    }

    /// The Gateway a `targetRefs` names (none for sidecars).
    pub fn gateway_name(&self) -> Option<&str> {
        match self {
            Attach::Sidecar => None,
            Attach::Gateway(name) | Attach::Waypoint(name) => Some(name),
        }
    }
}

/// The URL schemes Istio loads a WasmPlugin module from.
pub const WASM_SCHEMES: [&str; 4] = ["oci://", "file://", "http://", "https://"];

/// Why a value would be refused by the API server or by Istio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeProblem {
    NotDnsLabel,
    NotDnsSubdomain,
    NotLabelKey,
    NotLabelValue,
    NotAttach,
    NotImage,
    NotWasmScheme,
    NotAbsolutePath,
}

impl fmt::Display for KubeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KubeProblem::NotDnsLabel => {
                "is not a DNS-1123 label (at most 63 of a-z, 0-9 and '-', starting and ending \
                 with a letter or digit)"
            }
            KubeProblem::NotDnsSubdomain => {
                "is not a DNS-1123 subdomain (at most 253 characters: labels of a-z, 0-9 and \
                 '-' separated by '.')"
            }
            KubeProblem::NotLabelKey => {
                "is not a label key (an optional DNS subdomain prefix and '/', then at most 63 \
                 of A-Z, a-z, 0-9, '-', '_', '.' starting and ending with a letter or digit)"
            }
            KubeProblem::NotLabelValue => {
                "is not a label value (empty, or at most 63 of A-Z, a-z, 0-9, '-', '_', '.' \
                 starting and ending with a letter or digit)"
            }
            KubeProblem::NotAttach => "is not `sidecar`, `gateway NAME` or `waypoint NAME`",
            KubeProblem::NotImage => {
                "is not an image reference REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST), without \
                 a scheme (oci:// is added)"
            }
            KubeProblem::NotWasmScheme => {
                "has a scheme Istio does not load modules from (oci://, file://, http://, \
                 https://)"
            }
            KubeProblem::NotAbsolutePath => "is not an absolute path",
        })
    }
}

/// A DNS-1123 label: what namespaces must be.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain: what most object names must be.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// The name part of a label key, and a non-empty label value: at most 63, alphanumeric at both
/// ends, `-`, `_`, `.` inside.
fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label key: `[prefix/]name`, the prefix a DNS-1123 subdomain.
pub fn is_label_key(text: &str) -> bool {
    match text.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(text),
    }
}

/// A label value: empty or a label name.
pub fn is_label_value(text: &str) -> bool {
    text.is_empty() || is_label_name(text)
}

/// An image reference as `make oci` output is pushed: `host[:port]/path:tag` or `...@sha256:hex`,
/// lower-case repository, no scheme, no whitespace.
pub fn is_image(text: &str) -> bool {
    if text.contains("://") || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let (name, reference_ok) = match text.split_once('@') {
        Some((name, digest)) => (
            name,
            digest
                .strip_prefix("sha256:")
                .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())),
        ),
        None => {
            // The tag follows the last ':' after the last '/' (a registry port comes before it).
            let slash = text.rfind('/').unwrap_or(0);
            match text.get(slash..).and_then(|tail| tail.rfind(':')) {
                Some(colon) => {
                    let (name, tag) = text.split_at(slash + colon);
                    let tag = tag.trim_start_matches(':');
                    (name, is_tag(tag))
                }
                None => (text, false),
            }
        }
    };
    reference_ok
        && name.contains('/')
        && name.split('/').all(|part| !part.is_empty())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'))
        && !name
            .split_once('/')
            .map_or("", |(_, repo)| repo)
            .chars()
            .any(|c| c.is_ascii_uppercase())
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether Istio loads a module from this URL's scheme.
pub fn has_wasm_scheme(url: &str) -> bool {
    WASM_SCHEMES.iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        for (text, label, subdomain) in [
            ("shop", true, true),
            ("shop-ns", true, true),
            ("Shop_NS", false, false),
            ("a.b", false, true),
            ("-a", false, false),
            ("", false, false),
        ] {
            assert_eq!(is_dns_label(text), label, "{text}");
            assert_eq!(is_dns_subdomain(text), subdomain, "{text}");
        }
        assert!(is_dns_label(&"a".repeat(63)) && !is_dns_label(&"a".repeat(64)));
        for (key, ok) in [
            ("app", true),
            ("App_1.x", true),
            ("example.com/app", true),
            ("Example.com/app", false),
            ("/app", false),
            ("app/", false),
            ("pets app", false),
            ("_app", false),
        ] {
            assert_eq!(is_label_key(key), ok, "{key}");
        }
        for (value, ok) in [
            ("", true),
            ("pets", true),
            ("pets app", false),
            ("x-", false),
        ] {
            assert_eq!(is_label_value(value), ok, "{value:?}");
        }
        assert!(!is_label_value(&"v".repeat(64)));
    }

    #[test]
    fn attachments() {
        assert_eq!(Attach::parse("sidecar"), Ok(Attach::Sidecar));
        assert_eq!(
            Attach::parse("gateway  ingress"),
            Ok(Attach::Gateway("ingress".into()))
        );
        assert_eq!(
            Attach::parse("waypoint waypoint"),
            Ok(Attach::Waypoint("waypoint".into()))
        );
        assert_eq!(Attach::parse("gateway"), Err(KubeProblem::NotAttach));
        assert_eq!(Attach::parse("ingress x"), Err(KubeProblem::NotAttach));
        assert_eq!(
            Attach::parse("gateway Ingress_GW"),
            Err(KubeProblem::NotDnsSubdomain)
        );
    }

    #[test]
    fn images_and_schemes() {
        for (image, ok) in [
            ("registry.example/keygate:0.1.0", true),
            ("localhost:5001/keygate:0.1.0", true),
            ("registry.example/team/keygate:v1", true),
            (
                "registry.example/keygate@sha256:661d7effdd5299a513d5c960cd60c5cd9adea3a560ed44a279d04330d5b8dbe5",
                true,
            ),
            ("registry.example/keygate", false),
            ("localhost:5001/keygate", false),
            ("keygate:0.1.0", false),
            ("oci://registry.example/keygate:0.1.0", false),
            ("registry.example/KeyGate:1", false),
            ("registry.example/keygate:1 x", false),
        ] {
            assert_eq!(is_image(image), ok, "{image}");
        }
        for (url, ok) in [
            ("oci://r.example/k:1", true),
            ("FILE:///opt/k.wasm", true),
            ("https://r.example/k.wasm", true),
            ("http://r.example/k.wasm", true),
            ("s3://bucket/k.wasm", false),
            ("r.example/k:1", false),
        ] {
            assert_eq!(has_wasm_scheme(url), ok, "{url}");
        }
    }
}
