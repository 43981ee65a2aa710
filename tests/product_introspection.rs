//! Product tests of opaque tokens (issue 14): the built filter in a real Envoy checks opaque
//! access tokens from the real key manager (npm oidc-provider, `features.introspection`) at its
//! RFC 7662 introspection endpoint, reached through a fault proxy that counts the calls and
//! injects outages. The gateway's client secret reaches the filter only through Envoy's
//! environment. `cargo test --test product_introspection -- --nocapture` prints the numbers.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::stack;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use support::faultproxy::{FaultProxy, Mode};
use support::stack::{now, AUDIENCE};
use support::{
    envoy_bin, expect_reply, free_port, http, DpopKey, EchoUpstream, Envoy, KeyManager,
    ProcessGuard, Response, TempDir,
};

const PETS: &str = "/pets/v1/pets";
const INTROSPECTION_PATH: &str = "/token/introspection";
const SECRET_ENV: &str = "KEYGATE_TEST_INTROSPECTION_SECRET";
/// The gateway client's secret at the demo key manager (tests/keymanager/demo-data.json).
const SECRET: &str = "keygate-gateway-secret";

/// Fields drop in order: Envoy goes before the proxy it talks to and the key manager.
struct Rig {
    envoy: Envoy,
    echo: EchoUpstream,
    proxy: FaultProxy,
    km: KeyManager,
    port: u16,
    out: PathBuf,
    _dir: TempDir,
}

/// `settings` are more `settings:` lines (indented), or empty.
fn declaration(
    km: &KeyManager,
    proxy: u16,
    listen: u16,
    admin: u16,
    upstream: u16,
    settings: &str,
) -> String {
    let issuer = km.issuer();
    format!(
        r#"gateway:
  environment: production
  listen: 127.0.0.1:{listen}
  admin: 127.0.0.1:{admin}
settings:
  introspection_timeout_ms: 500
  introspection_retry_seconds: 1
{settings}key_managers:
  - name: demo
    well_known_url: {issuer}/.well-known/openid-configuration
    audiences: [{AUDIENCE}]
    introspection: {{client_id: keygate-gateway, client_secret_env: {SECRET_ENV}}}
    discovery:
      issuer: {issuer}
      jwks_uri: {issuer}/jwks
      token_endpoint: {issuer}/token
      introspection_endpoint: http://127.0.0.1:{proxy}{INTROSPECTION_PATH}
apis:
  - name: pets
    version: v1
    base_path: /pets/v1
    upstream: http://127.0.0.1:{upstream}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}
      - {{method: POST, path: /pets, scopes: [pets:write], groups: [pet-admins]}}
applications:
  - name: shop
    client_ids:
      - {{key_manager: demo, client_id: shop-app}}
      - {{key_manager: demo, client_id: shop-opaque}}
    subscriptions:
      - {{api: pets}}
istio: {{selector: {{app: pets}}, image: registry.example/keygate:0.1.0}}
"#
    )
}

fn rig(workers: u32) -> Rig {
    rig_with(workers, "")
}

fn rig_with(workers: u32, settings: &str) -> Rig {
    // One start at a time: key managers and Envoys compiling the filter at once starve a small
    // machine past the start-up deadlines.
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new("introspection");
    let km = KeyManager::start();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], km.port())))
        .expect("start the fault proxy");
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let text = declaration(&km, proxy.port(), listen, admin, echo.port(), settings);
    let out = stack::generate(dir.path(), &text);
    let envoy = Envoy::start_with_env(&out.join("envoy.yaml"), workers, &[(SECRET_ENV, SECRET)]);
    Rig {
        envoy,
        echo,
        proxy,
        km,
        port: listen,
        out,
        _dir: dir,
    }
}

impl Rig {
    fn call(&self, method: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        http(self.port, method, PETS, &[("authorization", &auth)])
    }

