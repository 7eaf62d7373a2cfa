//! Where poll state and rate-limit counters live: in this process (the default) or in
//! Redis, shared by every replica. The proxy calls only this module.
//!
//! With Redis, an operation that fails follows `state.failure_mode`: `open` carries on as
//! if the store had no objection (the OP still enforces its own rules), `closed` refuses
//! with 503. Either way the failure is counted, and logged at most once a second.

use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::pipeline::Endpoint;
use crate::ciba::polling::{Ack, AckError, OpVerdict};
use crate::metrics;
use crate::state::poll_store::{Full, PollStore, Polled};
use crate::state::rate_limit::{KeyKind, Limited, RateLimits};
use crate::state::redis_store::{FailureMode, RedisConfig, RedisStore, StoreError};
use crate::state::replay::{Claim, ReplayCache};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The store could not answer and the failure mode is `closed`: answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Poll state and rate limits, in memory or in Redis.
pub enum StateStore {
    /// This process only.
    Memory(PollStore),
    /// Shared through Redis.
    Redis(Box<RedisBackend>),
}

/// The Redis side: connections made on first use, so a Redis that is down at start-up
/// delays nothing and is picked up as soon as it answers.
pub struct RedisBackend {
    cfg: RedisConfig,
    settings: Arc<crate::state::poll_settings::PollSettings>,
    connections: Vec<OnceCell<RedisStore>>,
    next: AtomicUsize,
    started: Instant,
    last_log: AtomicU64,
}

impl StateStore {
    /// A Redis-backed store with `connections` multiplexed connections.
    pub fn redis(
        cfg: RedisConfig,
        connections: usize,
        policy: crate::ciba::polling::PollPolicy,
        limits: crate::state::poll_store::StoreLimits,
    ) -> Self {
        StateStore::Redis(Box::new(RedisBackend {
            cfg,
            settings: crate::state::poll_settings::PollSettings::new(policy, limits),
            connections: (0..connections.max(1)).map(|_| OnceCell::new()).collect(),
            next: AtomicUsize::new(0),
            started: Instant::now(),
            last_log: AtomicU64::new(0),
        }))
    }

    /// Replaces the poll rules' numbers and the tracking bounds (a configuration reload):
    /// the next decision reads them; what is tracked stays.
    pub fn set_poll_settings(
        &self,
        policy: crate::ciba::polling::PollPolicy,
        limits: crate::state::poll_store::StoreLimits,
    ) {
        match self {
            StateStore::Memory(m) => m.set_settings(policy, limits),
            StateStore::Redis(r) => r.settings.set(policy, limits),
        }
    }

    /// Admits a new backchannel request under the tracking limits.
    pub async fn admit(&self, client: &ClientId) -> Result<Result<(), Full>, Unavailable> {
        match self {
            StateStore::Memory(m) => Ok(m.admit(client)),
            StateStore::Redis(r) => r
                .run("admit", |s| async move { s.admit(client).await })
                .await
                .map(|o| o.unwrap_or(Ok(()))),
        }
    }

    /// Records the OP's acknowledgement; the ack to send is computed even when the store
    /// fails, since the OP has already issued the id.
    pub async fn record_ack(
        &self,
        id: AuthReqId,
        client: ClientId,
        op_interval: Option<u64>,
        op_expires_in: u64,
    ) -> Result<Ack, AckError> {
        match self {
            StateStore::Memory(m) => m.record_ack(id, client, op_interval, op_expires_in),
            StateStore::Redis(r) => {
                let fallback = crate::ciba::polling::admit_ack(
                    &r.settings.policy(),
                    op_interval,
                    op_expires_in,
                );
                match r
                    .run("record_ack", |s| async move {
                        s.record_ack(id, client, op_interval, op_expires_in).await
                    })
                    .await
                {
                    Ok(Some(result)) => result,
                    _ => fallback,
                }
            }
        }
    }

    /// Decides a poll (see `PollStore::poll`); with `learn`, an unknown id starts a probe.
    pub async fn poll(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        learn: bool,
    ) -> Result<Polled, Unavailable> {
        match self {
            StateStore::Memory(m) => Ok(m.poll(id, client, learn)),
            StateStore::Redis(r) => r
                .run("poll", |s| async move { s.poll(id, client, learn).await })
                .await
                // Open: carry on as if the id were unknown and could not be learned; the
                // OP still enforces its own rules.
                .map(|o| o.unwrap_or(Polled::Unknown)),
        }
    }

    /// Records what the OP answered to a forwarded poll.
    pub async fn report(&self, id: &AuthReqId, client: &ClientId, verdict: OpVerdict) {
        match self {
            StateStore::Memory(m) => {
                m.report(id, client, verdict);
            }
            StateStore::Redis(r) => {
                let _ = r
                    .run(
                        "report",
                        |s| async move { s.report(id, client, verdict).await },
                    )
                    .await;
            }
        }
    }

    /// [`report`](Self::report) for a poll the store forwarded as a probe (see
    /// `PollStore::report_probe`); the shared store looks its keys up as for any report.
    pub async fn report_probe(&self, id: &AuthReqId, client: &ClientId, verdict: OpVerdict) {
        match self {
            StateStore::Memory(m) => {
                m.report_probe(id, client, verdict);
            }
            StateStore::Redis(_) => self.report(id, client, verdict).await,
        }
    }

