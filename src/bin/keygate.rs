//! `keygate`: the companion CLI (native only).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use clap::{Parser, Subcommand};
    use keygate::cli;

    #[derive(Parser)]
    #[command(
        name = "keygate",
        version,
        about = "keygate: OAuth2/OIDC access-token authorization for Envoy and Istio"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Create an application's API key: print it once and the entry to add to the declaration.
        #[command(subcommand)]
        ApiKey(cli::api_key::Command),
        /// Make the gateway's backend-JWT signing keys.
        BackendKey(cli::backend_key::Args),
        /// Verify a token natively with the filter's own code and explain the result.
        CheckToken(cli::check_token::Args),
        /// The web console: admin portal, developer portal, REST API, application directory.
        Console(Box<cli::console::Args>),
        /// Serve a declaration's applications as an application directory source.
        Directory(cli::directory::Args),
        /// Fetch and check an OIDC discovery document; print the key-manager entry.
        Discover(cli::discover::Args),
        /// Decide one request offline with the filter's own decision and say why.
        Explain(cli::explain::Args),
        /// Turn a declaration (keygate.yaml) into plugin config, Envoy bootstrap and Istio manifests.
        Generate(cli::generate::Args),
        /// Print what a consumer needs to get a token and call the subscribed APIs.
        Instructions(cli::instructions::Args),
        /// Pack the filter module as an OCI image layout (Istio WasmPlugin `oci://`).
        Oci(cli::oci::Args),
    }

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            std::process::exit(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::ApiKey(command) => cli::api_key::run(command),
        Command::BackendKey(args) => cli::backend_key::run(args),
        Command::CheckToken(args) => cli::check_token::run(args),
        Command::Console(args) => cli::console::run(*args),
        Command::Directory(args) => cli::directory::run(args),
        Command::Discover(args) => cli::discover::run(args),
        Command::Explain(args) => cli::explain::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Instructions(args) => cli::instructions::run(args),
        Command::Oci(args) => cli::oci::run(args),
    };
    std::process::exit(code);
}

#[cfg(target_arch = "wasm32")]
fn main() {}
