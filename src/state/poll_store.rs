//! The shared table of outstanding `auth_req_id`s and their polling state.
//!
//! Shaped like mini-redis's `db.rs`: [`PollStore`] is a cheap handle over `Arc<PollTable>`, so
//! every connection task gets its own clone and no one owns the data. The maps are sharded
//! (`DashMap`) so polls for different ids rarely contend, and every method returns owned
//! values: callers are async, and a shard guard held across an `.await` would block every
//! other task hashing to that shard (or deadlock a task that re-enters it).
//!
//! Lock order: a `states` shard may be held while a `per_client` shard is taken (in `sweep`),
//! never the other way round, so the two maps cannot deadlock against each other.
//!
//! # Ids are keyed by a 128-bit keyed hash, not by their text
//!
//! A million tracked ids as `Box<str>` keys cost a separate ~48-byte heap string each (about
//! 53 MiB) and a pointer chase, i.e. a likely cache miss, on every lookup. The table is keyed
//! instead by [`IdKey`]: two 64-bit SipHash-1-3 values of the id under one random per-store key
//! (std's `RandomState`), domain-separated by a leading 0 or 1, so 16 bytes inline in the slot.
//!
//! - Collisions: for a keyed PRF the chance that two distinct ids share a key is 2^-128 per
//!   pair; with 1.1 million ids tracked that is about 2^-88 for the whole table, and a spoofed
//!   id matching some tracked one is about 2^-108 per guess. Even then a collision cannot
//!   leak tokens: the poll is still checked against the owning client, and the OP, which
//!   sees the real id, decides what it is worth.
//! - Flooding: the key is random per process and never leaves it, so clients cannot choose
//!   ids that collide in the table's buckets or shards; the table therefore uses the key's
//!   first half as its hash ([`PreHashed`]) instead of hashing a hash again.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::ciba::clock::{self, Clock};
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::polling::{self, Ack, AckError, OpVerdict, PollDecision, PollPolicy, PollState};

/// An `auth_req_id` as the table knows it: its 128-bit keyed hash (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey([u64; 2]);

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Half a keyed hash is already uniform and unpredictable; see `PreHashed`.
        state.write_u64(self.0[0]);
    }
}

/// Hands the table an [`IdKey`]'s own bits as its hash rather than hashing them again.
#[derive(Clone, Copy, Default)]
struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The hasher behind [`PreHashed`].
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `IdKey` is hashed here, through `write_u64`; folding bytes keeps anything else
        // correct, if slow and unkeyed.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(32) ^ n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Bounds on how much polling state the gateway keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Outstanding requests tracked across all clients (default 1,000,000).
    pub max_tracked: usize,
    /// Outstanding requests tracked for one client (default 10,000), so one client cannot
    /// starve the rest.
    pub max_per_client: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_tracked: 1_000_000,
            max_per_client: 10_000,
        }
    }
}

/// Which limit refused a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullScope {
    /// `max_tracked` across all clients.
    Total,
    /// `max_per_client` for the requesting client.
    Client,
}

/// The store cannot take another request now; answer 429/503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// A suggested wait before retrying.
    pub retry_after: Duration,
    /// Which limit was hit.
    pub scope: FullScope,
}

/// What the store says about one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// The store knows the id, or has just started probing it: the poll rules' decision.
    Decided(PollDecision),
    /// The store does not know the id, and was not asked to learn it.
    Unknown,
    /// The store does not know the id and has no room to learn it: answer 429.
    Full(Full),
}

/// A cheap, cloneable handle to the shared polling table.
#[derive(Clone)]
pub struct PollStore {
    table: Arc<PollTable>,
}

/// The table every handle shares: the poll states, their per-client counts, the limits.
struct PollTable {
    states: DashMap<IdKey, PollState, PreHashed>,
    // The secret key of `IdKey`s.
    id_hasher: RandomState,
    // Per-client counts make the per-client limit O(1); the keys double as the one shared
    // `Arc<str>` per client that every `PollState` of that client points at.
    per_client: DashMap<ClientId, usize>,
    // Kept beside the map because `DashMap::len` locks every shard in turn.
    tracked: AtomicUsize,
    policy: PollPolicy,
    limits: StoreLimits,
    clock: Arc<dyn Clock>,
}

