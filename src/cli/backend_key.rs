//! `keygate backend-key new`: a fresh P-256 key pair for the gateway's backend JWTs
//! (docs/backend-jwt.md). The private key is printed once, as the value of the environment
//! variable Envoy must be given; the public part is printed as the entry to add under
//! `gateway.backend_jwt.keys`. Nothing is written anywhere else.

use std::io::Read as _;

use crate::jose::sign::EcSigningKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a key pair: print the private JWK (for Envoy's environment) and the declaration entry.
    New {
        /// The environment variable that will hold the private key in Envoy's environment.
        #[arg(long, value_name = "NAME", default_value = "KEYGATE_BACKEND_KEY")]
        env: String,
    },
}

/// Runs the subcommand and returns the process exit code (0, or 2 on an I/O error).
pub fn run(args: Args) -> i32 {
    let Command::New { env } = args.command;
    if env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        eprintln!("keygate: --env must be a variable name (letters, digits, '_')");
        return 2;
    }
    let key = match random_key() {
        Ok(key) => key,
        Err(err) => {
            eprintln!("keygate: cannot read random bytes: {err}");
            return 2;
        }
    };
    println!("# The private key, shown once: put it in Envoy's environment, keep it secret.");
    println!("{env}='{}'", key.private_jwk());
    println!(
        "# Add under gateway.backend_jwt.keys (the first key signs; kid {}):",
        key.kid
    );
    println!("- {{env: {env}, x: \"{}\", y: \"{}\"}}", key.x, key.y);
    0
}

/// A key from the operating system's random source (a draw that is not a valid scalar, about
/// one in 2^32, is drawn again).
fn random_key() -> std::io::Result<EcSigningKey> {
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut d = zeroize::Zeroizing::new([0u8; 32]);
        urandom.read_exact(d.as_mut())?;
        if let Some(key) = EcSigningKey::from_scalar(d.as_ref()) {
            return Ok(key);
        }
    }
}
