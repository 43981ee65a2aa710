//! `keygate console` as a child process, and a small browser stand-in over HTTP: a cookie jar,
//! redirects followed by hand, the real sign-in at the demo key manager (its login form), and
//! the anti-forgery token read from the pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::keymanager::KeyManager;
use super::paths::keygate_bin;
use super::process::{wait_for_line, ProcessGuard};

/// The console's client secret at the demo key manager (tests/keymanager/demo-data.json).
pub const CONSOLE_SECRET: &str = "keygate-console-secret";
/// The demo users: an administrator (group keygate-admins) and two developers.
pub const ADMIN: (&str, &str) = ("carol", "carol-pass");
pub const DEV: (&str, &str) = ("dave", "dave-pass");
pub const DEV2: (&str, &str) = ("erin", "erin-pass");

pub struct Console {
    pub process: ProcessGuard,
    pub url: String,
    pub out: PathBuf,
}

impl Console {
    /// Starts a console writing into `out` with its store there, signing in at `km`.
    pub fn start(km: &KeyManager, out: &Path, extra: &[&str]) -> Console {
        Console::start_with_env(km, out, extra, &[])
    }

    /// As [`Console::start`], with these variables in the console's environment.
    pub fn start_with_env(
        km: &KeyManager,
        out: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Console {
        std::fs::create_dir_all(out).unwrap();
        let log = out.join("console.log");
        let mut child = Command::new(keygate_bin())
            .args(["console", "--out"])
            .arg(out)
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .arg("--oidc-well-known-url")
            .arg(km.well_known_url())
            .args(["--api-audience", "https://api.keygate.test"])
            .args(extra)
            .env("KEYGATE_CONSOLE_CLIENT_SECRET", CONSOLE_SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start keygate console");
        let stdout = child.stdout.take().unwrap();
        let process = ProcessGuard::new("console", child, Some(log));
        let url = wait_for_line(stdout, "CONSOLE READY ", Duration::from_secs(20))
            .unwrap_or_else(|err| panic!("console did not start: {err}\n{}", process.log()));
        Console {
            process,
            url,
            out: out.to_path_buf(),
        }
    }
}

/// A console that writes a gateway for a real Envoy: the module, Envoy's listener and admin
/// ports, plus `extra` arguments and environment variables.
pub struct GatewayConsole {
    pub console: Console,
    /// Envoy's listener (the requests under test go there).
    pub listen: u16,
    pub admin_port: u16,
}

impl GatewayConsole {
    pub fn start(km: &KeyManager, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let (listen, admin_port) = (super::free_port(), super::free_port());
        let wasm = super::wasm_path();
        let (listen_arg, admin_arg) = (
            format!("127.0.0.1:{listen}"),
            format!("127.0.0.1:{admin_port}"),
        );
        let mut args = vec![
            "--wasm",
            wasm.to_str().unwrap(),
            "--gateway-listen",
            &listen_arg,
            "--gateway-admin",
            &admin_arg,
        ];
        args.extend_from_slice(extra);
        GatewayConsole {
            console: Console::start_with_env(km, out, &args, env),
            listen,
            admin_port,
        }
    }
}

/// A bearer access token of the console's key manager for a demo user (password grant).
pub fn user_token(km: &KeyManager, user: (&str, &str)) -> String {
    km.token_password("keygate-console", CONSOLE_SECRET, user.0, user.1, "")
}

/// Creates an application over REST (`POST /api/devportal/applications`, 201); returns its id
/// and its REST path (`/api/devportal/applications/{id}`).
pub fn rest_app(console: &Console, token: &str, name: &str) -> (i64, String) {
    let body = serde_json::json!({ "name": name }).to_string();
    let answer = rest_expect(
        console,
        token,
        "POST",
        "/api/devportal/applications",
        Some(&body),
        201,
    );
    let id = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["id"]
        .as_i64()
        .unwrap();
    (id, format!("/api/devportal/applications/{id}"))
}

/// A REST call with a bearer token: (status, body).
pub fn rest(
    console: &Console,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let agent = agent();
    let url = format!("{}{path}", console.url);
    let auth = format!("Bearer {token}");
    let mut response = match method {
        "GET" => agent.get(&url).header("authorization", &auth).call(),
        "DELETE" => agent.delete(&url).header("authorization", &auth).call(),
        "PUT" => agent
            .put(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.unwrap_or("{}")),
        _ => agent
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.unwrap_or("{}")),
    }
    .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// [`rest`], asserting the status it must answer; the body.
pub fn rest_expect(
    console: &Console,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> String {
    let (got, answer) = rest(console, token, method, path, body);
    assert_eq!(got, status, "{method} {path}: {answer}");
    answer
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A browser stand-in: cookies per host:port (enough for loopback), no redirects followed.
#[derive(Default, Clone)]
pub struct Browser {
    cookies: BTreeMap<String, BTreeMap<String, String>>,
    pub csrf: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Browser {
    fn cookie_header(&self, url: &str) -> String {
        self.cookies
            .get(&host_of(url))
            .map(|jar| {
                jar.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    fn keep(&mut self, url: &str, response: &ureq::http::Response<ureq::Body>) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let jar = self.cookies.entry(host_of(url)).or_default();
                if v.is_empty() || text.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), v.to_string());
                }
            }
        }
    }

    pub fn request(&mut self, method: &str, url: &str, form: Option<&str>) -> Reply {
        let agent = agent();
        let cookie = self.cookie_header(url);
        let mut response = match (method, form) {
            ("GET", _) => agent.get(url).header("cookie", &cookie).call(),
            (_, body) => agent
                .post(url)
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .send(body.unwrap_or_default()),
        }
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
        self.keep(url, &response);
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                if l.starts_with('/') {
                    let origin: String = url.split('/').take(3).collect::<Vec<_>>().join("/");
                    format!("{origin}{l}")
                } else {
                    l.to_string()
                }
            });
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if let Some(token) = csrf_of(&body) {
            self.csrf = token;
        }
        Reply {
            status,
            location,
            body,
        }
    }

