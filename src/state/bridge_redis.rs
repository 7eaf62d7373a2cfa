//! Bridge records in Redis, shared by every replica: the user's browser may return to
//! another replica than the one that started the request, and the client may poll any.
//!
//! # Keys (under `state.redis_key_prefix`), each expiring with its request
//!
//! - `{p}b:{auth_req_id}`: a hash `c` (client), `t` (the credential's keyed hash), `s` (the
//!   sealed record), `e` (expiry, Unix ms), `st` (status byte: `p`, `a`, `d`, `f`), `k`
//!   (sealed tokens, from the callback until redeemed), `r` (present once redeemed). It
//!   expires [`GRACE_MS`] after the request.
//! - `{p}bs:{hex of the state's keyed hash}`: the `auth_req_id`; taken (read and deleted)
//!   by one callback. It expires with the request.
//!
//! The transitions (take a state, finish a pending request, redeem a finished one) are
//! single Lua scripts, so two replicas cannot both take a state or both hand out tokens.

use crate::ciba::bridge::outcome::Status;
use crate::ciba::ids::{AuthReqId, ClientId};
use crate::state::bridge_store::{Record, Redeemed, Unavailable, GRACE_MS};
use crate::state::redis_store::RedisConfig;
use crate::state::seal::{CredentialTag, Sealed};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Reads and deletes a state key: the id it held, or nil.
const TAKE_STATE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v";

/// Finishes a pending, unexpired request: ARGV status, tokens ('' for none), now (ms).
const FINISH: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if st ~= 'p' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'e')) <= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'k', ARGV[2]) end
return 1";

/// Redeems a finished request once: {'n'} gone, {'u'} used, {'p'} pending, or
/// {status, tokens or ''} for the one redemption (tokens deleted).
const REDEEM: &str = r"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'n'} end
if redis.call('HEXISTS', KEYS[1], 'r') == 1 then return {'u'} end
if st == 'p' then return {'p'} end
local k = redis.call('HGET', KEYS[1], 'k') or ''
redis.call('HSET', KEYS[1], 'r', '1')
redis.call('HDEL', KEYS[1], 'k')
return {st, k}";

/// The Redis side of [`BridgeStore`](crate::state::bridge_store::BridgeStore).
pub struct BridgeRedis {
    cfg: RedisConfig,
    con: OnceCell<ConnectionManager>,
    take_state: Script,
    finish: Script,
    redeem: Script,
}

impl BridgeRedis {
    /// Connects on first use.
    pub fn new(cfg: RedisConfig) -> Self {
        BridgeRedis {
            cfg,
            con: OnceCell::new(),
            take_state: Script::new(TAKE_STATE),
            finish: Script::new(FINISH),
            redeem: Script::new(REDEEM),
        }
    }

    async fn con(&self) -> Result<ConnectionManager, Unavailable> {
        let cfg = &self.cfg;
        self.con
            .get_or_try_init(|| async {
                let client = redis::Client::open(cfg.url.as_str()).map_err(|_| Unavailable)?;
                let mgr = ConnectionManagerConfig::new()
                    .set_connection_timeout(cfg.timeout)
                    .set_response_timeout(cfg.timeout)
                    .set_number_of_retries(2)
                    .set_factor(50)
                    .set_max_delay(500);
                tokio::time::timeout(
                    cfg.timeout.max(Duration::from_secs(1)),
                    ConnectionManager::new_with_config(client, mgr),
                )
                .await
                .map_err(|_| Unavailable)?
                .map_err(|_| Unavailable)
            })
            .await
            .cloned()
    }

