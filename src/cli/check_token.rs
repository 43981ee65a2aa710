//! `keygate check-token`.

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand and returns the process exit code.
pub fn run(_args: Args) -> i32 {
    eprintln!("keygate: check-token is not available yet");
    2
}