    pub fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, None)
    }

    /// GET, following redirects (at most 10).
    pub fn follow(&mut self, url: &str) -> (String, Reply) {
        let mut url = url.to_string();
        for _ in 0..10 {
            let reply = self.get(&url);
            match (&reply.location, reply.status) {
                (Some(next), 301..=303 | 307 | 308) => url = next.clone(),
                _ => return (url, reply),
            }
        }
        panic!("too many redirects from {url}");
    }

    /// POSTs a form with the current anti-forgery token added.
    pub fn post(&mut self, url: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.request("POST", url, Some(&form_body(&all)))
    }

    /// POSTs a form without any anti-forgery token.
    pub fn post_bare(&mut self, url: &str, fields: &[(&str, &str)]) -> Reply {
        self.request("POST", url, Some(&form_body(fields)))
    }

    /// Signs in at the console through the key manager's login form.
    pub fn sign_in(console: &Console, user: (&str, &str)) -> Browser {
        let mut browser = Browser::default();
        let (login_url, page) = browser.follow(&format!("{}/auth/login", console.url));
        assert_eq!(page.status, 200, "login form at {login_url}: {}", page.body);
        let action = page
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("login form action")
            .to_string();
        let origin: String = login_url.split('/').take(3).collect::<Vec<_>>().join("/");
        let reply = browser.request(
            "POST",
            &format!("{origin}{action}"),
            Some(&form_body(&[("username", user.0), ("password", user.1)])),
        );
        let next = reply.location.expect("login redirects");
        let (landed, page) = browser.follow(&next);
        assert!(
            landed.ends_with("/devportal/applications") && page.status == 200,
            "signed in as {} should land on the applications: {landed} {}\n{}",
            user.0,
            page.status,
            page.body
        );
        browser
    }
}

/// The first anti-forgery token of a page.
pub fn csrf_of(body: &str) -> Option<String> {
    let rest = body.split("name=\"csrf\" value=\"").nth(1)?;
    Some(rest.split('"').next()?.to_string())
}

/// The value of a hidden input (HTML entities for `/`, `"`, `&`, `'`, `<`, `>` undone).
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let rest = body.split(&format!("name=\"{name}\" value=\"")).nth(1)?;
    Some(unescape(rest.split('"').next()?))
}

pub fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The admin flow: review the key manager by its well-known URL, add it, enable it in the
/// developer portal, add API `pets` with `GET /pets` (pets:read) and a public `/health`.
pub fn admin_setup(console: &Console, admin: &mut Browser, km: &KeyManager, upstream: &str) {
    admin_setup_with(console, admin, km, upstream, false);
}

/// As [`admin_setup`]; with `api_keys`, the API accepts API keys as well (**Accepts API keys**).
pub fn admin_setup_with(
    console: &Console,
    admin: &mut Browser,
    km: &KeyManager,
    upstream: &str,
    api_keys: bool,
) {
    admin.get(&format!("{}/admin/key-managers/new", console.url));
    let review = admin.post(
        &format!("{}/admin/key-managers/review", console.url),
        &[
            ("name", "demo"),
            ("description", "the demo key manager"),
            ("well_known_url", &km.well_known_url()),
            ("all_environments", "on"),
        ],
    );
    assert_eq!(review.status, 200, "{}", review.body);
    let discovery = hidden(&review.body, "discovery").unwrap();
    let added = admin.post(
        &format!("{}/admin/key-managers", console.url),
        &[
            ("name", "demo"),
            ("description", "the demo key manager"),
            ("well_known_url", &km.well_known_url()),
            ("environments", ""),
            ("provider", "generic"),
            ("discovery", &discovery),
        ],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    let list = admin.get(&format!("{}/admin/key-managers", console.url));
    let version = hidden(&list.body, "version").unwrap();
    let enabled = admin.post(
        &format!("{}/admin/key-managers/demo/developer-portal", console.url),
        &[("version", &version), ("enabled", "on")],
    );
    assert_eq!(enabled.status, 303, "{}", enabled.body);
    let mut fields = vec![
        ("name", "pets"),
        ("base_path", "/pets/v1"),
        ("upstream", upstream),
        (
            "resources",
            "GET /pets; scopes=pets:read\nGET /health; public",
        ),
    ];
    if api_keys {
        // A resource without requirements, which a key can call.
        fields[3].1 = "GET /pets; scopes=pets:read\nGET /health; public\nGET /toys";
        fields.push(("api_keys", "on"));
    }
    let api = admin.post(&format!("{}/admin/apis", console.url), &fields);
    assert_eq!(api.status, 303, "{}", api.body);
}

/// Creates an application; returns its id.
pub fn create_app(console: &Console, dev: &mut Browser, name: &str) -> i64 {
    dev.get(&format!("{}/devportal/applications/new", console.url));
    let created = dev.post(
        &format!("{}/devportal/applications", console.url),
        &[("name", name)],
    );
    assert_eq!(created.status, 303, "{}", created.body);
    created
        .location
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Calls `call` until it answers `want`, within 5 s of `since`; every answer before must be one of
/// `allowed` (no failed request while a change reaches the gateway). Returns the time from
/// `since` to the first `want`.
pub fn until_status(
    call: &dyn Fn() -> u16,
    want: u16,
    allowed: &[u16],
    since: Instant,
) -> Duration {
    loop {
        let status = call();
        if status == want {
            return since.elapsed();
        }
        assert!(allowed.contains(&status), "unexpected answer {status}");
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "not {want} within 5 s (last {status})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
