//! The demo key manager (tests/keymanager/server.mjs, npm oidc-provider) as a child process.

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::http::{form_encode, http, http_with_body, percent_encode, Response};
use super::paths::project_root;
use super::process::{wait_for_line, ProcessGuard};
use super::tempdir::TempDir;

/// Key generation (two RSA-2048 keys) dominates start-up; allow slow shared machines.
const READY_DEADLINE: Duration = Duration::from_secs(15);

pub struct KeyManager {
    process: ProcessGuard,
    issuer: String,
    port: u16,
    // Holds the log; declared last so the process is killed (and its log printed) first.
    _dir: TempDir,
    /// How long start-up took (spawn to READY), for reporting.
    pub startup: Duration,
}

impl KeyManager {
    /// Starts on a free port chosen by the server itself (`--port 0`).
    pub fn start() -> KeyManager {
        KeyManager::start_on(0)
    }

    /// Starts on `port` (0: any free port).
    pub fn start_on(port: u16) -> KeyManager {
        let tmp = TempDir::new("keymanager");
        let started = Instant::now();
        let (process, issuer, port) = spawn(port, &tmp);
        KeyManager {
            process,
            issuer,
            port,
            _dir: tmp,
            startup: started.elapsed(),
        }
    }

    /// Stops the key manager if it runs and starts it again on the same port with the same
    /// signing keys (they are kept in its temp dir), as a key manager coming back after an outage.
    pub fn restart(&mut self) {
        self.process.stop();
        let started = Instant::now();
        let (process, issuer, _) = spawn(self.port, &self._dir);
        assert_eq!(
            issuer, self.issuer,
            "restarted key manager has another issuer"
        );
        self.process = process;
        self.startup = started.elapsed();
    }

