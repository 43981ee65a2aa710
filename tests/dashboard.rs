//! The shipped Grafana dashboard (`dashboards/keygate.json`) queries only metrics the filter
//! defines, with labels those metrics carry. (`tests/product_metrics.rs` checks that the metrics
//! show up at a real Envoy's `/stats/prometheus`.)
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;

use keygate::worker::counters;
use keygate::worker::metrics;
use serde_json::Value;

fn dashboard() -> Value {
    let path = support::project_root().join("dashboards/keygate.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect()
}

/// Identifiers of a PromQL expression starting with `keygate_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("keygate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Label names in `{label="…", label!="…"}` selectors and in `by (…)` / `without (…)` clauses.
fn label_names(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for (open, close) in [("{", "}"), ("by (", ")"), ("without (", ")")] {
        let mut rest = expr;
        while let Some(at) = rest.find(open) {
            let inner = &rest[at + open.len()..];
            let end = inner.find(close).expect("closed");
            for item in inner[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    labels.push(name);
                }
            }
            rest = &inner[end..];
        }
    }
    labels
}

/// The metric a name in a query stands for (histograms are queried through their series).
fn base(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if base == metrics::FILTER_TIME_US {
                return base;
            }
        }
    }
    name
}

#[test]
fn every_query_names_a_defined_metric_and_its_labels() {
    let known: BTreeSet<&str> = [
        metrics::REQUESTS,
        metrics::FILTER_TIME_US,
        metrics::TOKEN_CACHE,
        metrics::JWKS_FETCHES,
        metrics::CONFIGURATIONS,
        metrics::SIGNATURE_HOST,
        metrics::INTROSPECTIONS,
        metrics::INTROSPECTION_CACHE,
        counters::PARKED_OVERFLOW,
    ]
    .into_iter()
    .collect();
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    // The 19 queries of dashboards/keygate.json's panels.
    assert_eq!(queries.len(), 19, "{queries:?}");
    let mut used = BTreeSet::new();
    for expr in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no keygate metric in {expr}");
        let mut allowed: BTreeSet<&str> = BTreeSet::new();
        for name in &names {
            let metric = base(name);
            assert!(
                known.contains(metric),
                "{expr}: {name} is not a keygate metric"
            );
            if metric == metrics::FILTER_TIME_US {
                assert_ne!(name, metric, "{expr}: a histogram is queried by its series");
                allowed.insert("le");
            }
            allowed.extend(metrics::labels_of(metric));
            used.insert(metric.to_string());
        }
        for label in label_names(expr) {
            assert!(
                allowed.contains(label.as_str()),
                "{expr}: label {label} is not one of {allowed:?}"
            );
        }
    }
    // Every labeled metric is on the dashboard.
    for metric in [
        metrics::REQUESTS,
        metrics::FILTER_TIME_US,
        metrics::TOKEN_CACHE,
        metrics::JWKS_FETCHES,
        metrics::CONFIGURATIONS,
        metrics::INTROSPECTIONS,
        metrics::INTROSPECTION_CACHE,
    ] {
        assert!(used.contains(metric), "{metric} has no panel");
    }
}

#[test]
fn panels_are_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "keygate");
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(variables.contains(&"datasource"));
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        assert!(!panel["title"].as_str().unwrap().is_empty());
        assert!(!panel["targets"].as_array().unwrap().is_empty());
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{}", panel["title"]);
        }
    }
}
