//! What the gateway holds for ping requests, in Redis, shared by every replica: a client's
//! redemption can land on any replica, and each waiting request is polled by one replica at
//! a time, which holds a lease on it.
//!
//! Values are stored as [`PingStore`](crate::state::ping_store::PingStore) keeps them:
//! sealed (`seal`) by the replica that wrote them, opened by any replica with the same
//! `ping.key`; the credential is kept only as its keyed hash for redemption. This module
//! moves bytes; sealing and opening are the caller's (`pings.rs`).
//!
//! # Keys (under `state.redis_key_prefix`), each with a TTL
//!
//! - `{p}p:{auth_req_id}`: a hash `c` (client), `t` (the credential's keyed hash), `k`
//!   (sealed credential, until the OP's terminal answer), `n` (sealed notification token,
//!   until the answer is held: the replica that holds it takes it to ping), `a` (sealed
//!   answer, until redeemed), `p` (phase: `0` waiting, `1` answered, `2` redeemed), `i`
//!   (interval, ms), `np` (when the next poll falls due, ms), `e` (expiry, ms), `o` (the
//!   replica holding it). It expires with the request.
//! - `{p}pq`: the schedule, a sorted set of the waiting ids scored by when their lease runs
//!   out: one lease after the next poll falls due, or one lease from the holder's last
//!   renewal while it polls. A replica that finds an id with a past score takes it over.
//!   Its TTL is its latest request's expiry.
//!
//! Time is the Redis server's (`TIME`), as in the poll store; scripts are in `scripts.rs`.
//! Like the poll store's, the scripts reach records by id from the prefix, so they suit one
//! Redis primary (or Cluster with a hash-tag prefix such as `{ciba}:`).
//!
//! Nothing here logs; errors name the operation only.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::ciba::ids::{AuthReqId, ClientId};
use crate::state::redis_store::{RedisConfig, MAX_KEY_PART};
use crate::state::seal::{CredentialTag, Sealed};
use scripts::{DUE, NOW_MS, POLLED, RENEW, START, TAKE};

mod scripts;

/// How much CIBA 11 adds to the interval when the OP says `slow_down` (as in memory).
const SLOW_DOWN_STEP_MS: u64 = 5_000;

/// A failed Redis operation; `Display` names the operation only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRedisError {
    op: &'static str,
    timeout: bool,
}

impl PingRedisError {
    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        self.op
    }
}

impl fmt::Display for PingRedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.timeout { "timed out" } else { "failed" };
        write!(f, "shared ping store {}: {what}", self.op)
    }
}

impl std::error::Error for PingRedisError {}

/// What a scan of the schedule gives the caller for one id.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not (or no longer) the caller's to poll.
    Lost,
    /// The caller holds it and polls it now, with this sealed credential.
    PollNow {
        /// The client that started it.
        client: ClientId,
        /// Its sealed credential.
        credential: Sealed,
    },
    /// The caller holds it; its poll falls due after this long.
    Later(Duration),
}

/// What a poll's outcome did to the shared record.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing (answered already, expired, or held by another replica now).
    Nothing,
    /// The answer is held and the caller pings: client, sealed token (if any), time left.
    Answered {
        /// The client to ping.
        client: ClientId,
        /// Its sealed notification token; `None` when it was gone.
        token: Option<Sealed>,
        /// Until the request expires.
        expires_in: Duration,
    },
    /// Polled again after the interval.
    Again(Duration),
}

/// A poll's outcome as the shared record takes it.
#[derive(Debug)]
pub enum Outcome {
    /// Pending, or an OP fault.
    Pending,
    /// `slow_down`.
    SlowDown,
    /// The OP's terminal answer, sealed.
    Answer(Sealed),
}

/// What a redemption finds, before its credential is checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    /// The client that started the request.
    pub client: ClientId,
    /// Its credential's keyed hash.
    pub tag: CredentialTag,
}

/// What taking the held answer gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// No record.
    Gone,
    /// The answer, now deleted from Redis.
    Answer(Sealed),
    /// The OP has not answered yet.
    Waiting,
    /// Already redeemed.
    Used,
}

/// Ping records in Redis; a cheap handle.
#[derive(Clone)]
pub struct PingRedis {
    con: ConnectionManager,
    prefix: String,
    timeout: Duration,
    lease: Duration,
    owner: String,
    skew_ms: std::sync::Arc<AtomicU64>,
    scripts: std::sync::Arc<[Script; 5]>,
}

