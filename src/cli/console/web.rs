//! Routing and the server-rendered pages. An anonymous browser gets the sign-in page and nothing
//! else; every POST of a page carries the session's anti-forgery token (`csrf` field), checked
//! before anything happens; administrators' pages answer 403 to developers.

use std::collections::HashMap;
use std::sync::Mutex;

use minijinja::{context, Environment, Value};

use super::auth::Identity;
use super::http::{Form, Request, Response};
use super::model::{Api, KeyManager, Tier};
use super::ops::{self, format_resources, parse_resources, split_list, Console, NewKeyManager};
use super::store::{self, ConsoleError, Doc, Session};
use super::{api, directory};

mod forms;
mod render;
mod session;
mod templates;

pub use render::Flash;
use session::{identity, security_headers};
pub use session::{parse_id, same_token};
pub use templates::templates;

/// The session cookie.
pub const COOKIE: &str = "keygate_console";
/// The cookie holding a started sign-in's `state`.
pub const SIGNIN_COOKIE: &str = "keygate_console_signin";

pub struct Web {
    pub console: Console,
    pub templates: Environment<'static>,
    /// What the page after a redirect shows once, per session (never carried in the URL, so no
    /// link can make the console display text of someone else's choosing).
    pub flash: Mutex<HashMap<String, Flash>>,
}

impl Web {
    pub fn handle(&self, req: &Request) -> Response {
        let segments = req.segments();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let response = match parts.as_slice() {
            ["keygate", "directory", "v1", rest @ ..] => {
                directory::handle(&self.console, req, rest)
            }
            ["api", rest @ ..] => api::handle(&self.console, req, rest),
            _ => self.page(req, &parts),
        };
        security_headers(response)
    }

    fn page(&self, req: &Request, parts: &[&str]) -> Response {
        let method = req.method.as_str();
        match (method, parts) {
            ("GET", ["signin"]) => {
                return self.render(200, "signin.html", context! {});
            }
            ("GET", ["auth", "login"]) => {
                return match self.console.auth.start() {
                    Ok((url, state)) => Response::redirect(&url)
                        .with_header("set-cookie", self.signin_cookie(&state, 600)),
                    Err(err) => self.error_page(None, &err, "/signin"),
                };
            }
            ("GET", ["auth", "callback"]) => return self.callback(req),
            _ => {}
        }
        let Some(session) = self.session(req) else {
            // Anonymous: the sign-in page only.
            return Response::redirect("/signin");
        };
        let user = identity(&session);
        if method == "POST" {
            let form = req.form();
            let token = form.get("csrf").unwrap_or_default();
            if !same_token(token, &session.csrf) {
                let err = ConsoleError::Forbidden(
                    "the form's anti-forgery token is missing or stale: reload the page and try \
                     again; nothing changed"
                        .into(),
                );
                return self.error_page(Some(&session), &err, "/");
            }
            return self.post(req, &session, &user, parts, &form);
        }
        if method != "GET" {
            return Response::empty(405);
        }
        let result = self.get(&session, &user, parts);
        match result {
            Ok(response) => response,
            Err(err) => self.error_page(Some(&session), &err, "/"),
        }
    }

