//! The ping requests the proxy and the ping poller share: in this process
//! ([`PingStore`]), or in Redis ([`PingRedis`]) with `state.backend = "redis"`, so that a
//! client's redemption can land on any replica and each waiting request is polled by one
//! replica at a time.
//!
//! With Redis, each replica keeps the schedule of the requests it holds in memory (when
//! each is next polled) and Redis holds the rest: the sealed values, the credential's keyed
//! hash, the shared schedule and lease, the answer. A replica renews its lease on a request
//! at each poll and while the poll is in flight; a request whose lease ran out (its holder
//! died or lost Redis) is taken over by the next replica that scans the schedule.
//!
//! `state.failure_mode` applies as for the poll store, when Redis cannot answer:
//! - a ping client's backchannel request: `closed` refuses it with 503 before the OP sees
//!   it; `open` lets it through without the queue bound;
//! - a ping client's token request: `closed` answers 503; `open` hands it to the poll rules
//!   (and on to the OP), so a held answer is never given out without Redis's one-time step;
//! - recording a request after the OP acknowledged it: in both modes the client gets the
//!   OP's acknowledgement (the OP has issued the id) but is not pinged; its token requests
//!   then follow the poll rules and reach the OP, so it can still poll for its tokens;
//! - the poller's own steps are retried at its next pass; a terminal answer whose recording
//!   fails is retried a few times, then dropped (the client's later polls reach the OP).

use crate::ciba::ids::{AuthReqId, ClientId, Secret};
use crate::ciba::ping::{self, Credential};
use crate::metrics;
use crate::state::ping_redis::{Claim, Outcome, PingRedis, PingRedisError, Recorded, Taken};
use crate::state::ping_store::{
    DuePoll, PingDue, PingStore, PollResult, QueueFull, Redeemed, Slot,
};
use crate::state::redis_store::{FailureMode, RedisConfig};
use crate::state::seal::{Kind, Sealer};
use crate::state::store::Unavailable;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How many expired leases one pass of the poller takes over at most.
const TAKEOVER_BATCH: usize = 256;
/// How many held ids one schedule script carries at most.
const HELD_BATCH: usize = 256;
/// Tries of recording a terminal answer in Redis.
const ANSWER_TRIES: usize = 3;

/// Ping requests, in this process or in Redis.
// One per process, behind an `Arc`: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Pings {
    /// This process only.
    Memory(PingStore),
    /// Shared through Redis.
    Redis(Box<SharedPings>),
}

/// The Redis side, connected on first use.
pub struct SharedPings {
    cfg: RedisConfig,
    lease: Duration,
    owner: String,
    capacity: usize,
    sealer: Sealer,
    redis: OnceCell<PingRedis>,
    /// Backchannel requests of this replica between their slot and their record.
    starting: Arc<AtomicUsize>,
    /// The requests this replica holds: when each is next polled, and whether it is being
    /// polled now. A lock never held across an `.await`.
    held: Mutex<HashMap<AuthReqId, Held>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    next: Instant,
    in_flight: bool,
}

impl Pings {
    /// In this process (`state.backend = "memory"`).
    pub fn memory(sealer: Sealer, capacity: usize) -> Pings {
        Pings::Memory(PingStore::new(sealer, capacity))
    }

    /// In Redis, leases lasting `lease`.
    pub fn redis(cfg: RedisConfig, sealer: Sealer, capacity: usize, lease: Duration) -> Pings {
        Pings::Redis(Box::new(SharedPings {
            cfg,
            lease,
            owner: owner_name(),
            capacity,
            sealer,
            redis: OnceCell::new(),
            starting: Arc::new(AtomicUsize::new(0)),
            held: Mutex::new(HashMap::new()),
        }))
    }

    /// How often the poller renews its lease on a request while polling it (`None`: no
    /// lease, in memory).
    pub fn renew_every(&self) -> Option<Duration> {
        match self {
            Pings::Memory(_) => None,
            Pings::Redis(r) => Some(r.lease / 3),
        }
    }

    /// Takes a place in the queue, or says it is full.
    pub async fn reserve(&self) -> Result<Result<Slot, QueueFull>, Unavailable> {
        match self {
            Pings::Memory(m) => Ok(m.reserve()),
            Pings::Redis(r) => Box::pin(r.reserve()).await,
        }
    }

