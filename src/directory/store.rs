//! The directory in shared data: the state record every worker reads, the per-request lookup,
//! and the application of a source's answer (by the one worker that fetched it).
//!
//! Keys, all under `keygate.dir.<16 hex>` (a hash of the source URL and of the names the entries'
//! indices refer to, so a reconfigured gateway never reads entries of another configuration):
//! - `.state`: [`State`] (JSON): the version held, the epoch, the generation, the fetch lease,
//!   the time of the last successful refresh;
//! - `.a.<n>`: application buckets, `.c.<n>`: client-id buckets, `.k.<n>`: API-key buckets
//!   ([`super::buckets`]).
//!
//! **Epochs.** A snapshot writes every bucket it fills with the next epoch, then publishes the
//! state with that epoch. A bucket older than the state's epoch reads as empty, so what a snapshot
//! dropped disappears at once, without deleting keys (proxy-wasm has no delete). A reader still at
//! the previous epoch accepts the newer buckets, so a snapshot being written never hides a known
//! application. Changes rewrite buckets within the current epoch.
//!
//! **Generation.** Bumped whenever an answer changed anything: workers compare it on their timer
//! and forget what they derived from the old directory (authorizations remembered with verified
//! tokens), so a change is enforced by every worker within one tick of being applied.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::buckets::{
    app_bucket, client_bucket, fnv1a, key_bucket, Bucket, StoredApp, StoredClient, StoredKey,
    NO_TIER,
};
use super::wire::Entry;
use crate::config::{ApplicationConfig, DirectoryConfig};
use crate::dpop::Slots;
use crate::keys::{Expect, SlotError};
use crate::policy::api_keys::{expiry_seconds, parse_hash_hex, KeyHash};
use crate::policy::applications::{
    Application, ApplicationLookup, KeyLookup, KeyOwner, Lookup, Subscription,
};
use crate::policy::{KeyManagerId, Policy};

/// The directory's shared state, one small record per Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The source's version the buckets hold (`""`: none: the next fetch is a snapshot).
    pub version: String,
    /// Buckets older than this read as empty.
    pub epoch: u64,
    /// Bumped by every answer that changed something.
    pub generation: u64,
    /// When a refresh last succeeded (0: never: nothing is served).
    pub last_ok_ms: u64,
    /// The worker fetching now, and until when its lease holds.
    pub lease_owner: u64,
    pub lease_until_ms: u64,
    /// When the next fetch is due.
    pub next_ms: u64,
    /// Failed fetches in a row.
    pub failures: u32,
    /// Applications held.
    pub applications: u64,
    /// A paged snapshot in progress: the cursor of its next page (`""`: none), the epoch its
    /// pages are written in (the other namespace than `epoch`'s) and the applications so far.
    pub cursor: String,
    pub staging_epoch: u64,
    pub staging_applications: u64,
    /// The epoch of the namespace a finished snapshot left behind, emptied at a later fetch.
    pub retired: u64,
}

impl State {
    pub fn decode(bytes: &[u8]) -> Option<State> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether the directory may be served at `now_ms`: loaded, and refreshed within the stale
    /// bound.
    pub fn usable(&self, now_ms: u64, stale_seconds: u64) -> bool {
        self.last_ok_ms > 0 && now_ms <= self.last_ok_ms.saturating_add(stale_seconds * 1000)
    }

    pub fn leased(&self, now_ms: u64) -> bool {
        self.lease_owner != 0 && now_ms < self.lease_until_ms
    }
}

/// The shared-data key prefix of `policy`'s directory.
pub fn prefix(policy: &Policy, config: &DirectoryConfig) -> String {
    let catalog = policy.catalog();
    // `|kd2`: the bucket format, so a module with another format starts from a snapshot.
    let mut parts: Vec<&[u8]> = vec![config.url.as_bytes(), b"|kd2", b"|km"];
    parts.extend(catalog.key_managers.iter().map(|s| s.as_bytes()));
    parts.push(b"|api");
    parts.extend(catalog.apis.iter().map(|s| s.as_bytes()));
    parts.push(b"|tier");
    parts.extend(catalog.tiers.iter().map(|(s, _)| s.as_bytes()));
    format!("keygate.dir.{:016x}", fnv1a(&parts))
}

