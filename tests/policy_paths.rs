//! Path tricks against a protected resource (`GET /pets/v1/admin`, scope `admin`) that sits beside
//! public ones (`/pets/v1/health`, `/pets/v1/{page}`). No trick may reach a public resource or
//! another API; each is either refused, not found, or lands on the protected resource itself.

// Helpers outside #[test] functions are test code too (clippy.toml only covers #[test] bodies).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use keygate::decision::{reply, Denial};
use keygate::policy::path::PathProblem;
use keygate::policy::{Policy, Route, RouteRefusal};

const FIXTURE: &str = include_str!("fixtures/policy_fixture.json");

#[derive(Debug, PartialEq)]
enum Want {
    Admin,
    Health,
    /// The public `{page}` resource: only for legitimate paths, never for a trick.
    Page,
    Refused(PathProblem),
    NotFound,
    NoApi,
}

fn classify(policy: &Policy, route: Route) -> Want {
    match route {
        Route::Protected(m) => {
            let (_, resource) = policy.resource(&m).unwrap();
            assert_eq!(
                resource.path, "/admin",
                "reached another protected resource"
            );
            Want::Admin
        }
        Route::Public(m) => match policy.resource(&m).unwrap().1.path.as_str() {
            "/health" => Want::Health,
            "/{page}" => Want::Page,
            other => panic!("reached another public resource {other}"),
        },
        Route::Denied(RouteRefusal::PathNotCanonical { problem }) => Want::Refused(problem),
        Route::Denied(RouteRefusal::ResourceNotFound) => Want::NotFound,
        Route::Denied(RouteRefusal::NoApi) => Want::NoApi,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn path_trick_table() {
    use PathProblem::*;
    use Want::*;
    let policy = Policy::from_json(FIXTURE.as_bytes()).unwrap();
    let table = [
        // Baselines.
        ("/pets/v1/admin", Admin),
        ("/pets/v1/health", Health),
        // Query strings are cut off, never interpreted.
        ("/pets/v1/admin?debug=1", Admin),
        ("/pets/v1/health?/../admin", Health),
        ("/pets/v1/admin?x=%2F", Admin),
        // Percent-encoding: unreserved escapes are decoded (the upstream will do the same).
        ("/pets/v1/%61dmin", Admin),
        ("/pets/v1/%61%64%6D%69%6E", Admin),
        ("/pets/v1/admin%2F", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%2f", Refused(EncodedDelimiter)),
        ("/pets/v1/health%2F..%2Fadmin", Refused(EncodedDelimiter)),
        (
            "/pets/v1/health%2f%2e%2e%2fadmin",
            Refused(EncodedDelimiter),
        ),
        ("/pets/v1/%2e%2e/v1/admin", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%5C", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%5c", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%252F", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%00", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%0d%0a", Refused(BadEncodedByte)),
        ("/pets/v1/admin%", Refused(BadEscape)),
        // Encoded delimiters whose raw form is refused (issue 11 finding 3).
        ("/pets/v1/admin%3Bx", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%3b", Refused(EncodedDelimiter)),
        ("/pets/v1/health%3B/../admin", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%3Fx", Refused(EncodedDelimiter)),
        ("/pets/v1/admin%23x", Refused(EncodedDelimiter)),
        // Encoded non-ASCII letters that Unicode folding maps to ASCII: ſ (U+017F) to `s`, the
        // Kelvin sign (U+212A) to `k`, fullwidth `ａ` (U+FF41) to `a`; and any other.
        ("/pets/v1/%C5%BFecret", Refused(EncodedNonAscii)),
        ("/pets/v1/%E2%84%AAey", Refused(EncodedNonAscii)),
        ("/pets/v1/%EF%BD%81dmin", Refused(EncodedNonAscii)),
        ("/pets/v1/adm%C4%B1n", Refused(EncodedNonAscii)),
        ("/pets/v1/caf%C3%A9", Refused(EncodedNonAscii)),
        // Trailing dots and spaces, which Windows servers drop.
        ("/pets/v1/admin.", Refused(TrailingDotOrSpace)),
        ("/pets/v1/admin..", Refused(TrailingDotOrSpace)),
        ("/pets/v1/admin%20", Refused(TrailingDotOrSpace)),
        ("/pets/v1./admin", Refused(TrailingDotOrSpace)),
        ("/pets/v1/admin./", Refused(TrailingDotOrSpace)),
        // Legitimate dots, spaces and reserved characters inside a segment still work.
        ("/pets/v1/a.b", Page),
        ("/pets/v1/.well-known", Page),
        ("/pets/v1/a%20b", Page),
        ("/pets/v1/a%3Db%2C%40", Page),
        ("/pets/v1/a=b,@", Page),
        // Dot segments and empty segments.
        ("/pets/v1/health/../admin", Refused(DotSegment)),
        ("/pets/v1/./admin", Refused(DotSegment)),
        ("/pets/v1/admin/.", Refused(DotSegment)),
        ("/pets/v1//admin", Refused(EmptySegment)),
        ("//pets/v1/admin", Refused(EmptySegment)),
        ("/pets//v1/admin", Refused(EmptySegment)),
        // Case: a case-insensitive upstream would serve /admin, so the variant is refused.
        ("/pets/v1/ADMIN", Refused(CaseVariant)),
        ("/pets/v1/Admin", Refused(CaseVariant)),
        ("/pets/v1/%41dmin", Refused(CaseVariant)),
        ("/PETS/v1/admin", Refused(CaseVariant)),
        ("/pets/V1/health", Refused(CaseVariant)),
        // Fragments, backslashes, path parameters, raw bytes.
        ("/pets/v1/admin#x", Refused(Fragment)),
        ("/pets/v1/health#/../admin", Refused(Fragment)),
        ("/pets/v1\\admin", Refused(Backslash)),
        ("/pets/v1/health\\..\\admin", Refused(Backslash)),
        ("/pets/v1/admin;jsessionid=1", Refused(PathParameter)),
        ("/pets/v1/health/..;/admin", Refused(PathParameter)),
        ("/pets/v1/adm in", Refused(BadByte)),
        ("/pets/v1/admin\u{0}", Refused(BadByte)),
        ("/pets/v1/\u{430}dmin", Refused(BadByte)),
        ("pets/v1/admin", Refused(NotAbsolute)),
        ("http://h/pets/v1/admin", Refused(NotAbsolute)),
        // Trailing slash: significant, never the public {page}.
        ("/pets/v1/admin/", NotFound),
        ("/pets/v1/health/", NotFound),
        // Base path on a segment boundary.
        ("/pets/v10/admin", NoApi),
        ("/pets/v1admin", NoApi),
    ];
    let mut failures = Vec::new();
    for (path, want) in table {
        let got = classify(&policy, policy.route("GET", path));
        if got != want {
            failures.push(format!("{path:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refused_paths_answer_400_invalid_request() {
    let policy = Policy::from_json(FIXTURE.as_bytes()).unwrap();
    let Route::Denied(d) = policy.route("GET", "/pets/v1/health/../admin") else {
        panic!("expected a denial");
    };
    let r = reply(&Denial::from(d), "keygate");
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["code"], "path_not_canonical");
}

/// The issue 11 configuration: `GET /adm/secret` needs `adm:secret`, `ANY /adm/{page}` only
/// `adm:page`, and `GET /adm/{page}/raw` is public (to show a public rule is not reachable either).
fn adm_policy() -> Policy {
    let cfg = serde_json::json!({
        "environment": "production",
        "key_managers": [{"name": "km", "issuer": "https://idp",
            "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
        "apis": [{"name": "adm", "base_path": "/adm", "resources": [
            {"method": "GET", "path": "/secret", "scopes": ["adm:secret"]},
            {"method": "ANY", "path": "/{page}", "scopes": ["adm:page"]},
            {"method": "HEAD", "path": "/probe", "public": true},
            {"method": "GET", "path": "/probe", "scopes": ["adm:secret"]}
        ]}],
        "applications": []
    });
    Policy::from_json(cfg.to_string().as_bytes()).unwrap()
}

/// What decides a request: the configured `METHOD path` of the resource, or the denial code.
fn decided_by(policy: &Policy, method: &str, path: &str) -> String {
    match policy.route(method, path) {
        Route::Protected(m) | Route::Public(m) => {
            let (_, r) = policy.resource(&m).unwrap();
            format!("{} {}", r.method, r.path)
        }
        Route::Denied(d) => Denial::from(d).code().to_string(),
        Route::PassThrough => "pass".to_string(),
    }
}

#[test]
fn method_variants_never_reach_a_weaker_rule() {
    let policy = adm_policy();
    let table = [
        ("GET", "/adm/secret", "GET /secret"),
        // HEAD runs the GET handler upstream, so it is decided by the GET rule.
        ("HEAD", "/adm/secret", "GET /secret"),
        // A method the specific template lacks is not allowed; it never falls to `{page}`.
        ("POST", "/adm/secret", "method_not_allowed"),
        ("DELETE", "/adm/secret", "method_not_allowed"),
        // Case variants of a method are refused before routing (400), wherever they go.
        ("get", "/adm/secret", "method_not_canonical"),
        ("Get", "/adm/secret", "method_not_canonical"),
        ("head", "/adm/secret", "method_not_canonical"),
        ("get", "/adm/other", "method_not_canonical"),
        ("get", "/elsewhere", "method_not_canonical"),
        ("GE T", "/adm/secret", "method_not_canonical"),
        ("", "/adm/secret", "method_not_canonical"),
        // The weaker rule still serves what it is for.
        ("POST", "/adm/other", "ANY /{page}"),
        ("HEAD", "/adm/other", "ANY /{page}"),
        // An explicit HEAD resource is the operator's rule for HEAD on its template.
        ("HEAD", "/adm/probe", "HEAD /probe"),
        ("GET", "/adm/probe", "GET /probe"),
    ];
    let mut failures = Vec::new();
    for (method, path, want) in table {
        let got = decided_by(&policy, method, path);
        if got != want {
            failures.push(format!("{method} {path}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let Route::Denied(d) = policy.route("get", "/adm/secret") else {
        panic!("expected a denial");
    };
    let r = reply(&Denial::from(d), "keygate");
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["code"], "method_not_canonical");
}
