//! Running the `keygate` CLI from tests.

use std::process::{Command, Stdio};

use super::paths::keygate_bin;

/// What a `keygate` run produced.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `keygate <args>` with `stdin` as its standard input and waits for it.
pub fn keygate(args: &[&str], stdin: &[u8]) -> CliRun {
    use std::io::Write;
    let bin = keygate_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    if let Some(mut input) = child.stdin.take() {
        // A CLI that never reads stdin closes it early; that is not the test's failure.
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait for keygate");
    CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