pub fn state_key(prefix: &str) -> String {
    format!("{prefix}.state")
}

/// Buckets live in two namespaces, by the parity of their epoch: a paged snapshot fills the one
/// not served, and the state's epoch switches to it when the last page is applied.
fn app_key(prefix: &str, epoch: u64, name: &str) -> String {
    format!("{prefix}.{}.a.{}", epoch % 2, app_bucket(name))
}

fn client_key(prefix: &str, epoch: u64, km: u16, client_id: &str) -> String {
    format!("{prefix}.{}.c.{}", epoch % 2, client_bucket(km, client_id))
}

/// Every bucket key of the namespace of `epoch`.
pub fn namespace_keys(prefix: &str, epoch: u64) -> impl Iterator<Item = String> + '_ {
    let ns = epoch % 2;
    ["a", "c", "k"].into_iter().flat_map(move |kind| {
        (0..super::buckets::BUCKETS).map(move |n| format!("{prefix}.{ns}.{kind}.{n}"))
    })
}

fn key_key(prefix: &str, epoch: u64, hash: &KeyHash) -> String {
    format!("{prefix}.{}.k.{}", epoch % 2, key_bucket(hash))
}

/// The state record and its CAS value (`None`: no worker wrote it yet).
pub fn read_state(slots: &dyn Slots, prefix: &str) -> (Option<State>, Expect) {
    match slots.get(&state_key(prefix)) {
        None => (None, Expect::Absent),
        Some((bytes, cas)) => (State::decode(&bytes), Expect::Cas(cas)),
    }
}

/// The application of a stored entry, with its budgets.
fn application(policy: &Policy, stored: StoredApp) -> Application {
    let catalog = policy.catalog();
    let mut subscriptions = HashMap::with_capacity(stored.subscriptions.len());
    for (api, state, tier) in stored.subscriptions {
        let api = usize::from(api);
        let budget = (tier != NO_TIER)
            .then(|| catalog.budget(usize::from(tier), &stored.name, api))
            .flatten();
        subscriptions.insert(api, Subscription { state, budget });
    }
    Application {
        name: stored.name,
        blocked: stored.blocked,
        subscriptions,
    }
}

/// The per-request lookup: the state, the client id's bucket, the application's bucket (three
/// shared-data reads, only when a worker has nothing remembered for the token).
pub struct SharedLookup<'a> {
    pub policy: &'a Policy,
    pub slots: &'a dyn Slots,
    pub now_ms: u64,
}

impl SharedLookup<'_> {
    /// The state when the directory may be served, with the key prefix; else the answer.
    fn usable(&self) -> Result<(String, State), u64> {
        let Some(config) = self.policy.directory() else {
            return Err(0);
        };
        let retry_after = config.refresh_seconds.max(1);
        let prefix = prefix(self.policy, config);
        match read_state(self.slots, &prefix) {
            (Some(state), _) if state.usable(self.now_ms, config.stale_seconds) => {
                Ok((prefix, state))
            }
            _ => Err(retry_after),
        }
    }

    /// A bucket of the current epoch.
    fn read(&self, state: &State, key: &str) -> Option<Bucket> {
        self.slots
            .get(key)
            .and_then(|(bytes, _)| Bucket::decode(&bytes))
            .filter(|bucket| bucket.epoch >= state.epoch)
    }

    fn app(&self, prefix: &str, state: &State, name: &str) -> Option<StoredApp> {
        self.read(state, &app_key(prefix, state.epoch, name))
            .and_then(|bucket| bucket.find_app(name))
            .map(|(_, app)| app)
    }
}

