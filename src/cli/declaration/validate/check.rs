//! The CLI's own checks on what the plugin config does not carry: listener and admin addresses,
//! the rate-limit service, the directory, well-known, introspection and upstream URLs, preset
//! names, and (in `istio_block`) the `istio` block.

use std::net::SocketAddr;

use super::istio_block::check_istio;
use super::{DeclarationError, ValueProblem};
use crate::cli::declaration::model::{line_of, Declaration, Located};
use crate::cli::declaration::presets::Preset;
use crate::cli::discovery::oidc;
use crate::cli::discovery::url::HttpUrl;

/// The checks on what the plugin config does not carry (addresses, URLs, preset names). Everything
/// else is judged by the filter's compiler on the generated plugin config, see
/// [`refused`](fn@super::refused).
pub fn check(decl: &Declaration, allow_http: bool) -> Vec<DeclarationError> {
    let mut errors = Vec::new();
    let gateway = &decl.gateway;
    for (field, value) in [
        ("gateway.listen", &gateway.listen),
        ("gateway.admin", &gateway.admin),
    ] {
        if let Some(value) = value {
            if value.value.parse::<SocketAddr>().is_err() {
                errors.push(invalid(field, value, ValueProblem::NotSocketAddress));
            }
        }
    }
    if let Some(service) = &gateway.rate_limit_service {
        if !is_host_port(&service.value) {
            errors.push(invalid(
                "gateway.rate_limit_service",
                service,
                ValueProblem::NotHostPort,
            ));
        }
    }
    if let Some(directory) = &decl.directory {
        if let Err(problem) = HttpUrl::parse(&directory.url.value) {
            errors.push(invalid(
                "directory.url",
                &directory.url,
                ValueProblem::BadUrl { problem },
            ));
        }
    }
    for (i, km) in decl.key_managers.iter().enumerate() {
        let at = format!("key_managers[{i}]");
        if km.discovery.is_none() {
            if let Err(error) =
                oidc::check_well_known_url(&km.well_known_url.value, allow_http || km.allow_http)
            {
                errors.push(invalid(
                    &format!("{at}.well_known_url"),
                    &km.well_known_url,
                    ValueProblem::Discovery { error },
                ));
            }
        }
        if let Some(endpoint) = km.introspection.as_ref().and_then(|i| i.endpoint.as_ref()) {
            let allow = allow_http || km.allow_http;
            if let Err(error) =
                oidc::parse_endpoint("introspection.endpoint", &endpoint.value, allow)
            {
                errors.push(invalid(
                    &format!("{at}.introspection.endpoint"),
                    endpoint,
                    ValueProblem::Discovery { error },
                ));
            }
        }
        if let Some(provider) = &km.provider {
            if Preset::from_name(&provider.value).is_none() {
                errors.push(invalid(
                    &format!("{at}.provider"),
                    provider,
                    ValueProblem::UnknownProvider,
                ));
            }
        }
    }
    for (i, api) in decl.apis.iter().enumerate() {
        if let Some(upstream) = &api.upstream {
            let field = format!("apis[{i}].upstream");
            match HttpUrl::parse(&upstream.value) {
                Err(problem) => {
                    errors.push(invalid(&field, upstream, ValueProblem::BadUrl { problem }))
                }
                Ok(url)
                    if url.path_and_query.contains('?')
                        || !api.upstream_path().is_none_or(is_plain_path) =>
                {
                    errors.push(invalid(&field, upstream, ValueProblem::UpstreamPath))
                }
                Ok(_) => {}
            }
        }
    }
    if let Some(block) = &decl.istio {
        check_istio(&block.value, line_of(block), &mut errors);
    }
    errors
}

/// An upstream path Envoy can put in place of the base path as written: `/` alone, or segments
/// of RFC 3986 `pchar`s except `%`, none empty or a dot segment (`/v2`, `/api/v2/`).
fn is_plain_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c))
    })
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address, and a port other than 0).
fn is_host_port(value: &str) -> bool {
    match HttpUrl::parse(&format!("http://{value}")) {
        Ok(url) => url.path_and_query == "/" && url.explicit_port && url.port != 0,
        Err(_) => false,
    }
}

pub(super) fn invalid(field: &str, value: &Located, problem: ValueProblem) -> DeclarationError {
    DeclarationError::InvalidValue {
        field: field.to_string(),
        line: line_of(value),
        value: value.value.clone(),
        problem,
    }
}
