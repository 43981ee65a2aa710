//! Product tests of live configuration (issue 13): a real Envoy started from the generated
//! `envoy.yaml`, the real key manager behind a counting proxy on Envoy's JWKS cluster, and
//! `keygate generate` run again on the same output directory while clients keep sending requests
//! on 127.0.0.1. Every response is classified; the numbers are printed
//! (`cargo test --test product_live -- --nocapture`).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use support::faultproxy::{FaultProxy, Mode};
use support::stack::{Options, Stack};
use support::{keygate_bin, try_http, wasm_path, KeyManager, Response, TempDir};

const PETS: &str = "/pets/v1/pets";
/// The demo key manager's clients; the load cycles through all of them.
const CLIENTS: [&str; 4] = ["shop-app", "other-app", "orphan-app", "blocked-app"];
/// Client threads of the load: two open a connection per request, one keeps its connection.
const THREADS: usize = 3;
/// The contract: a new declaration is in effect within this long.
const TAKES_EFFECT_WITHIN: Duration = Duration::from_secs(5);
/// Rounds in a row in which every changed client sees its new outcome: "in effect".
const STABLE_ROUNDS: usize = 10;
/// After a switch is in effect, how long the load keeps running before the next one; requests
/// sent after it must all see the new configuration (every worker has it by then).
const SETTLE: Duration = Duration::from_millis(1_000);
/// The whole load stops by itself after this long, whatever the test does.
const LOAD_LIMIT: Duration = Duration::from_secs(180);

/// A stack whose JWKS fetches go through a proxy that counts them. Envoy drops before the proxy.
struct Rig {
    stack: Stack,
    proxy: FaultProxy,
}

fn rig(workers: u32, settings: &str) -> Rig {
    let dir = TempDir::new("live");
    let km = KeyManager::start();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], km.port())))
        .expect("start the JWKS proxy");
    proxy.set_mode(Mode::Pass);
    let options = Options {
        workers,
        jwks_port: Some(proxy.port()),
        settings: settings.to_string(),
        ..Options::default()
    };
    let stack = Stack::start_with(options, km, dir);
    Rig { stack, proxy }
}

/// What a client saw, in one word: `200 <application>` (the identity header the upstream got)
/// or `<status> <code>`.
fn outcome(response: &Response) -> String {
    let json = response.json();
    if response.status == 200 {
        let app = json["headers"]["x-keygate-application"]
            .as_str()
            .unwrap_or("(none)");
        format!("200 {app}")
    } else {
        let code = json["code"].as_str().unwrap_or("(no code)");
        format!("{} {code}", response.status)
    }
}