impl ApplicationLookup for SharedLookup<'_> {
    fn find(&self, key_manager: KeyManagerId, client_id: &str) -> Lookup<'_> {
        let (prefix, state) = match self.usable() {
            Ok(usable) => usable,
            Err(0) => return Lookup::Unknown,
            Err(retry_after) => return Lookup::Unavailable { retry_after },
        };
        let Ok(km) = u16::try_from(key_manager.index()) else {
            return Lookup::Unknown;
        };
        let owner = self
            .read(&state, &client_key(&prefix, state.epoch, km, client_id))
            .and_then(|bucket| bucket.find_client(km, client_id))
            .map(|(_, client)| client.application);
        let Some(name) = owner else {
            return Lookup::Unknown;
        };
        let found = self.app(&prefix, &state, &name).filter(|app| {
            app.client_ids
                .iter()
                .any(|(k, c)| *k == km && c == client_id)
        });
        match found {
            Some(app) => Lookup::Found(Cow::Owned(application(self.policy, app))),
            None => Lookup::Unknown,
        }
    }

    /// The key bucket, then the application's bucket (which must still list the key).
    fn find_key(&self, hash: &[u8; 32]) -> KeyLookup<'_> {
        let (prefix, state) = match self.usable() {
            Ok(usable) => usable,
            Err(0) => return KeyLookup::Unknown,
            Err(retry_after) => return KeyLookup::Unavailable { retry_after },
        };
        let Some((_, key)) = self
            .read(&state, &key_key(&prefix, state.epoch, hash))
            .and_then(|bucket| bucket.find_key(hash))
        else {
            return KeyLookup::Unknown;
        };
        let found = self
            .app(&prefix, &state, &key.application)
            .filter(|app| app.api_keys.contains(hash));
        match found {
            Some(app) => KeyLookup::Found(KeyOwner {
                key_name: Cow::Owned(key.name),
                expires: key.expires,
                application: Cow::Owned(application(self.policy, app)),
            }),
            None => KeyLookup::Unknown,
        }
    }
}

/// Why an entry of an answer was not applied (the `reason` label of
/// `keygate_directory_refused_entries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an application object, or it names an unknown key manager, API or tier.
    Invalid,
    /// One of its client ids belongs to another application.
    ClientIdTaken,
    /// A snapshot names it twice.
    DuplicateName,
    /// One of its API-key hashes belongs to another application.
    ApiKeyTaken,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::ClientIdTaken => "client_id_taken",
            Refusal::DuplicateName => "duplicate_name",
            Refusal::ApiKeyTaken => "api_key_taken",
        }
    }
}

/// An entry not applied: which (when it has a name), why, and the details for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub name: Option<String>,
    pub refusal: Refusal,
    pub detail: String,
}

/// An answer being applied: buckets read (or, for a snapshot, started empty), changed in memory,
/// written back together by [`Applier::flush`].
pub struct Applier<'a> {
    policy: &'a Policy,
    slots: &'a dyn Slots,
    prefix: String,
    epoch: u64,
    snapshot: bool,
    buckets: BTreeMap<String, (Bucket, Option<Expect>)>,
    pub refused: Vec<Refused>,
    /// Entries applied.
    pub applied: u64,
    /// Applications held after the answer.
    pub applications: u64,
}

