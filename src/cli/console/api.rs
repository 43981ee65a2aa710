//! The REST API for automation: `/api/admin/...` (administrators) and `/api/devportal/...` (any
//! signed-in user, their own applications only), JSON in and out, authorized by a bearer access
//! token of the console's key manager verified with keygate's own verification. The same
//! operations and rules as the pages; `GET /api/openapi.json` describes it.

use serde::Deserialize;
use serde_json::json;

use super::auth::Identity;
use super::http::{Request, Response};
use super::model::{Api, Tier};
use super::ops::{Console, NewKeyManager};
use super::preview::KeyManagerEdit;
use super::store::{self, ConsoleError, Doc};
use super::web::parse_id;

const OPENAPI: &str = include_str!("openapi.json");

#[derive(Deserialize)]
struct Versioned {
    version: i64,
}

#[derive(Deserialize)]
struct Discover {
    well_known_url: String,
}

#[derive(Deserialize)]
struct DeveloperPortal {
    version: i64,
    enabled: bool,
}

#[derive(Deserialize)]
struct SaveApi {
    #[serde(default)]
    version: Option<i64>,
    /// An OpenAPI 3 document (text) whose operations become the resources.
    #[serde(default)]
    openapi: Option<String>,
    #[serde(flatten)]
    api: Api,
}

#[derive(Deserialize)]
struct EditKeyManager {
    version: i64,
    #[serde(flatten)]
    edit: KeyManagerEdit,
}

#[derive(Deserialize)]
struct EditTier {
    version: i64,
    requests: u64,
    per: String,
}

impl EditTier {
    /// The version the edit is for, and the tier `name` it makes.
    fn named(self, name: &str) -> (i64, Tier) {
        let tier = Tier {
            name: name.to_string(),
            requests: self.requests,
            per: self.per,
        };
        (self.version, tier)
    }
}

#[derive(Deserialize)]
struct NewApplication {
    name: String,
}

#[derive(Deserialize)]
struct NewClientId {
    key_manager: String,
    client_id: String,
}

#[derive(Deserialize)]
struct NewApiKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Deserialize)]
struct NewSubscription {
    api: String,
    #[serde(default)]
    tier: Option<String>,
}

fn user(console: &Console, req: &Request) -> Result<Identity, ConsoleError> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| ConsoleError::Forbidden("a bearer access token is required".into()))?;
    console.auth.bearer(token.trim())
}

fn version_query(req: &Request) -> Result<i64, ConsoleError> {
    req.query("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ConsoleError::invalid("version", "the `version` query parameter is required")
        })
}

pub fn handle(console: &Console, req: &Request, rest: &[&str]) -> Response {
    let who = match user(console, req) {
        Ok(who) => who,
        Err(err) => {
            return Response::json(
                401,
                &json!({"error": "unauthorized", "error_description": err.to_string()}),
            )
            .with_header(
                "www-authenticate",
                "Bearer realm=\"keygate console\"".into(),
            )
        }
    };
    match route(console, req, rest, &who) {
        Ok(response) => response,
        Err(err) => Response::json_error(&err),
    }
}

