//! Child processes that cannot outlive the test: killed by PID and reaped on drop, panics included.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl ProcessGuard {
    /// Takes ownership of `child`; `log` is the file its output goes to (printed if a test fails).
    pub fn new(name: &str, child: Child, log: Option<PathBuf>) -> ProcessGuard {
        ProcessGuard {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The process's log so far (empty if it has none).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the process (SIGKILL to its PID) and waits for it; idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let start = all.len().saturating_sub(lines);
        all[start..].join("\n")
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() && self.log.is_some() {
            eprintln!(
                "---- last lines of {} log ({}) ----\n{}\n---- end of {} log ----",
                self.name,
                self.log
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                self.log_tail(60),
                self.name
            );
        }
    }
}

/// Reads `stdout` on a helper thread until a line starting with `prefix` appears, or `deadline`
/// passes, or the stream ends. Returns the rest of that line after the prefix.
pub fn wait_for_line(
    stdout: ChildStdout,
    prefix: &str,
    deadline: Duration,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                // Keep draining after the waiter is gone so the child never blocks on a full pipe.
                Ok(line) => {
                    let _ = tx.send(line);
                }
                Err(_) => break,
            }
        }
    });
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no `{prefix}` line within {deadline:?}"));
        }
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Ok(rest.trim().to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no `{prefix}` line within {deadline:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("process closed stdout before printing `{prefix}`"))
            }
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `deadline`.
pub fn poll_until<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