impl<'a> Applier<'a> {
    /// Applies on top of what `state` holds (changes), or a snapshot page: the first into a new
    /// epoch of the namespace not served, the next ones on top of the pages before.
    pub fn new(
        policy: &'a Policy,
        slots: &'a dyn Slots,
        prefix: &str,
        state: &State,
        snapshot: bool,
    ) -> Self {
        Applier {
            policy,
            slots,
            prefix: prefix.to_string(),
            epoch: if !snapshot {
                state.epoch
            } else if !state.cursor.is_empty() {
                state.staging_epoch
            } else if state.staging_epoch > state.epoch {
                // A snapshot abandoned halfway: a new epoch of the same namespace.
                state.staging_epoch.wrapping_add(2)
            } else {
                state.epoch.wrapping_add(1).max(1)
            },
            snapshot,
            buckets: BTreeMap::new(),
            refused: Vec::new(),
            applied: 0,
            applications: match (snapshot, state.cursor.is_empty()) {
                (false, _) => state.applications,
                (true, true) => 0,
                (true, false) => state.staging_applications,
            },
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn bucket(&mut self, key: String) -> &mut Bucket {
        let (slots, epoch, snapshot) = (self.slots, self.epoch, self.snapshot);
        let (bucket, _) = self.buckets.entry(key).or_insert_with_key(|key| {
            match slots.get(key) {
                None => (Bucket::empty(epoch), Some(Expect::Absent)),
                Some((bytes, cas)) => {
                    // A snapshot page builds on its own epoch's pages only.
                    let bucket = Bucket::decode(&bytes)
                        .filter(|b| {
                            if snapshot {
                                b.epoch == epoch
                            } else {
                                b.epoch >= epoch
                            }
                        })
                        .map(|b| Bucket { epoch, ..b })
                        .unwrap_or_else(|| Bucket::empty(epoch));
                    (bucket, Some(Expect::Cas(cas)))
                }
            }
        });
        bucket
    }

    fn refuse(&mut self, name: Option<String>, refusal: Refusal, detail: String) {
        self.refused.push(Refused {
            name,
            refusal,
            detail,
        });
    }

    pub fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Upsert(app) => self.upsert(&app),
            Entry::Remove(name) => {
                if self.remove(&name) {
                    self.applied += 1;
                }
            }
            Entry::Bad { name, reason } => self.refuse(name, Refusal::Invalid, reason),
        }
    }

    /// Compiles an application with the policy's rules into its stored form.
    fn stored(&mut self, app: &ApplicationConfig) -> Option<(StoredApp, Vec<StoredKey>)> {
        let catalog = self.policy.catalog();
        let mut errors = Vec::new();
        let compiled = catalog.compile("application", app, &mut errors);
        if let Some(first) = errors.first() {
            let detail = first.to_string();
            self.refuse(Some(app.name.clone()), Refusal::Invalid, detail);
            return None;
        }
        let mut client_ids = Vec::with_capacity(compiled.client_ids.len());
        for id in compiled.client_ids {
            client_ids.push((u16::try_from(id.key_manager).ok()?, id.client_id));
        }
        let mut subscriptions = Vec::with_capacity(app.subscriptions.len());
        for sub in &app.subscriptions {
            let api = catalog.api(&sub.api).and_then(|i| u16::try_from(i).ok())?;
            let tier = match &sub.tier {
                None => NO_TIER,
                Some(tier) => catalog
                    .tiers
                    .iter()
                    .position(|(name, _)| name == tier)
                    .and_then(|i| u16::try_from(i).ok())
                    .filter(|i| *i != NO_TIER)?,
            };
            subscriptions.push((api, sub.state, tier));
        }
        let keys = match entry_keys(app) {
            Ok(keys) => keys,
            Err(detail) => {
                self.refuse(Some(app.name.clone()), Refusal::Invalid, detail);
                return None;
            }
        };
        let max = usize::from(u16::MAX);
        if client_ids.len() > max || subscriptions.len() > max || keys.len() > max {
            let detail = "more than 65535 client ids, subscriptions or API keys".to_string();
            self.refuse(Some(app.name.clone()), Refusal::Invalid, detail);
            return None;
        }
        Some((
            StoredApp {
                name: app.name.clone(),
                blocked: compiled.application.blocked,
                client_ids,
                subscriptions,
                api_keys: keys.iter().map(|k| k.hash).collect(),
            },
            keys,
        ))
    }

