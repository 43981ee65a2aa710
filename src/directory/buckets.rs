//! The directory's shared-data encoding: hashed buckets of compact binary entries.
//!
//! A bucket is one shared-data entry: `KD2`, the epoch it was written in (u64 LE), then entries
//! back to back. Strings are a u32 LE length and UTF-8 bytes. Three kinds:
//! - **application** buckets, by a hash of the name: `name`, `blocked` (u8), the client ids
//!   (u16 count; key manager index u16, client id), the subscriptions (u16 count; API index u16,
//!   state u8, tier index u16 or `NO_TIER`), the API-key hashes (u16 count; 32 bytes each).
//!   Indices are the policy's (the shared-data key carries
//!   a fingerprint of the names they index, so another configuration never reads them).
//! - **client** buckets, by a hash of (key manager index, client id): key manager index u16,
//!   client id, application name.
//! - **key** buckets, by a hash of the API key's SHA-256: the SHA-256 (32 bytes), the expiry
//!   (u64 LE Unix seconds, `u64::MAX`: never), the key's name, application name.

use crate::config::SubscriptionState;

/// Buckets of each kind. A lookup copies one bucket of each kind out of shared data, so this
/// keeps them small (100,000 applications: about 25 per application bucket) while a small
/// directory writes only the buckets it fills.
pub const BUCKETS: u64 = 4096;

const MAGIC: &[u8; 3] = b"KD2";
pub const NO_TIER: u16 = u16::MAX;

/// FNV-1a, 64 bit: stable across workers and builds (not for security).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

pub fn app_bucket(name: &str) -> u64 {
    fnv1a(&[b"a", name.as_bytes()]) % BUCKETS
}

pub fn client_bucket(key_manager: u16, client_id: &str) -> u64 {
    fnv1a(&[b"c", &key_manager.to_le_bytes(), client_id.as_bytes()]) % BUCKETS
}

pub fn key_bucket(hash: &[u8; 32]) -> u64 {
    fnv1a(&[b"k", hash]) % BUCKETS
}

/// An application as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApp {
    pub name: String,
    pub blocked: bool,
    pub client_ids: Vec<(u16, String)>,
    /// (API index, state, tier index or [`NO_TIER`]).
    pub subscriptions: Vec<(u16, SubscriptionState, u16)>,
    /// The SHA-256 of each of its API keys.
    pub api_keys: Vec<[u8; 32]>,
}

/// An API key's owner as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub hash: [u8; 32],
    pub name: String,
    /// Unix seconds; `None`: never.
    pub expires: Option<u64>,
    pub application: String,
}

/// A client id's owner as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub key_manager: u16,
    pub client_id: String,
    pub application: String,
}

/// A bucket's bytes, with its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub epoch: u64,
    /// The entries (without the header).
    pub entries: Vec<u8>,
}