    /// Starts polling for an acknowledged request: first poll one interval from `now`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &self,
        slot: Slot,
        id: AuthReqId,
        client: ClientId,
        credential: &Credential,
        token: &Secret<String>,
        interval: Duration,
        expires_in: Duration,
        now: Instant,
    ) {
        match self {
            Pings::Memory(m) => m.start(
                slot,
                id,
                client,
                credential,
                token,
                interval,
                now + expires_in,
                now,
            ),
            Pings::Redis(r) => {
                Box::pin(r.start(id, client, credential, token, interval, expires_in, now)).await;
                drop(slot);
            }
        }
    }

    /// The polls this replica owes the OP at `now`, each marked in flight until
    /// [`Pings::polled`], at most `max` with Redis; and when the next falls due, if any.
    pub async fn due(&self, now: Instant, max: usize) -> (Vec<DuePoll>, Option<Instant>) {
        match self {
            Pings::Memory(m) => m.due(now),
            Pings::Redis(r) => Box::pin(r.due(now, max)).await,
        }
    }

    /// Keeps this replica's lease on `id` while it polls it.
    pub async fn renew(&self, id: &AuthReqId) {
        if let Pings::Redis(r) = self {
            if let Ok(redis) = r.connection().await {
                let _ = r.note(redis.renew(id).await);
            }
        }
    }

    /// Records what came of a poll at `now`; the ping to send after a terminal answer.
    pub async fn polled(
        &self,
        id: &AuthReqId,
        outcome: PollResult,
        now: Instant,
    ) -> Option<PingDue> {
        match self {
            Pings::Memory(m) => m.polled(id, outcome, now),
            Pings::Redis(r) => Box::pin(r.polled(id, outcome, now)).await,
        }
    }

    /// The ping was sent or given up (with Redis the token already left at the answer).
    pub fn notified(&self, id: &AuthReqId) {
        if let Pings::Memory(m) = self {
            m.notified(id);
        }
    }

    /// A token request for `id` (see `PingStore::redeem`).
    pub async fn redeem(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        credential: Option<&Credential>,
        now: Instant,
    ) -> Result<Redeemed, Unavailable> {
        match self {
            Pings::Memory(m) => Ok(m.redeem(id, client, credential, now)),
            Pings::Redis(r) => Box::pin(r.redeem(id, client, credential)).await,
        }
    }

    /// Requests this replica holds (in memory: all requests held, in any phase).
    pub fn len(&self) -> usize {
        match self {
            Pings::Memory(m) => m.len(),
            Pings::Redis(r) => r.held.lock().expect("not poisoned").len(),
        }
    }

    /// Whether [`Pings::len`] is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// This process's name in the records it holds: its pid and 64 random bits, so a restarted
/// replica never mistakes a dead one's leases for its own.
fn owner_name() -> String {
    use ring::rand::SecureRandom;
    let mut r = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut r)
        .expect("the operating system's random source works");
    format!("{}-{:016x}", std::process::id(), u64::from_be_bytes(r))
}

impl SharedPings {
    async fn connection(&self) -> Result<&PingRedis, PingRedisError> {
        let r = self
            .redis
            .get_or_try_init(|| PingRedis::connect(&self.cfg, self.lease, self.owner.clone()))
            .await;
        self.note(r)
    }

    /// Counts a failure (the store's metrics, by operation) and passes the result on.
    fn note<T>(&self, r: Result<T, PingRedisError>) -> Result<T, PingRedisError> {
        if let Err(e) = &r {
            metrics::STORE_ERRORS.with_label_values(&[e.op()]).inc();
            tracing::warn!("{e}");
        }
        r
    }

    /// The failure mode's answer when Redis could not: `open` carries on with `fallback`.
    fn degrade<T>(&self, fallback: T) -> Result<T, Unavailable> {
        match self.cfg.failure_mode {
            FailureMode::Open => Ok(fallback),
            FailureMode::Closed => Err(Unavailable),
        }
    }