    /// Runs one operation within the configured timeout; any failure is [`Unavailable`]
    /// (logged by operation name only).
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let con = self.con().await?;
        match tokio::time::timeout(self.cfg.timeout, f(con)).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                tracing::warn!(op, "bridge store: Redis operation failed");
                Err(Unavailable)
            }
        }
    }

    fn record_key(&self, id: &AuthReqId) -> String {
        format!("{}b:{}", self.cfg.key_prefix, id.as_str())
    }

    fn state_key(&self, state: &[u8; 32]) -> String {
        let hex: String = state.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}bs:{hex}", self.cfg.key_prefix)
    }

    /// Stores a new pending request and its state, in one transaction.
    pub async fn create(
        &self,
        id: &AuthReqId,
        state: &[u8; 32],
        rec: &Record,
        _now_ms: u64,
    ) -> Result<(), Unavailable> {
        let rk = self.record_key(id);
        let sk = self.state_key(state);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &rk,
                &[
                    ("c", rec.client.as_str().as_bytes()),
                    ("t", rec.tag.as_bytes()),
                    ("s", rec.sealed.as_bytes()),
                    ("e", rec.expires_at_ms.to_string().as_bytes()),
                    ("st", &[Status::Pending.as_byte()]),
                ],
            )
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&rk)
            .arg(rec.expires_at_ms + GRACE_MS)
            .ignore()
            .cmd("SET")
            .arg(&sk)
            .arg(id.as_str())
            .arg("PXAT")
            .arg(rec.expires_at_ms)
            .ignore();
        self.run("bridge_create", |mut con| async move {
            pipe.query_async::<()>(&mut con).await
        })
        .await
    }

    /// Takes a state once; the request's record and status when it is still live.
    pub async fn take_state(
        &self,
        state: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<(AuthReqId, Record, Status)>, Unavailable> {
        let sk = self.state_key(state);
        let script = &self.take_state;
        let id: Option<String> = self
            .run("bridge_take_state", |mut con| async move {
                script.key(sk).invoke_async(&mut con).await
            })
            .await?;
        let Some(id) = id.map(|i| AuthReqId::new(&i)) else {
            return Ok(None);
        };
        Ok(self.get(&id, now_ms).await?.map(|(r, s)| (id, r, s)))
    }

    /// A live, unredeemed request's record and status.
    pub async fn get(
        &self,
        id: &AuthReqId,
        now_ms: u64,
    ) -> Result<Option<(Record, Status)>, Unavailable> {
        Ok(self
            .fetch(id)
            .await?
            .filter(|(r, _, redeemed)| r.expires_at_ms > now_ms && !redeemed)
            .map(|(r, s, _)| (r, s)))
    }

    async fn fetch(&self, id: &AuthReqId) -> Result<Option<(Record, Status, bool)>, Unavailable> {
        let rk = self.record_key(id);
        let fields: std::collections::HashMap<String, Vec<u8>> = self
            .run("bridge_get", |mut con| async move {
                redis::cmd("HGETALL").arg(rk).query_async(&mut con).await
            })
            .await?;
        let text = |k: &str| fields.get(k).and_then(|v| std::str::from_utf8(v).ok());
        let (Some(client), Some(tag), Some(sealed), Some(exp), Some(st)) = (
            text("c"),
            fields.get("t").and_then(|t| CredentialTag::from_bytes(t)),
            fields.get("s"),
            text("e").and_then(|e| e.parse::<u64>().ok()),
            fields
                .get("st")
                .and_then(|s| s.first())
                .and_then(|b| Status::from_byte(*b)),
        ) else {
            return Ok(None);
        };
        Ok(Some((
            Record {
                client: ClientId::new(client),
                tag,
                sealed: Sealed::from_bytes(sealed),
                expires_at_ms: exp,
            },
            st,
            fields.contains_key("r"),
        )))
    }

    /// Finishes a pending request once.
    pub async fn finish(
        &self,
        id: &AuthReqId,
        status: Status,
        tokens: Option<&Sealed>,
        now_ms: u64,
    ) -> Result<bool, Unavailable> {
        let rk = self.record_key(id);
        let script = &self.finish;
        let tokens = tokens.map(|t| t.as_bytes().to_vec()).unwrap_or_default();
        let done: i64 = self
            .run("bridge_finish", |mut con| async move {
                script
                    .key(rk)
                    .arg(&[status.as_byte()][..])
                    .arg(tokens)
                    .arg(now_ms)
                    .invoke_async(&mut con)
                    .await
            })
            .await?;
        Ok(done == 1)
    }

    /// A poll: the owner's checks on the stored record, then the one redemption.
    pub async fn redeem(
        &self,
        id: &AuthReqId,
        owner: impl Fn(&Record) -> Result<(), Redeemed>,
        now_ms: u64,
    ) -> Result<Redeemed, Unavailable> {
        let Some((rec, _, _)) = self.fetch(id).await? else {
            return Ok(Redeemed::Unknown);
        };
        if rec.expires_at_ms + GRACE_MS <= now_ms {
            return Ok(Redeemed::Unknown);
        }
        if let Err(r) = owner(&rec) {
            return Ok(r);
        }
        let rk = self.record_key(id);
        let script = &self.redeem;
        let out: Vec<Vec<u8>> = self
            .run("bridge_redeem", |mut con| async move {
                script.key(rk).invoke_async(&mut con).await
            })
            .await?;
        Ok(match out.as_slice() {
            [st] if st.as_slice() == b"p" => Redeemed::Pending,
            [st] if st.as_slice() == b"u" => Redeemed::Used,
            [st, k] => match st.first().and_then(|b| Status::from_byte(*b)) {
                Some(status) => {
                    Redeemed::Ended(status, (!k.is_empty()).then(|| Sealed::from_bytes(k)))
                }
                None => Redeemed::Unknown,
            },
            _ => Redeemed::Unknown,
        })
    }
}