impl fmt::Debug for PingRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PingRedis")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish()
    }
}

const I_START: usize = 0;
const I_DUE: usize = 1;
const I_RENEW: usize = 2;
const I_POLLED: usize = 3;
const I_TAKE: usize = 4;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PingRedis {
    /// Connects as the replica `owner` (unique per process), leases lasting `lease`.
    pub async fn connect(
        cfg: &RedisConfig,
        lease: Duration,
        owner: String,
    ) -> Result<Self, PingRedisError> {
        const OP: &str = "ping_connect";
        let fail = |timeout| PingRedisError { op: OP, timeout };
        let client = redis::Client::open(cfg.url.as_str()).map_err(|_| fail(false))?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(cfg.timeout)
            .set_response_timeout(cfg.timeout)
            .set_number_of_retries(2)
            .set_factor(50)
            .set_max_delay(500);
        let con = tokio::time::timeout(
            cfg.timeout.max(Duration::from_secs(1)),
            ConnectionManager::new_with_config(client, mgr_cfg),
        )
        .await
        .map_err(|_| fail(true))?
        .map_err(|_| fail(false))?;
        let script = |body: &str| Script::new(&format!("{NOW_MS}\n{body}"));
        Ok(PingRedis {
            con,
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            lease,
            owner,
            skew_ms: Default::default(),
            scripts: std::sync::Arc::new([
                script(START),
                script(DUE),
                script(RENEW),
                script(POLLED),
                script(TAKE),
            ]),
        })
    }

    /// This replica's name in the records it holds.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Moves this handle's view of Redis time forward; for tests only.
    #[doc(hidden)]
    pub fn advance_clock_for_tests(&self, by: Duration) {
        self.skew_ms.fetch_add(ms(by), Ordering::Relaxed);
    }

    /// Records a new ping request, held by this replica, its first poll one `interval`
    /// from now. Returns false when the id already had a record.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &self,
        id: &AuthReqId,
        client: &ClientId,
        tag: &CredentialTag,
        credential: &Sealed,
        token: &Sealed,
        interval: Duration,
        expires_in: Duration,
    ) -> Result<bool, PingRedisError> {
        const OP: &str = "ping_start";
        let (id, client) = (part(OP, id.as_str())?, part(OP, client.as_str())?);
        let mut inv = self.scripts[I_START].prepare_invoke();
        inv.key(self.record_key(id))
            .key(self.schedule_key())
            .arg(id)
            .arg(client)
            .arg(tag.as_bytes())
            .arg(credential.as_bytes())
            .arg(token.as_bytes())
            .arg(ms(interval).max(1))
            .arg(ms(expires_in))
            .arg(&self.owner)
            .arg(ms(self.lease))
            .arg(self.skew());
        let n: i64 = self.run(OP, &inv).await?;
        Ok(n == 1)
    }

    /// Renews the lease of the due ids this replica holds and takes over up to `takeover`
    /// ids whose lease ran out; what each one now is for this replica.
    pub async fn due(
        &self,
        held: &[AuthReqId],
        takeover: usize,
    ) -> Result<Vec<(AuthReqId, Claim)>, PingRedisError> {
        const OP: &str = "ping_due";
        let mut inv = self.scripts[I_DUE].prepare_invoke();
        inv.key(self.schedule_key())
            .arg(&self.owner)
            .arg(ms(self.lease))
            .arg(takeover)
            .arg(self.skew())
            .arg(&self.prefix);
        for id in held.iter().filter(|i| i.as_str().len() <= MAX_KEY_PART) {
            inv.arg(id.as_str());
        }
        let rows: Vec<(String, i64, String, Vec<u8>)> = self.run(OP, &inv).await?;
        Ok(rows
            .into_iter()
            .map(|(id, code, client, data)| {
                let claim = match code {
                    1 => Claim::PollNow {
                        client: ClientId::new(&client),
                        credential: Sealed::from_bytes(&data),
                    },
                    2 => Claim::Later(Duration::from_millis(
                        std::str::from_utf8(&data)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                    )),
                    _ => Claim::Lost,
                };
                (AuthReqId::new(&id), claim)
            })
            .collect())
    }

    /// Extends this replica's lease on `id` while it polls; false when it is not its own.
    pub async fn renew(&self, id: &AuthReqId) -> Result<bool, PingRedisError> {
        const OP: &str = "ping_renew";
        let id = part(OP, id.as_str())?;
        let mut inv = self.scripts[I_RENEW].prepare_invoke();
        inv.key(self.record_key(id))
            .key(self.schedule_key())
            .arg(id)
            .arg(&self.owner)
            .arg(ms(self.lease))
            .arg(self.skew());
        let n: i64 = self.run(OP, &inv).await?;
        Ok(n == 1)
    }

    /// Records what came of this replica's poll of `id`.
    pub async fn polled(
        &self,
        id: &AuthReqId,
        outcome: &Outcome,
    ) -> Result<Recorded, PingRedisError> {
        const OP: &str = "ping_polled";
        let id = part(OP, id.as_str())?;
        let (code, answer): (&str, &[u8]) = match outcome {
            Outcome::Pending => ("0", b""),
            Outcome::SlowDown => ("1", b""),
            Outcome::Answer(a) => ("2", a.as_bytes()),
        };
        let mut inv = self.scripts[I_POLLED].prepare_invoke();
        inv.key(self.record_key(id))
            .key(self.schedule_key())
            .arg(id)
            .arg(&self.owner)
            .arg(code)
            .arg(answer)
            .arg(SLOW_DOWN_STEP_MS)
            .arg(ms(self.lease))
            .arg(self.skew());
        let (code, n, client, token): (i64, u64, String, Vec<u8>) = self.run(OP, &inv).await?;
        Ok(match code {
            1 => Recorded::Answered {
                client: ClientId::new(&client),
                token: (!token.is_empty()).then(|| Sealed::from_bytes(&token)),
                expires_in: Duration::from_millis(n),
            },
            2 => Recorded::Again(Duration::from_millis(n)),
            _ => Recorded::Nothing,
        })
    }

    /// Who started `id` and the keyed hash of its credential; `None` when it has no record.
    pub async fn holder(&self, id: &AuthReqId) -> Result<Option<Holder>, PingRedisError> {
        const OP: &str = "ping_holder";
        let Some(id) = fits(id.as_str()) else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.record_key(id)).arg("c").arg("t");
        let (client, tag): (Option<String>, Option<Vec<u8>>) = self
            .timed(OP, cmd.query_async(&mut self.con.clone()))
            .await?;
        Ok(
            match (client, tag.as_deref().and_then(CredentialTag::from_bytes)) {
                (Some(client), Some(tag)) => Some(Holder {
                    client: ClientId::new(&client),
                    tag,
                }),
                _ => None,
            },
        )
    }

    /// Takes the held answer of `id`: given out once, across all replicas.
    pub async fn take(&self, id: &AuthReqId) -> Result<Taken, PingRedisError> {
        const OP: &str = "ping_take";
        let Some(id) = fits(id.as_str()) else {
            return Ok(Taken::Gone);
        };
        let mut inv = self.scripts[I_TAKE].prepare_invoke();
        inv.key(self.record_key(id));
        let (code, answer): (i64, Vec<u8>) = self.run(OP, &inv).await?;
        Ok(match code {
            1 => Taken::Answer(Sealed::from_bytes(&answer)),
            2 => Taken::Waiting,
            3 => Taken::Used,
            _ => Taken::Gone,
        })
    }

    /// Ids waiting for the OP's answer on all replicas (the schedule's size).
    pub async fn waiting(&self) -> Result<usize, PingRedisError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.schedule_key());
        let n: u64 = self
            .timed("ping_waiting", cmd.query_async(&mut self.con.clone()))
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, PingRedisError> {
        let mut con = self.con.clone();
        self.timed(op, inv.invoke_async(&mut con)).await
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, PingRedisError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(PingRedisError { op, timeout: true }),
            Ok(Err(_)) => Err(PingRedisError { op, timeout: false }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    fn skew(&self) -> u64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}p:{id}", self.prefix)
    }

    fn schedule_key(&self) -> String {
        format!("{}pq", self.prefix)
    }
}

fn fits(s: &str) -> Option<&str> {
    (s.len() <= MAX_KEY_PART).then_some(s)
}

fn part<'a>(op: &'static str, s: &'a str) -> Result<&'a str, PingRedisError> {
    fits(s).ok_or(PingRedisError { op, timeout: false })
}