    fn get(
        &self,
        session: &Session,
        user: &Identity,
        parts: &[&str],
    ) -> Result<Response, ConsoleError> {
        let c = &self.console;
        let flash = self.take_flash(session);
        let admin_page = parts.first() == Some(&"admin");
        if admin_page {
            ops::require_admin(user)?;
        }
        Ok(match parts {
            [] => Response::redirect("/devportal/applications"),
            ["admin"] => Response::redirect("/admin/key-managers"),
            ["admin", "key-managers"] => {
                let rows: Vec<Value> = c
                    .store
                    .read(store::key_managers)?
                    .into_iter()
                    .map(|row| {
                        context! {
                            version => row.version,
                            developer_portal => row.developer_portal,
                            ..Value::from_serialize(&row.key_manager)
                        }
                    })
                    .collect();
                self.render(
                    200,
                    "key_managers.html",
                    self.with(session, &flash, context! { rows }),
                )
            }
            ["admin", "key-managers", "new"] => {
                let known = forms::known_environments(self)?;
                self.render(
                    200,
                    "key_manager_new.html",
                    self.with(session, &flash, context! { known }),
                )
            }
            ["admin", "key-managers", name, "edit"] => {
                let row = c
                    .store
                    .read(|conn| store::get::<KeyManager>(conn, Doc::KeyManagers, name))?;
                let known = forms::known_environments(self)?;
                self.render(
                    200,
                    "key_manager_edit.html",
                    self.with(
                        session,
                        &flash,
                        context! { km => row.item, version => row.version, known },
                    ),
                )
            }
            ["admin", "apis"] => {
                let rows = c.store.read(|conn| store::list::<Api>(conn, Doc::Apis))?;
                self.render(
                    200,
                    "apis.html",
                    self.with(session, &flash, context! { rows }),
                )
            }
            ["admin", "apis", "new"] => self.render(
                200,
                "api_form.html",
                self.with(
                    session,
                    &flash,
                    context! { api => context! {}, resources => "" },
                ),
            ),
            ["admin", "apis", name, "edit"] => {
                let row = c
                    .store
                    .read(|conn| store::get::<Api>(conn, Doc::Apis, name))?;
                let resources = format_resources(&row.item.resources);
                self.render(
                    200,
                    "api_form.html",
                    self.with(
                        session,
                        &flash,
                        context! { api => row.item, version => row.version, resources },
                    ),
                )
            }
            ["admin", "tiers"] => {
                let rows = c.store.read(|conn| store::list::<Tier>(conn, Doc::Tiers))?;
                self.render(
                    200,
                    "tiers.html",
                    self.with(session, &flash, context! { rows }),
                )
            }
            ["admin", "audit"] => {
                let entries = c.store.read(|conn| store::audit_log(conn, 200))?;
                self.render(
                    200,
                    "audit.html",
                    self.with(session, &flash, context! { entries }),
                )
            }
            ["devportal", "applications"] => {
                let rows: Vec<Value> = c
                    .applications(user)?
                    .into_iter()
                    .map(|row| context! { id => row.id, ..Value::from_serialize(&row.application) })
                    .collect();
                self.render(
                    200,
                    "applications.html",
                    self.with(session, &flash, context! { rows }),
                )
            }
            ["devportal", "applications", "new"] => self.render(
                200,
                "application_new.html",
                self.with(session, &flash, context! {}),
            ),
            ["devportal", "applications", id] => {
                let id = parse_id(id)?;
                let row = c.application(user, id)?;
                let key_managers: Vec<String> = c
                    .store
                    .read(store::key_managers)?
                    .into_iter()
                    .filter(|r| r.developer_portal)
                    .map(|r| r.key_manager.name)
                    .collect();
                let clients: Vec<Value> = row
                    .application
                    .client_ids
                    .iter()
                    .map(|cid| {
                        context! {
                            key_manager => cid.key_manager,
                            client_id => cid.client_id,
                            token_endpoint => c.token_endpoint(&cid.key_manager),
                        }
                    })
                    .collect();
                let added = flash.added.as_ref().map(|(km, client)| {
                    context! {
                        key_manager => km,
                        client_id => client,
                        token_endpoint => c.token_endpoint(km),
                    }
                });
                self.render(
                    200,
                    "application.html",
                    self.with(
                        session,
                        &flash,
                        context! {
                            id, app => row.application, version => row.version,
                            key_managers, clients, added,
                            new_key => flash.new_key.as_ref().map(|(name, key)| {
                                context! { name, key }
                            }),
                        },
                    ),
                )
            }
            ["devportal", "applications", id, "subscribe"] => {
                let id = parse_id(id)?;
                let row = c.application(user, id)?;
                let subscribed: Vec<&str> = row
                    .application
                    .subscriptions
                    .iter()
                    .map(|s| s.api.as_str())
                    .collect();
                let apis: Vec<Api> = c
                    .store
                    .read(|conn| store::list::<Api>(conn, Doc::Apis))?
                    .into_iter()
                    .map(|v| v.item)
                    .filter(|api| !subscribed.contains(&api.name.as_str()))
                    .collect();
                let tiers: Vec<String> = c
                    .store
                    .read(|conn| store::list::<Tier>(conn, Doc::Tiers))?
                    .into_iter()
                    .map(|v| v.item.name)
                    .collect();
                self.render(
                    200,
                    "subscribe.html",
                    self.with(
                        session,
                        &flash,
                        context! { id, app => row.application, apis, tiers },
                    ),
                )
            }
            ["devportal", "applications", id, "instructions"] => {
                let id = parse_id(id)?;
                let (app, text) = c.instructions(user, id)?;
                self.render(
                    200,
                    "instructions.html",
                    self.with(session, &flash, context! { id, app, text }),
                )
            }
            _ => return Err(ConsoleError::NotFound("no such page".into())),
        })
    }