    fn opaque(&self, client: &str, scope: &str) -> String {
        let token = self
            .km
            .token_client_credentials(client, &format!("{client}-secret"), scope);
        assert_eq!(token.matches('.').count(), 0, "{client} gets opaque tokens");
        token
    }

    fn user_opaque(&self, user: &str, scope: &str) -> String {
        let password = format!("{user}-pass");
        self.km
            .token_password("shop-opaque", "shop-opaque-secret", user, &password, scope)
    }

    fn introspection_calls(&self) -> usize {
        self.proxy.fetch_count_path(INTROSPECTION_PATH)
    }

    fn stat(&self, name: &str) -> u64 {
        self.envoy.stat(&format!("wasmcustom.{name}")).unwrap_or(0)
    }
}

/// Every file under `dir`, with its text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push((path, text));
        }
    }
    out
}

#[test]
fn opaque_tokens_are_introspected_once_and_authorized_like_jwts() {
    let rig = rig(2);

    // The secret's name is wired into Envoy and Istio; its value is in no generated file.
    let generated = files(&rig.out);
    // Every file that carries the filter's configuration is among those scanned.
    for wired in [
        "envoy.yaml",
        "live/keygate-filter.yaml",
        "xds/keygate-filter.json",
        "istio/wasmplugin.yaml",
        "docker-compose.yaml",
        "plugin-config.json",
    ] {
        assert!(
            generated.iter().any(|(path, _)| path.ends_with(wired)),
            "{wired} not scanned"
        );
    }
    for (path, text) in &generated {
        assert!(
            !text.contains(SECRET),
            "{} holds the secret",
            path.display()
        );
    }
    let envoy_yaml = std::fs::read_to_string(rig.out.join("envoy.yaml")).unwrap();
    let live = std::fs::read_to_string(rig.out.join("live/keygate-filter.yaml")).unwrap();
    assert!(live.contains("host_env_keys"), "{live}");
    assert!(live.contains(SECRET_ENV));
    assert!(
        envoy_yaml.contains(&format!(
            "keygate_introspection_127_0_0_1_{}_",
            rig.proxy.port()
        )),
        "the introspection host gets its own cluster"
    );
    let plugin = std::fs::read_to_string(rig.out.join("istio/wasmplugin.yaml")).unwrap();
    assert!(
        plugin.contains("vmConfig") && plugin.contains("valueFrom: HOST"),
        "{plugin}"
    );

    // Allowed, with identity headers, Authorization stripped.
    let token = rig.opaque("shop-opaque", "pets:read");
    let before = rig.echo.request_count();
    let ok = rig.call("GET", &token);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(rig.echo.request_count(), before + 1);
    let seen = rig.echo.last_request().unwrap();
    assert_eq!(seen.header("x-keygate-application"), Some("shop"));
    assert_eq!(seen.header("x-keygate-client-id"), Some("shop-opaque"));
    assert_eq!(seen.header("x-keygate-key-manager"), Some("demo"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(rig.introspection_calls(), 1);
    // A configured gateway answers its readiness path itself (no token, nothing upstream).
    let forwarded = rig.echo.request_count();
    let ready = http(rig.port, "GET", "/keygate/ready", &[]);
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, r#"{"status":"ready"}"#)
    );
    assert_eq!(rig.echo.request_count(), forwarded);

    // 100 more requests with the same token (the cache is shared by both workers): no call.
    for _ in 0..100 {
        assert_eq!(rig.call("GET", &token).status, 200);
    }
    let repeated_calls = rig.introspection_calls();
    assert_eq!(repeated_calls, 1, "one introspection call for 101 requests");

    // A fresh token sent by 16 clients at once: the workers share one call.
    let burst = rig.opaque("shop-opaque", "pets:read");
    let statuses: Vec<u16> = thread::scope(|s| {
        let calls: Vec<_> = (0..16)
            .map(|_| s.spawn(|| rig.call("GET", &burst).status))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let burst_calls = rig.introspection_calls() - repeated_calls;
    assert_eq!(
        burst_calls, 1,
        "16 concurrent requests of a new token, one call"
    );

    // The same authorization as a JWT.
    let orders_only = rig.opaque("shop-opaque", "orders:read");
    expect_reply(
        &rig.call("GET", &orders_only),
        403,
        "insufficient_scope",
        "wrong scope",
    );
    let orphan = rig.opaque("orphan-opaque", "pets:read");
    expect_reply(
        &rig.call("GET", &orphan),
        403,
        "application_not_found",
        "unknown client",
    );
    let alice = rig.user_opaque("alice", "pets:write");
    assert_eq!(rig.call("POST", &alice).status, 200, "alice is a pet-admin");
    let bob = rig.user_opaque("bob", "pets:write");
    expect_reply(
        &rig.call("POST", &bob),
        403,
        "insufficient_group",
        "bob is not",
    );

    // Inactive: unknown to the key manager, or revoked before use.
    let unknown = "Zm9yZ2VkLW9wYXF1ZS10b2tlbi10aGF0LW5vYm9keS1pc3N1ZWQ";
    let refused = rig.call("GET", unknown);
    expect_reply(&refused, 401, "token_inactive", "unknown token");
    let www = refused.header("www-authenticate").unwrap_or_default();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    let revoked = rig.opaque("shop-opaque", "pets:read");
    let revocation = support::http_with_body(
        rig.km.port(),
        "POST",
        "/token/revocation",
        &[
            ("authorization", &basic("shop-opaque", "shop-opaque-secret")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        format!("token={revoked}").as_bytes(),
    );
    assert_eq!(revocation.status, 200, "{}", revocation.body);
    expect_reply(
        &rig.call("GET", &revoked),
        401,
        "token_inactive",
        "revoked token",
    );

    // JWTs of the same key manager are still verified locally, never introspected.
    let calls = rig.introspection_calls();
    let jwt = rig
        .km
        .token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    assert_eq!(rig.call("GET", &jwt).status, 200);
    assert_eq!(rig.introspection_calls(), calls);

    // Neither the opaque tokens nor the secret show up in Envoy's log.
    let log = rig.envoy.log();
    for secret in [
        token.as_str(),
        burst.as_str(),
        alice.as_str(),
        unknown,
        SECRET,
    ] {
        assert!(!log.contains(secret), "the log shows a token or the secret");
    }
    let filter_calls = rig.envoy.stat_sum("wasmcustom.keygate_introspections");
    let hits = rig.stat("keygate_introspection_cache.result.hit");
    assert_eq!(
        filter_calls as usize,
        rig.introspection_calls(),
        "every call the key manager saw is counted once"
    );
    println!(
        "introspection: 101 requests of one token -> {repeated_calls} call(s); 16 concurrent \
         requests of a new token on 2 workers -> {burst_calls} call(s); filter counters: \
         {filter_calls} calls, {hits} cache hits"
    );
}

fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[test]
fn an_introspection_outage_is_503_for_new_tokens_while_cached_ones_keep_working() {
    let rig = rig(1);
    let cached = rig.opaque("shop-opaque", "pets:read");
    assert_eq!(rig.call("GET", &cached).status, 200);

    let faults = [
        ("connection closed without an answer", Mode::Down),
        ("connection refused", Mode::Refuse),
        ("HTTP 500", Mode::Status(500)),
        ("HTTP 401", Mode::Status(401)),
        ("not JSON", Mode::Body(b"<html>maintenance</html>".to_vec())),
        (
            "no active member",
            Mode::Body(br#"{"client_id":"shop-opaque"}"#.to_vec()),
        ),
        (
            "slower than the timeout",
            Mode::Delay(Duration::from_millis(1_500)),
        ),
    ];
    let before = rig.echo.request_count();
    let mut fresh = String::new();
    for (what, mode) in faults {
        rig.proxy.set_mode(mode);
        fresh = rig.opaque("shop-opaque", "pets:read");
        let refused = rig.call("GET", &fresh);
        expect_reply(&refused, 503, "introspection_unavailable", what);
        let retry = refused
            .header("retry-after")
            .unwrap_or_default()
            .to_string();
        assert!(
            retry.parse::<u64>().is_ok_and(|s| s >= 1),
            "{what}: Retry-After {retry:?}"
        );
        // The token introspected before the outage keeps working from the cache.
        assert_eq!(rig.call("GET", &cached).status, 200, "{what}: cached token");
    }
    assert_eq!(
        rig.echo.request_count(),
        before + 7,
        "only the cached token's requests were forwarded"
    );

    // Once the endpoint is back and the failure's retry time (1 s) passed, the token refused
    // last is introspected again and allowed.
    // Polled, not slept: until then the remembered failure answers 503, and nothing else.
    rig.proxy.set_mode(Mode::Pass);
    let allowed = support::process::poll_until(Duration::from_secs(30), || {
        let r = rig.call("GET", &fresh);
        if r.status != 200 {
            expect_reply(
                &r,
                503,
                "introspection_unavailable",
                "retry time not over yet",
            );
        }
        (r.status == 200).then_some(())
    });
    assert!(
        allowed.is_some(),
        "the token refused last was never introspected again"
    );
    println!(
        "introspection outage: 7 fault modes -> 503 for new tokens, cached token 200 throughout; \
         {} introspection requests reached the proxy",
        rig.introspection_calls()
    );
}

#[test]
fn envoy_without_the_secret_refuses_the_configuration_naming_the_field() {
    let dir = TempDir::new("introspection-nosecret");
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let (listen, admin) = (free_port(), free_port());
    let text = declaration(&km, km.port(), listen, admin, echo.port(), "");
    let out = stack::generate(dir.path(), &text);
    let log_path = dir.join("envoy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(envoy_bin())
        .arg("-c")
        .arg(out.join("envoy.yaml"))
        .arg("--use-dynamic-base-id")
        .arg("--concurrency")
        .arg("1")
        .env_remove(SECRET_ENV)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut envoy = ProcessGuard::new("envoy", child, Some(log_path));
    let needle = "key_managers[0].introspection.client_secret_env";
    let refused = support::process::poll_until(Duration::from_secs(60), || {
        envoy.log().contains(needle).then_some(())
    });
    // Without a configured filter nothing is served, and nothing reaches the upstream.
    let token = km.token_client_credentials("shop-opaque", "shop-opaque-secret", "pets:read");
    let auth = format!("Bearer {token}");
    let answer = support::try_http(listen, "GET", PETS, &[("authorization", &auth)], b"");
    // Issue 21, item 10: Envoy's own readiness cannot see the refusal, the filter's can.
    let envoy_ready = support::try_http(admin, "GET", "/ready", &[], b"").map(|r| r.status);
    let keygate_ready = support::try_http(listen, "GET", "/keygate/ready", &[], b"");
    let text = envoy.log();
    envoy.stop();
    assert_eq!(envoy_ready.ok(), Some(200), "Envoy's /ready cannot tell");
    let keygate_ready = keygate_ready.map(|r| r.status);
    assert!(
        keygate_ready.as_ref().is_ok_and(|s| *s >= 500),
        "/keygate/ready of a gateway that cannot decide: {keygate_ready:?}"
    );
    assert!(refused.is_some(), "no refusal naming the field:\n{text}");
    assert!(text.contains(SECRET_ENV), "{text}");
    assert!(
        answer.as_ref().map_or(true, |r| r.status != 200),
        "served without a configuration: {:?}",
        answer.map(|r| r.status)
    );
    assert_eq!(echo.request_count(), 0);
}

#[test]
fn dpop_bound_opaque_tokens_need_a_valid_proof_on_every_request() {
    let rig = rig(2);
    // The real key manager binds an opaque token to the proof's key (RFC 9449 section 6.2: its
    // introspection answer says token_type DPoP and cnf.jkt).
    let key = DpopKey::generate();
    let reply = rig.km.token_client_credentials_dpop(
        "shop-opaque",
        "shop-opaque-secret",
        "pets:read",
        &key,
    );
    assert_eq!(reply["token_type"], "DPoP", "{reply}");
    let token = reply["access_token"].as_str().unwrap().to_string();
    assert_eq!(token.matches('.').count(), 0, "an opaque token");
    let url = format!("http://127.0.0.1:{}{PETS}", rig.port);
    let auth = format!("DPoP {token}");
    let with_proof = |proof: &str| {
        http(
            rig.port,
            "GET",
            PETS,
            &[("authorization", &auth), ("dpop", proof)],
        )
    };
    let fresh = || key.proof("GET", &url, now(), Some(&token));

    // Allowed with a fresh proof each time; one introspection call for all of them.
    let calls = rig.introspection_calls();
    for _ in 0..4 {
        let ok = with_proof(&fresh());
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    assert_eq!(rig.introspection_calls(), calls + 1);
    let seen = rig.echo.last_request().unwrap();
    assert_eq!(seen.header("x-keygate-client-id"), Some("shop-opaque"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("dpop"), None);

    // Refused: a replayed proof, another key, the wrong method, no proof, the Bearer scheme.
    let once = fresh();
    assert_eq!(with_proof(&once).status, 200);
    let refusals = [
        (with_proof(&once), "dpop_jti_replayed"),
        (
            with_proof(&DpopKey::generate().proof("GET", &url, now(), Some(&token))),
            "dpop_key_mismatch",
        ),
        (
            with_proof(&key.proof("POST", &url, now(), Some(&token))),
            "dpop_htm_mismatch",
        ),
        (
            with_proof(&key.proof("GET", &url, now(), Some("another token"))),
            "dpop_ath_mismatch",
        ),
        (
            http(rig.port, "GET", PETS, &[("authorization", &auth)]),
            "dpop_proof_missing",
        ),
        (rig.call("GET", &token), "dpop_bound_token_as_bearer"),
    ];
    for (refused, expected) in &refusals {
        assert_eq!(refused.status, 401, "{expected}: {}", refused.body);
        assert_eq!(refused.code(), *expected, "{}", refused.body);
        let www = refused.header("www-authenticate").unwrap_or_default();
        assert!(www.starts_with("DPoP "), "{expected}: {www}");
    }
    let bound_calls = rig.introspection_calls() - calls;
    assert_eq!(bound_calls, 1, "all from the cache");

    // A plain opaque token with the DPoP scheme is not bound: refused.
    let plain = rig.opaque("shop-opaque", "pets:read");
    let proof = key.proof("GET", &url, now(), Some(&plain));
    let refused = http(
        rig.port,
        "GET",
        PETS,
        &[
            ("authorization", &format!("DPoP {plain}")),
            ("dpop", &proof),
        ],
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.code(), "dpop_token_not_bound");
    println!(
        "DPoP-bound opaque token: 5 allowed with fresh proofs, {} refused, {bound_calls} \
         introspection call(s)",
        refusals.len()
    );
}

/// Issue 21, finding 3: made-up opaque tokens from an anonymous client cost at most the call
/// budget (3 a second here), are answered 503 with `Retry-After` past it, and their inactive
/// answers never evict a cached active token, even from a cache of 16 entries.
#[test]
fn junk_opaque_tokens_cost_bounded_calls_and_never_evict_a_cached_token() {
    let settings = "  introspection_cache_entries: 16\n  introspection_calls_per_second: 3\n  \
                    introspection_worker_calls_per_second: 3\n";
    let rig = rig_with(2, settings);
    let good = rig.opaque("shop-opaque", "pets:read");
    assert_eq!(rig.call("GET", &good).status, 200);
    let calls_before = rig.introspection_calls();
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let first_second = second();
    let (mut inactive, mut unavailable) = (0, 0);
    for i in 0..40 {
        let junk = format!("junk-{i}-{first_second}-not-a-real-token");
        let r = rig.call("GET", &junk);
        match (r.status, r.code().as_str()) {
            (401, "token_inactive") => inactive += 1,
            (503, "introspection_unavailable") => {
                assert_eq!(r.header("retry-after"), Some("1"), "{}", r.body);
                unavailable += 1;
            }
            other => panic!("junk {i}: {other:?} {}", r.body),
        }
    }
    let seconds = second() - first_second + 1;
    let calls = rig.introspection_calls() - calls_before;
    println!(
        "40 junk opaque tokens in {seconds} s: {calls} introspection calls, {inactive} x 401, \
         {unavailable} x 503"
    );
    assert!(calls as u64 <= 3 * seconds, "{calls} calls in {seconds} s");
    assert_eq!(calls, inactive, "one call per inactive answer");
    assert!(unavailable > 0, "the bound was reached");
    assert!(rig.stat("keygate_introspection_throttled") >= unavailable as u64);
    // The good token is still cached: allowed without a call.
    let before = rig.introspection_calls();
    assert_eq!(rig.call("GET", &good).status, 200);
    assert_eq!(rig.introspection_calls(), before, "still cached");
}

/// Issue 21, finding 4: at info level (the generated default) Envoy's log holds neither the
/// gateway's introspection secret (nor its `Authorization: Basic` value) nor the clients' tokens.
/// At debug level Envoy's own `router`/`http` components print request headers, the callout's
/// `authorization` and the client's token included, which is what README says; with those
/// components kept at info (admin `/logging?paths=router:info,http:info,http2:info`) nothing
/// leaks again.
#[test]
fn secrets_stay_out_of_envoys_log_at_info_level() {
    use base64::Engine;
    let rig = rig(1);
    let post =
        |path: &str| support::try_http(rig.envoy.admin_port(), "POST", path, &[], b"").unwrap();
    assert_eq!(post("/logging?level=info").status, 200);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("keygate-gateway:{SECRET}"));
    let leaks = |tokens: &[&str]| -> Vec<String> {
        let log = rig.envoy.log();
        let mut found: Vec<String> = [SECRET, basic.as_str()]
            .iter()
            .chain(tokens)
            .filter(|needle| log.contains(**needle))
            .map(|needle| needle.chars().take(12).collect())
            .collect();
        found.sort();
        found
    };
    let opaque = rig.opaque("shop-opaque", "pets:read");
    let jwt = rig
        .km
        .token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    assert_eq!(rig.call("GET", &opaque).status, 200);
    assert_eq!(rig.call("GET", &jwt).status, 200);
    assert_eq!(rig.call("GET", "made-up-opaque-token").status, 401);
    let found = leaks(&[&opaque, &jwt, "made-up-opaque-token"]);
    assert!(found.is_empty(), "in Envoy's info log: {found:?}");

    // Debug: Envoy's components print headers (README says so and how to keep them off).
    assert_eq!(post("/logging?level=debug").status, 200);
    let exposed = rig.opaque("shop-opaque", "pets:read");
    assert_eq!(rig.call("GET", &exposed).status, 200);
    assert!(
        rig.envoy.wait_for_log(&exposed, Duration::from_secs(5)),
        "debug shows the token"
    );
    let debug_basic = rig.envoy.log().matches(basic.as_str()).count();
    assert!(debug_basic > 0, "debug shows the callout's authorization");

    // Everything else at debug, the header-printing components at info: no leak.
    let quiet = post("/logging?paths=router:info,http:info,http2:info");
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    let hidden = rig.opaque("shop-opaque", "pets:read");
    assert_eq!(rig.call("GET", &hidden).status, 200);
    let after = rig.envoy.log();
    assert!(
        !after.contains(&hidden) && after.matches(basic.as_str()).count() == debug_basic,
        "a secret leaked with router, http and http2 at info"
    );
}
