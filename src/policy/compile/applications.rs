//! Where the applications come from: the inline applications (each client id owned by one
//! application per key manager, their API keys) or the directory source, never both.

use std::collections::HashMap;

use super::{is_env_name, Checker};
use crate::config::{ConfigProblem, DirectoryConfig, PluginConfig};
use crate::policy::api_keys::{compile_keys, ApiKeys};
use crate::policy::applications::{Catalog, InlineApplications};

/// The applications, each compiled by the rules directory entries follow too
/// ([`Catalog::compile`]); a client id belongs to one application per key manager.
pub(super) fn applications(
    c: &mut Checker,
    config: &PluginConfig,
    catalog: &Catalog,
    api_keys: &mut ApiKeys,
) -> InlineApplications {
    let mut names = HashMap::new();
    let mut key_hashes = HashMap::new();
    let mut compiled = InlineApplications::new(config.key_managers.len());
    for (i, app) in config.applications.iter().enumerate() {
        let at = format!("applications[{i}]");
        let mut one = catalog.compile(&at, app, &mut c.errors);
        if !app.name.is_empty() {
            c.unique(&mut names, format!("{at}.name"), &app.name);
        }
        let mut free = Vec::with_capacity(one.client_ids.len());
        for id in one.client_ids {
            match compiled.owner(id.key_manager, &id.client_id) {
                Some(owner) => {
                    let problem = ConfigProblem::DuplicateClientId {
                        key_manager: catalog
                            .key_managers
                            .get(id.key_manager)
                            .cloned()
                            .unwrap_or_default(),
                        application: owner.name.clone(),
                        client_id: id.client_id,
                    };
                    c.push(format!("{at}.client_ids[{}].client_id", id.at), problem);
                }
                None => free.push(id),
            }
        }
        compile_keys(
            c,
            &at,
            compiled.len(),
            &app.api_keys,
            api_keys,
            &mut key_hashes,
        );
        one.client_ids = free;
        compiled.add(one);
    }
    compiled
}

/// The directory source: where and how often, and never together with inline applications.
pub(super) fn directory(c: &mut Checker, d: &DirectoryConfig, inline: bool) {
    if inline {
        c.invalid(
            "applications",
            "(inline applications)",
            "the applications come from the directory when `directory` is set; leave them out",
        );
    }
    let at = "directory";
    if !(d.url.starts_with("http://") || d.url.starts_with("https://")) {
        c.invalid(
            format!("{at}.url"),
            &d.url,
            "the directory URL is http(s)://host[:port][/path]",
        );
    }
    if d.cluster.is_empty() {
        c.push(format!("{at}.cluster"), ConfigProblem::Missing);
    }
    if d.authority.is_empty() {
        c.push(format!("{at}.authority"), ConfigProblem::Missing);
    }
    if !d.path.starts_with('/') || d.path.contains(['?', '#']) {
        c.invalid(
            format!("{at}.path"),
            &d.path,
            "must start with '/' and have no query or fragment",
        );
    }
    if !d.token_env.is_empty() && !is_env_name(&d.token_env) {
        c.invalid(
            format!("{at}.token_env"),
            &d.token_env,
            "an environment variable name is letters, digits and '_', not starting with a digit",
        );
    }
    c.range(
        &format!("{at}.refresh_seconds"),
        d.refresh_seconds,
        1,
        3_600,
    );
    c.range(
        &format!("{at}.stale_seconds"),
        d.stale_seconds,
        d.refresh_seconds.saturating_add(1).min(3_601),
        7 * 86_400,
    );
    c.range(&format!("{at}.timeout_ms"), d.timeout_ms, 100, 60_000);
    let max_bytes = u64::try_from(d.max_bytes).unwrap_or(u64::MAX);
    c.range(&format!("{at}.max_bytes"), max_bytes, 1024, 1 << 30);
}
