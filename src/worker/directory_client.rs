//! The application directory in one worker: the timer's fetch (one per refresh across all
//! workers, by the same compare-and-swap lease as the JWKS: whoever writes the state record with
//! itself as lease owner fetches), the answer applied to shared data by the worker that fetched
//! it, and the check, on every tick, whether the directory this worker serves changed.
//!
//! What is fetched: `/v1/changes?since=V` while a version is held, `/v1/snapshot` when none is
//! (first load, or after a 410), both with `If-None-Match: "V"`; a 304 only renews the directory's
//! freshness. A failure keeps the directory (stale-if-error: lookups answer until
//! `stale_seconds` after the last good refresh) and retries after `refresh_seconds`.

use crate::config::{ConfigError, ConfigErrors, ConfigProblem, DirectoryConfig};
use crate::directory::{self, read_page, read_state, state_key, Applier, State};
use crate::directory::{CHANGES_PATH, SNAPSHOT_PAGE, SNAPSHOT_PATH};
use crate::keys::{made_by_proxy, SlotError};
use crate::policy::Policy;

use super::metrics::{StatName, DIRECTORY_FETCHES, DIRECTORY_REFUSED};
use super::{Fetch, Host, SharedSlots};

/// A little more than the fetch timeout: a lease whose answer never came is taken over after it.
const LEASE_GRACE_MS: u64 = 1_000;

/// What a fetch asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    Snapshot,
    Changes,
}

pub(super) struct DirectoryClient {
    config: DirectoryConfig,
    prefix: String,
    /// `Authorization` of the fetches, from `token_env`.
    authorization: Option<String>,
    worker_id: u64,
    /// The callout in flight: its token, what it asked and from which version.
    callout: Option<(u32, Asked, String)>,
    /// (generation, usable) this worker last saw: when it changes, what the worker derived from
    /// the directory is forgotten.
    seen: Option<(u64, bool)>,
}