    /// The OP accepted a cancel call.
    pub async fn cancel(&self, id: &AuthReqId) {
        match self {
            StateStore::Memory(m) => {
                m.cancel(id);
            }
            StateStore::Redis(r) => {
                let _ = r.run("cancel", |s| async move { s.cancel(id).await }).await;
            }
        }
    }

    /// Tracked ids, for the gauge; `None` when the store cannot say.
    pub async fn tracked(&self) -> Option<usize> {
        match self {
            StateStore::Memory(m) => Some(m.len()),
            StateStore::Redis(r) => r
                .run("len", |s| async move { s.len().await })
                .await
                .ok()
                .flatten(),
        }
    }

    /// Drops expired entries (Redis expires its keys itself).
    pub fn sweep(&self) {
        if let StateStore::Memory(m) = self {
            m.sweep();
        }
    }

    /// The per-address rate limit.
    pub async fn check_address(
        &self,
        limits: &RateLimits,
        endpoint: Endpoint,
        address: IpAddr,
    ) -> Result<Result<(), Limited>, Unavailable> {
        match self {
            StateStore::Memory(_) => Ok(limits.check_address(endpoint, address)),
            StateStore::Redis(r) => {
                let Some(rate) = limits.address_rate(endpoint) else {
                    return Ok(Ok(()));
                };
                let key = format!("a:{}:{address}", endpoint.as_str());
                r.rate(&key, rate, KeyKind::Address).await
            }
        }
    }

    /// The per-client rate limit.
    pub async fn check_client(
        &self,
        limits: &RateLimits,
        endpoint: Endpoint,
        client: &ClientId,
        fingerprint: u64,
    ) -> Result<Result<(), Limited>, Unavailable> {
        match self {
            StateStore::Memory(_) => Ok(limits.check_client(endpoint, client, fingerprint)),
            StateStore::Redis(r) => {
                let Some(rate) = limits.client_rate(endpoint, client) else {
                    return Ok(Ok(()));
                };
                // The fingerprint's hash key differs per process; across replicas the key
                // must agree, so Redis keys by the client id alone.
                let key = format!("c:{}:{}", endpoint.as_str(), client.as_str());
                r.rate(&key, rate, KeyKind::Client).await
            }
        }
    }
}

impl StateStore {
    /// Claims a `jti` once until `until` (unix seconds): in `memory` with the memory store,
    /// in Redis (shared by replicas) with the Redis store. With Redis, a failure follows the
    /// failure mode: open lets the JWT through (the OP still checks its own replays).
    pub async fn claim_jti(
        &self,
        memory: &ReplayCache,
        key: [u8; 32],
        until: u64,
        now: u64,
    ) -> Result<Claim, Unavailable> {
        match self {
            StateStore::Memory(_) => Ok(memory.claim(key, until, now)),
            StateStore::Redis(r) => {
                let ttl = until.saturating_sub(now).max(1);
                let key = &key;
                let fresh = r
                    .run("claim_jti", |s| async move { s.claim_once(key, ttl).await })
                    .await?;
                Ok(match fresh {
                    Some(false) => Claim::Replayed,
                    _ => Claim::Fresh,
                })
            }
        }
    }
}

impl RedisBackend {
    async fn store(&self) -> Result<&RedisStore, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i]
            .get_or_try_init(|| RedisStore::connect_with(self.cfg.clone(), self.settings.clone()))
            .await
    }

    /// Runs one operation, timing it; `Ok(None)` when it failed in open mode.
    ///
    /// Boxed: a Redis round trip's state is a few KiB, and left inline it would size every
    /// caller's future, so every request would move it around even with the memory store.
    fn run<'a, T, F, Fut>(
        &'a self,
        op: &'static str,
        f: F,
    ) -> Pin<Box<dyn Future<Output = Result<Option<T>, Unavailable>> + Send + 'a>>
    where
        T: Send + 'a,
        F: FnOnce(&'a RedisStore) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'a,
    {
        Box::pin(self.run_inline(op, f))
    }

    async fn run_inline<'a, T, F, Fut>(
        &'a self,
        op: &'static str,
        f: F,
    ) -> Result<Option<T>, Unavailable>
    where
        F: FnOnce(&'a RedisStore) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let start = Instant::now();
        let result = match self.store().await {
            Ok(s) => f(s).await,
            Err(e) => Err(e),
        };
        metrics::STORE_SECONDS
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                metrics::STORE_ERRORS.with_label_values(&[op]).inc();
                let second = self.started.elapsed().as_secs() + 1;
                if self.last_log.swap(second, Ordering::Relaxed) != second {
                    tracing::warn!("shared state store failed: {e}");
                }
                match self.cfg.failure_mode {
                    FailureMode::Open => Ok(None),
                    FailureMode::Closed => Err(Unavailable),
                }
            }
        }
    }

    async fn rate(
        &self,
        key: &str,
        rate: crate::state::rate_limit::Rate,
        kind: KeyKind,
    ) -> Result<Result<(), Limited>, Unavailable> {
        let checked = self
            .run("rate_check", |s| async move {
                s.rate_check(key, rate.per_second.get(), rate.burst.get())
                    .await
            })
            .await?;
        Ok(match checked {
            Some(Err(retry_after)) => Err(Limited { kind, retry_after }),
            _ => Ok(()),
        })
    }
}

/// A shared handle.
pub type Store = Arc<StateStore>;

/// How long a closed-mode refusal asks the client to wait.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);
