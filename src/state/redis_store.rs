//! Polling state and rate limits shared by every gateway replica, kept in Redis.
//!
//! [`PollStore`](crate::state::poll_store::PollStore) is per process: with several replicas behind a
//! load balancer, a client alternating between them would be forwarded by each one in turn.
//! [`RedisStore`] keeps the same state in one Redis so all replicas enforce one set of rules.
//!
//! # Atomicity and time
//!
//! Every decision is one Lua script (`scripts.rs`; run with `EVALSHA`, falling back to
//! `SCRIPT LOAD` on `NOSCRIPT`, via [`redis::Script`]). Redis runs scripts one at a time, so
//! read-decide-update is atomic: two replicas polling one id in the same instant never both
//! see the old `last_poll`.
//!
//! Time is the Redis server's (`redis.call('TIME')` inside the script), never the replica's,
//! so replicas with skewed clocks agree, and a restarted replica enforces what an old one
//! wrote. Reading `TIME` before writing is allowed because Redis 5+ replicates scripts by
//! their effects (the written values), not by re-running them; Redis 7 only supports that
//! mode. Redis 5 or later is therefore required (tested with 7.0).
//!
//! # Keys (all under `key_prefix`, default `ciba:`), and every key has a TTL
//!
//! - `{p}r:{auth_req_id}`: a hash `c` (client), `e` (expires_at, ms), `i` (interval, ms),
//!   `l` (last forwarded poll, ms, `-1` before the first), `p` (phase, as
//!   [`Phase`](crate::ciba::polling::Phase) numbers it). It expires `polling.expired_grace` after
//!   the request does, tombstones included, so polls after expiry keep getting
//!   `expired_token` for that long, as with the in-memory store.
//! - `{p}u:{len(client)}:{client}:{auth_req_id}`: the same hash for an id this gateway never
//!   acknowledged, learned from the OP's answer to one forwarded poll (a probe). Keyed by
//!   client and id together, so one client cannot spoil what is known of another's ids; it
//!   is also the member name in the sets below, so probes count against the limits.
//! - `{p}c:{client_id}`: a sorted set of the client's ids scored by when their entry goes
//!   (expiry plus the grace, ms), trimmed of
//!   expired members on every admit and ack; its TTL is its latest member's expiry.
//! - `{p}all`: the same over all clients, for `max_tracked`. One global set costs a write to
//!   one hot key per ack and an `O(log N)` trim per admit, and about 100 bytes plus the id per
//!   tracked request; fine for one Redis primary at CIBA rates (acks, not polls).
//! - `{p}j:{hex}`: a `jti` seen once (`state/replay.rs`), `SET NX` with the JWT's remaining
//!   lifetime as expiry.
//! - `{p}rl:{key}`: a GCRA "theoretical arrival time" (µs) per rate-limit key, with `PX` set
//!   to when the bucket would be full again.
//!
//! Ids and client ids are used raw (readable with `redis-cli`, no hashing cost) but capped
//! at [`MAX_KEY_PART`] bytes so a key cannot be made arbitrarily large.
//!
//! Scripts touch the client set of an entry's *old* client by name (on replace and cancel),
//! and several keys per call, so they suit one Redis primary (with replicas or Sentinel), not
//! Redis Cluster, unless the prefix is a hash tag such as `{ciba}:` (one slot for everything).
//!
//! Nothing here logs: error values carry the operation and a kind, never ids, client ids or
//! the connection URL (which may hold a password).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::ciba::ids::{AuthReqId, ClientId};
use crate::ciba::polling::{self, Ack, AckError, OpVerdict, PollDecision, PollPolicy};
use crate::state::poll_settings::PollSettings;
use crate::state::poll_store::{Full, FullScope, Polled, StoreLimits};
use scripts::{ADMIT, CANCEL, LEN, NOW_MS, POLL, PROBE, RATE, RECORD, REPORT};

mod scripts;

/// The longest id, client id or rate-limit key stored; the proxy caps `auth_req_id` at 512.
pub const MAX_KEY_PART: usize = 512;

/// What the proxy should do when Redis cannot answer (`state.failure_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Carry on without the shared state: forward polls, pass acks through.
    #[default]
    Open,
    /// Refuse with `temporarily_unavailable` (503) until Redis answers again.
    Closed,
}

