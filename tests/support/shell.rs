//! Running what `keygate instructions` (and the console's Instructions page) prints, as a user
//! would: `sh -c`, with only the variables the test gives among those the commands read.

use std::process::Command;

/// The variables the printed commands read; cleared before each run so only `env` counts.
pub const READ: [&str; 10] = [
    "TOKEN",
    "CLIENT_SECRET",
    "CLIENT_SECRET_2",
    "CLIENT_SECRET_3",
    "CLIENT_SECRET_4",
    "CLIENT_SECRET_5",
    "CLIENT_SECRET_6",
    "SIGNIN_USER",
    "SIGNIN_PASSWORD",
    "API_KEY",
];

/// `sh -c script` with only `env` of the variables the instructions read set.
pub fn sh(script: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    for name in READ {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

/// Runs a printed block as printed, the user's secret and account in the environment, and
/// returns what `$TOKEN` holds.
pub fn run_block(block: &str, env: &[(&str, &str)]) -> String {
    let script = format!("set -e\n{block}\nprintf '%s' \"$TOKEN\"\n");
    let run = sh(&script, env);
    assert!(
        run.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}