impl PollStore {
    /// An empty store enforcing `policy` within `limits`, reading time from `clock`.
    pub fn new(policy: PollPolicy, limits: StoreLimits, clock: Arc<dyn Clock>) -> Self {
        PollStore {
            table: Arc::new(PollTable {
                // Clients choose the ids they poll with, so the hash behind `IdKey` is keyed
                // (SipHash, random keys): a predictable one would invite collision floods.
                states: DashMap::with_hasher(PreHashed),
                id_hasher: RandomState::new(),
                per_client: DashMap::new(),
                tracked: AtomicUsize::new(0),
                policy,
                limits,
                clock,
            }),
        }
    }

    /// The policy this store enforces.
    pub fn policy(&self) -> &PollPolicy {
        &self.table.policy
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.table.limits
    }

    /// Checks, before a backchannel request reaches the OP, that its answer could be tracked.
    ///
    /// This is a check, not a reservation: requests admitted concurrently may overshoot a
    /// limit by the number in flight, which is bounded by the proxy's concurrency. Reserving
    /// would need a release on every OP failure path, and a leaked reservation is worse than
    /// a small overshoot.
    ///
    /// `retry_after` is `policy.min_interval`: the soonest expiry is not known without an
    /// ordered index, and entries free up continually as requests end, expire and are swept,
    /// so a short, fixed back-off is as good an estimate as a cheap one can be.
    pub fn admit(&self, client: &ClientId) -> Result<(), Full> {
        let s = &self.table;
        let full = |scope| Full {
            retry_after: s.policy.min_interval,
            scope,
        };
        if s.tracked.load(Ordering::Relaxed) >= s.limits.max_tracked {
            return Err(full(FullScope::Total));
        }
        if self.tracked_for(client) >= s.limits.max_per_client {
            return Err(full(FullScope::Client));
        }
        Ok(())
    }

