//! What the gateway holds for bridge requests (`[bridge]`): per `auth_req_id` the client,
//! the keyed hash of its credential, the sealed record (credential, PKCE verifier, nonce,
//! authorization URL) and where the request stands; per `state`, the one `auth_req_id` it
//! belongs to, until the user's browser returns once.
//!
//! In memory (this process) or in Redis (`bridge_redis.rs`), shared by replicas so the
//! user's browser can return to another replica than the one that started the request.
//! Sealing is the caller's; this module keeps bytes, compares credential hashes and makes
//! the transitions atomic: a `state` is taken once, a pending request finishes once, a
//! finished one is redeemed once. Time (Unix milliseconds) is an argument.

use crate::ciba::bridge::outcome::Status;
use crate::ciba::ids::{AuthReqId, ClientId, Secret};
use crate::state::bridge_redis::BridgeRedis;
use crate::state::redis_store::RedisConfig;
use crate::state::seal::{CredentialTag, Sealed, Sealer};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long a record outlives its expiry, so a late poll still gets `expired_token`.
pub const GRACE_MS: u64 = 60_000;

/// One bridge request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The client that started it.
    pub client: ClientId,
    /// The keyed hash of the credential it started it with.
    pub tag: CredentialTag,
    /// The sealed secrets (`seal::Kind::BridgeRecord`).
    pub sealed: Sealed,
    /// When it expires, Unix milliseconds.
    pub expires_at_ms: u64,
}

/// What a redemption (a poll by a client) finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// No such request (never issued, or gone after its grace period).
    Unknown,
    /// Another client's request.
    WrongClient,
    /// The owner, with another credential.
    WrongCredential,
    /// Past its expiry.
    Expired,
    /// Still waiting for the user.
    Pending,
    /// Finished: this redemption ends it (the held tokens when approved).
    Ended(Status, Option<Sealed>),
    /// Finished and already redeemed.
    Used,
}

/// The store is shared (Redis) and did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Bridge records, in memory or in Redis.
pub struct BridgeStore {
    sealer: Sealer,
    backend: Backend,
}

enum Backend {
    Memory(Memory),
    Redis(Box<BridgeRedis>),
}

impl BridgeStore {
    /// Records in this process only.
    pub fn memory(sealer: Sealer) -> Self {
        BridgeStore {
            sealer,
            backend: Backend::Memory(Memory::default()),
        }
    }

    /// Records in Redis, shared by every replica with the same `bridge.key`.
    pub fn redis(cfg: RedisConfig, sealer: Sealer) -> Self {
        BridgeStore {
            sealer,
            backend: Backend::Redis(Box::new(BridgeRedis::new(cfg))),
        }
    }

    /// The keys that seal records and hash credentials.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The key a `state` is stored under: its keyed hash, so a store dump holds no state.
    fn state_key(&self, state: &str) -> [u8; 32] {
        let mut input = b"state\0".to_vec();
        input.extend_from_slice(state.as_bytes());
        let tag = self.sealer.tag(&Secret::new(input));
        tag.as_bytes().try_into().expect("a tag is 32 bytes")
    }

    /// Stores a new pending request and its `state`.
    pub async fn create(
        &self,
        id: &AuthReqId,
        state: &str,
        record: Record,
        now_ms: u64,
    ) -> Result<(), Unavailable> {
        let key = self.state_key(state);
        match &self.backend {
            Backend::Memory(m) => {
                m.create(id, key, record, now_ms);
                Ok(())
            }
            Backend::Redis(r) => r.create(id, &key, &record, now_ms).await,
        }
    }

    /// Takes a `state` (once): the request it belongs to, with its record and status.
    pub async fn take_state(
        &self,
        state: &str,
        now_ms: u64,
    ) -> Result<Option<(AuthReqId, Record, Status)>, Unavailable> {
        let key = self.state_key(state);
        match &self.backend {
            Backend::Memory(m) => Ok(m.take_state(&key, now_ms)),
            Backend::Redis(r) => r.take_state(&key, now_ms).await,
        }
    }