/// Writes the declaration and runs `keygate generate` on the stack's output directory.
fn regenerate(dir: &Path, declaration: &str) -> Output {
    let input = dir.join("keygate.yaml");
    std::fs::write(&input, declaration).expect("write keygate.yaml");
    Command::new(keygate_bin())
        .arg("generate")
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--wasm")
        .arg(wasm_path())
        .output()
        .expect("run keygate generate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn replace(declaration: &str, from: &str, to: &str) -> String {
    assert!(
        declaration.contains(from),
        "{from:?} not in the declaration"
    );
    declaration.replacen(from, to, 1)
}

/// One response (or failure) of the load.
struct Sample {
    client: usize,
    sent: Instant,
    /// `Err` for a connection error, reset or unparsable answer.
    result: Result<String, String>,
}

/// Clients sending requests continuously until stopped (or [`LOAD_LIMIT`]).
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, tokens: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..THREADS)
            .map(|n| {
                let stop = Arc::clone(&stop);
                let samples = Arc::clone(&samples);
                let tokens = tokens.clone();
                thread::spawn(move || {
                    let mut keep_alive = (n == 0).then(KeepAlive::default);
                    let mut i = n;
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < LOAD_LIMIT {
                        let client = i % CLIENTS.len();
                        i += 1;
                        let auth = format!("Bearer {}", tokens[client]);
                        let sent = Instant::now();
                        let result = match &mut keep_alive {
                            Some(conn) => conn.get(port, PETS, &auth),
                            None => try_http(port, "GET", PETS, &[("authorization", &auth)], b"")
                                .map_err(|e| e.to_string()),
                        };
                        let result = result.map(|r| outcome(&r));
                        let sample = Sample {
                            client,
                            sent,
                            result,
                        };
                        samples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(sample);
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("load thread");
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One HTTP/1.1 connection reused for request after request (reopened only when the server
/// said `connection: close`), so streams start on a connection that outlives a switch.
#[derive(Default)]
struct KeepAlive {
    stream: Option<TcpStream>,
}

impl KeepAlive {
    fn get(&mut self, port: u16, path: &str, authorization: &str) -> Result<Response, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let result = self.exchange(port, path, authorization);
        match &result {
            Ok(response) if response.header("connection") != Some("close") => {}
            _ => self.stream = None,
        }
        result
    }

    fn exchange(&mut self, port: u16, path: &str, authorization: &str) -> Result<Response, String> {
        let stream = self.stream.as_mut().ok_or("no connection")?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: {authorization}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("response without content-length")?;
                if raw.len() >= end + 4 + length {
                    raw.truncate(end + 4 + length);
                    return support::http::parse_response(&raw).map_err(|e| e.to_string());
                }
            }
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before the whole response".into());
            }
            raw.extend_from_slice(&buf[..n]);
        }
    }
}

/// A declaration change and the clients whose outcome it changes (client index, new outcome).
struct Change {
    name: &'static str,
    declaration: String,
    new: Vec<(usize, &'static str)>,
}

/// What happened around one applied change.
struct Window {
    start: Instant,
    end: Instant,
    before: [String; 4],
    after: [String; 4],
}

fn ecds_stat(rig: &Rig, name: &str) -> u64 {
    rig.stack
        .envoy
        .stat(&format!(
            "extension_config_discovery.http_filter.keygate.{name}"
        ))
        .unwrap_or(0)
}

#[test]
fn declaration_changes_apply_under_load_without_a_failed_request() {
    let rig = rig(2, "");
    let stack = &rig.stack;
    let dir = stack.dir.path().to_path_buf();
    let tokens: Vec<String> = CLIENTS
        .iter()
        .map(|c| stack.token(c, "pets:read"))
        .collect();
    let get = |client: usize| {
        try_http(
            stack.port,
            "GET",
            PETS,
            &[("authorization", &format!("Bearer {}", tokens[client]))],
            b"",
        )
        .map(|r| outcome(&r))
        .unwrap_or_else(|e| format!("error {e}"))
    };
    // Keys loaded, every client's starting outcome as the stack's declaration says.
    let loaded = (0..150).any(|_| {
        thread::sleep(Duration::from_millis(100));
        get(0) == "200 shop"
    });
    assert!(loaded, "keys never loaded:\n{}", stack.envoy.log());
    let mut state: [String; 4] = [
        "200 shop".into(),
        "403 not_subscribed".into(),
        "403 application_not_found".into(),
        "403 subscription_blocked".into(),
    ];
    for (client, want) in state.iter().enumerate() {
        assert_eq!(&get(client), want, "{}", CLIENTS[client]);
    }

    let base = std::fs::read_to_string(dir.join("keygate.yaml")).unwrap();
    let shop_clients = "      - {key_manager: demo, client_id: shop-app}\n";
    let with_orphan = replace(
        &base,
        shop_clients,
        &format!("{shop_clients}      - {{key_manager: demo, client_id: orphan-app}}\n"),
    );
    let shop_pets = "      - {api: pets}\n      - {api: orders, state: production_only_blocked}";
    let blocked = replace(
        &with_orphan,
        shop_pets,
        "      - {api: pets, state: blocked}\n      - {api: orders, state: production_only_blocked}",
    );
    let partner = format!(
        "{base}  - name: partner\n    client_ids:\n      - {{key_manager: demo, client_id: orphan-app}}\n    subscriptions:\n      - {{api: pets}}\n"
    );
    let other_pets = replace(
        &partner,
        "      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: orders}\n",
        "      - {key_manager: demo, client_id: other-app}\n    subscriptions:\n      - {api: orders}\n      - {api: pets}\n",
    );
    let changes = vec![
        Change {
            name: "add a client id to an application",
            declaration: with_orphan.clone(),
            new: vec![(2, "200 shop")],
        },
        Change {
            name: "block a subscription",
            declaration: blocked,
            new: vec![
                (0, "403 subscription_blocked"),
                (2, "403 subscription_blocked"),
            ],
        },
        Change {
            name: "unblock it",
            declaration: with_orphan,
            new: vec![(0, "200 shop"), (2, "200 shop")],
        },
        Change {
            name: "move a client id to a new application",
            declaration: partner,
            new: vec![(2, "200 partner")],
        },
        Change {
            name: "add a subscription",
            declaration: other_pets.clone(),
            new: vec![(1, "200 other")],
        },
    ];

    let pid = stack.envoy.pid();
    let fetches_before = rig.proxy.fetch_count();
    let reloads_before = ecds_stat(&rig, "config_reload");
    let load = Load::start(stack.port, tokens.clone());
    thread::sleep(SETTLE);
    let mut windows = Vec::new();
    let mut effects = Vec::new();
    for change in &changes {
        let before = state.clone();
        for (client, new) in &change.new {
            state[*client] = (*new).to_string();
        }
        let start = Instant::now();
        let result = regenerate(&dir, &change.declaration);
        assert_eq!(
            result.status.code(),
            Some(0),
            "{}: generate:\n{}{}",
            change.name,
            text(&result.stdout),
            text(&result.stderr)
        );
        assert!(
            !text(&result.stderr).contains("restart required"),
            "{}: {}",
            change.name,
            text(&result.stderr)
        );
        let written = start.elapsed();
        // In effect: every changed client sees its new outcome, STABLE_ROUNDS rounds in a row.
        let mut streak = 0;
        let mut streak_start = None;
        while streak < STABLE_ROUNDS && start.elapsed() < TAKES_EFFECT_WITHIN * 2 {
            let round = Instant::now();
            if change.new.iter().all(|(c, new)| get(*c) == *new) {
                streak += 1;
                streak_start.get_or_insert(round);
            } else {
                streak = 0;
                streak_start = None;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let effect = streak_start
            .filter(|_| streak == STABLE_ROUNDS)
            .map(|at| at - start);
        let effect = effect.unwrap_or_else(|| {
            panic!(
                "{}: not in effect after {:?}:\n{}",
                change.name,
                start.elapsed(),
                stack.envoy.log()
            )
        });
        assert!(
            effect < TAKES_EFFECT_WITHIN,
            "{}: took {effect:?}",
            change.name
        );
        thread::sleep(SETTLE);
        windows.push(Window {
            start,
            end: Instant::now() - SETTLE,
            before,
            after: state.clone(),
        });
        effects.push((change.name, written, effect));
    }

    // A refused declaration (a subscription to an API that does not exist) changes nothing.
    let refused = replace(
        &other_pets,
        "      - {api: orders}\n      - {api: pets}\n",
        "      - {api: orders}\n      - {api: pets}\n      - {api: no-such-api}\n",
    );
    let live_file = dir.join("out/live/keygate-filter.yaml");
    let live_before = std::fs::read(&live_file).unwrap();
    let reloads_applied = ecds_stat(&rig, "config_reload");
    let refused_at = Instant::now();
    let result = regenerate(&dir, &refused);
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "refused: {stderr}");
    assert!(stderr.contains("no-such-api"), "{stderr}");
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert_eq!(std::fs::read(&live_file).unwrap(), live_before);
    thread::sleep(SETTLE * 2);
    for (client, want) in state.iter().enumerate() {
        assert_eq!(&get(client), want, "after the refusal: {}", CLIENTS[client]);
    }
    assert_eq!(
        ecds_stat(&rig, "config_reload"),
        reloads_applied,
        "no reload for a refused declaration"
    );
    let samples = load.stop();

    // Every response: during a switch the old or the new outcome of its client, otherwise the
    // outcome of the configuration in force.
    let initial: [String; 4] = windows[0].before.clone();
    let mut failures = Vec::new();
    let mut during = vec![0usize; windows.len()];
    let mut during_refusal = 0usize;
    for sample in &samples {
        let at = sample.sent;
        let window = windows.iter().position(|w| at >= w.start && at <= w.end);
        let allowed: Vec<&String> = match window {
            Some(i) => {
                during[i] += 1;
                vec![
                    &windows[i].before[sample.client],
                    &windows[i].after[sample.client],
                ]
            }
            None => {
                let in_force = windows
                    .iter()
                    .rev()
                    .find(|w| at > w.end)
                    .map_or(&initial, |w| &w.after);
                if at >= refused_at {
                    during_refusal += 1;
                }
                vec![&in_force[sample.client]]
            }
        };
        match &sample.result {
            Ok(seen) if allowed.contains(&seen) => {}
            Ok(seen) => failures.push(format!(
                "{} got {seen}, expected one of {allowed:?}",
                CLIENTS[sample.client]
            )),
            Err(err) => failures.push(format!("{}: {err}", CLIENTS[sample.client])),
        }
    }
    let fetches_after = rig.proxy.fetch_count();
    let reloads = ecds_stat(&rig, "config_reload") - reloads_before;
    // Each replaced configuration is released once its streams ended: at least one root context
    // per worker per change says so (none keeps ticking and fetching behind the new one).
    let retired = |envoy: &support::Envoy| envoy.log().matches("configuration retired").count();
    let want_retired = changes.len() * 2;
    let all_retired = (0..100).any(|_| {
        thread::sleep(Duration::from_millis(50));
        retired(&stack.envoy) >= want_retired
    });

    eprintln!(
        "live configuration: {} changes applied under load ({THREADS} client threads, 2 Envoy \
         workers), {} responses in all, {} failures",
        changes.len(),
        samples.len(),
        failures.len()
    );
    for (i, (name, written, effect)) in effects.iter().enumerate() {
        eprintln!(
            "  {name}: generate {:.0} ms, in effect after {:.0} ms, {} requests during the switch",
            written.as_secs_f64() * 1e3,
            effect.as_secs_f64() * 1e3,
            during[i]
        );
    }
    eprintln!(
        "  refused declaration: exit 1, nothing written, {during_refusal} requests served by the \
         running config meanwhile"
    );
    eprintln!(
        "  JWKS fetches at the key manager during the changes: {}; ECDS reloads: {reloads}; \
         rejected: {}; old configurations retired: {} root contexts",
        fetches_after - fetches_before,
        ecds_stat(&rig, "update_rejected"),
        retired(&stack.envoy)
    );
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(
        during.iter().all(|n| *n > 0),
        "load ran during every switch: {during:?}"
    );
    assert_eq!(
        fetches_after, fetches_before,
        "applications-only changes fetched the JWKS again"
    );
    assert_eq!(reloads, changes.len() as u64, "one ECDS reload per change");
    assert_eq!(ecds_stat(&rig, "update_rejected"), 0);
    assert_eq!(stack.envoy.pid(), pid, "no restart");
    assert!(
        all_retired,
        "{} of {want_retired} replaced root contexts retired",
        retired(&stack.envoy)
    );
}

/// A request parked in the filter (waiting for a JWKS refetch) when a new configuration arrives
/// finishes under the configuration it started with; the next request gets the new one.
#[test]
fn a_request_in_flight_finishes_under_the_config_it_started_with() {
    let rig = rig(1, "  request_wait_ms: 8000\n  jwks_fetch_timeout_ms: 6000");
    let stack = &rig.stack;
    let dir = stack.dir.path().to_path_buf();
    let first = stack.token("shop-app", "pets:read");
    let loaded = (0..150).any(|_| {
        thread::sleep(Duration::from_millis(100));
        try_http(
            stack.port,
            "GET",
            PETS,
            &[("authorization", &format!("Bearer {first}"))],
            b"",
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(loaded, "keys never loaded:\n{}", stack.envoy.log());

    // A token of a new signing key: the filter parks it and refetches, slowly.
    stack.km.rotate();
    let rotated = stack.token("shop-app", "pets:read");
    rig.proxy
        .set_mode(Mode::Delay(Duration::from_millis(3_000)));
    let fetches = rig.proxy.fetch_count();
    let port = stack.port;
    let token = rotated.clone();
    let in_flight = thread::spawn(move || {
        try_http(
            port,
            "GET",
            PETS,
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
    });
    assert!(
        rig.proxy
            .wait_for_fetches(fetches + 1, Duration::from_secs(5)),
        "the rotated key started no refetch"
    );

    // Meanwhile the application's subscription is blocked.
    let reloads = ecds_stat(&rig, "config_reload");
    let declaration = std::fs::read_to_string(dir.join("keygate.yaml")).unwrap();
    let blocked = replace(
        &declaration,
        "      - {api: pets}\n      - {api: orders, state: production_only_blocked}",
        "      - {api: pets, state: blocked}\n      - {api: orders, state: production_only_blocked}",
    );
    let result = regenerate(&dir, &blocked);
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
    let reloaded = (0..100).any(|_| {
        thread::sleep(Duration::from_millis(20));
        ecds_stat(&rig, "config_reload") > reloads
    });
    assert!(reloaded, "the new config was not loaded");
    assert!(
        !in_flight.is_finished(),
        "the parked request ended before the switch; the test proves nothing"
    );

    let response = in_flight
        .join()
        .unwrap()
        .expect("the parked request got an answer");
    assert_eq!(
        outcome(&response),
        "200 shop",
        "in flight across the switch: {}",
        response.body
    );
    rig.proxy.set_mode(Mode::Pass);
    let after = try_http(
        stack.port,
        "GET",
        PETS,
        &[("authorization", &format!("Bearer {rotated}"))],
        b"",
    )
    .unwrap();
    assert_eq!(
        outcome(&after),
        "403 subscription_blocked",
        "{}",
        after.body
    );
    assert_eq!(
        rig.proxy.fetch_count(),
        fetches + 1,
        "the new config adopted the refetched keys"
    );
    eprintln!(
        "in flight: a request parked on a 3 s JWKS refetch across a config switch answered 200 \
         (old config); the next one 403 subscription_blocked (new config); 1 fetch"
    );
}