impl Bucket {
    pub fn empty(epoch: u64) -> Self {
        Bucket {
            epoch,
            entries: Vec::new(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (epoch, entries) = rest.split_at_checked(8)?;
        Some(Bucket {
            epoch: u64::from_le_bytes(epoch.try_into().ok()?),
            entries: entries.to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.entries.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.entries);
        out
    }

    /// The applications in order, with the byte range of each; stops at the first entry that
    /// does not decode (a bucket written by another format).
    pub fn apps(&self) -> Vec<(std::ops::Range<usize>, StoredApp)> {
        let mut reader = Reader::new(&self.entries);
        let mut out = Vec::new();
        while !reader.done() {
            let start = reader.pos;
            match read_app(&mut reader) {
                Some(app) => out.push((start..reader.pos, app)),
                None => break,
            }
        }
        out
    }

    pub fn find_app(&self, name: &str) -> Option<(std::ops::Range<usize>, StoredApp)> {
        let mut reader = Reader::new(&self.entries);
        while !reader.done() {
            let start = reader.pos;
            // Compare the name before decoding the rest.
            let found = reader.clone().string().is_some_and(|n| n == name);
            let app = read_app(&mut reader)?;
            if found {
                return Some((start..reader.pos, app));
            }
        }
        None
    }

    pub fn find_client(
        &self,
        key_manager: u16,
        client_id: &str,
    ) -> Option<(std::ops::Range<usize>, StoredClient)> {
        let mut reader = Reader::new(&self.entries);
        while !reader.done() {
            let start = reader.pos;
            let client = read_client(&mut reader)?;
            if client.key_manager == key_manager && client.client_id == client_id {
                return Some((start..reader.pos, client));
            }
        }
        None
    }

    pub fn find_key(&self, hash: &[u8; 32]) -> Option<(std::ops::Range<usize>, StoredKey)> {
        let mut reader = Reader::new(&self.entries);
        while !reader.done() {
            let start = reader.pos;
            let key = read_key(&mut reader)?;
            if key.hash == *hash {
                return Some((start..reader.pos, key));
            }
        }
        None
    }

    pub fn remove(&mut self, range: std::ops::Range<usize>) {
        if range.end <= self.entries.len() && range.start <= range.end {
            self.entries.drain(range);
        }
    }

    pub fn push_app(&mut self, app: &StoredApp) {
        let out = &mut self.entries;
        put_str(out, &app.name);
        out.push(u8::from(app.blocked));
        put_u16(out, app.client_ids.len());
        for (km, id) in &app.client_ids {
            out.extend_from_slice(&km.to_le_bytes());
            put_str(out, id);
        }
        put_u16(out, app.subscriptions.len());
        for (api, state, tier) in &app.subscriptions {
            out.extend_from_slice(&api.to_le_bytes());
            out.push(match state {
                SubscriptionState::Active => 0,
                SubscriptionState::Blocked => 1,
                SubscriptionState::ProductionOnlyBlocked => 2,
            });
            out.extend_from_slice(&tier.to_le_bytes());
        }
        put_u16(out, app.api_keys.len());
        for hash in &app.api_keys {
            out.extend_from_slice(hash);
        }
    }

    pub fn push_key(&mut self, key: &StoredKey) {
        let out = &mut self.entries;
        out.extend_from_slice(&key.hash);
        out.extend_from_slice(&key.expires.unwrap_or(u64::MAX).to_le_bytes());
        put_str(out, &key.name);
        put_str(out, &key.application);
    }

    pub fn push_client(&mut self, client: &StoredClient) {
        let out = &mut self.entries;
        out.extend_from_slice(&client.key_manager.to_le_bytes());
        put_str(out, &client.client_id);
        put_str(out, &client.application);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

/// A panic-free reader over a bucket's entries.
#[derive(Clone)]
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn hash(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }

    fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

fn read_app(r: &mut Reader<'_>) -> Option<StoredApp> {
    let name = r.string()?;
    let blocked = r.u8()? != 0;
    let clients = r.u16()?;
    let mut client_ids = Vec::with_capacity(usize::from(clients));
    for _ in 0..clients {
        client_ids.push((r.u16()?, r.string()?));
    }
    let subs = r.u16()?;
    let mut subscriptions = Vec::with_capacity(usize::from(subs));
    for _ in 0..subs {
        let api = r.u16()?;
        let state = match r.u8()? {
            0 => SubscriptionState::Active,
            1 => SubscriptionState::Blocked,
            2 => SubscriptionState::ProductionOnlyBlocked,
            _ => return None,
        };
        subscriptions.push((api, state, r.u16()?));
    }
    let keys = r.u16()?;
    let mut api_keys = Vec::with_capacity(usize::from(keys));
    for _ in 0..keys {
        api_keys.push(r.hash()?);
    }
    Some(StoredApp {
        name,
        blocked,
        client_ids,
        subscriptions,
        api_keys,
    })
}

fn read_key(r: &mut Reader<'_>) -> Option<StoredKey> {
    let hash = r.hash()?;
    let expires = Some(r.u64()?).filter(|at| *at != u64::MAX);
    Some(StoredKey {
        hash,
        expires,
        name: r.string()?,
        application: r.string()?,
    })
}

fn read_client(r: &mut Reader<'_>) -> Option<StoredClient> {
    Some(StoredClient {
        key_manager: r.u16()?,
        client_id: r.string()?,
        application: r.string()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_are_found_and_removed() {
        let mut bucket = Bucket::empty(7);
        let app = |name: &str| StoredApp {
            name: name.into(),
            blocked: false,
            client_ids: vec![(0, format!("{name}-c"))],
            subscriptions: vec![(1, SubscriptionState::ProductionOnlyBlocked, NO_TIER)],
            api_keys: vec![[name.len() as u8; 32]],
        };
        bucket.push_app(&app("a"));
        bucket.push_app(&app("b"));
        let decoded = Bucket::decode(&bucket.encode()).unwrap();
        assert_eq!(decoded, bucket);
        let (range, found) = decoded.find_app("b").unwrap();
        assert_eq!(found, app("b"));
        bucket.remove(range);
        assert!(bucket.find_app("b").is_none());
        assert_eq!(bucket.apps().len(), 1);
        let mut clients = Bucket::empty(1);
        let client = StoredClient {
            key_manager: 2,
            client_id: "x".into(),
            application: "a".into(),
        };
        clients.push_client(&client);
        assert_eq!(clients.find_client(2, "x").unwrap().1, client);
        assert!(clients.find_client(1, "x").is_none());
        let mut keys = Bucket::empty(1);
        let key = |hash: u8, expires| StoredKey {
            hash: [hash; 32],
            name: format!("k{hash}"),
            expires,
            application: "a".into(),
        };
        keys.push_key(&key(1, None));
        keys.push_key(&key(2, Some(1_800_000_000)));
        let keys = Bucket::decode(&keys.encode()).unwrap();
        assert_eq!(keys.find_key(&[1; 32]).unwrap().1, key(1, None));
        assert_eq!(
            keys.find_key(&[2; 32]).unwrap().1,
            key(2, Some(1_800_000_000))
        );
        assert!(keys.find_key(&[3; 32]).is_none());
        assert!(Bucket::decode(b"KD2\x01").is_none());
        // Truncated entries end the walk instead of panicking.
        let mut cut = bucket.encode();
        cut.truncate(cut.len() - 3);
        assert!(Bucket::decode(&cut).unwrap().find_app("zz").is_none());
    }
}