/// Where the shared state lives and how long to wait for it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` or `rediss://` URL; may carry a password, so it is never printed.
    pub url: String,
    /// Prepended to every key, so several gateways (or other users) can share one Redis.
    pub key_prefix: String,
    /// The limit on each operation, connection waits included.
    pub timeout: Duration,
    /// What the proxy does when an operation fails.
    pub failure_mode: FailureMode,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "ciba:".into(),
            timeout: Duration::from_millis(200),
            failure_mode: FailureMode::Open,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may embed credentials.
        f.debug_struct("RedisConfig")
            .field("url", &"[redacted]")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("failure_mode", &self.failure_mode)
            .finish()
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No answer within [`RedisConfig::timeout`] (Redis slow, or reconnecting).
    Timeout,
    /// Redis is unreachable or dropped the connection.
    Unavailable,
    /// Redis answered something unexpected (a script error, a wrong type, a bad URL).
    Protocol,
    /// An id, client id or key longer than [`MAX_KEY_PART`] bytes.
    KeyTooLong,
}

/// A failed store operation; its `Display` names the operation and kind only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    op: &'static str,
    // Redis's own error kind: safe to print, unlike its message, which may quote arguments.
    cause: Option<redis::ErrorKind>,
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The store operation that failed (`"poll"`, `"admit"`, ...).
    pub fn op(&self) -> &'static str {
        self.op
    }

    fn new(kind: StoreErrorKind, op: &'static str) -> Self {
        StoreError {
            kind,
            op,
            cause: None,
        }
    }

    fn from_redis(op: &'static str, e: &redis::RedisError) -> Self {
        let kind = if e.is_timeout() {
            StoreErrorKind::Timeout
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            StoreErrorKind::Unavailable
        } else {
            StoreErrorKind::Protocol
        };
        StoreError {
            kind,
            op,
            cause: Some(e.kind()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Timeout => "timed out",
            StoreErrorKind::Unavailable => "redis unavailable",
            StoreErrorKind::Protocol => "unexpected redis answer",
            StoreErrorKind::KeyTooLong => "key part too long",
        };
        write!(f, "shared store {}: {what}", self.op)?;
        if let Some(c) = self.cause {
            write!(f, " ({c:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {}

/// A cheap, cloneable handle to the state shared through Redis.
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    timeout: Duration,
    failure_mode: FailureMode,
    // Replaced by a configuration reload; each operation reads them once.
    settings: Arc<PollSettings>,
    // Added to the server's time; only tests move it (see `advance_clock_for_tests`).
    skew_ms: AtomicU64,
    record: Script,
    poll: Script,
    admit: Script,
    report: Script,
    cancel: Script,
    len: Script,
    rate: Script,
}

/// `d` in whole ms rounded up, capped at `u32::MAX` like `PollState`'s interval.
fn ms_u32_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    ms.min(u128::from(u32::MAX)) as u64
}

/// `d` in whole ms rounded down.
fn ms_floor(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisStore {
    /// Connects to Redis and returns a store enforcing `policy` within `limits`.
    ///
    /// Fails if Redis does not answer now (within `timeout`, at least 1 s); once connected,
    /// the connection manager reconnects by itself whenever Redis comes back.
    pub async fn connect(
        cfg: RedisConfig,
        policy: PollPolicy,
        limits: StoreLimits,
    ) -> Result<Self, StoreError> {
        Self::connect_with(cfg, PollSettings::new(policy, limits)).await
    }

    /// [`RedisStore::connect`] enforcing `settings`, which a reload may replace.
    pub async fn connect_with(
        cfg: RedisConfig,
        settings: Arc<PollSettings>,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::from_redis("connect", &e))?;
        // Few, short retries: a request waits on a reconnect in progress, and the per-op
        // timeout already bounds that wait; the next failed request starts a new round.
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(cfg.timeout)
            .set_response_timeout(cfg.timeout)
            .set_number_of_retries(2)
            .set_factor(50)
            .set_max_delay(500);
        let connect_limit = cfg.timeout.max(Duration::from_secs(1));
        let con = tokio::time::timeout(
            connect_limit,
            ConnectionManager::new_with_config(client, mgr_cfg),
        )
        .await
        .map_err(|_| StoreError::new(StoreErrorKind::Timeout, "connect"))?
        .map_err(|e| StoreError::from_redis("connect", &e))?;
        let script = |body: &str| Script::new(&format!("{NOW_MS}\n{body}"));
        Ok(RedisStore {
            con,
            inner: Arc::new(Inner {
                prefix: cfg.key_prefix,
                timeout: cfg.timeout,
                failure_mode: cfg.failure_mode,
                settings,
                skew_ms: AtomicU64::new(0),
                record: script(RECORD),
                poll: Script::new(&format!("{NOW_MS}\n{PROBE}\n{POLL}")),
                admit: script(ADMIT),
                report: script(REPORT),
                cancel: script(CANCEL),
                len: script(LEN),
                rate: script(RATE),
            }),
        })
    }

    /// The policy this store enforces.
    pub fn policy(&self) -> PollPolicy {
        self.inner.settings.policy()
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> StoreLimits {
        self.inner.settings.limits()
    }

    /// What the proxy should do when an operation fails (configured, not applied here).
    pub fn failure_mode(&self) -> FailureMode {
        self.inner.failure_mode
    }

    /// Moves this store's (and its clones') view of time forward; for tests only.
    #[doc(hidden)]
    pub fn advance_clock_for_tests(&self, by: Duration) {
        self.inner
            .skew_ms
            .fetch_add(ms_floor(by), Ordering::Relaxed);
    }

    /// Checks, before a backchannel request reaches the OP, that its answer could be tracked.
    ///
    /// A check, not a reservation, as in `PollStore::admit`; across replicas the overshoot
    /// is bounded by the requests in flight on all of them.
    pub async fn admit(&self, client: &ClientId) -> Result<Result<(), Full>, StoreError> {
        const OP: &str = "admit";
        let client = part(OP, client.as_str())?;
        let i = &self.inner;
        let mut inv = i.admit.prepare_invoke();
        inv.key(self.client_key(client))
            .key(self.all_key())
            .arg(i.settings.limits().max_tracked)
            .arg(i.settings.limits().max_per_client)
            .arg(self.skew());
        let code: i64 = self.run(OP, &inv).await?;
        let full = |scope| {
            Err(Full {
                retry_after: i.settings.policy().min_interval,
                scope,
            })
        };
        Ok(match code {
            0 => Ok(()),
            1 => full(FullScope::Total),
            _ => full(FullScope::Client),
        })
    }

    /// Starts tracking `id` after the OP acknowledged it; returns what to tell the client.
    ///
    /// Like `PollStore::record_ack`: always tracks, even past a limit, and replaces an
    /// existing entry for the same id.
    pub async fn record_ack(
        &self,
        id: AuthReqId,
        client: ClientId,
        op_interval: Option<u64>,
        op_expires_in: u64,
    ) -> Result<Result<Ack, AckError>, StoreError> {
        const OP: &str = "record_ack";
        let ack =
            match polling::admit_ack(&self.inner.settings.policy(), op_interval, op_expires_in) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
        let (id, client) = (part(OP, id.as_str())?, part(OP, client.as_str())?);
        let i = &self.inner;
        let mut inv = i.record.prepare_invoke();
        inv.key(self.entry_key(id))
            .key(self.client_key(client))
            .key(self.all_key())
            .arg(id)
            .arg(client)
            .arg(ms_u32_ceil(ack.interval))
            .arg(ms_floor(ack.expires_in))
            .arg(self.skew())
            .arg(&i.prefix)
            .arg(ms_floor(i.settings.policy().expired_grace));
        let _expires_at: i64 = self.run(OP, &inv).await?;
        Ok(Ok(ack))
    }

    /// Decides a token request for `id` from `client`, as `PollStore::poll` does.
    ///
    /// One atomic script: of simultaneous polls on any replicas, at most one is forwarded,
    /// and at most one probe of an unknown id is started.
    pub async fn poll(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        learn: bool,
    ) -> Result<Polled, StoreError> {
        const OP: &str = "poll";
        // Nothing longer is ever recorded, so it cannot be tracked.
        let (Some(id), Some(client)) = (fits(id.as_str()), fits(client.as_str())) else {
            return Ok(Polled::Unknown);
        };
        let i = &self.inner;
        let p = &i.settings.policy();
        let member = learned_member(client, id);
        let mut inv = i.poll.prepare_invoke();
        inv.key(self.entry_key(id))
            .key(self.learned_key(&member))
            .key(self.client_key(client))
            .key(self.all_key())
            .arg(id)
            .arg(client)
            .arg(ms_floor(p.tolerance))
            .arg(ms_u32_ceil(p.slow_down_step))
            .arg(self.skew())
            .arg(ms_u32_ceil(p.max_interval))
            .arg(if learn { "1" } else { "0" })
            .arg(&member)
            .arg(ms_u32_ceil(p.min_interval))
            .arg(ms_floor(p.remember))
            .arg(ms_floor(p.expired_grace))
            .arg(i.settings.limits().max_tracked)
            .arg(i.settings.limits().max_per_client);
        let (code, interval, retry_after): (i64, u64, i64) = self.run(OP, &inv).await?;
        let full = |scope| {
            Polled::Full(Full {
                retry_after: p.min_interval,
                scope,
            })
        };
        Ok(match code {
            0 => Polled::Unknown,
            1 => Polled::Decided(PollDecision::Forward),
            2 => Polled::Decided(PollDecision::SlowDown {
                interval: Duration::from_millis(interval),
                retry_after: Duration::from_millis(retry_after.max(0) as u64),
            }),
            3 => Polled::Decided(PollDecision::Expired),
            4 => Polled::Decided(PollDecision::WrongClient),
            5 => Polled::Decided(PollDecision::Ended),
            6 => Polled::Decided(PollDecision::Probe),
            7 => full(FullScope::Total),
            8 => full(FullScope::Client),
            _ => return Err(StoreError::new(StoreErrorKind::Protocol, OP)),
        })
    }

    /// Records what the OP answered to a forwarded poll, as `PollStore::report` does.
    /// Returns whether the client's entry existed.
    pub async fn report(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        verdict: OpVerdict,
    ) -> Result<bool, StoreError> {
        let (Some(id), Some(client)) = (fits(id.as_str()), fits(client.as_str())) else {
            return Ok(false);
        };
        let v = match verdict {
            OpVerdict::Pending => "0",
            OpVerdict::SlowDown => "1",
            OpVerdict::Ended => "2",
            OpVerdict::Expired => "3",
            OpVerdict::Unclear => return Ok(true),
        };
        let i = &self.inner;
        let p = &i.settings.policy();
        let member = learned_member(client, id);
        let mut inv = i.report.prepare_invoke();
        inv.key(self.entry_key(id))
            .key(self.learned_key(&member))
            .key(self.client_key(client))
            .key(self.all_key())
            .arg(client)
            .arg(v)
            .arg(self.skew())
            .arg(ms_u32_ceil(p.slow_down_step))
            .arg(ms_u32_ceil(p.max_interval))
            .arg(ms_floor(p.max_expires_in))
            .arg(ms_floor(p.remember))
            .arg(ms_floor(p.expired_grace))
            .arg(&member);
        let n: i64 = self.run("report", &inv).await?;
        Ok(n == 1)
    }

    /// Stops tracking `id` (the request was cancelled); returns whether it was tracked.
    pub async fn cancel(&self, id: &AuthReqId) -> Result<bool, StoreError> {
        let Some(id) = fits(id.as_str()) else {
            return Ok(false);
        };
        let mut inv = self.inner.cancel.prepare_invoke();
        inv.key(self.entry_key(id))
            .key(self.all_key())
            .arg(id)
            .arg(&self.inner.prefix);
        let n: i64 = self.run("cancel", &inv).await?;
        Ok(n == 1)
    }

    /// Whether `id` has state (active, a tombstone, or expired within the grace period).
    pub async fn is_tracked(&self, id: &AuthReqId) -> Result<bool, StoreError> {
        let Some(id) = fits(id.as_str()) else {
            return Ok(false);
        };
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.entry_key(id));
        let n: i64 = self
            .timed("is_tracked", cmd.query_async(&mut self.con.clone()))
            .await?;
        Ok(n == 1)
    }

    /// How many unexpired ids are tracked on all replicas, tombstones included.
    ///
    /// Exact as of the server's clock for ids still in the global set; an id replaced under
    /// the same name counts once. Costs `O(log N)`.
    pub async fn len(&self) -> Result<usize, StoreError> {
        let mut inv = self.inner.len.prepare_invoke();
        inv.key(self.all_key()).arg(self.skew());
        let n: u64 = self.run("len", &inv).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Whether no unexpired id is tracked (see [`RedisStore::len`]).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len().await? == 0)
    }

    /// GCRA rate-limit check shared across replicas: `Ok(Ok(()))` or `Ok(Err(retry_after))`.
    ///
    /// `per_second` sustained, `burst` at once (both at least 1), like governor's
    /// `Quota::per_second(per_second).allow_burst(burst)`. A refused request costs nothing.
    pub async fn rate_check(
        &self,
        key: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError> {
        const OP: &str = "rate_check";
        let key = part(OP, key)?;
        // Microseconds keep rates above 1000/s exact enough; at least 1 µs apart.
        let emission_us = (1_000_000 / u64::from(per_second.max(1))).max(1);
        let mut inv = self.inner.rate.prepare_invoke();
        inv.key(format!("{}rl:{key}", self.inner.prefix))
            .arg(emission_us)
            .arg(burst.max(1))
            .arg(self.skew());
        let wait_us: i64 = self.run(OP, &inv).await?;
        Ok(match u64::try_from(wait_us) {
            Ok(us) => Err(Duration::from_micros(us)),
            Err(_) => Ok(()),
        })
    }

    /// Claims a `jti` key once: `SET {p}j:{hex} 1 NX EX ttl`; `true` when it was new.
    ///
    /// One command, so atomic across replicas; Redis forgets the key at its expiry, so
    /// nothing else bounds it (each key is the prefix and 66 bytes).
    pub async fn claim_once(&self, key: &[u8; 32], ttl_seconds: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}j:{}", self.inner.prefix, hex(key)))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1));
        let set: Option<String> = self
            .timed("claim_jti", cmd.query_async(&mut self.con.clone()))
            .await?;
        Ok(set.is_some())
    }

    /// Runs one script invocation within the operation timeout.
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut con = self.con.clone();
        self.timed(op, inv.invoke_async(&mut con)).await
    }

    /// Bounds `fut` by the operation timeout and maps its errors.
    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout, op)),
            Ok(Err(e)) => Err(StoreError::from_redis(op, &e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    fn skew(&self) -> u64 {
        self.inner.skew_ms.load(Ordering::Relaxed)
    }

    fn entry_key(&self, id: &str) -> String {
        format!("{}r:{id}", self.inner.prefix)
    }

    fn client_key(&self, client: &str) -> String {
        format!("{}c:{client}", self.inner.prefix)
    }

    fn learned_key(&self, member: &str) -> String {
        format!("{}{member}", self.inner.prefix)
    }

    fn all_key(&self) -> String {
        format!("{}all", self.inner.prefix)
    }
}

/// What the sets and the learned entry's key call what `client` taught the gateway about
/// `id`: the client's length first, so no pair of ids and clients can spell another.
fn learned_member(client: &str, id: &str) -> String {
    format!("u:{}:{client}:{id}", client.len())
}

/// Lower-case hex of a fixed-size key.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` if it is short enough to be part of a key.
fn fits(s: &str) -> Option<&str> {
    (s.len() <= MAX_KEY_PART).then_some(s)
}

/// `s` if it is short enough to be part of a key, else a `KeyTooLong` error for `op`.
fn part<'a>(op: &'static str, s: &'a str) -> Result<&'a str, StoreError> {
    fits(s).ok_or(StoreError::new(StoreErrorKind::KeyTooLong, op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_poll_state() {
        assert_eq!(ms_u32_ceil(Duration::from_micros(5_000_001)), 5_001);
        assert_eq!(ms_u32_ceil(Duration::from_secs(5)), 5_000);
        assert_eq!(ms_u32_ceil(Duration::MAX), u64::from(u32::MAX));
        assert_eq!(ms_floor(Duration::from_micros(60_000_999)), 60_000);
    }

    #[test]
    fn errors_and_config_print_no_secrets() {
        let cfg = RedisConfig {
            url: "redis://:hunter2@db:6379".into(),
            ..RedisConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let e = StoreError::new(StoreErrorKind::Timeout, "poll");
        assert_eq!(e.to_string(), "shared store poll: timed out");
    }

    #[test]
    fn long_parts_are_refused() {
        assert!(fits(&"a".repeat(MAX_KEY_PART)).is_some());
        assert!(fits(&"a".repeat(MAX_KEY_PART + 1)).is_none());
        assert_eq!(
            part("x", &"a".repeat(600)).unwrap_err().kind(),
            StoreErrorKind::KeyTooLong
        );
    }
}