    /// A request's record and status, for its owner (the API).
    pub async fn get(
        &self,
        id: &AuthReqId,
        now_ms: u64,
    ) -> Result<Option<(Record, Status)>, Unavailable> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(id, now_ms)),
            Backend::Redis(r) => r.get(id, now_ms).await,
        }
    }

    /// Finishes a pending request (once): `false` when it was not pending any more.
    pub async fn finish(
        &self,
        id: &AuthReqId,
        status: Status,
        tokens: Option<Sealed>,
        now_ms: u64,
    ) -> Result<bool, Unavailable> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.finish(id, status, tokens, now_ms)),
            Backend::Redis(r) => r.finish(id, status, tokens.as_ref(), now_ms).await,
        }
    }

    /// Drops expired records and states (memory; Redis expires its own keys).
    pub fn sweep(&self, now_ms: u64) {
        if let Backend::Memory(m) = &self.backend {
            m.sweep(now_ms);
        }
    }

    /// A poll by `client` presenting `credential` (the hash input): see [`Redeemed`].
    /// Another client, or another credential, changes nothing.
    pub async fn redeem(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        credential: &Secret<Vec<u8>>,
        now_ms: u64,
    ) -> Result<Redeemed, Unavailable> {
        let owner = |rec: &Record| {
            if rec.client != *client {
                Err(Redeemed::WrongClient)
            } else if !self.sealer.matches(credential, &rec.tag) {
                Err(Redeemed::WrongCredential)
            } else if now_ms >= rec.expires_at_ms {
                Err(Redeemed::Expired)
            } else {
                Ok(())
            }
        };
        match &self.backend {
            Backend::Memory(m) => Ok(m.redeem(id, owner, now_ms)),
            Backend::Redis(r) => r.redeem(id, owner, now_ms).await,
        }
    }
}

/// A request in memory.
#[derive(Debug)]
struct Entry {
    record: Record,
    status: Status,
    tokens: Option<Sealed>,
    redeemed: bool,
}

/// The in-memory backend: two maps, each operation one shard lock, nothing awaited.
#[derive(Default)]
struct Memory {
    records: DashMap<Box<str>, Entry>,
    states: DashMap<[u8; 32], (AuthReqId, u64)>,
    created: AtomicU64,
}

/// Sweep the maps once every this many new requests.
const SWEEP_EVERY: u64 = 256;

