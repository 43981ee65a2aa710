//! Decision table: every row goes through the product's own decision entry points
//! (`keygate::decision::{start, recall, parse, finish}` as the worker runs them, and
//! `keygate::decision::decide` as the CLI does), never a chain rebuilt here. The tokens are real
//! ES256 JWTs of the row's claims (with `exp`), signed by test code with the committed P-256 test
//! key, which every key manager of the fixture is given.

// Helpers outside #[test] functions are test code too (clippy.toml only covers #[test] bodies).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::signers;

use keygate::decision::{self as product, DpopHost, DpopRequest, Request, SigningKeys};
use keygate::decision::{
    bearer_token, identity_header_names, is_identity_header, reply, Denial, Identity,
    VerifiedTokens,
};
use keygate::dpop::MemorySlots;
use keygate::jose::KeySet;
use keygate::policy::{Policy, Route, RouteRefusal};
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/policy_fixture.json");
/// Stands for "a bearer JWT of the row's claims" (built per row by [`decide`]).
const BEARER: Option<&str> = Some("Bearer <the row's token>");
const ASGARDEO: &str = "https://api.asgardeo.io/t/acme/oauth2/token";
const SANDBOX: &str = "https://sandbox.example/issuer";
const KEYCLOAK: &str = "https://kc.example/realms/acme";
const TENANT: &str = "11111111-1111-1111-1111-111111111111";

fn policy_in(environment: &str) -> Policy {
    let mut cfg: Value = serde_json::from_str(FIXTURE).unwrap();
    cfg["environment"] = json!(environment);
    Policy::from_json(cfg.to_string().as_bytes()).unwrap()
}

#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Public,
    Pass,
    Allowed(Identity),
    Denied(u32, &'static str),
}

fn keys() -> KeySet {
    KeySet::from_json(&signers::jwks(&[signers::public_jwk("p256", "k-p256")])).unwrap()
}

/// The row's claims as a real token, valid at `signers::NOW`.
fn jwt(claims: &Value) -> String {
    let mut claims = claims.clone();
    if let Some(object) = claims.as_object_mut() {
        object.entry("exp").or_insert(json!(signers::NOW + 300.0));
    }
    signers::token(&json!({"alg": "ES256", "kid": "k-p256"}), &claims, "p256")
}

fn outcome(decided: product::Outcome) -> Outcome {
    match decided {
        product::Outcome::Public => Outcome::Public,
        product::Outcome::Pass => Outcome::Pass,
        product::Outcome::Allow { allowed, .. } => Outcome::Allowed(allowed.identity.clone()),
        product::Outcome::Deny(d) => Outcome::Denied(d.status(), d.code()),
        other => panic!("the decision asked for more: {other:?}"),
    }
}

/// What the filter decides for the request: the worker's phases (route and credentials, the
/// verified-token cache, token syntax and key manager, keys and authorization), run twice with
/// one cache so the second answer may come from `recall`; both must agree with the one-call
/// `decide` the CLI runs.
fn decide(policy: &Policy, method: &str, path: &str, auth: Option<&str>, claims: Value) -> Outcome {
    let token = jwt(&claims);
    let bearer = format!("Bearer {token}");
    let authorization = if auth == BEARER {
        Some(bearer.as_str())
    } else {
        auth
    };
    let request = Request {
        method,
        path,
        authorization,
        dpop: DpopRequest::default(),
        headers: &[],
    };
    let keys = keys();
    let slots = MemorySlots::default();
    let host = DpopHost {
        crypto: None,
        slots: &slots,
    };
    let mut cache = VerifiedTokens::new(16, 1 << 20);
    let mut phased = || -> product::Outcome {
        let started = match product::start(policy, &request).next {
            Ok(started) => started,
            Err(done) => return done,
        };
        if let Some((_, done)) = product::recall(
            policy,
            &started,
            &mut cache,
            |_| Some(1),
            signers::NOW,
            host,
        ) {
            return done;
        }
        let pending = match product::parse(policy, started) {
            Ok(pending) => pending,
            Err(done) => return done,
        };
        product::finish(
            policy,
            Box::new(pending),
            Some(SigningKeys::new(&keys, 1)),
            signers::NOW,
            false,
            &mut cache,
            host,
        )
    };
    let first = outcome(phased());
    let again = outcome(phased());
    let at_once = outcome(product::decide(
        policy,
        &request,
        |_| Some(&keys),
        signers::NOW,
    ));
    assert_eq!(first, again, "{method} {path}: the cached answer differs");
    assert_eq!(
        first, at_once,
        "{method} {path}: decide() differs from the phases"
    );
    first
}