    fn upsert(&mut self, app: &ApplicationConfig) {
        let Some((new, keys)) = self.stored(app) else {
            return;
        };
        let prefix = self.prefix.clone();
        let epoch = self.epoch;
        let akey = app_key(&prefix, epoch, &new.name);
        let old = self.bucket(akey.clone()).find_app(&new.name);
        if self.snapshot && old.is_some() {
            let detail = "the snapshot names this application twice".to_string();
            self.refuse(Some(new.name.clone()), Refusal::DuplicateName, detail);
            return;
        }
        // Every client id must be free or already this application's.
        for (km, id) in &new.client_ids {
            let owner = self
                .bucket(client_key(&prefix, epoch, *km, id))
                .find_client(*km, id)
                .map(|(_, c)| c.application);
            if let Some(owner) = owner.filter(|o| *o != new.name) {
                let km_name = self.policy.catalog().key_managers.get(usize::from(*km));
                let detail = format!(
                    "client id {id:?} of key manager {:?} belongs to application {owner:?}",
                    km_name.map(String::as_str).unwrap_or_default()
                );
                self.refuse(Some(new.name.clone()), Refusal::ClientIdTaken, detail);
                return;
            }
        }
        // So must every API-key hash.
        for key in &keys {
            let owner = self
                .bucket(key_key(&prefix, epoch, &key.hash))
                .find_key(&key.hash)
                .map(|(_, k)| k.application);
            if let Some(owner) = owner.filter(|o| *o != new.name) {
                let detail = format!(
                    "the API key {:?} (its SHA-256) belongs to application {owner:?}",
                    key.name
                );
                self.refuse(Some(new.name.clone()), Refusal::ApiKeyTaken, detail);
                return;
            }
        }
        let (old_clients, old_keys) = match &old {
            Some((range, app)) => {
                let held = (app.client_ids.clone(), app.api_keys.clone());
                self.bucket(akey.clone()).remove(range.clone());
                held
            }
            None => {
                self.applications += 1;
                (Vec::new(), Vec::new())
            }
        };
        // Keys are rewritten whole (a kept hash may have a new name or expiry).
        for hash in &old_keys {
            let bucket = self.bucket(key_key(&prefix, epoch, hash));
            if let Some((range, _)) = bucket.find_key(hash) {
                bucket.remove(range);
            }
        }
        for key in &keys {
            self.bucket(key_key(&prefix, epoch, &key.hash))
                .push_key(key);
        }
        for (km, id) in old_clients.iter().filter(|c| !new.client_ids.contains(c)) {
            let bucket = self.bucket(client_key(&prefix, epoch, *km, id));
            if let Some((range, _)) = bucket.find_client(*km, id) {
                bucket.remove(range);
            }
        }
        for (km, id) in new.client_ids.iter().filter(|c| !old_clients.contains(c)) {
            let client = StoredClient {
                key_manager: *km,
                client_id: id.clone(),
                application: new.name.clone(),
            };
            self.bucket(client_key(&prefix, epoch, *km, id))
                .push_client(&client);
        }
        self.bucket(akey).push_app(&new);
        self.applied += 1;
    }

    /// Removes an application and its client ids; false when it was not held.
    fn remove(&mut self, name: &str) -> bool {
        let prefix = self.prefix.clone();
        let epoch = self.epoch;
        let akey = app_key(&prefix, epoch, name);
        let Some((range, old)) = self.bucket(akey.clone()).find_app(name) else {
            return false;
        };
        self.bucket(akey).remove(range);
        for (km, id) in &old.client_ids {
            let bucket = self.bucket(client_key(&prefix, epoch, *km, id));
            if let Some((range, _)) = bucket.find_client(*km, id) {
                bucket.remove(range);
            }
        }
        for hash in &old.api_keys {
            let bucket = self.bucket(key_key(&prefix, epoch, hash));
            if let Some((range, _)) = bucket.find_key(hash) {
                bucket.remove(range);
            }
        }
        self.applications = self.applications.saturating_sub(1);
        true
    }

    /// Writes every bucket touched. A snapshot writes only the buckets it filled: the others of
    /// its namespace are of another epoch, so they read as empty.
    pub fn flush(self) -> Result<(), SlotError> {
        for (key, (bucket, expect)) in self.buckets {
            let expect = match expect {
                Some(expect) => expect,
                None => match self.slots.get(&key) {
                    Some((_, cas)) => Expect::Cas(cas),
                    None => Expect::Absent,
                },
            };
            self.slots.set(&key, &bucket.encode(), expect)?;
        }
        Ok(())
    }
}