    async fn reserve(&self) -> Result<Result<Slot, QueueFull>, Unavailable> {
        let waiting = match self.connection().await {
            Ok(redis) => self.note(redis.waiting().await),
            Err(e) => Err(e),
        };
        let taken = self.starting.fetch_add(1, Ordering::AcqRel);
        let slot = Slot::counted(self.starting.clone());
        match waiting {
            Ok(n) if n.saturating_add(taken) >= self.capacity => Ok(Err(QueueFull)),
            Ok(_) => Ok(Ok(slot)),
            Err(_) => self.degrade(Ok(slot)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        id: AuthReqId,
        client: ClientId,
        credential: &Credential,
        token: &Secret<String>,
        interval: Duration,
        expires_in: Duration,
        now: Instant,
    ) {
        let tag = self.sealer.tag(&credential.hash_input(&client));
        let sealed_credential =
            self.sealer
                .seal(Kind::Credential, &id, credential.to_bytes().expose());
        let sealed_token =
            self.sealer
                .seal(Kind::NotificationToken, &id, token.expose().as_bytes());
        let started = match self.connection().await {
            Ok(redis) => self.note(
                redis
                    .start(
                        &id,
                        &client,
                        &tag,
                        &sealed_credential,
                        &sealed_token,
                        interval,
                        expires_in,
                    )
                    .await,
            ),
            Err(e) => Err(e),
        };
        if let Ok(true) = started {
            self.held.lock().expect("not poisoned").insert(
                id,
                Held {
                    next: now + interval,
                    in_flight: false,
                },
            );
        }
    }

    async fn due(&self, now: Instant, max: usize) -> (Vec<DuePoll>, Option<Instant>) {
        let mine = self.take_due(now, max.min(HELD_BATCH));
        let room = max.saturating_sub(mine.len()).min(TAKEOVER_BATCH);
        let claims = match self.connection().await {
            Ok(redis) => self.note(redis.due(&mine, room).await),
            Err(e) => Err(e),
        };
        let mut out = Vec::new();
        let mut held = self.held.lock().expect("not poisoned");
        match claims {
            Ok(claims) => {
                for (id, claim) in claims {
                    match claim {
                        Claim::Lost => {
                            held.remove(&id);
                        }
                        Claim::Later(d) => {
                            held.insert(
                                id,
                                Held {
                                    next: now + d,
                                    in_flight: false,
                                },
                            );
                        }
                        Claim::PollNow { client, credential } => {
                            let opened = self
                                .sealer
                                .open(Kind::Credential, &id, &credential)
                                .and_then(|b| Credential::from_bytes(b.expose()));
                            // Unreadable (another key): left for its lease to run out.
                            let Some(credential) = opened else {
                                held.remove(&id);
                                continue;
                            };
                            held.insert(
                                id.clone(),
                                Held {
                                    next: now,
                                    in_flight: true,
                                },
                            );
                            out.push(DuePoll {
                                id,
                                client,
                                credential: Secret::new(credential),
                            });
                        }
                    }
                }
            }
            // Redis did not answer: the ids fall due again at the next pass.
            Err(_) => {
                for id in &mine {
                    if let Some(h) = held.get_mut(id) {
                        h.in_flight = false;
                    }
                }
            }
        }
        let next = held.values().filter(|h| !h.in_flight).map(|h| h.next).min();
        (out, next)
    }

    /// The held ids due at `now`, at most `max`, marked in flight.
    fn take_due(&self, now: Instant, max: usize) -> Vec<AuthReqId> {
        let mut held = self.held.lock().expect("not poisoned");
        let mut out = Vec::new();
        for (id, h) in held.iter_mut() {
            if out.len() >= max {
                break;
            }
            if !h.in_flight && h.next <= now {
                h.in_flight = true;
                out.push(id.clone());
            }
        }
        out
    }

    async fn polled(&self, id: &AuthReqId, outcome: PollResult, now: Instant) -> Option<PingDue> {
        let outcome = match outcome {
            PollResult::Again { slow_down: false } => Outcome::Pending,
            PollResult::Again { slow_down: true } => Outcome::SlowDown,
            PollResult::Answer { status, body } => {
                let held = ping::answer_bytes(status, &body);
                Outcome::Answer(self.sealer.seal(Kind::Answer, id, held.expose()))
            }
        };
        let tries = if matches!(outcome, Outcome::Answer(_)) {
            ANSWER_TRIES
        } else {
            1
        };
        let mut recorded = None;
        for n in 0..tries {
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let r = match self.connection().await {
                Ok(redis) => self.note(redis.polled(id, &outcome).await),
                Err(e) => Err(e),
            };
            if let Ok(r) = r {
                recorded = Some(r);
                break;
            }
        }
        let mut held = self.held.lock().expect("not poisoned");
        match recorded {
            Some(Recorded::Again(interval)) => {
                held.insert(
                    id.clone(),
                    Held {
                        next: now + interval,
                        in_flight: false,
                    },
                );
                None
            }
            // Not recorded: polled again after a pass (the lease keeps others away).
            None => {
                if let Some(h) = held.get_mut(id) {
                    h.in_flight = false;
                }
                None
            }
            Some(Recorded::Nothing) => {
                held.remove(id);
                None
            }
            Some(Recorded::Answered {
                client,
                token,
                expires_in,
            }) => {
                held.remove(id);
                drop(held);
                let token = token
                    .and_then(|t| self.sealer.open(Kind::NotificationToken, id, &t))
                    .and_then(|b| String::from_utf8(b.into_inner()).ok())?;
                Some(PingDue {
                    client,
                    token: Secret::new(token),
                    expires_at: now + expires_in,
                })
            }
        }
    }

    async fn redeem(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        credential: Option<&Credential>,
    ) -> Result<Redeemed, Unavailable> {
        let redis = match self.connection().await {
            Ok(r) => r,
            Err(_) => return self.degrade(Redeemed::NotPing),
        };
        let holder = match self.note(redis.holder(id).await) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Redeemed::NotPing),
            Err(_) => return self.degrade(Redeemed::NotPing),
        };
        if holder.client != *client {
            return Ok(Redeemed::WrongClient);
        }
        let proven =
            credential.is_some_and(|c| self.sealer.matches(&c.hash_input(client), &holder.tag));
        if !proven {
            return Ok(Redeemed::WrongCredential);
        }
        let taken = match self.note(redis.take(id).await) {
            Ok(t) => t,
            Err(_) => return self.degrade(Redeemed::NotPing),
        };
        Ok(match taken {
            Taken::Gone => Redeemed::NotPing,
            Taken::Waiting => Redeemed::Waiting,
            Taken::Used => Redeemed::Used,
            Taken::Answer(sealed) => {
                let held = self.sealer.open(Kind::Answer, id, &sealed);
                match held
                    .as_ref()
                    .and_then(|h| ping::answer_from_bytes(h.expose()))
                {
                    Some((status, body)) => Redeemed::Answer(status, Secret::new(body.to_vec())),
                    None => Redeemed::Used,
                }
            }
        })
    }
}
