//! Product tests of key-manager resilience (issue 7): the built filter in a real Envoy, the real
//! key manager behind a fault-injecting proxy on Envoy's JWKS cluster, real requests on
//! 127.0.0.1. Every test is bounded in requests and time and prints what it measured
//! (`cargo test --test product_resilience -- --nocapture` shows the numbers).
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
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::faultproxy::{FaultProxy, Mode};
use support::stack::{sign_es256, stranger_key, Options, Stack};
use support::{expect_reply, KeyManager, Response, TempDir};

const PETS: &str = "/pets/v1/pets";

/// A stack whose filter fetches the JWKS through a fault proxy in front of the key manager.
/// Fields drop in order: Envoy goes before the proxy it talks to.
struct Rig {
    stack: Stack,
    proxy: FaultProxy,
}

/// `settings:` lines of the declaration from name/value pairs.
fn settings(pairs: &[(&str, u64)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("  {name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts the key manager, the proxy (in `mode` from the start, so Envoy's very first fetch
/// already meets it) and the stack.
fn rig(pairs: &[(&str, u64)], workers: u32, mode: Mode) -> Rig {
    // One stack starts at a time: six key managers generating RSA keys and six Envoys compiling
    // the filter at once on a small machine can starve a start-up past its deadline. The timed
    // parts of the tests still overlap.
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = TempDir::new("resilience");
    let km = KeyManager::start();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], km.port())))
        .expect("start the fault proxy");
    proxy.set_mode(mode);
    let options = Options {
        workers,
        jwks_port: Some(proxy.port()),
        settings: settings(pairs),
        ..Options::default()
    };
    let stack = Stack::start_with(options, km, dir);
    Rig { stack, proxy }
}

fn get(port: u16, token: &str) -> Response {
    support::http(
        port,
        "GET",
        PETS,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", response.headers))
        .parse()
        .expect("Retry-After in seconds")
}

/// Polls `probe` every `step` until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, step: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(step);
    }
}

/// Waits until the filter has keys and a real token passes (the startup fetch landed).
#[track_caller]
fn wait_for_keys(rig: &Rig, token: &str) {
    let ok = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        (get(rig.stack.port, token).status == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "keys never loaded:\n{}",
        rig.stack.envoy.log()
    );
}

/// Waits until the proxy has seen more than `count` fetches; returns when it did.
#[track_caller]
fn wait_for_fetch_after(proxy: &FaultProxy, count: usize, limit: Duration) -> Instant {
    assert!(
        proxy.wait_for_fetches(count + 1, limit),
        "no JWKS fetch within {limit:?}"
    );
    Instant::now()
}

