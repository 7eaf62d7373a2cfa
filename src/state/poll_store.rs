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
use crate::state::poll_settings::PollSettings;

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
    // Replaced by a configuration reload; each call reads them once.
    settings: Arc<PollSettings>,
    clock: Arc<dyn Clock>,
}

/// Shards of the id table, whatever the CPU count (dashmap's default is four per CPU, so
/// four on a gateway pinned to one core). A shard grows by rehashing all of it under its
/// write lock, and a sweep holds each shard's lock while it walks it; with a million ids in
/// four shards either stalls the worker for tens of milliseconds (a forwarded poll's p99
/// went from 1.7 ms to over 20 ms, BENCHMARKS.md). In 256 shards each stall is a 256th of
/// the table, for a few KiB of empty shards.
///
/// Growing at all is left out up to `polling.max_tracked`: the table is made with room for
/// it. Shards of equal share fill together, so every doubling of the table was 256 rehashes
/// within a fraction of a second, each into fresh memory faulted in as it was written; that
/// burst held the worker for milliseconds, and a forwarded poll's p99 rose from 1.6 to
/// 4–5 ms whenever the table crossed a doubling (BENCHMARKS.md). The room is address space:
/// with transparent huge pages off (`edge/huge_pages.rs`) a page becomes resident when an
/// id lands in it (about 117 MiB for the default million once some tens of thousands are
/// tracked), as nginx's shared dictionary reserves its size up front.
const STATE_SHARDS: usize = 256;

impl PollStore {
    /// An empty store enforcing `policy` within `limits`, reading time from `clock`.
    pub fn new(policy: PollPolicy, limits: StoreLimits, clock: Arc<dyn Clock>) -> Self {
        Self::with_settings(PollSettings::new(policy, limits), clock)
    }

    /// An empty store enforcing `settings`, which a reload may replace while it runs, with
    /// room for `max_tracked` ids; past it (a reload that raises it, acknowledgements that
    /// are always tracked) the table grows.
    pub fn with_settings(settings: Arc<PollSettings>, clock: Arc<dyn Clock>) -> Self {
        PollStore {
            table: Arc::new(PollTable {
                // Clients choose the ids they poll with, so the hash behind `IdKey` is keyed
                // (SipHash, random keys): a predictable one would invite collision floods.
                // Room for `max_tracked` from the start (see `STATE_SHARDS`).
                states: DashMap::with_capacity_and_hasher_and_shard_amount(
                    settings.limits().max_tracked,
                    PreHashed,
                    STATE_SHARDS,
                ),
                id_hasher: RandomState::new(),
                per_client: DashMap::new(),
                tracked: AtomicUsize::new(0),
                settings,
                clock,
            }),
        }
    }

    /// Replaces the policy and limits; entries already tracked keep their state.
    pub fn set_settings(&self, policy: PollPolicy, limits: StoreLimits) {
        self.table.settings.set(policy, limits);
    }

    /// The policy this store enforces.
    pub fn policy(&self) -> PollPolicy {
        self.table.settings.policy()
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> StoreLimits {
        self.table.settings.limits()
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
            retry_after: s.settings.policy().min_interval,
            scope,
        };
        if s.tracked.load(Ordering::Relaxed) >= s.settings.limits().max_tracked {
            return Err(full(FullScope::Total));
        }
        if self.tracked_for(client) >= s.settings.limits().max_per_client {
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
        let ack = polling::admit_ack(&s.settings.policy(), op_interval, op_expires_in)?;
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
            return Polled::Decided(polling::decide_at(
                &mut state,
                client,
                now,
                &s.settings.policy(),
            ));
        }
        match s.states.entry(s.learned_key(client, id)) {
            Entry::Occupied(mut e) => Polled::Decided(polling::decide_at(
                e.get_mut(),
                client,
                now,
                &s.settings.policy(),
            )),
            Entry::Vacant(e) => {
                if !learn {
                    return Polled::Unknown;
                }
                if let Err(full) = self.admit(client) {
                    return Polled::Full(full);
                }
                // A `per_client` shard inside a `states` shard: the allowed lock order.
                let client = self.acquire(client.clone());
                e.insert(PollState::probe(client, now, &s.settings.policy()));
                s.tracked.fetch_add(1, Ordering::Relaxed);
                Polled::Decided(PollDecision::Probe)
            }
        }
    }

    /// Records what the OP answered to a poll of `id` by `client` that was forwarded (see
    /// [`polling::learn`]). Returns whether the store had state for it.
    pub fn report(&self, id: &AuthReqId, client: &ClientId, verdict: OpVerdict) -> bool {
        let s = &self.table;
        let state = match s.states.get_mut(&s.key(id)) {
            Some(state) => Some(state),
            None => s.states.get_mut(&s.learned_key(client, id)),
        };
        self.learn(state, client, verdict)
    }

    /// [`report`](Self::report) for a poll that [`poll`](Self::poll) answered with
    /// [`PollDecision::Probe`]: its state is under the key learned for client and id, so
    /// that one is looked up first, saving a keyed hash and a lookup that would miss. An
    /// entry under the id alone (an acknowledgement that arrived meanwhile) is still found.
    pub fn report_probe(&self, id: &AuthReqId, client: &ClientId, verdict: OpVerdict) -> bool {
        let s = &self.table;
        let state = match s.states.get_mut(&s.learned_key(client, id)) {
            Some(state) => Some(state),
            None => s.states.get_mut(&s.key(id)),
        };
        self.learn(state, client, verdict)
    }

    /// The OP's verdict applied to `state` if `client` owns it.
    fn learn(
        &self,
        state: Option<dashmap::mapref::one::RefMut<'_, IdKey, PollState>>,
        client: &ClientId,
        verdict: OpVerdict,
    ) -> bool {
        let s = &self.table;
        match state {
            Some(mut state) if state.client() == client => {
                let now = clock::millis(s.clock.now());
                polling::learn(&mut state, verdict, now, &s.settings.policy());
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
        let policy = s.settings.policy();
        s.states.retain(|_, state| {
            if state.droppable_at(now, &policy) {
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
            .field("policy", &self.table.settings.policy())
            .field("limits", &self.table.settings.limits())
            .finish()
    }
}

#[cfg(test)]
mod tests;