/// The bearer token of `config.token_env` in the filter's environment (refused when unset).
pub fn directory_token(
    policy: &Policy,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigErrors> {
    let Some(config) = policy.directory() else {
        return Ok(None);
    };
    if config.token_env.is_empty() {
        return Ok(None);
    }
    let token = env(&config.token_env).filter(|t| !t.is_empty());
    let refused = ConfigErrors::from_vec(match token {
        Some(_) => Vec::new(),
        None => vec![ConfigError::new(
            "directory.token_env",
            ConfigProblem::SecretNotSet {
                variable: config.token_env.clone(),
            },
        )],
    });
    match refused {
        Some(errors) => Err(errors),
        None => Ok(token),
    }
}

/// Percent-encodes a version for the query (versions are opaque to the gateway).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl DirectoryClient {
    pub(super) fn new(policy: &Policy, worker_id: u64, token: Option<String>) -> Option<Self> {
        let config = policy.directory()?.clone();
        Some(DirectoryClient {
            prefix: directory::prefix(policy, &config),
            config,
            authorization: token.map(|t| format!("Bearer {t}")),
            worker_id: worker_id.max(1),
            callout: None,
            seen: None,
        })
    }

    pub(super) fn owns(&self, token: u32) -> bool {
        self.callout.as_ref().is_some_and(|(t, _, _)| *t == token)
    }

    fn refresh_ms(&self) -> u64 {
        self.config.refresh_seconds.saturating_mul(1000)
    }

    /// Timer: notes whether the served directory changed (true: forget what was derived from
    /// it), and starts the fetch when one is due and this worker wins the lease.
    pub(super) fn tick(&mut self, host: &mut impl Host, now_ms: u64) -> bool {
        let slots = SharedSlots(&*host, self.worker_id);
        let (state, expect) = read_state(&slots, &self.prefix);
        let view = state
            .as_ref()
            .map(|s| (s.generation, s.usable(now_ms, self.config.stale_seconds)));
        let changed = view != self.seen;
        self.seen = view;
        let state = state.unwrap_or_default();
        let due = now_ms >= state.next_ms && !state.leased(now_ms);
        if !due {
            return changed;
        }
        let mut leased = state.clone();
        leased.lease_owner = self.worker_id;
        leased.lease_until_ms = now_ms
            .saturating_add(self.config.timeout_ms)
            .saturating_add(LEASE_GRACE_MS);
        let retired = if leased.cursor.is_empty() {
            std::mem::take(&mut leased.retired)
        } else {
            0
        };
        match slots
            .0
            .shared_set(&state_key(&self.prefix), &leased.encode(), expect)
        {
            Ok(()) => {}
            Err(SlotError::CasMismatch) => return changed,
            Err(SlotError::Host) => {
                log::warn!("keygate: directory: shared data unavailable");
                return changed;
            }
        }
        if retired != 0 {
            // The namespace a snapshot left behind a refresh ago: no lookup reads it any more.
            for key in directory::store::namespace_keys(&self.prefix, retired) {
                if let Some((_, cas)) = host.shared_get(&key) {
                    let empty = directory::buckets::Bucket::empty(0).encode();
                    let _ = host.shared_set(&key, &empty, crate::keys::Expect::Cas(cas));
                }
            }
        }
        self.dispatch(host, now_ms, &state);
        changed
    }

    /// Asks for what `state` needs: the next snapshot page (none held, or a paged snapshot in
    /// progress) or the changes since the version held.
    fn dispatch(&mut self, host: &mut impl Host, now_ms: u64, state: &State) {
        let asked = if state.version.is_empty() || !state.cursor.is_empty() {
            Asked::Snapshot
        } else {
            Asked::Changes
        };
        let base = self.config.path.trim_end_matches('/');
        let path = match asked {
            Asked::Snapshot if state.cursor.is_empty() => {
                format!("{base}{SNAPSHOT_PATH}?limit={SNAPSHOT_PAGE}")
            }
            Asked::Snapshot => format!(
                "{base}{SNAPSHOT_PATH}?limit={SNAPSHOT_PAGE}&after={}",
                encode_query(&state.cursor)
            ),
            Asked::Changes => format!(
                "{base}{CHANGES_PATH}?since={}",
                encode_query(&state.version)
            ),
        };
        let etag = format!("\"{}\"", state.version);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2);
        if !state.version.is_empty() && state.cursor.is_empty() {
            headers.push(("if-none-match", &etag));
        }
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization));
        }
        let fetch = Fetch {
            cluster: &self.config.cluster,
            authority: &self.config.authority,
            path: &path,
            timeout_ms: self.config.timeout_ms,
            post: None,
            headers: &headers,
        };
        let since = match asked {
            Asked::Snapshot => state.cursor.clone(),
            Asked::Changes => state.version.clone(),
        };
        match host.dispatch(&fetch) {
            Some(token) => self.callout = Some((token, asked, since)),
            None => {
                self.failed(host, now_ms, "dispatch_failed");
            }
        }
    }

    /// Ends this worker's lease with `update` applied to the newest state (retried on a lost
    /// compare-and-swap; a lease another worker took over is left alone).
    fn publish(&self, host: &impl Host, update: impl Fn(&mut State)) -> bool {
        let slots = SharedSlots(host, self.worker_id);
        for _ in 0..4 {
            let (state, expect) = read_state(&slots, &self.prefix);
            let mut state = state.unwrap_or_default();
            if state.lease_owner != self.worker_id {
                return false;
            }
            update(&mut state);
            state.lease_owner = 0;
            state.lease_until_ms = 0;
            match host.shared_set(&state_key(&self.prefix), &state.encode(), expect) {
                Ok(()) => return true,
                Err(SlotError::CasMismatch) => continue,
                Err(SlotError::Host) => return false,
            }
        }
        false
    }

    fn failed(&mut self, host: &mut impl Host, now_ms: u64, code: &'static str) {
        log::warn!(
            "keygate: directory {} not refreshed: {code}",
            self.config.url
        );
        let next = now_ms.saturating_add(self.refresh_ms());
        self.publish(&*host, |s| {
            s.failures = s.failures.saturating_add(1);
            s.next_ms = next;
        });
        count_fetch(host, code);
    }

    /// The directory callout answered with `body_size` bytes. Returns true when the directory
    /// changed.
    pub(super) fn answered(
        &mut self,
        host: &mut impl Host,
        policy: &Policy,
        now_ms: u64,
        headers: &[(String, String)],
        body_size: usize,
    ) -> bool {
        let Some((_, asked, since)) = self.callout.take() else {
            return false;
        };
        let status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse::<u32>().ok())
            .unwrap_or(0);
        if headers.is_empty() || made_by_proxy(status, headers) {
            self.failed(host, now_ms, "unreachable");
            return false;
        }
        let next = now_ms.saturating_add(self.refresh_ms());
        match status {
            304 => {
                self.publish(&*host, |s| {
                    s.last_ok_ms = now_ms;
                    s.failures = 0;
                    s.next_ms = next;
                });
                count_fetch(host, "not_modified");
                false
            }
            410 if asked == Asked::Snapshot && !since.is_empty() => {
                log::info!(
                    "keygate: directory {}: the source changed during a paged snapshot; starting it again",
                    self.config.url
                );
                self.publish(&*host, |s| {
                    s.cursor.clear();
                    s.next_ms = now_ms;
                });
                count_fetch(host, "gone");
                false
            }
            410 | 400 if asked == Asked::Changes => {
                log::info!(
                    "keygate: directory {}: version {since:?} unknown to the source; fetching a snapshot",
                    self.config.url
                );
                // The directory held stays served (and fresh) until the snapshot replaces it.
                self.publish(&*host, |s| {
                    s.version.clear();
                    s.next_ms = now_ms;
                });
                count_fetch(host, "gone");
                false
            }
            200 if body_size > self.config.max_bytes => {
                self.failed(host, now_ms, "too_large");
                false
            }
            200 => self.apply(host, policy, now_ms, asked, body_size),
            401 | 403 => {
                self.failed(host, now_ms, "unauthorized");
                false
            }
            _ => {
                self.failed(host, now_ms, "bad_status");
                false
            }
        }
    }

    /// A 200 answer: every entry applied (bad ones skipped and counted), then the state
    /// published.
    fn apply(
        &mut self,
        host: &mut impl Host,
        policy: &Policy,
        now_ms: u64,
        asked: Asked,
        body_size: usize,
    ) -> bool {
        let snapshot = asked == Asked::Snapshot;
        let slots = SharedSlots(&*host, self.worker_id);
        let (state, _) = read_state(&slots, &self.prefix);
        let state = state.unwrap_or_default();
        if state.lease_owner != self.worker_id {
            // Our lease ran out and another worker took over: its answer will count.
            log::warn!(
                "keygate: directory {}: answer dropped, the fetch outlived its lease (timeout_ms)",
                self.config.url
            );
            count_fetch(host, "lease_lost");
            return false;
        }
        let mut applier = Applier::new(policy, &slots, &self.prefix, &state, snapshot);
        let body = std::io::BufReader::with_capacity(
            BODY_PART,
            Body {
                host: &*host,
                at: 0,
                size: body_size,
            },
        );
        let page = read_page(body, snapshot, &mut |entry| applier.apply(entry));
        let (version, next) = match page {
            Ok((version, next)) if !version.is_empty() => (version, next),
            Ok(_) | Err(_) => {
                self.failed(host, now_ms, "malformed");
                return false;
            }
        };
        let refused = std::mem::take(&mut applier.refused);
        let (epoch, applications, applied) =
            (applier.epoch(), applier.applications, applier.applied);
        if applier.flush().is_err() {
            self.failed(host, now_ms, "shared_data_unavailable");
            return false;
        }
        for r in &refused {
            log::warn!(
                "keygate: directory entry {} not applied: {}: {}",
                r.name.as_deref().unwrap_or("(unnamed)"),
                r.refusal.code(),
                r.detail
            );
            let name = StatName::new(DIRECTORY_REFUSED).label("reason", Some(r.refusal.code()));
            host.count(name.as_str());
        }
        if let Some(cursor) = next {
            // A page of a paged snapshot: staged in the namespace not served; the next page is
            // asked for at once, under a renewed lease.
            count_fetch(host, "snapshot_page");
            let lease_until = now_ms
                .saturating_add(self.config.timeout_ms)
                .saturating_add(LEASE_GRACE_MS);
            let mut staged = None;
            let owner = self.worker_id;
            let slots = SharedSlots(&*host, self.worker_id);
            for _ in 0..4 {
                let (current, expect) = read_state(&slots, &self.prefix);
                let mut current = current.unwrap_or_default();
                if current.lease_owner != owner {
                    break;
                }
                current.cursor = cursor.clone();
                current.staging_epoch = epoch;
                current.staging_applications = applications;
                current.lease_until_ms = lease_until;
                match host.shared_set(&state_key(&self.prefix), &current.encode(), expect) {
                    Ok(()) => {
                        staged = Some(current);
                        break;
                    }
                    Err(SlotError::CasMismatch) => continue,
                    Err(SlotError::Host) => break,
                }
            }
            if let Some(state) = staged {
                self.dispatch(host, now_ms, &state);
            }
            return false;
        }
        let next = now_ms.saturating_add(self.refresh_ms());
        let changed = snapshot || applied > 0;
        let published = self.publish(&*host, |s| {
            if snapshot && s.epoch != 0 && s.epoch != epoch {
                s.retired = s.epoch;
            }
            s.cursor.clear();
            s.staging_epoch = epoch;
            s.version = version.clone();
            s.epoch = epoch;
            s.applications = applications;
            if changed {
                s.generation = s.generation.wrapping_add(1);
            }
            s.last_ok_ms = now_ms;
            s.failures = 0;
            s.next_ms = next;
        });
        if published {
            log::info!(
                "keygate: directory {} at version {version}: {} ({applied} applied, {} refused, {applications} applications)",
                self.config.url,
                if snapshot { "snapshot" } else { "changes" },
                refused.len()
            );
        }
        count_fetch(host, if snapshot { "snapshot" } else { "changes" });
        changed
    }
}

/// How much of an answer is copied into the VM at a time.
const BODY_PART: usize = 64 * 1024;

/// The callout's answer body, read from the host in parts.
struct Body<'h, H: Host> {
    host: &'h H,
    at: usize,
    size: usize,
}

impl<H: Host> std::io::Read for Body<'_, H> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.size.saturating_sub(self.at));
        if want == 0 {
            return Ok(0);
        }
        let part = self.host.fetch_body_part(self.at, want);
        let n = part.len().min(want);
        if let (Some(to), Some(from)) = (buf.get_mut(..n), part.get(..n)) {
            to.copy_from_slice(from);
        }
        self.at += n;
        Ok(n)
    }
}

fn count_fetch(host: &mut impl Host, outcome: &str) {
    let name = StatName::new(DIRECTORY_FETCHES).label("outcome", Some(outcome));
    host.count(name.as_str());
}
