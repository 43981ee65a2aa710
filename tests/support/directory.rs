//! `keygate directory serve` as a child process: the directory source of the product tests.
//! Every request it answers is a line of its log (`directory: GET <target> -> <status>`), which
//! the tests read to see what the gateways asked for.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::paths::keygate_bin;
use super::process::{wait_for_line, ProcessGuard};

pub struct DirectorySource {
    process: ProcessGuard,
    pub port: u16,
    input: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
}

/// One request the source answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub target: String,
    pub status: u16,
}

impl DirectorySource {
    /// Serves the applications of `input` on `port` (0: a free one; `extra`: more `serve`
    /// arguments).
    pub fn start(input: &Path, log_dir: &Path, port: u16, extra: &[&str]) -> DirectorySource {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let log = log_dir.join("directory.log");
        let (process, port) = spawn(input, port, &log, &extra);
        DirectorySource {
            process,
            port,
            input: input.to_path_buf(),
            log,
            extra,
        }
    }

    /// Stops the source (an outage).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts it again on the same port (a new run: its versions are new).
    pub fn restart(&mut self) {
        self.process.stop();
        let (process, _) = spawn(&self.input, self.port, &self.log, &self.extra);
        self.process = process;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/keygate/directory", self.port)
    }

    /// Every request answered so far, in order (across restarts).
    pub fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.strip_prefix("directory: GET "))
            .filter_map(|rest| rest.rsplit_once(" -> "))
            .map(|(target, status)| Served {
                target: target.to_string(),
                status: status.trim().parse().unwrap_or(0),
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(input: &Path, port: u16, log: &Path, extra: &[String]) -> (ProcessGuard, u16) {
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("directory log");
    let mut child = Command::new(keygate_bin())
        .args(["directory", "serve", "--input"])
        .arg(input)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start keygate directory serve");
    let stdout = child.stdout.take().expect("stdout");
    let process = ProcessGuard::new("directory", child, Some(log.to_path_buf()));
    let ready = wait_for_line(stdout, "DIRECTORY READY http://", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("directory source: {e}\n{}", process.log_tail(20)));
    let port = ready
        .split_whitespace()
        .next()
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("READY line names the port");
    (process, port)
}
