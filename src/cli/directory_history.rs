//! What `keygate directory serve` serves, as a function of requests: the applications at the
//! current version, a bounded history of changes for `/v1/changes`, and the protocol's answers
//! (`docs/directory.md`). No sockets here; `directory.rs` moves the bytes.
//!
//! Versions are `<run>.<n>`: `run` is the server's start time (hex milliseconds), unique across
//! restarts, `n` counts the updates of this run. A version of another run, or older than the
//! history kept, is answered 410 (the gateway then fetches a snapshot).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config::ApplicationConfig;
use crate::directory::{
    page_query, Change, Changes, ErrorBody, PageQuery, PageRefusal, Snapshot, CHANGES_PATH,
    SNAPSHOT_PATH,
};

/// An answer: status, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Arc<Vec<u8>>,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>, etag: Option<&str>) -> Answer {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(version) = etag {
            headers.push(("etag".to_string(), format!("\"{version}\"")));
        }
        Answer {
            status,
            headers,
            body: Arc::new(body),
        }
    }

    fn error(status: u16, error: &str, description: &str) -> Answer {
        let body = ErrorBody {
            error: error.to_string(),
            error_description: description.to_string(),
        };
        let mut answer = Answer::json(status, serde_json::to_vec(&body).unwrap_or_default(), None);
        if status == 401 {
            let challenge = "Bearer realm=\"keygate-directory\"".to_string();
            answer
                .headers
                .push(("www-authenticate".to_string(), challenge));
        }
        answer
    }

    fn not_modified(version: &str) -> Answer {
        Answer {
            status: 304,
            headers: vec![("etag".to_string(), format!("\"{version}\""))],
            body: Arc::new(Vec::new()),
        }
    }
}

/// The directory a source serves, and what changed lately.
#[derive(Debug)]
pub struct Served {
    run: String,
    counter: u64,
    applications: BTreeMap<String, ApplicationConfig>,
    /// (the update number a change belongs to, the change), oldest first.
    history: VecDeque<(u64, Change)>,
    max_history: usize,
    /// The oldest `since` the history still answers.
    oldest: u64,
    /// The snapshot body of the current version, made on first request.
    snapshot: Option<Arc<Vec<u8>>>,
    /// The bearer token gateways must present (`None`: no authentication).
    token: Option<String>,
}

impl Served {
    pub fn new(run: String, applications: Vec<ApplicationConfig>, max_history: usize) -> Served {
        Served {
            run,
            counter: 1,
            applications: by_name(applications),
            history: VecDeque::new(),
            max_history: max_history.max(1),
            oldest: 1,
            snapshot: None,
            token: None,
        }
    }

    pub fn with_token(mut self, token: Option<String>) -> Served {
        self.token = token;
        self
    }

    pub fn version(&self) -> String {
        format!("{}.{}", self.run, self.counter)
    }

    pub fn len(&self) -> usize {
        self.applications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applications.is_empty()
    }

    /// Replaces the applications (an edited declaration): the differences become one update's
    /// changes. Returns how many changes it made (0: the version stays).
    pub fn update(&mut self, applications: Vec<ApplicationConfig>) -> usize {
        let new = by_name(applications);
        let mut changes = Vec::new();
        for name in self.applications.keys() {
            if !new.contains_key(name) {
                changes.push(Change::Remove { name: name.clone() });
            }
        }
        for (name, app) in &new {
            if self.applications.get(name) != Some(app) {
                changes.push(Change::Upsert {
                    application: app.clone(),
                });
            }
        }
        if changes.is_empty() {
            return 0;
        }
        let count = changes.len();
        self.counter += 1;
        self.applications = new;
        self.snapshot = None;
        for change in changes {
            self.history.push_back((self.counter, change));
        }
        while self.history.len() > self.max_history {
            if let Some((n, _)) = self.history.pop_front() {
                // Answering from before `n` would need the change just dropped.
                self.oldest = self.oldest.max(n);
            }
        }
        count
    }