fn allowed_app(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Allowed(identity) => Some(&identity.application),
        _ => None,
    }
}

enum Want {
    Allow(&'static str),
    Public,
    Deny(u32, &'static str),
}

struct Row {
    name: &'static str,
    env: &'static str,
    method: &'static str,
    path: &'static str,
    auth: Option<&'static str>,
    claims: Value,
    want: Want,
}

fn row(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    claims: Value,
    want: Want,
) -> Row {
    Row {
        name,
        env: "production",
        method,
        path,
        auth: BEARER,
        claims,
        want,
    }
}

fn asg(client_id: &str, scope: &str) -> Value {
    json!({"iss": ASGARDEO, "sub": "alice", "client_id": client_id, "scope": scope})
}

#[test]
fn decision_table() {
    use Want::*;
    let mut rows = vec![
        // Routing.
        row(
            "public resource needs no token",
            "GET",
            "/pets/v1/health",
            json!({}),
            Public,
        ),
        row("no API", "GET", "/nothing", json!({}), Deny(404, "no_api")),
        row(
            "no resource",
            "GET",
            "/pets/v1/pets/1/toys",
            json!({}),
            Deny(404, "resource_not_found"),
        ),
        row(
            "method not allowed",
            "PUT",
            "/pets/v1/pets",
            json!({}),
            Deny(405, "method_not_allowed"),
        ),
        row(
            "non-canonical path",
            "GET",
            "/pets/v1/../admin",
            json!({}),
            Deny(400, "path_not_canonical"),
        ),
        // Authorization header.
        Row {
            auth: None,
            ..row(
                "missing token",
                "GET",
                "/pets/v1/pets",
                asg("c-shop", "pets:read"),
                Deny(401, "missing_token"),
            )
        },
        Row {
            auth: Some("Basic dTpw"),
            ..row(
                "basic scheme",
                "GET",
                "/pets/v1/pets",
                asg("c-shop", "pets:read"),
                Deny(401, "unsupported_scheme"),
            )
        },
        Row {
            auth: Some("Bearer"),
            ..row(
                "bearer without token",
                "GET",
                "/pets/v1/pets",
                asg("c-shop", "pets:read"),
                Deny(400, "malformed_authorization"),
            )
        },
        Row {
            auth: Some("Bearer a b"),
            ..row(
                "bearer with spaces",
                "GET",
                "/pets/v1/pets",
                asg("c-shop", "pets:read"),
                Deny(400, "malformed_authorization"),
            )
        },
        // Key manager by issuer and environment.
        row(
            "allowed: scope, subscription, application",
            "GET",
            "/pets/v1/pets",
            asg("c-shop", "openid pets:read"),
            Allow("shop"),
        ),
        row(
            "issuer missing",
            "GET",
            "/pets/v1/pets",
            json!({"client_id": "c-shop", "scope": "pets:read"}),
            Deny(401, "issuer_missing"),
        ),
        row(
            "issuer unknown",
            "GET",
            "/pets/v1/pets",
            json!({"iss": "https://evil.example", "client_id": "c-shop", "scope": "pets:read"}),
            Deny(401, "issuer_unknown"),
        ),
        row(
            "issuer differs by a trailing slash",
            "GET",
            "/pets/v1/pets",
            json!({"iss": format!("{ASGARDEO}/"), "client_id": "c-shop", "scope": "pets:read"}),
            Deny(401, "issuer_unknown"),
        ),
        row(
            "key manager not enabled here",
            "GET",
            "/pets/v1/pets",
            json!({"iss": SANDBOX, "client_id": "s-shop", "scope": "pets:read"}),
            Deny(401, "key_manager_not_enabled"),
        ),
        Row {
            env: "sandbox",
            ..row(
                "key manager enabled in sandbox",
                "GET",
                "/pets/v1/pets",
                json!({"iss": SANDBOX, "client_id": "s-shop", "scope": "pets:read"}),
                Allow("shop"),
            )
        },
        Row {
            env: "sandbox",
            ..row(
                "key manager for all environments",
                "GET",
                "/pets/v1/pets",
                asg("c-shop", "pets:read"),
                Allow("shop"),
            )
        },
        Row {
            env: "staging",
            ..row(
                "key manager listing other environments",
                "GET",
                "/pets/v1/pets/1",
                json!({"iss": KEYCLOAK, "azp": "k-shop", "scope": "pets:read"}),
                Deny(401, "key_manager_not_enabled"),
            )
        },
        Row {
            env: "sandbox",
            ..row(
                "key manager listing this environment",
                "GET",
                "/pets/v1/pets/1",
                json!({"iss": KEYCLOAK, "azp": "k-shop", "scope": "pets:read"}),
                Allow("shop"),
            )
        },
        // Entra multi-tenant issuer.
        row(
            "entra allowed tenant",
            "GET",
            "/pets/v1/pets/7",
            json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "tid": TENANT, "azp": "e-shop", "scp": "pets:read"}),
            Allow("shop"),
        ),
        row(
            "entra roles as scopes",
            "GET",
            "/pets/v1/pets/7",
            json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "tid": TENANT, "appid": "e-shop", "roles": ["pets:read"]}),
            Allow("shop"),
        ),
        row(
            "entra tenant not allowed",
            "GET",
            "/pets/v1/pets/7",
            json!({"iss": "https://login.microsoftonline.com/22222222-2222-2222-2222-222222222222/v2.0", "tid": "22222222-2222-2222-2222-222222222222", "azp": "e-shop", "scp": "pets:read"}),
            Deny(401, "tenant_not_allowed"),
        ),
        row(
            "entra tid disagrees with iss",
            "GET",
            "/pets/v1/pets/7",
            json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "tid": "22222222-2222-2222-2222-222222222222", "azp": "e-shop", "scp": "pets:read"}),
            Deny(401, "issuer_unknown"),
        ),
        // Client id → application.
        row(
            "client id from fallback claim",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "azp": "c-shop", "scope": "pets:read"}),
            Allow("shop"),
        ),
        row(
            "client id claim missing",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "cid": "c-shop", "scope": "pets:read"}),
            Deny(401, "client_id_missing"),
        ),
        row(
            "client id claims agree",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": "c-shop", "azp": "c-shop", "scope": "pets:read"}),
            Allow("shop"),
        ),
        // Two mapped claims that differ: neither is taken (the first could be another party's).
        row(
            "client id claims differ",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": "c-shop", "azp": "c-other", "scope": "pets:read"}),
            Deny(401, "client_id_ambiguous"),
        ),
        row(
            "client id claims differ, second one registered",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": "c-nobody", "azp": "c-shop", "scope": "pets:read"}),
            Deny(401, "client_id_ambiguous"),
        ),
        row(
            "client id not a string",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": ["c-shop"], "scope": "pets:read"}),
            Deny(401, "client_id_missing"),
        ),
        row(
            "unknown client id",
            "GET",
            "/pets/v1/pets",
            asg("c-nobody", "pets:read"),
            Deny(403, "application_not_found"),
        ),
        row(
            "client id of another key manager",
            "GET",
            "/pets/v1/pets/7",
            json!({"iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"), "tid": TENANT, "azp": "c-shop", "scp": "pets:read"}),
            Deny(403, "application_not_found"),
        ),
        row(
            "client ids are case-sensitive",
            "GET",
            "/pets/v1/pets",
            asg("C-SHOP", "pets:read"),
            Deny(403, "application_not_found"),
        ),
        row(
            "application blocked",
            "GET",
            "/pets/v1/pets",
            asg("c-blocked", "pets:read"),
            Deny(403, "application_blocked"),
        ),
        // Subscriptions.
        row(
            "not subscribed to this API",
            "GET",
            "/pets/v1/pets",
            asg("c-store", "pets:read"),
            Deny(403, "not_subscribed"),
        ),
        row(
            "subscribed to the other API",
            "GET",
            "/store/orders",
            asg("c-store", ""),
            Allow("store-only"),
        ),
        row(
            "subscription blocked",
            "GET",
            "/pets/v1/pets",
            asg("c-subblocked", "pets:read"),
            Deny(403, "subscription_blocked"),
        ),
        row(
            "production-only block in production",
            "GET",
            "/pets/v1/pets",
            asg("c-prodblocked", "pets:read"),
            Deny(403, "subscription_blocked"),
        ),
        Row {
            env: "sandbox",
            ..row(
                "production-only block in sandbox",
                "GET",
                "/pets/v1/pets",
                json!({"iss": SANDBOX, "client_id": "s-prodblocked", "scope": "pets:read"}),
                Allow("prod-blocked"),
            )
        },
        // Scopes: at least one of the resource's.
        row(
            "second listed scope is enough",
            "GET",
            "/pets/v1/pets",
            asg("c-shop", "pets:admin"),
            Allow("shop"),
        ),
        row(
            "wrong scope",
            "GET",
            "/pets/v1/pets",
            asg("c-shop", "pets:write"),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "no scope claim",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": "c-shop"}),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "scope of another resource",
            "GET",
            "/pets/v1/pets/7",
            asg("c-shop", "pets:admin"),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "scopes are case-sensitive",
            "GET",
            "/pets/v1/pets",
            asg("c-shop", "PETS:READ"),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "scope claim not mapped",
            "GET",
            "/pets/v1/pets",
            json!({"iss": ASGARDEO, "client_id": "c-shop", "scp": "pets:read"}),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "resource without scopes",
            "PATCH",
            "/pets/v1/files/a/b",
            asg("c-shop", ""),
            Allow("shop"),
        ),
        // Groups: at least one of the resource's, after scopes.
        row(
            "scope and realm role",
            "POST",
            "/pets/v1/pets",
            json!({"iss": KEYCLOAK, "azp": "k-shop", "scope": "pets:write", "realm_access": {"roles": ["pet-admins"]}}),
            Allow("shop"),
        ),
        row(
            "client role",
            "DELETE",
            "/pets/v1/pets/3",
            json!({"iss": KEYCLOAK, "azp": "k-shop", "resource_access": {"shop": {"roles": ["pet-admins"]}}}),
            Allow("shop"),
        ),
        row(
            "wrong group",
            "POST",
            "/pets/v1/pets",
            json!({"iss": KEYCLOAK, "azp": "k-shop", "scope": "pets:write", "realm_access": {"roles": ["users"]}}),
            Deny(403, "insufficient_group"),
        ),
        row(
            "no group claim",
            "DELETE",
            "/pets/v1/pets/3",
            json!({"iss": KEYCLOAK, "azp": "k-shop"}),
            Deny(403, "insufficient_group"),
        ),
        row(
            "scope is checked before group",
            "POST",
            "/pets/v1/pets",
            json!({"iss": KEYCLOAK, "azp": "k-shop", "scope": "pets:read", "realm_access": {"roles": ["pet-admins"]}}),
            Deny(403, "insufficient_scope"),
        ),
        row(
            "group claim not mapped",
            "DELETE",
            "/pets/v1/pets/3",
            json!({"iss": KEYCLOAK, "azp": "k-shop", "groups": ["pet-admins"]}),
            Deny(403, "insufficient_group"),
        ),
    ];
    // Application checks run before subscription checks, which run before scopes.
    rows.push(row(
        "blocked app without scope",
        "GET",
        "/pets/v1/pets",
        asg("c-blocked", ""),
        Deny(403, "application_blocked"),
    ));
    rows.push(row(
        "unsubscribed app without scope",
        "GET",
        "/pets/v1/pets",
        asg("c-store", ""),
        Deny(403, "not_subscribed"),
    ));

    let mut failures = Vec::new();
    for r in &rows {
        let policy = policy_in(r.env);
        let got = decide(&policy, r.method, r.path, r.auth, r.claims.clone());
        let ok = match (&r.want, &got) {
            (Want::Allow(app), _) => allowed_app(&got) == Some(app),
            (Want::Public, Outcome::Public) => true,
            (Want::Deny(status, code), Outcome::Denied(s, c)) => status == s && code == c,
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: got {got:?}", r.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_api_can_pass_through() {
    let mut cfg: Value = serde_json::from_str(FIXTURE).unwrap();
    cfg["settings"]["unknown_api"] = json!("pass");
    let policy = Policy::from_json(cfg.to_string().as_bytes()).unwrap();
    assert_eq!(
        decide(&policy, "GET", "/nothing", None, json!({})),
        Outcome::Pass
    );
    // Pass-through never covers a known API's missing resource, nor a refused path.
    assert_eq!(
        decide(&policy, "GET", "/pets/v1/a/b", None, json!({})),
        Outcome::Denied(404, "resource_not_found")
    );
    assert_eq!(
        decide(&policy, "GET", "/PETS/v1/admin", None, json!({})),
        Outcome::Denied(400, "path_not_canonical")
    );
}

#[test]
fn method_not_allowed_lists_allow() {
    let policy = policy_in("production");
    let Route::Denied(d) = policy.route("PUT", "/pets/v1/pets") else {
        panic!("expected a denial");
    };
    assert_eq!(
        d,
        RouteRefusal::MethodNotAllowed {
            allow: vec!["GET".into(), "HEAD".into(), "POST".into()]
        }
    );
    let r = reply(&Denial::from(d), policy.settings().realm.as_str());
    // HEAD is listed wherever GET is: it is matched as GET.
    assert!(r
        .headers
        .contains(&("allow".into(), "GET, HEAD, POST".into())));
}

#[test]
fn identity_of_an_allowed_request() {
    let policy = policy_in("production");
    let claims = json!({"iss": ASGARDEO, "sub": "alice@acme", "client_id": "c-shop", "scope": "openid pets:read"});
    let Outcome::Allowed(id) = decide(&policy, "GET", "/pets/v1/pets/7", BEARER, claims) else {
        panic!("expected allow");
    };
    assert_eq!(id.application, "shop");
    assert_eq!(id.client_id, "c-shop");
    assert_eq!(id.subject.as_deref(), Some("alice@acme"));
    assert_eq!(id.key_manager, "asgardeo");
    assert_eq!(id.scopes, vec!["openid", "pets:read"]);
    assert_eq!(id.api, "pets");
    assert_eq!(id.api_version, "v1");
    assert_eq!(id.resource, "GET /pets/{id}");
    let prefix = &policy.settings().header_prefix;
    let headers = id.headers(prefix);
    assert!(headers.contains(&("x-keygate-application".into(), "shop".into())));
    assert!(headers.contains(&("x-keygate-client-id".into(), "c-shop".into())));
    assert!(headers.contains(&("x-keygate-subject".into(), "alice@acme".into())));
    assert!(headers.contains(&("x-keygate-key-manager".into(), "asgardeo".into())));
    assert!(headers.contains(&("x-keygate-scopes".into(), "openid pets:read".into())));
    assert!(headers.contains(&("x-keygate-api".into(), "pets".into())));
    // Everything added is something the shell strips from incoming requests.
    for (name, _) in &headers {
        assert!(is_identity_header(prefix, name));
        assert!(identity_header_names(prefix).contains(name));
    }
    assert_eq!(id.metadata()["application"], "shop");
}

#[test]
fn denial_replies_use_the_configured_realm_and_never_the_token() {
    let policy = policy_in("production");
    let secret = "Bearer eyJzZWNyZXQiOiJ0b2tlbiJ9.c2VjcmV0.c2ln";
    let claims = asg("c-shop", "nothing");
    let Route::Protected(found) = policy.route("GET", "/pets/v1/pets") else {
        panic!("expected a protected route");
    };
    assert!(bearer_token(Some(secret)).is_ok());
    let km = policy
        .key_manager_for(Some(ASGARDEO), claims.as_object().unwrap())
        .unwrap();
    let d = policy
        .authorize(&found, km.id, claims.as_object().unwrap())
        .unwrap_err();
    let r = reply(&Denial::from(d), &policy.settings().realm);
    assert_eq!(r.status, 403);
    let www = &r
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .unwrap()
        .1;
    assert!(www.starts_with("Bearer realm=\"pets-gateway\", error=\"insufficient_scope\""));
    assert!(www.ends_with("scope=\"pets:read pets:admin\""));
    for part in secret.split(['.', ' ']) {
        assert!(!r.body.contains(part) || part == "Bearer");
        assert!(!www.contains(part) || part == "Bearer");
    }
}