fn route(
    c: &Console,
    req: &Request,
    rest: &[&str],
    who: &Identity,
) -> Result<Response, ConsoleError> {
    let ok = |v: serde_json::Value| Ok(Response::json(200, &v));
    let applied = |a: super::apply::Applied| {
        Ok(Response::json(
            200,
            &json!({"applied": true, "restart_required": a.restart}),
        ))
    };
    if rest.first() == Some(&"admin") {
        super::ops::require_admin(who)?;
    }
    if matches!(req.query("preview"), Some("true" | "1")) {
        let changes = preview(c, req, rest, who)?;
        return ok(json!({"preview": true, "changes": changes}));
    }
    match (req.method.as_str(), rest) {
        ("GET", ["openapi.json"]) => Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: OPENAPI.as_bytes().to_vec(),
        }),
        ("GET", ["admin", "key-managers"]) => {
            ok(serde_json::to_value(c.store.read(store::key_managers)?)?)
        }
        ("POST", ["admin", "key-managers", "discover"]) => {
            let body: Discover = req.json()?;
            ok(serde_json::to_value(c.discover(&body.well_known_url)?)?)
        }
        ("POST", ["admin", "key-managers"]) => {
            applied(c.add_key_manager(who, req.json::<NewKeyManager>()?)?)
        }
        ("DELETE", ["admin", "key-managers", name]) => {
            applied(c.remove_key_manager(who, name, version_query(req)?)?)
        }
        ("PUT", ["admin", "key-managers", name]) => {
            let body: EditKeyManager = req.json()?;
            let e = body.edit;
            applied(c.update_key_manager(
                who,
                name,
                body.version,
                e.description,
                e.environments,
                e.audiences,
            )?)
        }
        ("PUT", ["admin", "key-managers", name, "developer-portal"]) => {
            let body: DeveloperPortal = req.json()?;
            c.set_developer_portal(who, name, body.version, body.enabled)?;
            ok(json!({"saved": true}))
        }
        ("GET", ["admin", "apis"]) => ok(serde_json::to_value(
            c.store.read(|conn| store::list::<Api>(conn, Doc::Apis))?,
        )?),
        ("POST", ["admin", "apis"]) => {
            let mut body: SaveApi = req.json()?;
            if let Some(doc) = &body.openapi {
                body.api.resources = super::ops::resources_from_openapi(doc)?;
            }
            applied(c.save_api(who, body.version, body.api)?)
        }
        ("DELETE", ["admin", "apis", name]) => {
            applied(c.remove_api(who, name, version_query(req)?)?)
        }
        ("GET", ["admin", "tiers"]) => ok(serde_json::to_value(
            c.store.read(|conn| store::list::<Tier>(conn, Doc::Tiers))?,
        )?),
        ("POST", ["admin", "tiers"]) => applied(c.add_tier(who, req.json::<Tier>()?)?),
        ("PUT", ["admin", "tiers", name]) => {
            let (version, tier) = req.json::<EditTier>()?.named(name);
            applied(c.update_tier(who, version, tier)?)
        }
        ("DELETE", ["admin", "tiers", name]) => {
            applied(c.remove_tier(who, name, version_query(req)?)?)
        }
        ("GET", ["devportal", "applications"]) => ok(serde_json::to_value(c.applications(who)?)?),
        ("POST", ["devportal", "applications"]) => {
            let body: NewApplication = req.json()?;
            let id = c.create_application(who, &body.name)?;
            Ok(Response::json(201, &c.application(who, id)?))
        }
        ("GET", ["devportal", "applications", id]) => {
            ok(serde_json::to_value(c.application(who, parse_id(id)?)?)?)
        }
        ("DELETE", ["devportal", "applications", id]) => {
            let body: Versioned = Versioned {
                version: version_query(req)?,
            };
            applied(c.delete_application(who, parse_id(id)?, body.version)?)
        }
        ("POST", ["devportal", "applications", id, "client-ids"]) => {
            let body: NewClientId = req.json()?;
            applied(c.add_client_id(who, parse_id(id)?, &body.key_manager, &body.client_id)?)
        }
        ("POST", ["devportal", "applications", id, "subscriptions"]) => {
            let body: NewSubscription = req.json()?;
            applied(c.subscribe(who, parse_id(id)?, &body.api, body.tier.as_deref())?)
        }
        ("DELETE", ["devportal", "applications", id, "subscriptions", api]) => {
            applied(c.unsubscribe(who, parse_id(id)?, api)?)
        }
        ("GET", ["devportal", "applications", id, "api-keys"]) => ok(serde_json::to_value(
            c.application(who, parse_id(id)?)?.application.api_keys,
        )?),
        ("POST", ["devportal", "applications", id, "api-keys"]) => {
            let body: NewApiKey = req.json()?;
            let (key, entry, applied) =
                c.create_api_key(who, parse_id(id)?, &body.name, body.expires.as_deref())?;
            let mut response = Response::json(
                201,
                &json!({"key": key, "name": entry.name, "sha256": entry.sha256,
                        "expires": entry.expires, "applied": true,
                        "restart_required": applied.restart}),
            );
            response
                .headers
                .push(("cache-control".into(), "no-store".into()));
            Ok(response)
        }
        ("DELETE", ["devportal", "applications", id, "api-keys", name]) => {
            applied(c.revoke_api_key(who, parse_id(id)?, name)?)
        }
        ("GET", ["devportal", "applications", id, "instructions"]) => {
            let (_, text) = c.instructions(who, parse_id(id)?)?;
            Ok(Response::text(200, text))
        }
        _ => Err(ConsoleError::NotFound("no such API route".into())),
    }
}

/// `?preview=true`: what the change would do (`{"preview": true, "changes": [...]}`), nothing
/// applied; the same body and rules as the change itself.
fn preview(
    c: &Console,
    req: &Request,
    rest: &[&str],
    who: &Identity,
) -> Result<Vec<String>, ConsoleError> {
    match (req.method.as_str(), rest) {
        ("PUT", ["admin", "key-managers", name]) => {
            let body: EditKeyManager = req.json()?;
            c.preview_edit_key_manager(who, name, body.version, &body.edit)
        }
        ("DELETE", ["admin", "key-managers", name]) => {
            c.preview_remove_key_manager(who, name, version_query(req)?)
        }
        ("POST", ["admin", "apis"]) => {
            let mut body: SaveApi = req.json()?;
            if let Some(doc) = &body.openapi {
                body.api.resources = super::ops::resources_from_openapi(doc)?;
            }
            c.preview_api(who, body.version, &body.api)
        }
        ("DELETE", ["admin", "apis", name]) => c.preview_remove_api(who, name, version_query(req)?),
        ("POST", ["admin", "tiers"]) => c.preview_save_tier(who, None, &req.json::<Tier>()?),
        ("PUT", ["admin", "tiers", name]) => {
            let (version, tier) = req.json::<EditTier>()?.named(name);
            c.preview_save_tier(who, Some(version), &tier)
        }
        ("DELETE", ["admin", "tiers", name]) => {
            c.preview_remove_tier(who, name, version_query(req)?)
        }
        ("DELETE", ["devportal", "applications", id]) => {
            c.preview_delete_application(who, parse_id(id)?, version_query(req)?)
        }
        ("POST", ["devportal", "applications", id, "subscriptions"]) => {
            let body: NewSubscription = req.json()?;
            c.preview_subscribe(who, parse_id(id)?, &body.api, body.tier.as_deref())
        }
        ("DELETE", ["devportal", "applications", id, "subscriptions", api]) => {
            c.preview_unsubscribe(who, parse_id(id)?, api)
        }
        _ => Err(ConsoleError::invalid(
            "preview",
            "this route has no preview",
        )),
    }
}