impl Memory {
    fn create(&self, id: &AuthReqId, state: [u8; 32], record: Record, now_ms: u64) {
        if self.created.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now_ms);
        }
        self.states
            .insert(state, (id.clone(), record.expires_at_ms));
        self.records.insert(
            id.as_str().into(),
            Entry {
                record,
                status: Status::Pending,
                tokens: None,
                redeemed: false,
            },
        );
    }

    fn sweep(&self, now_ms: u64) {
        self.records
            .retain(|_, e| e.record.expires_at_ms + GRACE_MS > now_ms);
        self.states.retain(|_, (_, exp)| *exp > now_ms);
    }

    fn take_state(&self, key: &[u8; 32], now_ms: u64) -> Option<(AuthReqId, Record, Status)> {
        let (_, (id, expires)) = self.states.remove(key)?;
        if expires <= now_ms {
            return None;
        }
        let (rec, status) = self.get(&id, now_ms)?;
        Some((id, rec, status))
    }

    fn get(&self, id: &AuthReqId, now_ms: u64) -> Option<(Record, Status)> {
        let e = self.records.get(id.as_str())?;
        (e.record.expires_at_ms > now_ms && !e.redeemed).then(|| (e.record.clone(), e.status))
    }

    fn finish(&self, id: &AuthReqId, status: Status, tokens: Option<Sealed>, now_ms: u64) -> bool {
        let Some(mut e) = self.records.get_mut(id.as_str()) else {
            return false;
        };
        if e.status != Status::Pending || e.record.expires_at_ms <= now_ms {
            return false;
        }
        e.status = status;
        e.tokens = tokens;
        true
    }

    fn redeem(
        &self,
        id: &AuthReqId,
        owner: impl Fn(&Record) -> Result<(), Redeemed>,
        now_ms: u64,
    ) -> Redeemed {
        let Some(mut e) = self.records.get_mut(id.as_str()) else {
            return Redeemed::Unknown;
        };
        if e.record.expires_at_ms + GRACE_MS <= now_ms {
            return Redeemed::Unknown;
        }
        if let Err(r) = owner(&e.record) {
            return r;
        }
        if e.redeemed {
            return Redeemed::Used;
        }
        if e.status == Status::Pending {
            return Redeemed::Pending;
        }
        e.redeemed = true;
        Redeemed::Ended(e.status, e.tokens.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> BridgeStore {
        BridgeStore::memory(Sealer::new(&Secret::new([7; 32])))
    }

    fn record(s: &BridgeStore, client: &str, cred: &[u8], exp: u64) -> Record {
        Record {
            client: ClientId::new(client),
            tag: s.sealer().tag(&Secret::new(cred.to_vec())),
            sealed: Sealed::from_bytes(b"sealed"),
            expires_at_ms: exp,
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_state_is_taken_once_and_a_request_finishes_once() {
        run(async {
            let s = store();
            let id = AuthReqId::new("id1");
            s.create(&id, "st", record(&s, "c", b"k", 10_000), 0)
                .await
                .unwrap();
            assert!(s.take_state("other", 1).await.unwrap().is_none());
            let (got, _, status) = s.take_state("st", 1).await.unwrap().unwrap();
            assert_eq!((got, status), (id.clone(), Status::Pending));
            assert!(s.take_state("st", 2).await.unwrap().is_none(), "single use");
            assert!(s
                .finish(&id, Status::Approved, Some(Sealed::from_bytes(b"t")), 3)
                .await
                .unwrap());
            assert!(!s.finish(&id, Status::Denied, None, 4).await.unwrap());
        });
    }

    #[test]
    fn redemption_once_by_the_owner_with_its_credential() {
        run(async {
            let s = store();
            let id = AuthReqId::new("id1");
            let c = ClientId::new("c");
            let k = Secret::new(b"k".to_vec());
            s.create(&id, "st", record(&s, "c", b"k", 10_000), 0)
                .await
                .unwrap();
            assert_eq!(s.redeem(&id, &c, &k, 1).await.unwrap(), Redeemed::Pending);
            s.finish(&id, Status::Approved, Some(Sealed::from_bytes(b"t")), 2)
                .await
                .unwrap();
            let other = ClientId::new("d");
            assert_eq!(
                s.redeem(&id, &other, &k, 3).await.unwrap(),
                Redeemed::WrongClient
            );
            let wrong = Secret::new(b"x".to_vec());
            assert_eq!(
                s.redeem(&id, &c, &wrong, 3).await.unwrap(),
                Redeemed::WrongCredential
            );
            assert_eq!(
                s.redeem(&id, &c, &k, 4).await.unwrap(),
                Redeemed::Ended(Status::Approved, Some(Sealed::from_bytes(b"t")))
            );
            assert_eq!(s.redeem(&id, &c, &k, 5).await.unwrap(), Redeemed::Used);
            assert!(s.get(&id, 5).await.unwrap().is_none());
            let unknown = AuthReqId::new("nope");
            assert_eq!(
                s.redeem(&unknown, &c, &k, 5).await.unwrap(),
                Redeemed::Unknown
            );
        });
    }

    #[test]
    fn expiry() {
        run(async {
            let s = store();
            let id = AuthReqId::new("id1");
            let c = ClientId::new("c");
            let k = Secret::new(b"k".to_vec());
            s.create(&id, "st", record(&s, "c", b"k", 1_000), 0)
                .await
                .unwrap();
            assert_eq!(
                s.redeem(&id, &c, &k, 1_000).await.unwrap(),
                Redeemed::Expired
            );
            assert!(s.take_state("st", 1_000).await.unwrap().is_none());
            assert!(!s.finish(&id, Status::Approved, None, 1_000).await.unwrap());
            assert_eq!(
                s.redeem(&id, &c, &k, 1_000 + GRACE_MS).await.unwrap(),
                Redeemed::Unknown
            );
        });
    }
}
