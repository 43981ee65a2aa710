//! A real Envoy (KEYGATE_ENVOY or .venv/bin/envoy) running a bootstrap file, as a child process.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::http::{try_http, Response};
use super::paths::envoy_bin;
use super::process::{poll_until, ProcessGuard};
use super::tempdir::TempDir;

/// Envoy itself starts in well under a second; compiling a wasm module in V8 adds a few more.
const READY_DEADLINE: Duration = Duration::from_secs(60);

pub struct Envoy {
    process: ProcessGuard,
    admin_port: u16,
    _dir: TempDir,
    /// Spawn to admin `/ready` answering 200.
    pub startup: Duration,
}

impl Envoy {
    /// `envoy --mode validate` on `config_path`: whether it passed, and what Envoy printed.
    pub fn validate(config_path: &Path) -> (bool, String) {
        let out = Command::new(envoy_bin())
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(config_path)
            .output()
            .expect("run envoy --mode validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts Envoy on `config_path` and waits until its admin `/ready` says LIVE.
    ///
    /// The admin address is read back from `--admin-address-path`, so a config may use admin port 0.
    /// `--use-dynamic-base-id` gives every instance its own shared-memory base id, so Envoys of
    /// tests running in parallel never collide. Log level: `KEYGATE_ENVOY_LOG_LEVEL` (default info).
    pub fn start(config_path: &Path) -> Envoy {
        Envoy::start_with_workers(config_path, 1)
    }

    /// As [`Envoy::start`] with `workers` worker threads (one wasm VM each).
    pub fn start_with_workers(config_path: &Path, workers: u32) -> Envoy {
        Envoy::start_with_env(config_path, workers, &[])
    }

    /// As [`Envoy::start_with_workers`], with these variables added to Envoy's environment (the
    /// filter reads introspection secrets from there).
    pub fn start_with_env(config_path: &Path, workers: u32, env: &[(&str, &str)]) -> Envoy {
        let bin = envoy_bin();
        let tmp = TempDir::new("envoy");
        let log_path = tmp.join("envoy.log");
        let admin_file = tmp.join("admin-address");
        let log = File::create(&log_path).expect("create envoy log");
        let log_err = log.try_clone().expect("clone envoy log handle");
        let level = std::env::var("KEYGATE_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
        let started = Instant::now();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(config_path)
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--concurrency")
            .arg(workers.to_string())
            .arg("-l")
            .arg(&level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (`make deps`): {e}", bin.display()));
        let mut process = ProcessGuard::new("envoy", child, Some(log_path));

        let admin_port = poll_until(READY_DEADLINE, || {
            std::fs::read_to_string(&admin_file)
                .ok()
                .and_then(|a| {
                    a.trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                })
                .filter(|p| *p != 0)
                .or_else(|| process.exited().map(|_| 0))
        });
        let admin_port = match admin_port {
            Some(p) if p != 0 => p,
            _ => {
                process.stop();
                panic!(
                    "Envoy exited or never opened its admin port ({}):\n{}",
                    config_path.display(),
                    process.log_tail(60)
                );
            }
        };

        let ready = poll_until(READY_DEADLINE, || {
            if process.exited().is_some() {
                return Some(false);
            }
            match try_http(admin_port, "GET", "/ready", &[], b"") {
                Ok(r) if r.status == 200 => Some(true),
                _ => None,
            }
        });
        if ready != Some(true) {
            process.stop();
            panic!(
                "Envoy did not become ready within {READY_DEADLINE:?} ({}):\n{}",
                config_path.display(),
                process.log_tail(60)
            );
        }
        Envoy {
            process,
            admin_port,
            _dir: tmp,
            startup: started.elapsed(),
        }
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// A GET on the admin interface.
    pub fn admin(&self, path: &str) -> Response {
        try_http(self.admin_port, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("Envoy admin {path}: {e}\n{}", self.process.log_tail(40)))
    }

    /// Admin `/stats` as `name -> value` (counters and gauges; histogram lines keep their text).
    pub fn stats(&self) -> BTreeMap<String, String> {
        let reply = self.admin("/stats");
        reply
            .body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A counter or gauge by full name (`None` when Envoy does not have it).
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().get(name).and_then(|v| v.parse().ok())
    }

    /// The sum of every counter named `prefix` or `prefix.…` (a labeled metric summed over its
    /// labels, e.g. `wasmcustom.keygate_jwks_fetches`, or over some: `….outcome.ok`).
    pub fn stat_sum(&self, prefix: &str) -> u64 {
        let dotted = format!("{prefix}.");
        self.stats()
            .iter()
            .filter(|(name, _)| *name == prefix || name.starts_with(&dotted))
            .filter_map(|(_, value)| value.parse::<u64>().ok())
            .sum()
    }

    /// Connections accepted by each worker of the listener on 127.0.0.1:`port`, by worker index
    /// (`listener.127.0.0.1_<port>.worker_<n>.downstream_cx_total`).
    pub fn worker_connections(&self, port: u16) -> Vec<u64> {
        let suffix = ".downstream_cx_total";
        let listener = format!("listener.127.0.0.1_{port}.worker_");
        let mut by_worker: Vec<(usize, u64)> = self
            .stats()
            .iter()
            .filter_map(|(name, value)| {
                let worker = name.strip_prefix(&listener)?.strip_suffix(suffix)?;
                Some((worker.parse().ok()?, value.parse().ok()?))
            })
            .collect();
        by_worker.sort_unstable();
        by_worker.into_iter().map(|(_, n)| n).collect()
    }

    /// `/stats/prometheus`, the text Prometheus scrapes.
    pub fn prometheus(&self) -> String {
        self.admin("/stats/prometheus").body
    }

    /// Envoy's log so far (its stdout and stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Polls the log until `needle` shows up or `deadline` passes.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> bool {
        poll_until(deadline, || self.log().contains(needle).then_some(())).is_some()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}