/// The payload of `token` changed (more scope): the signature no longer matches.
fn tampered(token: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims = support::decode_jwt_claims(token);
    claims["scope"] = json!("pets:read pets:write");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

/// Well-formed claims of the key manager, signed by a stranger under a random kid.
fn unknown_kid_token(stack: &Stack, key: &p256::ecdsa::SigningKey) -> String {
    let kid = format!("unknown-{:016x}", rand::random::<u64>());
    sign_es256(key, &kid, &stack.claims("shop-app", "pets:read"))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Issue 7: key manager unreachable when Envoy starts → 503 `key_manager_unavailable` with
/// `Retry-After`, never forwarded; once it is back, the background retry (no traffic needed)
/// brings the keys within the retry interval.
#[test]
fn down_at_start_is_503_then_recovers_within_the_retry_interval() {
    const RETRY_MAX: u64 = 2;
    let rig = rig(
        &[
            ("jwks_fetch_timeout_ms", 1_000),
            ("jwks_retry_initial_seconds", 1),
            ("jwks_retry_max_seconds", RETRY_MAX),
            ("jwks_unknown_kid_refetch_seconds", 1),
            ("request_wait_ms", 1_500),
        ],
        1,
        Mode::Refuse,
    );
    let stack = &rig.stack;
    let token = stack.token("shop-app", "pets:read");

    let mut tried = 0;
    let mut unavailable = |what: &str| {
        let response = get(stack.port, &token);
        tried += 1;
        expect_reply(&response, 503, "key_manager_unavailable", what);
        assert_eq!(response.header_all("cache-control"), vec!["no-store"]);
        let seconds = retry_after(&response);
        assert!(
            (1..=RETRY_MAX + 2).contains(&seconds),
            "Retry-After {seconds} outside 1..={}",
            RETRY_MAX + 2
        );
        thread::sleep(Duration::from_millis(300));
    };
    // Nothing listens: connections are refused.
    for _ in 0..4 {
        unavailable("connection refused");
    }
    assert_eq!(
        rig.proxy.fetch_count(),
        0,
        "refused connections are no requests"
    );
    // Something listens but closes every connection without an answer.
    rig.proxy.set_mode(Mode::Down);
    for _ in 0..5 {
        unavailable("connection reset");
    }
    assert!(
        rig.proxy.dropped_count() >= 1,
        "no fetch reached the proxy while it dropped connections"
    );
    assert_eq!(stack.echo.request_count(), 0, "a 503 request was forwarded");
    let attempts_while_down = stack.envoy.stat_sum("wasmcustom.keygate_jwks_fetches");
    assert!(attempts_while_down >= 1, "no fetch was even tried");
    assert!(
        stack.envoy.log().contains("not fetched: jwks_unreachable"),
        "a refused connection is reported as unreachable:\n{}",
        stack.envoy.log()
    );

    // Up again, and no request: only the timer's retry can load the keys.
    let dropped = rig.proxy.fetch_count();
    let up = Instant::now();
    rig.proxy.set_mode(Mode::Pass);
    // Polled for, not timed: the retry interval is what Retry-After announced above.
    let fetched = wait_for_fetch_after(&rig.proxy, dropped, Duration::from_secs(RETRY_MAX + 30));
    let fetch_after = fetched - up;
    let served = poll(Duration::from_secs(30), Duration::from_millis(50), || {
        let response = get(stack.port, &token);
        tried += 1;
        (response.status == 200).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("no 200 after the key manager came back"));
    let recovery = served - up;
    println!(
        "down at start: {tried} requests, {attempts_while_down} fetch attempts while down \
         ({dropped} reached the proxy); back up -> first fetch after {:.2} s, first 200 after \
         {:.2} s",
        secs(fetch_after),
        secs(recovery)
    );
    assert_eq!(stack.echo.request_count(), 1, "only the final 200 went up");
}

/// What a request sent under a fault is, and the one answer it must get.
#[derive(Clone, Copy)]
enum Probe {
    /// A real token of the key manager: 200, forwarded.
    Good,
    /// Its payload changed: 401 `signature_invalid`.
    Tampered,
    /// A stranger's key under a random kid: 401 `unknown_kid` (after a rate-limited refetch).
    UnknownKid,
    /// A stranger's key under the key manager's own kid: 401 `signature_invalid`.
    Forged,
}

/// Requests sent and forwarded under faults, across every phase.
#[derive(Default)]
struct Tally {
    tried: usize,
    bad: usize,
    good: usize,
}

/// Issue 7: with good keys loaded, every kind of failed refresh (500, hang past the timeout,
/// garbage JSON, no keys, 10 MB) keeps the old keys: real tokens keep passing, bad tokens keep
/// failing, and nothing bad is ever forwarded (the upstream count grows by the good ones only).
#[test]
fn failed_refreshes_keep_old_keys_and_never_forward_a_bad_token() {
    const TIMEOUT_MS: u64 = 500;
    let rig = rig(
        &[
            ("jwks_min_refresh_seconds", 1),
            ("jwks_max_refresh_seconds", 1),
            ("jwks_default_refresh_seconds", 1),
            ("jwks_fetch_timeout_ms", TIMEOUT_MS),
            ("jwks_retry_initial_seconds", 1),
            ("jwks_retry_max_seconds", 1),
            ("jwks_unknown_kid_refetch_seconds", 1),
            ("jwks_stale_seconds", 120),
            ("request_wait_ms", 3_000),
        ],
        1,
        Mode::Pass,
    );
    let stack = &rig.stack;
    let good = stack.token("shop-app", "pets:read");
    wait_for_keys(&rig, &good);
    let bad_sig = tampered(&good);
    let stranger = stranger_key();
    let (km_kid, _) = stack.km_ec_key();
    let forged = sign_es256(&stranger, &km_kid, &stack.claims("shop-app", "pets:read"));

    let ten_mb = {
        let mut body = br#"{"keys":[],"padding":""#.to_vec();
        body.resize(10 * 1024 * 1024 - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    // Each fault with the error code the filter logs when it refuses that answer.
    let faults: [(&str, Mode, &str); 5] = [
        ("500", Mode::Status(500), "jwks_http_status"),
        (
            "slow",
            Mode::Delay(Duration::from_millis(TIMEOUT_MS * 3)),
            "jwks_timeout",
        ),
        (
            "garbage",
            Mode::Body(b"{\"keys\": [ not json".to_vec()),
            "jwks_malformed",
        ),
        (
            "no keys",
            Mode::Body(br#"{"keys":[]}"#.to_vec()),
            "jwks_no_usable_key",
        ),
        ("10 MB", Mode::Body(ten_mb), "jwks_too_large"),
    ];
    let probes = [
        Probe::Good,
        Probe::Tampered,
        Probe::UnknownKid,
        Probe::Forged,
    ];
    let mut tally = Tally::default();
    let mut report = Vec::new();
    let forwarded_before = stack.echo.request_count();
    let mut previous = "";
    for (name, mode, error) in faults {
        let log_before = stack.envoy.log().len();
        let fetches_before = rig.proxy.fetch_count();
        let failures_before = fetch_failures(stack);
        rig.proxy.set_mode(mode);
        let phase = Instant::now();
        let mut round = 0;
        // Long enough for two refresh attempts at least (refresh 1 s, retry 1 s).
        while phase.elapsed() < Duration::from_millis(2_500) {
            let probe = probes[round % probes.len()];
            round += 1;
            let (token, status, expected) = match probe {
                Probe::Good => (good.clone(), 200, ""),
                Probe::Tampered => (bad_sig.clone(), 401, "signature_invalid"),
                Probe::UnknownKid => (unknown_kid_token(stack, &stranger), 401, "unknown_kid"),
                Probe::Forged => (forged.clone(), 401, "signature_invalid"),
            };
            let response = get(stack.port, &token);
            tally.tried += 1;
            if status == 200 {
                tally.good += 1;
                assert_eq!(
                    response.status, 200,
                    "{name}: a real token was refused: {}",
                    response.body
                );
            } else {
                tally.bad += 1;
                expect_reply(&response, status, expected, name);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let fetches = rig.proxy.fetch_count() - fetches_before;
        let failures = fetch_failures(stack) - failures_before;
        let log = stack.envoy.log();
        let phase_log = log.get(log_before..).unwrap_or_default();
        let logged = phase_log.matches(error).count();
        let codes = fetch_error_codes(phase_log);
        report.push(format!(
            "{name}: {fetches} fetches, {failures} failed, logged {codes:?}"
        ));
        assert!(logged >= 1, "{name}: no fetch refused with {error}");
        // Each failure is reported for what it was; a fetch in flight when the fault changed
        // may end with the previous phase's error.
        assert!(
            codes.keys().all(|code| code == error || code == previous),
            "{name}: refused as {codes:?}, expected {error}"
        );
        previous = error;
        assert!(
            fetches >= 2,
            "{name}: only {fetches} fetches reached the proxy"
        );
        assert!(
            failures >= 1,
            "{name}: no failed fetch counted by the filter"
        );
    }
    let forwarded = stack.echo.request_count() - forwarded_before;
    println!(
        "faults: {} requests tried ({} good, {} bad), {forwarded} forwarded, 0 wrongly; {}",
        tally.tried,
        tally.good,
        tally.bad,
        report.join("; ")
    );
    assert_eq!(
        forwarded, tally.good,
        "a refused request reached the upstream"
    );
    assert!(tally.bad >= 40, "too few bad requests tried: {}", tally.bad);

    // The key manager answers again: the next refresh succeeds and real tokens still pass.
    rig.proxy.set_mode(Mode::Pass);
    let count = rig.proxy.fetch_count();
    wait_for_fetch_after(&rig.proxy, count, Duration::from_secs(30));
    let served = poll(Duration::from_secs(30), Duration::from_millis(50), || {
        (get(stack.port, &good).status == 200).then_some(())
    });
    assert!(
        served.is_some(),
        "a real token was not served after recovery"
    );
    expect_reply(
        &get(stack.port, &bad_sig),
        401,
        "signature_invalid",
        "after recovery",
    );
}

/// Issue 7: the key manager rotates its signing key and a token of the new key passes on its
/// first request (one unknown-kid refetch); then it retires the old keys, which keep verifying
/// until the next successful fetch of the JWKS and are refused after it. The scheduled refresh
/// is an hour away, so every fetch here is one the test caused: no timing decides the outcome.
#[test]
fn rotation_is_picked_up_on_first_use_and_retired_keys_stop_after_refresh() {
    const REFRESH: u64 = 3_600;
    let rig = rig(
        &[
            ("jwks_min_refresh_seconds", REFRESH),
            ("jwks_max_refresh_seconds", REFRESH),
            ("jwks_default_refresh_seconds", REFRESH),
            ("jwks_unknown_kid_refetch_seconds", 1),
            ("jwks_fetch_timeout_ms", 1_000),
        ],
        1,
        Mode::Pass,
    );
    let stack = &rig.stack;
    let old = stack.token("shop-app", "pets:read");
    wait_for_keys(&rig, &old);
    let (ec_kid, ec_key) = stack.km_ec_key();
    let old_ec = sign_es256(&ec_key, &ec_kid, &stack.claims("shop-app", "pets:read"));
    assert_eq!(get(stack.port, &old_ec).status, 200);
    assert_eq!(rig.proxy.fetch_count(), 1, "the startup fetch only");

    let new_kid = stack.km.rotate();
    let new = stack.token("shop-app", "pets:read");
    assert_eq!(support::decode_jwt_header(&new)["kid"], json!(new_kid));
    let sent = Instant::now();
    let first = get(stack.port, &new);
    let first_latency = sent.elapsed();
    assert_eq!(first.status, 200, "new key refused: {}", first.body);
    assert_eq!(
        rig.proxy.fetch_count(),
        2,
        "the first request of the new key causes exactly one fetch"
    );
    assert_eq!(get(stack.port, &old).status, 200, "old keys stay published");

    // Retire every key but the new signer: cached old keys still verify until the next fetch...
    assert_eq!(stack.km.retire(), 3, "two old RSA keys and the EC key");
    assert_eq!(get(stack.port, &old).status, 200, "before the next fetch");
    assert_eq!(
        get(stack.port, &old_ec).status,
        200,
        "before the next fetch"
    );
    assert_eq!(rig.proxy.fetch_count(), 2, "cached keys cost no fetch");
    // ... which a token of an unknown kid causes (at most one a second: polled until it came) ...
    let stranger = stack::stranger_key();
    let fetched = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let r = get(stack.port, &unknown_kid_token(stack, &stranger));
        expect_reply(&r, 401, "unknown_kid", "a stranger's kid");
        (rig.proxy.fetch_count() > 2).then_some(())
    });
    assert!(fetched.is_some(), "an unknown kid never caused a fetch");
    // ... and after which they are refused, while the signer stays.
    let forwarded = stack.echo.request_count();
    expect_reply(
        &get(stack.port, &old),
        401,
        "unknown_kid",
        "retired RSA key",
    );
    expect_reply(
        &get(stack.port, &old_ec),
        401,
        "unknown_kid",
        "retired EC key",
    );
    assert_eq!(get(stack.port, &new).status, 200, "the signer stays");
    assert_eq!(
        stack.echo.request_count(),
        forwarded + 1,
        "a retired-key request was forwarded after the fetch"
    );
    println!(
        "rotation: new key accepted on first request in {:.0} ms (1 fetch); retired keys refused \
         after the next fetch ({} fetches in all)",
        first_latency.as_secs_f64() * 1_000.0,
        rig.proxy.fetch_count()
    );
}

/// Issue 7: a flood of tokens with random unknown kids causes at most the rate-limited number of
/// fetches: with `jwks_unknown_kid_refetch_seconds` = N, at most ceil(duration / N) + 1. Four
/// workers take the flood's connections, so the limit must hold across VMs, not per VM.
#[test]
fn unknown_kid_flood_is_rate_limited() {
    const N: u64 = 1;
    const WORKERS: u32 = 4;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    const SPACING: Duration = Duration::from_millis(60);
    let rig = rig(
        &[
            ("jwks_min_refresh_seconds", 300),
            ("jwks_default_refresh_seconds", 300),
            ("jwks_unknown_kid_refetch_seconds", N),
            ("jwks_fetch_timeout_ms", 1_000),
        ],
        WORKERS,
        Mode::Pass,
    );
    let stack = &rig.stack;
    let good = stack.token("shop-app", "pets:read");
    wait_for_keys(&rig, &good);
    let workers_before = stack.envoy.worker_connections(stack.port);
    let stranger = stranger_key();
    let tokens: Vec<Vec<String>> = (0..THREADS)
        .map(|_| {
            (0..PER_THREAD)
                .map(|_| unknown_kid_token(stack, &stranger))
                .collect()
        })
        .collect();
    let forwarded = stack.echo.request_count();
    let before = rig.proxy.fetch_count();
    let port = stack.port;
    let start = Instant::now();
    let answers: Vec<Vec<Response>> = thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|batch| {
                scope.spawn(move || {
                    batch
                        .iter()
                        .enumerate()
                        .map(|(i, token)| {
                            let at = start + SPACING * i as u32;
                            thread::sleep(at.saturating_duration_since(Instant::now()));
                            get(port, token)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let duration = start.elapsed();
    let fetches = rig.proxy.fetch_count() - before;
    let sent: usize = answers.iter().map(Vec::len).sum();
    let busy_workers = stack
        .envoy
        .worker_connections(stack.port)
        .iter()
        .zip(workers_before.iter())
        .filter(|(after, before)| after > before)
        .count();
    for response in answers.iter().flatten() {
        expect_reply(response, 401, "unknown_kid", "flood");
    }
    let allowed = (duration.as_secs_f64() / N as f64).ceil() as usize + 1;
    println!(
        "flood: {sent} unknown-kid requests over {:.2} s caused {fetches} fetches \
         (bound ceil(duration/{N})+1 = {allowed}); {busy_workers} of {WORKERS} workers took \
         flood connections",
        secs(duration),
    );
    assert!(
        busy_workers >= 2,
        "the flood reached {busy_workers} worker(s)"
    );
    assert_eq!(sent, THREADS * PER_THREAD);
    assert_eq!(
        stack.echo.request_count(),
        forwarded,
        "a flood request was forwarded"
    );
    assert!(fetches >= 1, "the flood never refetched");
    assert!(
        fetches <= allowed,
        "{fetches} fetches, at most {allowed} allowed"
    );
    // Real tokens were never held up by the flood.
    assert_eq!(get(stack.port, &good).status, 200);
}

/// The JWKS error codes the filter logged, with how often (`not fetched: X`, `refused: X`).
/// JWKS fetches the filter counted as ending in anything but new keys (all key managers).
fn fetch_failures(stack: &Stack) -> u64 {
    stack
        .envoy
        .stats()
        .iter()
        .filter(|(name, _)| name.starts_with("wasmcustom.keygate_jwks_fetches."))
        .filter(|(name, _)| !name.ends_with(".outcome.ok"))
        .filter_map(|(_, value)| value.parse::<u64>().ok())
        .sum()
}

fn fetch_error_codes(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut codes = std::collections::BTreeMap::new();
    for line in log.lines() {
        let code = line
            .split_once("not fetched: ")
            .or_else(|| line.split_once("refused: "))
            .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default());
        if let Some(code) = code {
            *codes.entry(code.to_string()).or_insert(0) += 1;
        }
    }
    codes
}

/// Issue 7: Envoy runs one VM per worker; with 4 workers the key manager still sees about one
/// fetch per refresh (the record in shared data elects one fetcher), and every worker that takes
/// connections serves them with the shared keys.
#[test]
fn four_workers_fetch_about_once_per_refresh() {
    const WORKERS: u32 = 4;
    const REFRESH: u64 = 1;
    const WINDOW: Duration = Duration::from_secs(6);
    const THREADS: usize = 8;
    let rig = rig(
        &[
            ("jwks_min_refresh_seconds", REFRESH),
            ("jwks_max_refresh_seconds", REFRESH),
            ("jwks_default_refresh_seconds", REFRESH),
            ("jwks_fetch_timeout_ms", 1_000),
        ],
        WORKERS,
        Mode::Pass,
    );
    let stack = &rig.stack;
    let good = stack.token("shop-app", "pets:read");
    wait_for_keys(&rig, &good);
    let startup_fetches = rig.proxy.fetch_count();
    println!("{WORKERS} workers: {startup_fetches} fetches until the first 200");
    let workers_before = stack.envoy.worker_connections(stack.port);
    let forwarded = stack.echo.request_count();
    let fetches_before = rig.proxy.fetch_count();
    let stat_before = stack.envoy.stat_sum("wasmcustom.keygate_jwks_fetches");
    let start = Instant::now();
    let port = stack.port;
    // Concurrent clients, a new connection per request, for the whole window: connections spread
    // over the workers, and each worker must keep serving while refreshes happen.
    let statuses: Vec<u16> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let good = &good;
                scope.spawn(move || {
                    let mut statuses = Vec::new();
                    while start.elapsed() < WINDOW {
                        statuses.push(get(port, good).status);
                        thread::sleep(Duration::from_millis(40));
                    }
                    statuses
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let window = start.elapsed();
    // The filter counts a fetch when it ends: wait for the ones still in flight (bounded).
    let settled = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let fetches = rig.proxy.fetch_count() - fetches_before;
        let stat = stack.envoy.stat_sum("wasmcustom.keygate_jwks_fetches") - stat_before;
        (stat as usize == fetches).then_some((fetches, stat))
    });
    let (fetches, stat) = settled.unwrap_or_else(|| {
        (
            rig.proxy.fetch_count() - fetches_before,
            stack.envoy.stat_sum("wasmcustom.keygate_jwks_fetches") - stat_before,
        )
    });
    let workers: Vec<u64> = stack
        .envoy
        .worker_connections(stack.port)
        .iter()
        .zip(workers_before.iter().chain(std::iter::repeat(&0)))
        .map(|(after, before)| after - before)
        .collect();
    let refreshes = window.as_secs_f64() / REFRESH as f64;
    let per_refresh = fetches as f64 / refreshes;
    println!(
        "{WORKERS} workers: {fetches} fetches at the proxy ({stat} by the filter) over {:.2} s with \
         refresh {REFRESH} s = {per_refresh:.2} fetches per refresh; {} requests, connections \
         per worker {workers:?}",
        secs(window),
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a real token was refused with {WORKERS} workers: {statuses:?}"
    );
    assert_eq!(stack.echo.request_count() - forwarded, statuses.len());
    assert_eq!(
        workers.len(),
        WORKERS as usize,
        "per-worker stats: {workers:?}"
    );
    assert!(
        workers.iter().filter(|n| **n > 0).count() >= 2,
        "connections reached fewer than 2 workers: {workers:?}"
    );
    // At most one fetch per refresh interval across all workers (plus one in flight at the
    // start): a load that delays timers only lowers the count, workers fetching on their own
    // would raise it about fourfold. And the refreshes did happen.
    let intervals = (window.as_secs_f64() / REFRESH as f64).ceil() as usize;
    assert!(
        fetches <= intervals + 1,
        "{fetches} fetches in {intervals} refresh intervals ({per_refresh:.2} per refresh): \
         workers fetch on their own"
    );
    assert!(fetches >= 1, "no refresh in {:.2} s", secs(window));
    assert_eq!(stat as usize, fetches, "filter and proxy disagree");

    // Rotation with every worker asked at once: the first requests of the new key, spread over
    // the workers, all pass, and the key manager sees one refetch (plus at most one refresh).
    // Counted from before the rotation: a scheduled refresh may pick the new key up first.
    let before = rig.proxy.fetch_count();
    let new_kid = stack.km.rotate();
    let new = stack.token("shop-app", "pets:read");
    assert_eq!(support::decode_jwt_header(&new)["kid"], json!(new_kid));
    let first: Vec<u16> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let new = &new;
                scope.spawn(move || get(port, new).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rotation_fetches = rig.proxy.fetch_count() - before;
    println!(
        "{WORKERS} workers: {THREADS} concurrent first requests of a rotated key -> {first:?}, \
         {rotation_fetches} fetch(es)"
    );
    assert!(first.iter().all(|s| *s == 200), "{first:?}");
    assert!(
        (1..=2).contains(&rotation_fetches),
        "{rotation_fetches} fetches for one rotation"
    );
}

/// Issue 7: stale-if-error is bounded. With the key manager down, the last good keys are served
/// for `jwks_stale_seconds` past their refresh time, then requests get 503
/// `key_manager_unavailable` with `Retry-After` (never forwarded); once it is back, 200 again.
#[test]
fn stale_keys_expire_after_the_bound_then_recover() {
    const REFRESH: u64 = 1;
    const STALE: u64 = 4;
    let rig = rig(
        &[
            ("jwks_min_refresh_seconds", REFRESH),
            ("jwks_max_refresh_seconds", REFRESH),
            ("jwks_default_refresh_seconds", REFRESH),
            ("jwks_stale_seconds", STALE),
            ("jwks_fetch_timeout_ms", 500),
            ("jwks_retry_initial_seconds", 1),
            ("jwks_retry_max_seconds", 1),
            ("jwks_unknown_kid_refetch_seconds", 1),
            ("request_wait_ms", 1_000),
        ],
        1,
        Mode::Pass,
    );
    let stack = &rig.stack;
    let good = stack.token("shop-app", "pets:read");
    wait_for_keys(&rig, &good);

    let down = Instant::now();
    rig.proxy.set_mode(Mode::Down);
    let forwarded = stack.echo.request_count();
    // A refresh was due and failed (a fetch reached the proxy and was dropped): the keys are past
    // their refresh time, and still served (stale-if-error).
    let refresh_failed = poll(Duration::from_secs(30), Duration::from_millis(20), || {
        (rig.proxy.dropped_count() >= 1).then_some(())
    });
    assert!(refresh_failed.is_some(), "no refresh was tried while down");
    let stale = get(stack.port, &good);
    assert_eq!(stale.status, 200, "stale keys not served: {}", stale.body);
    let mut served_stale = 1;
    // ... until the bound, then 503 (polled: the bound is the filter's clock, not the test's).
    let unavailable = poll(
        Duration::from_secs(REFRESH + STALE + 30),
        Duration::from_millis(100),
        || {
            let response = get(stack.port, &good);
            if response.status == 200 {
                served_stale += 1;
                return None;
            }
            Some(response)
        },
    )
    .expect("stale keys were served past the bound");
    let expired_after = down.elapsed();
    expect_reply(
        &unavailable,
        503,
        "key_manager_unavailable",
        "stale beyond the bound",
    );
    let seconds = retry_after(&unavailable);
    assert!((1..=3).contains(&seconds), "Retry-After {seconds}");
    assert_eq!(
        stack.echo.request_count() - forwarded,
        served_stale,
        "only the 200s were forwarded"
    );
    let tried_unavailable = 5;
    for _ in 0..tried_unavailable {
        expect_reply(
            &get(stack.port, &good),
            503,
            "key_manager_unavailable",
            "still down",
        );
    }
    assert_eq!(
        stack.echo.request_count() - forwarded,
        served_stale,
        "a 503 request was forwarded"
    );
    let dropped = rig.proxy.dropped_count();
    assert!(
        stack.envoy.log().contains("not fetched: jwks_unreachable"),
        "a reset connection is reported as unreachable"
    );

    let up = Instant::now();
    rig.proxy.set_mode(Mode::Pass);
    let back = poll(Duration::from_secs(30), Duration::from_millis(50), || {
        (get(stack.port, &good).status == 200).then(Instant::now)
    })
    .expect("no 200 after the key manager came back");
    println!(
        "stale bound: refresh {REFRESH} s + stale {STALE} s; down -> {served_stale} requests \
         served stale, 503 after {:.2} s ({dropped} fetches dropped); back up -> 200 after {:.2} s",
        secs(expired_after),
        secs(back - up)
    );
    assert!(dropped >= 1, "no fetch reached the proxy while down");
}

/// Issue 10: the JWKS fetch belongs to the key manager, not to the request that started it. A
/// client whose token names the rotated key starts the unknown-kid refetch and resets its stream
/// while the (slowed) key manager is still answering; a second client with the rotated key, parked
/// on the same fetch, and a third after it both pass, with exactly that one fetch.
#[test]
fn a_client_reset_during_its_refetch_does_not_keep_the_rotated_key_out() {
    use std::io::Write;
    use std::net::TcpStream;

    let rig = rig(
        &[
            ("jwks_fetch_timeout_ms", 4_000),
            ("request_wait_ms", 6_000),
            ("jwks_unknown_kid_refetch_seconds", 30),
        ],
        1,
        Mode::Pass,
    );
    let stack = &rig.stack;
    wait_for_keys(&rig, &stack.token("shop-app", "pets:read"));
    stack.km.rotate();
    let rotated = stack.token("shop-app", "pets:read");
    rig.proxy
        .set_mode(Mode::Delay(Duration::from_millis(1_200)));
    let before = rig.proxy.fetch_count();

    // The first client sends its request, then resets before the fetch can have answered.
    let mut first = TcpStream::connect(("127.0.0.1", stack.port)).unwrap();
    write!(
        first,
        "GET {PETS} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {rotated}\r\n\r\n"
    )
    .unwrap();
    first.flush().unwrap();
    assert!(
        rig.proxy
            .wait_for_fetches(before + 1, Duration::from_secs(3)),
        "the rotated key started no refetch"
    );
    thread::sleep(Duration::from_millis(200));
    let _ = first.shutdown(std::net::Shutdown::Both);
    drop(first);

    // The second client arrives while that fetch is still in flight and waits on it.
    let sent = Instant::now();
    let second = get(stack.port, &rotated);
    let waited = sent.elapsed();
    assert_eq!(
        second.status, 200,
        "parked on the reset client's fetch: {}",
        second.body
    );
    rig.proxy.set_mode(Mode::Pass);
    let third = get(stack.port, &rotated);
    assert_eq!(third.status, 200, "after the refetch: {}", third.body);
    assert_eq!(
        rig.proxy.fetch_count(),
        before + 1,
        "one refetch served every client"
    );
    println!(
        "reset during refetch: next client with the rotated key answered 200 after {:.0} ms, 1 fetch",
        waited.as_secs_f64() * 1_000.0
    );
}