    fn post(
        &self,
        req: &Request,
        session: &Session,
        user: &Identity,
        parts: &[&str],
        form: &Form,
    ) -> Response {
        let c = &self.console;
        let back = req.header("referer").unwrap_or("/").to_string();
        let done = |applied: String, to: &str| {
            self.set_flash(
                session,
                Flash {
                    notice: Some(applied),
                    added: None,
                    new_key: None,
                },
            );
            Response::redirect(to)
        };
        let result: Result<Response, ConsoleError> = (|| {
            if form.get("preview").is_some() && parts != ["admin", "apis"] {
                return self
                    .preview_post(session, user, parts, form)
                    .unwrap_or_else(|| {
                        Err(ConsoleError::invalid(
                            "preview",
                            "this change has no preview",
                        ))
                    });
            }
            Ok(match parts {
                ["auth", "signout"] => {
                    c.store
                        .read(|conn| store::delete_session(conn, &session.id))?;
                    Response::redirect("/signin").with_header("set-cookie", self.cookie("", 0))
                }
                ["admin", "key-managers", "review"] => {
                    ops::require_admin(user)?;
                    let name = form.text("name");
                    ops::check_name("name", &name)?;
                    let environments = forms::chosen_environments(form)?;
                    let review = c.discover(&form.text("well_known_url"))?;
                    self.render(
                        200,
                        "key_manager_review.html",
                        self.with(
                            session,
                            &Flash::default(),
                            context! {
                                name, description => form.text("description"),
                                environments, review,
                            },
                        ),
                    )
                }
                ["admin", "key-managers"] => {
                    let discovery =
                        match form.get("discovery").filter(|d| !d.is_empty()) {
                            Some(text) => Some(serde_json::from_str(text).map_err(|err| {
                                ConsoleError::invalid("discovery", err.to_string())
                            })?),
                            None => None,
                        };
                    let new = NewKeyManager {
                        name: form.text("name"),
                        description: Some(form.text("description")),
                        well_known_url: form.text("well_known_url"),
                        environments: split_list(&form.text("environments")),
                        audiences: split_list(&form.text("audiences")),
                        provider: Some(form.text("provider")),
                        discovery,
                    };
                    let applied = c.add_key_manager(user, new)?;
                    done(applied.summary(), "/admin/key-managers")
                }
                ["admin", "key-managers", name, "remove"] => {
                    let applied = c.remove_key_manager(user, name, form.version()?)?;
                    done(applied.summary(), "/admin/key-managers")
                }
                ["admin", "key-managers", name, "developer-portal"] => {
                    let enabled = form.get("enabled").is_some();
                    c.set_developer_portal(user, name, form.version()?, enabled)?;
                    done("saved".into(), "/admin/key-managers")
                }
                ["admin", "key-managers", name] => {
                    let applied = c.update_key_manager(
                        user,
                        name,
                        form.version()?,
                        Some(form.text("description")),
                        forms::chosen_environments(form)?,
                        split_list(&form.text("audiences")),
                    )?;
                    done(applied.summary(), "/admin/key-managers")
                }
                ["admin", "apis"] => {
                    let version = match form.text("version").as_str() {
                        "" => None,
                        v => Some(
                            v.parse()
                                .map_err(|_| ConsoleError::invalid("version", "not a number"))?,
                        ),
                    };
                    let upstream = form.text("upstream");
                    let api = Api {
                        name: form.text("name"),
                        version: form.text("api_version"),
                        base_path: form.text("base_path"),
                        upstream: (!upstream.is_empty()).then_some(upstream),
                        security: if form.get("api_keys").is_some() {
                            vec!["oauth2".into(), "api_key".into()]
                        } else {
                            Vec::new()
                        },
                        resources: match form.get("openapi").map(str::trim) {
                            Some(doc) if !doc.is_empty() => ops::resources_from_openapi(doc)?,
                            _ => parse_resources(form.get("resources").unwrap_or_default())?,
                        },
                    };
                    if form.get("preview").is_some() {
                        let changes = c.preview_api(user, version, &api)?;
                        let what = format!("API {}", api.name);
                        return Ok(self.preview_page(session, form, "/admin/apis", what, changes));
                    }
                    let applied = c.save_api(user, version, api)?;
                    done(applied.summary(), "/admin/apis")
                }
                ["admin", "apis", name, "remove"] => {
                    let applied = c.remove_api(user, name, form.version()?)?;
                    done(applied.summary(), "/admin/apis")
                }
                ["admin", "tiers"] => {
                    let applied = c.add_tier(user, forms::tier_of(form, &form.text("name"))?)?;
                    done(applied.summary(), "/admin/tiers")
                }
                ["admin", "tiers", name, "remove"] => {
                    let applied = c.remove_tier(user, name, form.version()?)?;
                    done(applied.summary(), "/admin/tiers")
                }
                ["admin", "tiers", name] => {
                    let tier = forms::tier_of(form, name)?;
                    let applied = c.update_tier(user, form.version()?, tier)?;
                    done(applied.summary(), "/admin/tiers")
                }
                ["devportal", "applications"] => {
                    let id = c.create_application(user, &form.text("name"))?;
                    Response::redirect(&format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "client-ids"] => {
                    let id = parse_id(id)?;
                    let km = form.text("key_manager");
                    let client = form.text("client_id");
                    let applied = c.add_client_id(user, id, &km, &client)?;
                    self.set_flash(
                        session,
                        Flash {
                            notice: Some(applied.summary()),
                            added: Some((km, client)),
                            new_key: None,
                        },
                    );
                    Response::redirect(&format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "client-ids", "remove"] => {
                    let id = parse_id(id)?;
                    let applied = c.remove_client_id(
                        user,
                        id,
                        &form.text("key_manager"),
                        &form.text("client_id"),
                    )?;
                    done(applied.summary(), &format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "api-keys"] => {
                    let id = parse_id(id)?;
                    let expires = form.text("expires");
                    let (key, entry, applied) = c.create_api_key(
                        user,
                        id,
                        &form.text("name"),
                        (!expires.is_empty()).then_some(expires.as_str()),
                    )?;
                    self.set_flash(
                        session,
                        Flash {
                            notice: Some(applied.summary()),
                            added: None,
                            new_key: Some((entry.name, key)),
                        },
                    );
                    Response::redirect(&format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "api-keys", "remove"] => {
                    let id = parse_id(id)?;
                    let applied = c.revoke_api_key(user, id, &form.text("name"))?;
                    done(applied.summary(), &format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "subscriptions"] => {
                    let id = parse_id(id)?;
                    let tier = form.text("tier");
                    let applied = c.subscribe(
                        user,
                        id,
                        &form.text("api"),
                        (!tier.is_empty()).then_some(tier.as_str()),
                    )?;
                    done(applied.summary(), &format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "subscriptions", "remove"] => {
                    let id = parse_id(id)?;
                    let applied = c.unsubscribe(user, id, &form.text("api"))?;
                    done(applied.summary(), &format!("/devportal/applications/{id}"))
                }
                ["devportal", "applications", id, "remove"] => {
                    let id = parse_id(id)?;
                    let applied = c.delete_application(user, id, form.version()?)?;
                    done(applied.summary(), "/devportal/applications")
                }
                _ => return Err(ConsoleError::NotFound("no such form".into())),
            })
        })();
        match result {
            Ok(response) => response,
            Err(err) => self.error_page(Some(session), &err, &back),
        }
    }
}
