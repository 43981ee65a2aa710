//! Form pieces shared by several pages: the environments chooser of the key-manager forms, and
//! the **Preview** of a change (a form posted with `preview=1` shows who gains or loses what and
//! re-posts the same fields, without `preview`, on **Apply**).

use minijinja::context;

use super::super::auth::Identity;
use super::super::http::{Form, Response};
use super::super::model::Tier;
use super::super::ops::split_list;
use super::super::preview::KeyManagerEdit;
use super::super::store::{self, ConsoleError, Session};
use super::{parse_id, Flash, Web};

/// The environments a key manager can be limited to: the gateway's, and every one a key
/// manager names already, sorted.
pub fn known_environments(web: &Web) -> Result<Vec<String>, ConsoleError> {
    let (gateway, kms) = web.console.store.read(|conn| {
        Ok((
            store::gateway(conn)?.unwrap_or_default(),
            store::key_managers(conn)?,
        ))
    })?;
    let mut all: Vec<String> = kms
        .into_iter()
        .flat_map(|row| row.key_manager.environments)
        .collect();
    all.push(gateway.environment);
    all.sort();
    all.dedup();
    Ok(all)
}

/// The environments chosen in a key-manager form: **Apply to all environments** (`all_environments`)
/// gives `[]` (all); otherwise the checked `environment` boxes and the names typed in `new_environment`
/// (comma separated). Neither: refused, naming `environments`.
pub fn chosen_environments(form: &Form) -> Result<Vec<String>, ConsoleError> {
    if form.get("all_environments").is_some() {
        return Ok(Vec::new());
    }
    let mut chosen: Vec<String> = form
        .0
        .iter()
        .filter(|(k, _)| k == "environment")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    chosen.extend(split_list(&form.text("new_environment")));
    chosen.extend(split_list(&form.text("environments")));
    let mut seen = Vec::new();
    chosen.retain(|e| {
        let new = !seen.contains(e);
        seen.push(e.clone());
        new
    });
    if chosen.is_empty() {
        return Err(ConsoleError::invalid(
            "environments",
            "choose at least one environment, or Apply to all environments",
        ));
    }
    Ok(chosen)
}

/// A tier from the tiers form.
pub fn tier_of(form: &Form, name: &str) -> Result<Tier, ConsoleError> {
    let requests = form
        .text("requests")
        .parse()
        .map_err(|_| ConsoleError::invalid("requests", "not a whole number"))?;
    Ok(Tier {
        name: name.to_string(),
        requests,
        per: form.text("per"),
    })
}

impl Web {
    /// The preview page of a form posted with `preview`: the changes, and the same fields to
    /// post again to `action` without `preview`.
    pub(super) fn preview_page(
        &self,
        session: &Session,
        form: &Form,
        action: &str,
        what: String,
        changes: Vec<String>,
    ) -> Response {
        let fields: Vec<(String, String)> = form
            .0
            .iter()
            .filter(|(k, _)| k != "preview" && k != "csrf")
            .cloned()
            .collect();
        self.render(
            200,
            "preview.html",
            self.with(
                session,
                &Flash::default(),
                context! { changes, fields, action, what },
            ),
        )
    }

    /// A form posted with `preview`: Some(page) for the changes that have one (None: the caller
    /// handles it, as the API form does).
    pub(super) fn preview_post(
        &self,
        session: &Session,
        user: &Identity,
        parts: &[&str],
        form: &Form,
    ) -> Option<Result<Response, ConsoleError>> {
        let c = &self.console;
        let action = format!("/{}", parts.join("/"));
        let result = (|| {
            let (what, changes) = match parts {
                ["admin", "key-managers", name, "remove"] => (
                    format!("remove key manager {name}"),
                    c.preview_remove_key_manager(user, name, form.version()?)?,
                ),
                ["admin", "key-managers", name] if *name != "review" => {
                    let edit = KeyManagerEdit {
                        description: Some(form.text("description")),
                        environments: chosen_environments(form)?,
                        audiences: split_list(&form.text("audiences")),
                    };
                    (
                        format!("edit key manager {name}"),
                        c.preview_edit_key_manager(user, name, form.version()?, &edit)?,
                    )
                }
                ["admin", "apis", name, "remove"] => (
                    format!("remove API {name}"),
                    c.preview_remove_api(user, name, form.version()?)?,
                ),
                ["admin", "tiers"] => {
                    let tier = tier_of(form, &form.text("name"))?;
                    (
                        format!("add tier {}", tier.name),
                        c.preview_save_tier(user, None, &tier)?,
                    )
                }
                ["admin", "tiers", name, "remove"] => (
                    format!("remove tier {name}"),
                    c.preview_remove_tier(user, name, form.version()?)?,
                ),
                ["admin", "tiers", name] => {
                    let tier = tier_of(form, name)?;
                    (
                        format!("edit tier {name}"),
                        c.preview_save_tier(user, Some(form.version()?), &tier)?,
                    )
                }
                ["devportal", "applications", id, "remove"] => {
                    let id = parse_id(id)?;
                    let name = c.application(user, id)?.application.name;
                    (
                        format!("remove application {name}"),
                        c.preview_delete_application(user, id, form.version()?)?,
                    )
                }
                ["devportal", "applications", id, "subscriptions"] => {
                    let id = parse_id(id)?;
                    let api = form.text("api");
                    let tier = form.text("tier");
                    let tier = (!tier.is_empty()).then_some(tier.as_str());
                    (
                        format!("subscribe to {api}"),
                        c.preview_subscribe(user, id, &api, tier)?,
                    )
                }
                ["devportal", "applications", id, "subscriptions", "remove"] => {
                    let id = parse_id(id)?;
                    let api = form.text("api");
                    (
                        format!("unsubscribe from {api}"),
                        c.preview_unsubscribe(user, id, &api)?,
                    )
                }
                _ => return Ok(None),
            };
            Ok(Some(
                self.preview_page(session, form, &action, what, changes),
            ))
        })();
        result.transpose()
    }
}