    /// `http://127.0.0.1:<port>`: the `iss` of every token it issues.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn well_known_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    pub fn jwks_path(&self) -> &'static str {
        "/jwks"
    }

    pub fn discovery(&self) -> serde_json::Value {
        self.get_json("/.well-known/openid-configuration")
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.get_json(self.jwks_path())
    }

    /// The kids currently published in the JWKS.
    pub fn jwks_kids(&self) -> Vec<String> {
        self.jwks()["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["kid"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The raw token endpoint reply, for tests that expect an OAuth2 error.
    pub fn token_request(&self, client: &str, secret: &str, form: &[(&str, &str)]) -> Response {
        self.token_request_with(client, secret, form, &[])
    }

    /// An application token bound to `key` (DPoP, RFC 9449 §5): the token request carries a
    /// proof for `POST <issuer>/token`. Returns the whole token reply (`token_type` is `DPoP`).
    pub fn token_client_credentials_dpop(
        &self,
        client: &str,
        secret: &str,
        scope: &str,
        key: &super::jwt::DpopKey,
    ) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let proof = key.proof("POST", &format!("{}/token", self.issuer), now, None);
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let reply = self.token_request_with(client, secret, &form, &[("dpop", &proof)]);
        assert_eq!(
            reply.status, 200,
            "token endpoint refused the DPoP request: {}",
            reply.body
        );
        reply.json()
    }

    /// [`KeyManager::token_request`] with extra request headers.
    pub fn token_request_with(
        &self,
        client: &str,
        secret: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Response {
        // client_secret_basic: RFC 6749 §2.3.1 form-encodes id and secret before base64.
        let basic = STANDARD.encode(format!(
            "{}:{}",
            percent_encode(client),
            percent_encode(secret)
        ));
        let auth = format!("Basic {basic}");
        let body = form_encode(form);
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        http_with_body(self.port, "POST", "/token", &headers, body.as_bytes())
    }

    /// An application token (client_credentials grant). `scope` may be empty.
    pub fn token_client_credentials(&self, client: &str, secret: &str, scope: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        access_token(self.token_request(client, secret, &form))
    }

    /// A user token (password grant) carrying the user's `groups`. `scope` may be empty.
    pub fn token_password(
        &self,
        client: &str,
        secret: &str,
        user: &str,
        password: &str,
        scope: &str,
    ) -> String {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        access_token(self.token_request(client, secret, &form))
    }

    /// `GET /admin/keys`: `{"signer": kid, "keys": [{kid, kty, alg}, ...]}`.
    pub fn keys(&self) -> serde_json::Value {
        self.get_json("/admin/keys")
    }

    /// A new RSA key becomes the signer (older keys stay published). Returns the new kid.
    pub fn rotate(&self) -> String {
        let reply = self.admin_post("/admin/rotate");
        reply["signer"]
            .as_str()
            .unwrap_or_else(|| panic!("rotate reply has no signer: {reply}"))
            .to_string()
    }

    /// Removes every key but the signer from the JWKS. Returns how many were removed.
    pub fn retire(&self) -> u64 {
        let reply = self.admin_post("/admin/retire");
        reply["removed"]
            .as_u64()
            .unwrap_or_else(|| panic!("retire reply has no count: {reply}"))
    }

    /// The key manager's private key state, `{"signer": kid, "keys": [private JWKs]}`, read from
    /// its key file: lets a test sign crafted tokens (expired, wrong issuer, ...) with a real key
    /// the JWKS publishes. Test use only; never print it.
    pub fn signing_keys(&self) -> serde_json::Value {
        let path = self._dir.join("keys.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("key file is JSON")
    }

    /// The private JWK of the current signer (RSA, RS256).
    pub fn signer_private_jwk(&self) -> serde_json::Value {
        let state = self.signing_keys();
        let signer = state["signer"].as_str().expect("signer kid").to_string();
        state["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == signer.as_str()))
            .cloned()
            .expect("signer key in key file")
    }

    /// Kills the key manager (e.g. to test an unreachable JWKS); `port()` stays valid.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The key manager's log (stderr): one line per issued token, never the token.
    pub fn log(&self) -> String {
        self.process.log()
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let reply = http(self.port, "GET", path, &[]);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    fn admin_post(&self, path: &str) -> serde_json::Value {
        let reply = http_with_body(self.port, "POST", path, &[], b"");
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
        reply.json()
    }
}

fn access_token(reply: Response) -> String {
    assert_eq!(
        reply.status, 200,
        "token endpoint refused the request: {}",
        reply.body
    );
    reply.json()["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("token reply without access_token: {}", reply.body))
        .to_string()
}

/// Spawns `node server.mjs` on `port` with its keys in `tmp`, waits for READY, and returns the
/// guarded process, the issuer and the port it listens on.
fn spawn(port: u16, tmp: &TempDir) -> (ProcessGuard, String, u16) {
    spawn_attempt(port, tmp, 1)
}

/// The key manager's keys file in `tmp`, seeded from the committed test keys on first use, so a
/// test start skips RSA key generation (faster, and it is where Node 20 once deadlocked: a
/// synchronous key-generation job against the garbage collector, seen with gdb in
/// `KeyGenJob<RsaKeyGenTraits>::~KeyGenJob`; the key manager now generates asynchronously).
fn seeded_keys(tmp: &TempDir) -> std::path::PathBuf {
    let path = tmp.join("keys.json");
    if !path.exists() {
        let seed = project_root().join("tests/keymanager/test-signing-keys.json");
        std::fs::copy(&seed, &path)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", seed.display(), path.display()));
    }
    path
}

/// How many times a key manager start is tried before the test fails.
const START_ATTEMPTS: u32 = 3;

fn spawn_attempt(port: u16, tmp: &TempDir, attempt: u32) -> (ProcessGuard, String, u16) {
    let dir = project_root().join("tests/keymanager");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "{}/node_modules is missing: run `make deps` (npm ci in tests/keymanager)",
        dir.display()
    );
    let log_path = tmp.join("keymanager.log");
    // Appends, so a restart keeps the earlier run's lines.
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open key manager log");
    let mut child = Command::new("node")
        .arg("server.mjs")
        .arg("--port")
        .arg(port.to_string())
        .arg("--keys")
        .arg(seeded_keys(tmp))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start node (is Node.js 20+ installed? `make deps`): {e}")
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut process = ProcessGuard::new("keymanager", child, Some(log_path));
    let issuer = match wait_for_line(stdout, "KEYMANAGER READY", READY_DEADLINE) {
        Ok(issuer) => issuer,
        Err(e) if attempt < START_ATTEMPTS => {
            // A normal start takes about a second; should one stall (see `seeded_keys`), start
            // it again rather than fail a test that has not begun.
            process.stop();
            eprintln!(
                "key manager did not start ({e}); starting it again\n{}",
                process.log_tail(10)
            );
            return spawn_attempt(port, tmp, attempt + 1);
        }
        Err(e) => {
            process.stop();
            panic!("key manager did not start: {e}\n{}", process.log_tail(40));
        }
    };
    let port = issuer
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in issuer {issuer}"));
    (process, issuer, port)
}