    /// Answers a GET of `target` (path and query) with the request's `If-None-Match` and
    /// `Authorization`.
    pub fn answer(
        &mut self,
        method: &str,
        target: &str,
        if_none_match: Option<&str>,
        authorization: Option<&str>,
    ) -> Answer {
        if let Some(token) = &self.token {
            let expected = format!("Bearer {token}");
            if !authorization.is_some_and(|a| constant_time_eq(a.as_bytes(), expected.as_bytes())) {
                return Answer::error(
                    401,
                    "unauthorized",
                    "the directory needs the gateway's bearer token",
                );
            }
        }
        if method != "GET" && method != "HEAD" {
            return Answer::error(405, "method_not_allowed", "only GET is served");
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let version = self.version();
        let unchanged = if_none_match.is_some_and(|tags| etag_matches(tags, &version));
        if path.ends_with(SNAPSHOT_PATH) {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .map(percent_decode)
            };
            let (limit, after) = (param("limit"), param("after"));
            let page = match page_query(limit.as_deref(), after.as_deref(), &version) {
                Ok(page) => page,
                Err(PageRefusal::BadRequest(why)) => {
                    return Answer::error(400, "invalid_request", why)
                }
                Err(PageRefusal::Gone) => {
                    return Answer::error(
                        410,
                        "version_unknown",
                        "the applications changed since this cursor: fetch /v1/snapshot again",
                    )
                }
            };
            if unchanged && after.is_none() {
                return Answer::not_modified(&version);
            }
            let body = match page.limit {
                Some(_) => self.snapshot_page(page),
                None => self.snapshot_body(),
            };
            return Answer {
                status: 200,
                headers: vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("etag".to_string(), format!("\"{version}\"")),
                ],
                body,
            };
        }
        if path.ends_with(CHANGES_PATH) {
            let since = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("since="))
                .map(percent_decode)
                .unwrap_or_default();
            return self.changes(&since);
        }
        Answer::error(
            404,
            "not_found",
            "the directory serves /v1/snapshot and /v1/changes",
        )
    }

    /// One page of the snapshot (serialized each time: pages are small).
    fn snapshot_page(&self, page: PageQuery) -> Arc<Vec<u8>> {
        let version = self.version();
        let (range, next) = page.range(self.applications.len(), &version);
        let snapshot = Snapshot {
            version,
            applications: self
                .applications
                .values()
                .skip(range.start)
                .take(range.len())
                .cloned()
                .collect(),
            next,
        };
        Arc::new(serde_json::to_vec(&snapshot).unwrap_or_default())
    }

    fn snapshot_body(&mut self) -> Arc<Vec<u8>> {
        if let Some(body) = &self.snapshot {
            return Arc::clone(body);
        }
        let snapshot = Snapshot {
            version: self.version(),
            applications: self.applications.values().cloned().collect(),
            next: None,
        };
        let body = Arc::new(serde_json::to_vec(&snapshot).unwrap_or_default());
        self.snapshot = Some(Arc::clone(&body));
        body
    }

    fn changes(&self, since: &str) -> Answer {
        if since.is_empty() {
            return Answer::error(400, "invalid_request", "`since` names the version held");
        }
        let version = self.version();
        let counter = since
            .rsplit_once('.')
            .filter(|(run, _)| *run == self.run)
            .and_then(|(_, n)| n.parse::<u64>().ok());
        let Some(counter) = counter.filter(|n| *n >= self.oldest && *n <= self.counter) else {
            return Answer::error(
                410,
                "version_unknown",
                "this version is older than the changes kept, or from another run: fetch /v1/snapshot",
            );
        };
        if counter == self.counter {
            return Answer::not_modified(&version);
        }
        let changes = Changes {
            version: version.clone(),
            changes: self
                .history
                .iter()
                .filter(|(n, _)| *n > counter)
                .map(|(_, change)| change.clone())
                .collect(),
        };
        Answer::json(
            200,
            serde_json::to_vec(&changes).unwrap_or_default(),
            Some(&version),
        )
    }
}

fn by_name(applications: Vec<ApplicationConfig>) -> BTreeMap<String, ApplicationConfig> {
    applications
        .into_iter()
        .map(|app| (app.name.clone(), app))
        .collect()
}