/// An entry's `api_keys` with the plugin config's rules (`docs/api-keys.md`): a name, 64
/// lower-case hex digits, an expiry that is a date-time or Unix seconds, no hash twice.
fn entry_keys(app: &ApplicationConfig) -> Result<Vec<StoredKey>, String> {
    let mut keys: Vec<StoredKey> = Vec::with_capacity(app.api_keys.len());
    for (k, key) in app.api_keys.iter().enumerate() {
        let at = format!("api_keys[{k}]");
        if key.name.is_empty() || key.name.chars().any(char::is_control) {
            return Err(format!("{at}.name: empty or with control characters"));
        }
        let Some(hash) = parse_hash_hex(&key.sha256) else {
            return Err(format!("{at}.sha256: not 64 lower-case hex digits"));
        };
        let expires = match &key.expires {
            None => None,
            Some(expiry) => Some(expiry_seconds(expiry).ok_or_else(|| {
                format!("{at}.expires: not an RFC 3339 date-time or Unix seconds")
            })?),
        };
        if keys.iter().any(|other| other.hash == hash) {
            return Err(format!("{at}.sha256: the same hash twice"));
        }
        keys.push(StoredKey {
            hash,
            name: key.name.clone(),
            expires,
            application: app.name.clone(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::MemorySlots;
    use crate::policy::applications::Lookup;
    use serde_json::json;

    fn policy() -> Policy {
        let cfg = json!({
            "environment": "production",
            "key_managers": [{"name": "idp", "issuer": "https://idp",
                "jwks": {"uri": "u", "cluster": "c", "authority": "a", "path": "/k"}}],
            "apis": [{"name": "pets", "base_path": "/pets", "resources": [{"method": "GET", "path": "/x"}]},
                     {"name": "shop", "base_path": "/shop", "resources": [{"method": "GET", "path": "/x"}]}],
            "tiers": [{"name": "gold", "requests": 5, "per": "minute"}],
            "directory": {"url": "http://dir/", "cluster": "d", "authority": "dir", "path": "/"}
        });
        Policy::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    fn app(name: &str, client: &str, apis: &[&str]) -> Entry {
        let subs: Vec<_> = apis
            .iter()
            .map(|a| json!({"api": a, "tier": "gold"}))
            .collect();
        let value = json!({"name": name, "client_ids": [{"key_manager": "idp", "client_id": client}],
                           "subscriptions": subs});
        Entry::Upsert(serde_json::from_value(value).unwrap())
    }

    /// Applies entries and publishes the state as the fetching worker does.
    fn apply(p: &Policy, slots: &MemorySlots, snapshot: bool, entries: Vec<Entry>) -> Vec<Refused> {
        let prefix = prefix(p, p.directory().unwrap());
        let (state, expect) = read_state(slots, &prefix);
        let mut state = state.unwrap_or_default();
        let mut applier = Applier::new(p, slots, &prefix, &state, snapshot);
        for entry in entries {
            applier.apply(entry);
        }
        let refused = applier.refused.clone();
        state.epoch = applier.epoch();
        state.applications = applier.applications;
        state.generation += 1;
        state.last_ok_ms = 1_000;
        applier.flush().unwrap();
        slots
            .set(&state_key(&prefix), &state.encode(), expect)
            .unwrap();
        refused
    }

    fn find(p: &Policy, slots: &MemorySlots, client: &str, now_ms: u64) -> Lookup<'static> {
        let lookup = SharedLookup {
            policy: p,
            slots,
            now_ms,
        };
        match lookup.find(KeyManagerId::new(0), client) {
            Lookup::Found(app) => Lookup::Found(Cow::Owned(app.into_owned())),
            Lookup::Unknown => Lookup::Unknown,
            Lookup::Unavailable { retry_after } => Lookup::Unavailable { retry_after },
        }
    }

    fn subscribed(found: &Lookup<'_>) -> Vec<usize> {
        match found {
            Lookup::Found(app) => {
                let mut apis: Vec<usize> = app.subscriptions.keys().copied().collect();
                apis.sort_unstable();
                apis
            }
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn a_gateway_that_never_loaded_or_went_stale_cannot_look_up() {
        let p = policy();
        let slots = MemorySlots::default();
        assert_eq!(
            find(&p, &slots, "c1", 1_000),
            Lookup::Unavailable { retry_after: 1 }
        );
        apply(&p, &slots, true, vec![app("a", "c1", &["pets"])]);
        assert_eq!(subscribed(&find(&p, &slots, "c1", 1_000)), [0]);
        // 300 s after the last good refresh (the default stale bound) it still serves; not after.
        assert_eq!(subscribed(&find(&p, &slots, "c1", 301_000)), [0]);
        assert_eq!(
            find(&p, &slots, "c1", 301_001),
            Lookup::Unavailable { retry_after: 1 }
        );
    }

    #[test]
    fn changes_upsert_and_remove_and_a_snapshot_drops_the_rest() {
        let p = policy();
        let slots = MemorySlots::default();
        apply(
            &p,
            &slots,
            true,
            vec![app("a", "c1", &["pets"]), app("b", "c2", &[])],
        );
        apply(&p, &slots, false, vec![app("a", "c3", &["pets", "shop"])]);
        assert_eq!(
            find(&p, &slots, "c1", 1_000),
            Lookup::Unknown,
            "client id moved"
        );
        assert_eq!(subscribed(&find(&p, &slots, "c3", 1_000)), [0, 1]);
        apply(&p, &slots, false, vec![Entry::Remove("a".into())]);
        assert_eq!(find(&p, &slots, "c3", 1_000), Lookup::Unknown);
        assert_eq!(
            subscribed(&find(&p, &slots, "c2", 1_000)),
            Vec::<usize>::new()
        );
        apply(&p, &slots, true, vec![app("z", "c9", &["shop"])]);
        assert_eq!(
            find(&p, &slots, "c2", 1_000),
            Lookup::Unknown,
            "not in the snapshot"
        );
        assert_eq!(subscribed(&find(&p, &slots, "c9", 1_000)), [1]);
        let found = find(&p, &slots, "c9", 1_000);
        let Lookup::Found(z) = found else { panic!() };
        let budget = z.subscriptions[&1].budget.clone().unwrap();
        assert_eq!(budget.tier.requests, 5);
    }

    #[test]
    fn bad_entries_are_skipped_alone_with_their_reason() {
        let p = policy();
        let slots = MemorySlots::default();
        let refused = apply(
            &p,
            &slots,
            true,
            vec![
                app("a", "c1", &["pets"]),
                app("b", "c1", &["pets"]),
                app("c", "c2", &["nope"]),
                app("a", "c5", &[]),
                app("d", "c4", &["shop"]),
            ],
        );
        let reasons: Vec<_> = refused
            .iter()
            .map(|r| (r.name.clone().unwrap(), r.refusal))
            .collect();
        assert_eq!(
            reasons,
            [
                ("b".to_string(), Refusal::ClientIdTaken),
                ("c".to_string(), Refusal::Invalid),
                ("a".to_string(), Refusal::DuplicateName),
            ]
        );
        assert!(refused[1].detail.contains("nope"), "{}", refused[1].detail);
        assert_eq!(subscribed(&find(&p, &slots, "c1", 1_000)), [0]);
        assert_eq!(subscribed(&find(&p, &slots, "c4", 1_000)), [1]);
        assert_eq!(find(&p, &slots, "c2", 1_000), Lookup::Unknown);
        // A change that takes another application's client id is refused; the holder keeps it.
        let refused = apply(&p, &slots, false, vec![app("d", "c1", &[])]);
        assert_eq!(refused[0].refusal, Refusal::ClientIdTaken);
        assert_eq!(subscribed(&find(&p, &slots, "c4", 1_000)), [1]);
    }
}
