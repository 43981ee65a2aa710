//! Backend JWTs: each API's `backend_jwt` header and lifetime, and the gateway's signing keys
//! (an issuer, P-256 public keys each named once).

use std::collections::HashMap;

use super::Checker;
use crate::config::{ConfigProblem, PluginConfig};

/// Backend JWTs (docs/backend-jwt.md): an API that asks for one needs the gateway's signing
/// keys; each header is a lower-case token that is no credential or identity header; each key
/// is a P-256 point named once.
pub(super) fn backend_jwt(c: &mut Checker, cfg: &PluginConfig) {
    let prefix = cfg.settings.header_prefix.to_ascii_lowercase();
    for (i, api) in cfg.apis.iter().enumerate() {
        let Some(jwt) = &api.backend_jwt else {
            continue;
        };
        let at = format!("apis[{i}].backend_jwt");
        let token = !jwt.header.is_empty()
            && jwt
                .header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let reserved = ["authorization", "dpop", "host", "x-forwarded-client-cert"]
            .contains(&jwt.header.as_str())
            || (!prefix.is_empty() && jwt.header.starts_with(&prefix));
        if !token || reserved {
            c.invalid(
                format!("{at}.header"),
                &jwt.header,
                "a lower-case header name (letters, digits, '-') that is not authorization, dpop, host, x-forwarded-client-cert or an identity header",
            );
        }
        c.range(&format!("{at}.ttl_seconds"), jwt.ttl_seconds, 1, 86_400);
        if cfg.backend_jwt.is_none() {
            c.push("backend_jwt", ConfigProblem::Missing);
        }
    }
    let Some(signing) = &cfg.backend_jwt else {
        return;
    };
    c.name("backend_jwt.issuer".into(), &signing.issuer);
    if signing.keys.is_empty() {
        c.push("backend_jwt.keys", ConfigProblem::Missing);
    }
    let mut envs = HashMap::new();
    for (k, key) in signing.keys.iter().enumerate() {
        let at = format!("backend_jwt.keys[{k}]");
        if c.name(format!("{at}.env"), &key.env) {
            c.unique(&mut envs, format!("{at}.env"), &key.env);
        }
        if !crate::jose::sign::is_p256_point(&key.x, &key.y) {
            c.invalid(
                format!("{at}.x"),
                &key.x,
                "x and y are the base64url coordinates of a P-256 public key",
            );
        }
    }
}