    /// Starts tracking `id` after the OP acknowledged it; returns what to tell the client.
    ///
    /// Always tracks, even past a limit: the OP has issued the id, and an untracked id would
    /// escape enforcement. An existing entry for the same id is replaced.
    pub fn record_ack(
        &self,
        id: AuthReqId,
        client: ClientId,
        op_interval: Option<u64>,
        op_expires_in: u64,
    ) -> Result<Ack, AckError> {
        let s = &self.table;
        let ack = polling::admit_ack(&s.policy, op_interval, op_expires_in)?;
        let key = s.key(&id);
        let client = self.acquire(client);
        let state = PollState::new(client, &ack, s.clock.now());
        // `acquire` released its `per_client` shard before this `states` lock is taken.
        match s.states.insert(key, state) {
            Some(old) => self.release(old.client()),
            None => {
                s.tracked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(ack)
    }

    /// Decides a token request for `id` from `client`.
    ///
    /// An id the store does not know is [`Polled::Unknown`] unless `learn` is set; then, room
    /// permitting, the store starts a probe (the poll is forwarded once, see
    /// [`PollDecision::Probe`]) keyed by client and id together, so a client can neither learn
    /// nor spoil what the gateway remembers of another client's ids. Probes count against
    /// the same limits as acknowledged ids, so spoofed ids cannot grow memory without bound.
    pub fn poll(&self, id: &AuthReqId, client: &ClientId, learn: bool) -> Polled {
        let s = &self.table;
        let now = clock::millis(s.clock.now());
        if let Some(mut state) = s.states.get_mut(&s.key(id)) {
            // The write guard makes read-decide-update one step per id: two simultaneous
            // polls cannot both see the old `last_poll` and both be forwarded.
            return Polled::Decided(polling::decide_at(&mut state, client, now, &s.policy));
        }
        match s.states.entry(s.learned_key(client, id)) {
            Entry::Occupied(mut e) => {
                Polled::Decided(polling::decide_at(e.get_mut(), client, now, &s.policy))
            }
            Entry::Vacant(e) => {
                if !learn {
                    return Polled::Unknown;
                }
                if let Err(full) = self.admit(client) {
                    return Polled::Full(full);
                }
                // A `per_client` shard inside a `states` shard: the allowed lock order.
                let client = self.acquire(client.clone());
                e.insert(PollState::probe(client, now, &s.policy));
                s.tracked.fetch_add(1, Ordering::Relaxed);
                Polled::Decided(PollDecision::Probe)
            }
        }
    }

    /// Records what the OP answered to a poll of `id` by `client` that was forwarded (see
    /// [`polling::learn`]). Returns whether the store had state for it.
    pub fn report(&self, id: &AuthReqId, client: &ClientId, verdict: OpVerdict) -> bool {
        let s = &self.table;
        let now = clock::millis(s.clock.now());
        let state = match s.states.get_mut(&s.key(id)) {
            Some(state) => Some(state),
            None => s.states.get_mut(&s.learned_key(client, id)),
        };
        match state {
            Some(mut state) if state.client() == client => {
                polling::learn(&mut state, verdict, now, &s.policy);
                true
            }
            _ => false,
        }
    }

    /// Stops tracking `id` (the request was cancelled); returns whether it was tracked.
    pub fn cancel(&self, id: &AuthReqId) -> bool {
        let s = &self.table;
        match s.states.remove(&s.key(id)) {
            Some((_, old)) => {
                self.forget(&old);
                true
            }
            None => false,
        }
    }

    /// Drops every entry past its expiry and the grace after it; returns how many.
    ///
    /// `retain` write-locks one shard at a time, so polls on other shards proceed meanwhile.
    pub fn sweep(&self) -> usize {
        let s = &self.table;
        let now = clock::millis(s.clock.now());
        let mut removed = 0;
        s.states.retain(|_, state| {
            if state.droppable_at(now, &s.policy) {
                // Taking a `per_client` shard inside a `states` shard: the allowed lock order.
                self.release(state.client());
                removed += 1;
                false
            } else {
                true
            }
        });
        s.tracked.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Whether `id` has state (active or a tombstone).
    pub fn is_tracked(&self, id: &AuthReqId) -> bool {
        let s = &self.table;
        s.states.contains_key(&s.key(id))
    }

    /// How many ids are tracked, tombstones included.
    pub fn len(&self) -> usize {
        self.table.tracked.load(Ordering::Relaxed)
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many ids are tracked for `client`, tombstones included.
    pub fn tracked_for(&self, client: &ClientId) -> usize {
        self.table.per_client.get(client).map_or(0, |n| *n)
    }

    /// Counts one more request for `client`; returns the client's shared `Arc` so a million
    /// entries of one client cost one allocation, not a million.
    fn acquire(&self, client: ClientId) -> ClientId {
        match self.table.per_client.entry(client) {
            Entry::Occupied(mut e) => {
                *e.get_mut() += 1;
                e.key().clone()
            }
            Entry::Vacant(e) => {
                let shared = e.key().clone();
                e.insert(1);
                shared
            }
        }
    }

    /// Counts one request fewer for `client`, dropping the counter at zero so clients that
    /// come and go leave nothing behind.
    fn release(&self, client: &ClientId) {
        if let Entry::Occupied(mut e) = self.table.per_client.entry(client.clone()) {
            let n = e.get_mut();
            *n = n.saturating_sub(1);
            if *n == 0 {
                e.remove();
            }
        }
    }

    /// Accounts for one entry removed from `states`.
    fn forget(&self, old: &PollState) {
        self.release(old.client());
        self.table.tracked.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PollTable {
    /// The table's key for what was learned about `id` from `client`'s polls; domain-separated
    /// from [`PollTable::key`] so the two never meet.
    fn learned_key(&self, client: &ClientId, id: &AuthReqId) -> IdKey {
        let (c, id) = (client.as_str(), id.as_str());
        IdKey([
            self.id_hasher.hash_one((2u8, c, id)),
            self.id_hasher.hash_one((3u8, c, id)),
        ])
    }

    /// The table's key for `id`.
    fn key(&self, id: &AuthReqId) -> IdKey {
        let id = id.as_str();
        // One secret key, two domain-separated inputs: two independent 64-bit PRF outputs.
        IdKey([
            self.id_hasher.hash_one((0u8, id)),
            self.id_hasher.hash_one((1u8, id)),
        ])
    }
}

impl std::fmt::Debug for PollStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids are redeemable handles: show sizes, never contents.
        f.debug_struct("PollStore")
            .field("tracked", &self.len())
            .field("clients", &self.table.per_client.len())
            .field("policy", &self.table.policy)
            .field("limits", &self.table.limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ciba::clock::FakeClock;
    use std::collections::HashMap;
    use std::sync::Barrier;

    const S: Duration = Duration::from_secs(1);
    /// How long the default policy keeps answering `expired_token`.
    const GRACE: Duration = Duration::from_secs(300);

    fn store_with(limits: StoreLimits) -> (PollStore, FakeClock) {
        let clock = FakeClock::new();
        let store = PollStore::new(PollPolicy::default(), limits, Arc::new(clock.clone()));
        (store, clock)
    }

    fn store() -> (PollStore, FakeClock) {
        store_with(StoreLimits::default())
    }

    fn id(s: &str) -> AuthReqId {
        AuthReqId::new(s)
    }

    fn client(s: &str) -> ClientId {
        ClientId::new(s)
    }

    /// A poll that learns nothing, with `retry_after` zeroed so decisions compare by kind.
    fn poll(st: &PollStore, a: &AuthReqId, c: &ClientId) -> Option<PollDecision> {
        match st.poll(a, c, false) {
            Polled::Decided(PollDecision::SlowDown { interval, .. }) => {
                Some(PollDecision::SlowDown {
                    interval,
                    retry_after: Duration::ZERO,
                })
            }
            Polled::Decided(d) => Some(d),
            Polled::Unknown => None,
            Polled::Full(f) => panic!("full: {f:?}"),
        }
    }

    /// The counters agree exactly with the entries, and no zero counter lingers.
    fn assert_counts_exact(store: &PollStore) {
        let mut actual: HashMap<ClientId, usize> = HashMap::new();
        for e in store.table.states.iter() {
            *actual.entry(e.value().client().clone()).or_default() += 1;
        }
        let counted: HashMap<ClientId, usize> = store
            .table
            .per_client
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        assert_eq!(counted, actual);
        assert_eq!(store.len(), store.table.states.len());
    }

    #[test]
    fn first_poll_forwarded_then_slow_down_then_forwarded_at_new_interval() {
        let (st, clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        let ack = st.record_ack(a.clone(), c.clone(), Some(5), 120).unwrap();
        assert_eq!(ack.interval, 5 * S);
        assert_eq!(ack.expires_in, 120 * S);
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        clock.advance(2 * S);
        assert_eq!(
            poll(&st, &a, &c),
            Some(PollDecision::SlowDown {
                interval: 10 * S,
                retry_after: Duration::ZERO
            })
        );
        clock.advance(5 * S);
        assert_eq!(
            poll(&st, &a, &c),
            Some(PollDecision::SlowDown {
                interval: 15 * S,
                retry_after: Duration::ZERO
            })
        );
        clock.advance(15 * S);
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        assert_counts_exact(&st);
    }

    #[test]
    fn tolerance_absorbs_jitter() {
        let (st, clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        clock.advance(5 * S - Duration::from_millis(200));
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
    }

    #[test]
    fn hammering_stays_throttled() {
        let (st, clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 600).unwrap();
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        for _ in 0..50 {
            clock.advance(S);
            assert!(matches!(
                poll(&st, &a, &c),
                Some(PollDecision::SlowDown { .. })
            ));
        }
    }

    #[test]
    fn expiry_is_answered_through_the_grace_then_the_id_is_unknown() {
        let (st, clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 30).unwrap();
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        clock.advance(30 * S);
        for _ in 0..3 {
            assert_eq!(poll(&st, &a, &c), Some(PollDecision::Expired));
            assert_eq!(st.sweep(), 0);
            clock.advance(99 * S);
        }
        clock.advance(3 * S);
        assert_eq!(st.sweep(), 1);
        assert_eq!(poll(&st, &a, &c), None);
        assert!(st.is_empty());
        assert_eq!(st.tracked_for(&c), 0);
        assert_counts_exact(&st);
    }

    #[test]
    fn wrong_client_is_refused_and_owner_unaffected() {
        let (st, clock) = store();
        let (a, owner, thief) = (id("req-1"), client("c1"), client("c2"));
        st.record_ack(a.clone(), owner.clone(), None, 60).unwrap();
        assert_eq!(poll(&st, &a, &owner), Some(PollDecision::Forward));
        clock.advance(S);
        let key = st.table.key(&a);
        let before = st.table.states.get(&key).unwrap().clone();
        for _ in 0..10 {
            assert_eq!(poll(&st, &a, &thief), Some(PollDecision::WrongClient));
        }
        assert_eq!(*st.table.states.get(&key).unwrap(), before);
        clock.advance(4 * S);
        assert_eq!(poll(&st, &a, &owner), Some(PollDecision::Forward));
        // A thief never learns that the id expired, and does not remove it.
        clock.advance(60 * S);
        assert_eq!(poll(&st, &a, &thief), Some(PollDecision::WrongClient));
        assert_eq!(st.len(), 1);
        assert_eq!(st.tracked_for(&thief), 0);
        assert_counts_exact(&st);
    }

    #[test]
    fn finish_leaves_a_tombstone_until_expiry_then_sweep_drops_it() {
        let (st, clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Forward));
        assert!(st.report(&a, &c, OpVerdict::Ended));
        clock.advance(10 * S);
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
        assert_eq!(st.tracked_for(&c), 1);
        assert_eq!(st.sweep(), 0);
        clock.advance(50 * S);
        assert_eq!(poll(&st, &a, &c), Some(PollDecision::Ended));
        assert_eq!(st.sweep(), 0, "kept through the grace period");
        clock.advance(GRACE);
        assert_eq!(st.sweep(), 1);
        assert_eq!(poll(&st, &a, &c), None);
        assert_eq!(st.tracked_for(&c), 0);
        assert!(!st.report(&a, &c, OpVerdict::Ended));
        assert_counts_exact(&st);
    }

    #[test]
    fn ids_are_keyed_by_a_secret_per_store_hash() {
        let (st, _clock) = store();
        let (other, _clock) = store();
        let (a, b) = (id("req-1"), id("req-2"));
        assert!(st.table.key(&a) == st.table.key(&a.clone()));
        assert!(st.table.key(&a) != st.table.key(&b));
        // Another store (another process) files the same id elsewhere.
        assert!(st.table.key(&a) != other.table.key(&a));
        let [lo, hi] = st.table.key(&a).0;
        assert_ne!(lo, hi);
        assert_eq!(PreHashed.hash_one(st.table.key(&a)), lo);
    }

    #[test]
    fn cancel_removes() {
        let (st, _clock) = store();
        let (a, c) = (id("req-1"), client("c1"));
        st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
        assert!(st.cancel(&a));
        assert!(!st.cancel(&a));
        assert_eq!(poll(&st, &a, &c), None);
        assert_eq!(st.tracked_for(&c), 0);
        assert!(st.is_empty());
        assert_counts_exact(&st);
    }

    #[test]
    fn unknown_id_creates_no_state() {
        let (st, _clock) = store();
        let c = client("c1");
        for n in 0..100 {
            assert_eq!(poll(&st, &id(&format!("spoof-{n}")), &c), None);
            assert!(!st.report(&id(&format!("spoof-{n}")), &c, OpVerdict::Ended));
        }
        assert!(st.is_empty());
        assert!(st.table.states.is_empty());
        assert!(st.table.per_client.is_empty());
    }

    #[test]
    fn zero_expires_in_is_rejected_and_tracks_nothing() {
        let (st, _clock) = store();
        let c = client("c1");
        assert_eq!(
            st.record_ack(id("req-1"), c.clone(), Some(5), 0),
            Err(AckError::NoExpiry)
        );
        assert!(st.is_empty());
        assert_eq!(st.tracked_for(&c), 0);
        assert!(st.table.per_client.is_empty());
    }

    #[test]
    fn record_ack_clamps_like_admit_ack() {
        let (st, _clock) = store();
        let ack = st
            .record_ack(id("req-1"), client("c1"), Some(1), 86_400)
            .unwrap();
        assert_eq!(ack.interval, 5 * S);
        assert_eq!(ack.expires_in, 600 * S);
    }

    #[test]
    fn replacing_an_id_keeps_counts_right() {
        let (st, clock) = store();
        let (a, c1, c2) = (id("req-1"), client("c1"), client("c2"));
        st.record_ack(a.clone(), c1.clone(), None, 60).unwrap();
        st.record_ack(a.clone(), c1.clone(), None, 60).unwrap();
        assert_eq!((st.len(), st.tracked_for(&c1)), (1, 1));
        st.record_ack(a.clone(), c2.clone(), None, 60).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!((st.tracked_for(&c1), st.tracked_for(&c2)), (0, 1));
        assert_counts_exact(&st);
        // The replacement starts afresh: its first poll is forwarded.
        assert_eq!(poll(&st, &a, &c2), Some(PollDecision::Forward));
        clock.advance(S);
        assert_eq!(poll(&st, &a, &c1), Some(PollDecision::WrongClient));
    }

    #[test]
    fn entries_share_one_arc_per_client() {
        let (st, _clock) = store();
        for n in 0..3 {
            st.record_ack(id(&format!("req-{n}")), client("c1"), None, 60)
                .unwrap();
        }
        let entry = |s: &str| {
            let key = st.table.key(&id(s));
            st.table.states.get(&key).unwrap().client().clone()
        };
        let (a, b) = (entry("req-0"), entry("req-2"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }

    #[test]
    fn admit_limits_total_and_per_client_and_frees_up() {
        let limits = StoreLimits {
            max_tracked: 4,
            max_per_client: 2,
        };
        let (st, clock) = store_with(limits);
        let (c1, c2, c3) = (client("c1"), client("c2"), client("c3"));
        let retry = PollPolicy::default().min_interval;

        // Per-client limit, freed by cancel.
        assert_eq!(st.admit(&c1), Ok(()));
        st.record_ack(id("a1"), c1.clone(), None, 30).unwrap();
        st.record_ack(id("a2"), c1.clone(), None, 60).unwrap();
        assert_eq!(
            st.admit(&c1),
            Err(Full {
                retry_after: retry,
                scope: FullScope::Client
            })
        );
        assert!(st.cancel(&id("a2")));
        assert_eq!(st.admit(&c1), Ok(()));
        st.record_ack(id("a2"), c1.clone(), None, 60).unwrap();

        // Total limit, hit by another client.
        st.record_ack(id("b1"), c2.clone(), None, 60).unwrap();
        st.record_ack(id("b2"), c2.clone(), None, 60).unwrap();
        assert_eq!(
            st.admit(&c3),
            Err(Full {
                retry_after: retry,
                scope: FullScope::Total
            })
        );
        assert_counts_exact(&st);

        // An expired id still counts while its expiry is being answered...
        clock.advance(30 * S);
        assert_eq!(poll(&st, &id("a1"), &c1), Some(PollDecision::Expired));
        assert!(st.admit(&c3).is_err());
        // ...and is freed by the sweep after the grace period.
        clock.advance(GRACE);
        assert_eq!(st.sweep(), 1);
        assert_eq!(st.admit(&c3), Ok(()));
        st.record_ack(id("c1"), c3.clone(), None, 60).unwrap();
        assert!(st.admit(&c3).is_err());

        clock.advance(30 * S);
        assert_eq!(st.sweep(), 3);
        assert_eq!((st.len(), st.tracked_for(&c3)), (1, 1));
        assert_eq!(st.admit(&c1), Ok(()));
        assert_counts_exact(&st);
        clock.advance(60 * S + GRACE);
        assert_eq!(st.sweep(), 1);
        assert!(st.is_empty());
        assert!(st.table.per_client.is_empty());
        assert_eq!(st.admit(&c3), Ok(()));
    }

    #[test]
    fn sweep_keeps_live_entries_and_counts_right() {
        let (st, clock) = store();
        let (c1, c2) = (client("c1"), client("c2"));
        for n in 0..10 {
            let c = if n % 2 == 0 { &c1 } else { &c2 };
            st.record_ack(id(&format!("short-{n}")), c.clone(), None, 10)
                .unwrap();
            st.record_ack(id(&format!("long-{n}")), c.clone(), None, 600)
                .unwrap();
        }
        assert_eq!(st.len(), 20);
        clock.advance(10 * S + GRACE);
        assert_eq!(st.sweep(), 10);
        assert_eq!((st.tracked_for(&c1), st.tracked_for(&c2)), (5, 5));
        assert_eq!(poll(&st, &id("long-0"), &c1), Some(PollDecision::Forward));
        assert_eq!(poll(&st, &id("short-0"), &c1), None);
        assert_counts_exact(&st);
    }

    #[test]
    fn simultaneous_polls_forward_exactly_once() {
        const THREADS: usize = 8;
        for round in 0..50 {
            let (st, _clock) = store();
            let (a, c) = (id(&format!("req-{round}")), client("c1"));
            st.record_ack(a.clone(), c.clone(), None, 60).unwrap();
            let barrier = Barrier::new(THREADS);
            let decisions: Vec<PollDecision> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            poll(&st, &a, &c).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let forwarded = decisions
                .iter()
                .filter(|d| **d == PollDecision::Forward)
                .count();
            assert_eq!(forwarded, 1, "round {round}: {decisions:?}");
            assert_eq!(decisions.len(), THREADS);
        }
    }

    #[test]
    fn concurrent_churn_keeps_counters_exact() {
        let (st, clock) = store();
        let clients: Vec<ClientId> = (0..4).map(|n| client(&format!("c{n}"))).collect();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (st, clients) = (st.clone(), &clients);
                scope.spawn(move || {
                    for n in 0..500 {
                        let c = &clients[(t + n) % clients.len()];
                        let a = id(&format!("id-{}", n % 97));
                        match n % 5 {
                            0 | 1 => {
                                st.record_ack(a, c.clone(), None, 1 + (n % 3) as u64)
                                    .unwrap();
                            }
                            2 => {
                                poll(&st, &a, c);
                            }
                            3 => {
                                st.cancel(&a);
                            }
                            _ => {
                                st.report(&a, c, OpVerdict::Ended);
                                st.sweep();
                            }
                        }
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..20 {
                    clock.advance(Duration::from_millis(250));
                    std::thread::yield_now();
                }
            });
        });
        assert_counts_exact(&st);
        clock.advance(10 * S + GRACE);
        st.sweep();
        assert!(st.is_empty());
        assert!(st.table.per_client.is_empty());
    }

    fn learn_poll(st: &PollStore, a: &AuthReqId, c: &ClientId) -> Polled {
        st.poll(a, c, true)
    }

    #[test]
    fn an_unknown_id_is_probed_once_then_decided_at_the_edge() {
        let (st, clock) = store();
        let (a, c) = (id("lost-1"), client("c1"));
        assert_eq!(
            learn_poll(&st, &a, &c),
            Polled::Decided(PollDecision::Probe)
        );
        // A second poll while the first is still at the OP (or right after) is refused.
        assert!(matches!(
            learn_poll(&st, &a, &c),
            Polled::Decided(PollDecision::SlowDown { .. })
        ));
        assert!(st.report(&a, &c, OpVerdict::Pending));
        clock.advance(10 * S);
        assert_eq!(
            learn_poll(&st, &a, &c),
            Polled::Decided(PollDecision::Forward)
        );
        assert!(st.report(&a, &c, OpVerdict::Ended));
        clock.advance(10 * S);
        assert_eq!(
            learn_poll(&st, &a, &c),
            Polled::Decided(PollDecision::Ended)
        );
        assert_eq!(st.len(), 1);
        assert_counts_exact(&st);
    }

    #[test]
    fn what_one_client_taught_never_decides_another_clients_polls() {
        let (st, _clock) = store();
        let (a, c1, c2) = (id("lost-1"), client("c1"), client("c2"));
        assert_eq!(
            learn_poll(&st, &a, &c1),
            Polled::Decided(PollDecision::Probe)
        );
        assert!(st.report(&a, &c1, OpVerdict::Ended));
        // c2 is not told invalid_grant because c1 was; its own poll is probed.
        assert_eq!(
            learn_poll(&st, &a, &c2),
            Polled::Decided(PollDecision::Probe)
        );
        assert!(!st.report(&a, &client("c3"), OpVerdict::Ended));
        assert_eq!(
            learn_poll(&st, &a, &c1),
            Polled::Decided(PollDecision::Ended)
        );
        assert_counts_exact(&st);
    }

    #[test]
    fn spoofed_ids_cannot_grow_memory_past_the_limits() {
        let limits = StoreLimits {
            max_tracked: 50,
            max_per_client: 20,
        };
        let (st, clock) = store_with(limits);
        let spoofer = client("spoofer");
        let mut full = 0;
        for n in 0..1_000 {
            match learn_poll(&st, &id(&format!("spoof-{n}")), &spoofer) {
                Polled::Decided(PollDecision::Probe) => {
                    st.report(&id(&format!("spoof-{n}")), &spoofer, OpVerdict::Ended);
                }
                Polled::Full(f) => {
                    assert_eq!(f.scope, FullScope::Client);
                    full += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((st.len(), full), (20, 980));
        // Another client still has room, and the remembered answers are bounded in time.
        assert_eq!(
            learn_poll(&st, &id("real"), &client("c1")),
            Polled::Decided(PollDecision::Probe)
        );
        clock.advance(PollPolicy::default().remember + GRACE);
        assert_eq!(st.sweep(), 21);
        assert!(st.is_empty());
        assert_counts_exact(&st);
    }

    #[test]
    fn without_learning_an_unknown_id_creates_no_state() {
        let (st, _clock) = store();
        assert_eq!(st.poll(&id("x"), &client("c1"), false), Polled::Unknown);
        assert!(st.is_empty());
    }
}
