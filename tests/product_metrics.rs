//! Product test: the filter's metrics as Prometheus scrapes them from Envoy's admin
//! `/stats/prometheus`, after known traffic through the built filter in a real Envoy with tokens
//! from the real key manager. Labels come from the tag extraction `keygate generate` writes into
//! the bootstrap; the counts are exact.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use support::stack::{Options, Stack};

/// Label set → value.
type Family = BTreeMap<Vec<(String, String)>, f64>;

/// The samples of the Prometheus text format, by metric name (`name{labels} value`; `#` lines
/// skipped). Label values are unescaped (`\\`, `\"`, `\n`).
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, labels_of(rest.strip_suffix('}').expect("}"))),
            None => (series, Vec::new()),
        };
        out.entry(name.to_string())
            .or_default()
            .insert(labels, value);
    }
    out
}

fn labels_of(mut text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    labels.sort();
    labels
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

/// The token with its signature replaced by one of the right length that verifies nothing.
fn forged(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let length = URL_SAFE_NO_PAD.decode(signature).unwrap().len();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(vec![7u8; length]))
}

#[test]
fn known_traffic_shows_up_at_stats_prometheus_with_labels_and_exact_counts() {
    // One worker: the verified-token cache is per worker, so hits and misses are exact with one.
    let stack = Stack::start(Options::default());
    let reader = stack.token("shop-app", "pets:read");
    let other = stack.token("other-app", "pets:read");
    let blocked = stack.token("blocked-app", "pets:read");
    let bad = forged(&reader);

    // Known traffic; (count, path, token, status) and what each is counted as.
    let traffic: [(usize, &str, Option<&str>, u16); 7] = [
        (5, "/pets/v1/pets", Some(&reader), 200),
        (3, "/pets/v1/pets", None, 401),
        (3, "/nothing/here", None, 404),
        (3, "/pets/v1/pets", Some(&bad), 401),
        (2, "/pets/v1/pets", Some(&other), 403),
        (2, "/pets/v1/pets", Some(&blocked), 403),
        (2, "/pets/v1/health", None, 200),
    ];
    let mut sent = 0;
    for (count, path, token, status) in traffic {
        for _ in 0..count {
            let response = stack.get(path, token);
            assert_eq!(response.status, status, "{path}: {}", response.body);
            sent += 1;
        }
    }
    let codes = |token: &str| {
        stack.get("/pets/v1/pets", Some(token)).json()["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // What the filter calls the signature failure and the two 403s (asked once more each, so
    // they count too).
    let (bad_code, other_code, blocked_code) = (codes(&bad), codes(&other), codes(&blocked));
    sent += 3;
    assert_eq!(
        (other_code.as_str(), blocked_code.as_str()),
        ("not_subscribed", "subscription_blocked")
    );

    // Histograms reach the admin output at Envoy's stats flush (every 5 s): wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let scraped = loop {
        let text = stack.envoy.prometheus();
        let families = parse(&text);
        let timed = families
            .get("keygate_filter_time_us_count")
            .and_then(|f| f.values().next().copied())
            .unwrap_or(0.0);
        if timed as usize >= sent || Instant::now() >= deadline {
            break (text, families);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (text, families) = scraped;
    let family = |name: &str| -> Family {
        families
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} at /stats/prometheus:\n{text}"))
    };

    // One metric name, labeled by outcome, reason, key manager and API; nothing else.
    let requests = family("keygate_requests");
    let demo_pets = |outcome: &str, reason: Option<&str>| {
        let mut pairs = vec![
            ("outcome", outcome),
            ("key_manager", "demo"),
            ("api", "pets"),
        ];
        if let Some(reason) = reason {
            pairs.push(("reason", reason));
        }
        set(&pairs)
    };
    let expected: Family = [
        (demo_pets("allowed", None), 5.0),
        (
            set(&[
                ("outcome", "denied"),
                ("reason", "missing_token"),
                ("api", "pets"),
            ]),
            3.0,
        ),
        (set(&[("outcome", "denied"), ("reason", "no_api")]), 3.0),
        (demo_pets("denied", Some(&bad_code)), 4.0),
        (demo_pets("denied", Some("not_subscribed")), 3.0),
        (demo_pets("denied", Some("subscription_blocked")), 3.0),
        (set(&[("outcome", "public"), ("api", "pets")]), 2.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(requests, expected, "keygate_requests:\n{text}");
    assert_eq!(bad_code, "signature_invalid");
    assert!(
        !families
            .keys()
            .any(|name| name.starts_with("keygate_denied")),
        "no metric name per reason"
    );

    // The filter's time: one sample per request it handled.
    let count = family("keygate_filter_time_us_count");
    assert_eq!(count.values().copied().collect::<Vec<_>>(), [sent as f64]);
    let buckets = family("keygate_filter_time_us_bucket");
    let infinite = buckets
        .get(&set(&[("le", "+Inf")]))
        .copied()
        .expect("+Inf bucket");
    assert_eq!(infinite, sent as f64);
    assert!(
        buckets.contains_key(&set(&[("le", "1000")])),
        "microsecond buckets from the bootstrap: {buckets:?}"
    );
    let sum = family("keygate_filter_time_us_sum");
    let total_us = sum.values().next().copied().unwrap();
    assert!(total_us > 0.0, "the filter's time adds up to something");

    // The verified-token cache: each distinct token is verified once (a miss), its repeats are
    // hits; requests without a token never look.
    let cache = family("keygate_token_cache");
    let distinct = 4.0; // reader, bad, other, blocked
    let with_token = 5.0 + 4.0 + 3.0 + 3.0;
    assert_eq!(
        cache,
        [
            (set(&[("result", "miss")]), distinct),
            (set(&[("result", "hit")]), with_token - distinct),
        ]
        .into_iter()
        .collect::<Family>(),
        "{text}"
    );

    // JWKS: the startup fetch, by key manager and outcome (the forged token names a known kid).
    let jwks = family("keygate_jwks_fetches");
    assert_eq!(
        jwks,
        [(set(&[("key_manager", "demo"), ("outcome", "ok")]), 1.0)]
            .into_iter()
            .collect::<Family>(),
        "{text}"
    );

    // Configuration: every VM of the filter runs `on_configure` once. Envoy 1.40 runs it on two
    // VMs of the main thread (the one it checks the module with, and the main thread's own) and
    // on one per worker: 1 + 2 here (3 workers gave 5). No refusal.
    let configurations = family("keygate_configurations");
    assert_eq!(
        configurations,
        [(set(&[("outcome", "loaded")]), 3.0)]
            .into_iter()
            .collect::<Family>(),
        "{text}"
    );
    let loaded = 3;

    // The shipped dashboard's queries find these series (the parking-bound counter exists
    // only once a request was refused by it, the introspection metrics once an opaque token came).
    let dashboard =
        std::fs::read_to_string(support::project_root().join("dashboards/keygate.json")).unwrap();
    let mut rest = dashboard.as_str();
    while let Some(at) = rest.find("keygate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let on_first_use = [
            "keygate_parked_overflow",
            "keygate_introspections",
            "keygate_introspection_cache",
        ];
        if !on_first_use.contains(&name) && !name.is_empty() {
            assert!(
                families.contains_key(name),
                "the dashboard queries {name}, which /stats/prometheus does not have"
            );
        }
        rest = &tail[end..];
    }

    // Cardinality: no client id, application or subject in any keygate label.
    for (name, family) in families.iter().filter(|(n, _)| n.starts_with("keygate")) {
        for labels in family.keys() {
            for (label, value) in labels {
                assert!(
                    ![
                        "shop-app",
                        "other-app",
                        "blocked-app",
                        "shop",
                        "other",
                        "blocked"
                    ]
                    .contains(&value.as_str()),
                    "{name}: {label}={value}"
                );
            }
        }
    }
    println!(
        "product_metrics: {sent} requests; keygate_filter_time_us count {sent}, mean {:.0} us; \
         cache {} hits / {} misses; {} configuration loads",
        total_us / sent as f64,
        with_token - distinct,
        distinct,
        loaded
    );
}

/// The value of `keygate_configurations{outcome=…}` at `/stats/prometheus` (0 when absent).
fn configurations(stack: &Stack, outcome: &str) -> f64 {
    parse(&stack.envoy.prometheus())
        .get("keygate_configurations")
        .and_then(|family| family.get(&set(&[("outcome", outcome)])).copied())
        .unwrap_or(0.0)
}

/// Polls `probe` every 100 ms for at most `limit`.
fn wait_until(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn configuration_loads_and_refusals_are_counted_as_envoy_delivers_them() {
    let stack = Stack::start(Options::default());
    let reader = stack.token("shop-app", "pets:read");
    assert_eq!(stack.get("/pets/v1/pets", Some(&reader)).status, 200);
    let at_start = configurations(&stack, "loaded");
    assert_eq!(at_start, 3.0);
    let reloads = |stack: &Stack| {
        stack
            .envoy
            .stat("extension_config_discovery.http_filter.keygate.config_reload")
            .unwrap_or(0)
    };
    let rejected = |stack: &Stack| {
        stack
            .envoy
            .stat("extension_config_discovery.http_filter.keygate.update_rejected")
            .unwrap_or(0)
    };
    let reloads_before = reloads(&stack);

    // A new declaration (one more application) through `keygate generate`: loaded again.
    let live = stack
        .dir
        .join("out")
        .join("live")
        .join("keygate-filter.yaml");
    let original = std::fs::read_to_string(&live).unwrap();
    let config: serde_json::Value = serde_saphyr::from_str(&original).unwrap();
    let value = config["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let mut plugin: serde_json::Value = serde_json::from_str(&value).unwrap();
    plugin["applications"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "late", "client_ids": [], "subscriptions": []}));
    let replace = |plugin: &serde_json::Value| {
        let mut next = config.clone();
        next["resources"][0]["typed_config"]["config"]["configuration"]["value"] =
            serde_json::Value::String(plugin.to_string());
        let staged = live.with_extension("staged");
        std::fs::write(&staged, serde_json::to_vec(&next).unwrap()).unwrap();
        std::fs::rename(&staged, &live).unwrap();
    };
    replace(&plugin);
    assert!(
        wait_until(Duration::from_secs(10), || reloads(&stack) > reloads_before),
        "Envoy did not reload the filter config"
    );
    // Each delivered config is loaded by the same VMs as the first one (3 with one worker).
    assert!(
        wait_until(Duration::from_secs(5), || {
            configurations(&stack, "loaded") == 2.0 * at_start
        }),
        "loads after the reload: {} (expected {})",
        configurations(&stack, "loaded"),
        2.0 * at_start
    );
    let after_change = configurations(&stack, "loaded");
    assert_eq!(configurations(&stack, "refused"), 0.0);
    assert_eq!(stack.get("/pets/v1/pets", Some(&reader)).status, 200);

    // A config the filter's on_configure refuses (written by hand: `generate` would refuse it
    // first) is counted as refused, and the running configuration keeps serving.
    let rejected_before = rejected(&stack);
    plugin["environment"] = serde_json::json!("");
    replace(&plugin);
    assert!(
        wait_until(Duration::from_secs(10), || configurations(
            &stack, "refused"
        ) >= 1.0),
        "no refusal counted; Envoy log:\n{}",
        stack.envoy.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || rejected(&stack)
            > rejected_before),
        "Envoy did not reject the update"
    );
    // Envoy checks a new config on its main thread first; refused there, it goes no further.
    assert_eq!(configurations(&stack, "refused"), 1.0);
    assert_eq!(configurations(&stack, "loaded"), after_change);
    assert_eq!(stack.get("/pets/v1/pets", Some(&reader)).status, 200);
    println!(
        "product_metrics: configurations loaded {at_start} at start, {after_change} after one \
         change, refused {} for one refused config",
        configurations(&stack, "refused")
    );
}
