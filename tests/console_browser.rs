//! A real browser (Debian's chromium, headless, driven by chromedriver over the W3C WebDriver HTTP
//! API) walks the console against the demo key manager: the administrator signs in at the key
//! manager's login form, adds the key manager by its well-known URL (review, Add), enables it for
//! the developer portal and adds an API; a developer creates an application, adds a client ID,
//! opens the instructions and subscribes. Screenshots of the main pages go to docs/img/.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::console::{until_status, Console, GatewayConsole, ADMIN, DEV};
use support::shell::run_block;
use support::{
    free_port, http, project_root, EchoUpstream, Envoy, KeyManager, ProcessGuard, TempDir,
};

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    base: String,
    session: String,
    shots: std::path::PathBuf,
    _process: ProcessGuard,
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent.get(url).call(),
        "DELETE" => agent.delete(url).call(),
        _ => agent
            .post(url)
            .header("content-type", "application/json")
            .send(body.unwrap_or(json!({})).to_string()),
    }
    .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let text = response.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

impl Driver {
    fn start(profile: &std::path::Path, shots: &std::path::Path) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; `make deps` installs it)");
        let process = ProcessGuard::new("chromedriver", child, None);
        let base = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1100,760",
                format!("--user-data-dir={}", profile.display()),
            ]}
        }}});
        let answer = call("POST", &format!("{base}/session"), Some(caps));
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Driver {
            base,
            session,
            shots: shots.to_path_buf(),
            _process: process,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn go(&self, url: &str) {
        call("POST", &self.url("/url"), Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = call(
                "POST",
                &self.url("/element"),
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < until,
                "no element {css} on {}: {answer}\n{}",
                self.current(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        call("POST", &self.url(&format!("/element/{id}/click")), None);
    }

    fn type_in(&self, css: &str, text: &str) {
        let id = self.find(css);
        call("POST", &self.url(&format!("/element/{id}/clear")), None);
        call(
            "POST",
            &self.url(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        );
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        call("GET", &self.url(&format!("/element/{id}/text")), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn current(&self) -> String {
        call("GET", &self.url("/url"), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        call("GET", &self.url("/source"), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn wait_url(&self, suffix: &str) {
        let until = Instant::now() + Duration::from_secs(15);
        while !self.current().contains(suffix) {
            assert!(
                Instant::now() < until,
                "not at {suffix}: {}\n{}",
                self.current(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page: into docs/img/ with KEYGATE_SCREENSHOTS=1 (how the committed ones are
    /// made), else into the test's own directory.
    /// Waits until the page's notice contains `text` (each action's result is shown once).
    fn wait_notice(&self, text: &str) {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = call(
                "POST",
                &self.url("/element"),
                Some(json!({"using": "css selector", "value": "p.notice"})),
            );
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                let shown = call("GET", &self.url(&format!("/element/{id}/text")), None);
                if shown["value"].as_str().is_some_and(|t| t.contains(text)) {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "no notice with {text:?} on {}:\n{}",
                self.current(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) {
        let answer = call("GET", &self.url("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["value"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = if std::env::var_os("KEYGATE_SCREENSHOTS").is_some() {
            project_root().join("docs/img")
        } else {
            self.shots.clone()
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
    }

    fn sign_in(&self, console: &Console, user: (&str, &str)) {
        self.go(&format!("{}/signin", console.url));
        self.click("#sign-in");
        self.type_in("#username", user.0);
        self.type_in("#password", user.1);
        self.click("#login");
        self.wait_url("/devportal/applications");
    }

    fn sign_out(&self) {
        self.click("header form button");
        self.wait_url("/signin");
        // The key manager's own login session too (cookies are per host: 127.0.0.1 for both).
        call("DELETE", &self.url("/cookie"), None);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = call(
            "DELETE",
            &format!("{}/session/{}", self.base, self.session),
            None,
        );
    }
}

#[test]
fn console_browser_admin_and_developer_flows() {
    let km = KeyManager::start();
    let echo = EchoUpstream::start();
    let tmp = TempDir::new("console-browser");
    let GatewayConsole {
        console, listen, ..
    } = GatewayConsole::start(&km, &tmp.join("out"), &[], &[]);
    let browser = Driver::start(&tmp.join("profile"), &tmp.join("screenshots"));
    let c = &console.url;

    // Anonymous: the sign-in page.
    browser.go(&format!("{c}/admin/key-managers"));
    browser.wait_url("/signin");
    browser.screenshot("signin");

    // Administrator: + Key Manager -> review -> Add -> enable for the developer portal.
    browser.sign_in(&console, ADMIN);
    browser.go(&format!("{c}/admin/key-managers"));
    browser.click("a[href='/admin/key-managers/new']");
    browser.type_in("#name", "demo");
    browser.type_in("#description", "the demo key manager");
    browser.type_in("#well_known_url", &km.well_known_url());
    browser.screenshot("key-manager-new");
    browser.click("#next");
    assert_eq!(browser.text("#issuer"), km.issuer());
    assert_eq!(
        browser.text("#token_endpoint"),
        format!("{}/token", km.issuer())
    );
    assert!(browser.text("#warnings").contains("audience unset"));
    browser.screenshot("key-manager-review");
    browser.click("#add");
    browser.wait_notice("applied");
    browser.click("#devportal-1");
    browser.click("td form button[type=submit]");
    browser.wait_notice("saved");
    assert!(browser.source().contains("checked"));
    browser.screenshot("key-managers");
    browser.go(&format!("{c}/admin/apis/new"));
    browser.type_in("#name", "pets");
    browser.type_in("#base_path", "/pets/v1");
    browser.type_in("#upstream", &format!("http://127.0.0.1:{}", echo.port()));
    browser.type_in(
        "#resources",
        "GET /pets; scopes=pets:read\nGET /health; public",
    );
    browser.click("#save-api");
    browser.wait_notice("applied");
    browser.screenshot("apis");
    browser.sign_out();

    // Envoy runs what the console wrote (a new key manager and API change the bootstrap, so it
    // starts now); shop-app's token belongs to no application yet: 403.
    let envoy = Envoy::start(&console.out.join("envoy.yaml"));
    // Before any application holds shop-app: its token (from the key manager directly) is 403.
    let direct = km.token_client_credentials("shop-app", "shop-app-secret", "pets:read");
    let call_with = |token: &str| {
        let bearer = format!("Bearer {token}");
        http(
            listen,
            "GET",
            "/pets/v1/pets",
            &[("authorization", bearer.as_str())],
        )
        .status
    };
    assert_eq!(call_with(&direct), 403);
    assert_eq!(http(listen, "GET", "/pets/v1/health", &[]).status, 200);

    // Developer: Applications -> +Create -> Create -> + Add Client ID -> Instructions -> Subscribe.
    browser.sign_in(&console, DEV);
    browser.click("#create");
    browser.type_in("#name", "dave-shop");
    browser.click("#create-application");
    // The new application's own page (its URL ends in its id; the create form's is `.../new`).
    browser.find("#client_id");
    let current = browser.current();
    let application = current
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    let id = application.rsplit('/').next().unwrap_or_default();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "not an application's page: {application}"
    );
    browser.type_in("#client_id", "shop-app");
    browser.click("#add-client");
    browser.wait_notice("applied");
    assert!(browser
        .text("#added-dialog")
        .contains(&format!("{}/token", km.issuer())));
    browser.screenshot("client-id-added");
    browser.click("#added-dialog a");
    browser.wait_url("/instructions");
    let instructions = browser.text("#instructions");
    assert!(instructions.contains("-u 'shop-app:'"), "{instructions}");
    browser.screenshot("instructions");
    // The instructions run as shown (the developer's secret in CLIENT_SECRET) get a token.
    let token = run_token_block(&instructions, "shop-app-secret");
    browser.go(&application);
    assert_eq!(call_with(&token), 403, "a client ID without a subscription");

    browser.click("#subscribe-more");
    browser.click("#subscribe-pets");
    browser.wait_notice("gains application dave-shop: API pets: GET /pets/v1/pets");
    // Subscribed, the instructions ask for the API's scopes: run them again for the token to use.
    browser.go(&format!("{application}/instructions"));
    let instructions = browser.text("#instructions");
    assert!(instructions.contains("pets:read"), "{instructions}");
    let token = run_token_block(&instructions, "shop-app-secret");
    browser.go(&application);
    let call = || call_with(&token);
    until_status(&call, 200, &[403, 200], Instant::now());
    browser.screenshot("application");

    // Timed: unsubscribe -> 403, subscribe again -> 200, each within 5 s of the click with no
    // failed request in between.
    let clicked = Instant::now();
    browser.click("#unsubscribe-pets");
    let refused = until_status(&call, 403, &[403, 200], clicked);
    browser.wait_notice("loses application dave-shop: API pets: GET /pets/v1/pets");
    browser.click("#subscribe-more");
    let clicked = Instant::now();
    browser.click("#subscribe-pets");
    let allowed = until_status(&call, 200, &[403, 200], clicked);
    browser.wait_notice("gains application dave-shop: API pets: GET /pets/v1/pets");
    assert!(browser.source().contains("unsubscribe-pets"));
    eprintln!(
        "console: click to enforcement in Envoy: subscribe {:.2} s, unsubscribe {:.2} s",
        allowed.as_secs_f64(),
        refused.as_secs_f64()
    );
    drop(envoy);
}

/// The token from the block of the shown instructions that uses the client credentials grant,
/// run as shown with `secret` in `CLIENT_SECRET` (what the instructions tell the developer to set).
fn run_token_block(instructions: &str, secret: &str) -> String {
    let block = instructions
        .split("\n\n")
        .find(|block| block.contains("grant_type=client_credentials"))
        .unwrap_or_else(|| panic!("no client credentials block in:\n{instructions}"));
    let token = run_block(block, &[("CLIENT_SECRET", secret)]);
    // An answer without a token leaves the instructions' report as the last line, not a token.
    assert!(
        !token.is_empty() && !token.contains(' '),
        "no token from:\n{block}\n{token}"
    );
    token
}