/// Whether an `If-None-Match` value names `version` (`*`, a list, weak tags).
fn etag_matches(tags: &str, version: &str) -> bool {
    tags.split(',').any(|tag| {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.trim_matches('"') == version
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn app(name: &str, api: &str) -> ApplicationConfig {
        serde_json::from_value(json!({"name": name,
            "client_ids": [{"key_manager": "km", "client_id": format!("{name}-id")}],
            "subscriptions": [{"api": api}]}))
        .unwrap()
    }

    fn body(answer: &Answer) -> Value {
        serde_json::from_slice(&answer.body).unwrap()
    }

    fn get(served: &mut Served, target: &str, inm: Option<&str>) -> Answer {
        served.answer("GET", target, inm, None)
    }

    #[test]
    fn versions_snapshots_and_not_modified() {
        let mut served = Served::new("r1".into(), vec![app("a", "pets")], 10);
        let snap = get(&mut served, "/base/v1/snapshot", None);
        assert_eq!(snap.status, 200);
        assert_eq!(body(&snap)["version"], "r1.1");
        assert_eq!(body(&snap)["applications"][0]["name"], "a");
        assert!(snap.headers.contains(&("etag".into(), "\"r1.1\"".into())));
        assert_eq!(
            get(&mut served, "/v1/snapshot", Some("\"r1.1\"")).status,
            304
        );
        assert_eq!(get(&mut served, "/v1/changes?since=r1.1", None).status, 304);
        assert_eq!(served.update(vec![app("a", "pets")]), 0, "nothing changed");
        assert_eq!(served.update(vec![app("a", "shop"), app("b", "pets")]), 2);
        assert_eq!(
            get(&mut served, "/v1/snapshot", Some("\"r1.1\"")).status,
            200
        );
        let changes = get(&mut served, "/v1/changes?since=r1.1", None);
        assert_eq!(changes.status, 200);
        let changes = body(&changes);
        assert_eq!(changes["version"], "r1.2");
        assert_eq!(changes["changes"][0]["op"], "upsert");
        assert_eq!(
            changes["changes"][0]["application"]["subscriptions"][0]["api"],
            "shop"
        );
        assert_eq!(changes["changes"][1]["application"]["name"], "b");
        assert_eq!(served.update(vec![app("b", "pets")]), 1);
        let changes = body(&get(&mut served, "/v1/changes?since=r1.2", None));
        assert_eq!(changes["changes"], json!([{"op": "remove", "name": "a"}]));
    }

    #[test]
    fn a_version_beyond_the_history_or_from_another_run_is_gone() {
        let mut served = Served::new("r1".into(), vec![], 2);
        served.update(vec![app("a", "x")]);
        served.update(vec![app("a", "x"), app("b", "x")]);
        assert_eq!(get(&mut served, "/v1/changes?since=r1.1", None).status, 200);
        served.update(vec![app("a", "y"), app("b", "y")]);
        let gone = get(&mut served, "/v1/changes?since=r1.1", None);
        assert_eq!(gone.status, 410);
        assert_eq!(body(&gone)["error"], "version_unknown");
        assert_eq!(get(&mut served, "/v1/changes?since=r1.3", None).status, 200);
        assert_eq!(get(&mut served, "/v1/changes?since=r0.3", None).status, 410);
        assert_eq!(get(&mut served, "/v1/changes?since=r1.9", None).status, 410);
        assert_eq!(get(&mut served, "/v1/changes?since=", None).status, 400);
        assert_eq!(get(&mut served, "/v1/changes", None).status, 400);
        assert_eq!(get(&mut served, "/v2/other", None).status, 404);
    }

    #[test]
    fn a_token_is_required_when_configured() {
        let mut served = Served::new("r".into(), vec![], 10).with_token(Some("s3cret".into()));
        let refused = served.answer("GET", "/v1/snapshot", None, None);
        assert_eq!(refused.status, 401);
        assert_eq!(body(&refused)["error"], "unauthorized");
        let wrong = served.answer("GET", "/v1/snapshot", None, Some("Bearer s3cre"));
        assert_eq!(wrong.status, 401);
        let ok = served.answer("GET", "/v1/snapshot", None, Some("Bearer s3cret"));
        assert_eq!(ok.status, 200);
    }
}
