//! The Lua scripts behind [`PingRedis`](super::PingRedis), each run atomically by Redis.
//! Each script's doc comment gives its `KEYS`, its `ARGV` and what it returns; [`NOW_MS`]
//! (server time and helpers) is prepended to every script. Records are `{p}p:{id}` and
//! keys a script reaches by id are built from the prefix (as the poll store's scripts do).

/// Returns Redis server time in ms (plus the test skew) as `now`; `int` prints integers as
/// plain digits; `extend` makes `key` live at least until `at` (ms).
pub(super) const NOW_MS: &str = r#"
local function now_ms(skew)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(skew)
end
local function int(n) return string.format('%d', n) end
local function extend(key, now, at)
  if redis.call('PTTL', key) < at - now then redis.call('PEXPIREAT', key, int(at)) end
end
"#;

/// KEYS: record, schedule. ARGV: id, client, credential tag, sealed credential, sealed
/// notification token, interval ms, expires_in ms, owner, lease ms, skew.
/// Returns 1 when started, 0 when the id already has a record (an OP that handed an id out
/// twice: the first record stays). The starting replica holds the lease until one lease
/// after the first poll falls due.
pub(super) const START: &str = r#"
local now = now_ms(ARGV[10])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local exp = now + tonumber(ARGV[7])
local np = now + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'c', ARGV[2], 't', ARGV[3], 'k', ARGV[4], 'n', ARGV[5],
  'p', '0', 'i', ARGV[6], 'np', int(np), 'e', int(exp), 'o', ARGV[8])
redis.call('PEXPIREAT', KEYS[1], int(exp))
redis.call('ZADD', KEYS[2], int(np + tonumber(ARGV[9])), ARGV[1])
extend(KEYS[2], now, exp)
return 1
"#;

/// KEYS: schedule. ARGV: owner, lease ms, takeover max, skew, prefix, then the ids this
/// replica holds whose poll falls due now.
///
/// For each held id, then for up to `takeover max` ids whose lease ran out (score ≤ now):
/// a record gone or no longer waiting leaves the schedule; a held id another replica took
/// over is lost; otherwise the caller holds it (owner set) and, when its poll is due, the
/// lease runs one lease from now (the caller renews it while polling), else one lease after
/// its poll falls due. Returns a list of {id, code, client, data}: code 0 not (or no longer)
/// the caller's, 1 poll now (data: the sealed credential), 2 held, poll later (data: ms
/// until its poll falls due).
pub(super) const DUE: &str = r#"
local now = now_ms(ARGV[4])
local lease = tonumber(ARGV[2])
local function claim(id, held)
  local key = ARGV[5] .. 'p:' .. id
  local h = redis.call('HMGET', key, 'c', 'k', 'p', 'np', 'o')
  if not h[1] or h[3] ~= '0' or not h[2] then
    redis.call('ZREM', KEYS[1], id)
    return {id, 0, '', ''}
  end
  if held and h[5] ~= ARGV[1] then return {id, 0, '', ''} end
  redis.call('HSET', key, 'o', ARGV[1])
  local np = tonumber(h[4])
  if np <= now then
    redis.call('ZADD', KEYS[1], int(now + lease), id)
    return {id, 1, h[1], h[2]}
  end
  redis.call('ZADD', KEYS[1], int(np + lease), id)
  return {id, 2, '', int(np - now)}
end
local out = {}
local seen = {}
for n = 6, #ARGV do
  seen[ARGV[n]] = true
  table.insert(out, claim(ARGV[n], true))
end
local max = tonumber(ARGV[3])
if max > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, max)) do
    if not seen[id] then table.insert(out, claim(id, false)) end
  end
end
return out
"#;

/// KEYS: record, schedule. ARGV: id, owner, lease ms, skew. While the caller holds the
/// waiting id, its lease runs at least one lease from now. Returns 1 if renewed, else 0.
pub(super) const RENEW: &str = r#"
local now = now_ms(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'p', 'o')
if h[1] ~= '0' or h[2] ~= ARGV[2] then return 0 end
local until_ms = now + tonumber(ARGV[3])
local s = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if s < until_ms then redis.call('ZADD', KEYS[2], int(until_ms), ARGV[1]) end
return 1
"#;

/// KEYS: record, schedule. ARGV: id, owner, outcome (`0` pending, `1` slow_down, `2` a
/// terminal answer), the sealed answer (outcome 2), slow_down step ms, lease ms, skew.
///
/// A terminal answer is held if the request is still waiting, whoever polled (the OP will
/// not give it twice), and in the same step the notification token is taken out: only the
/// caller of the step that held the answer gets it, so one ping is sent. Otherwise, for the
/// id's holder only, the next poll falls due one interval (5 s longer after `slow_down`)
/// from now and the lease runs one lease past it.
/// Returns {code, ms, client, token}: 0 nothing to do (not waiting, or not the holder);
/// 1 answer held: ms until expiry, the client and the sealed token (empty when gone);
/// 2 rescheduled: ms, the interval.
pub(super) const POLLED: &str = r#"
local now = now_ms(ARGV[7])
local h = redis.call('HMGET', KEYS[1], 'p', 'o', 'i', 'c', 'n', 'e')
if h[1] ~= '0' then return {0, 0, '', ''} end
if ARGV[3] == '2' then
  redis.call('HSET', KEYS[1], 'p', '1', 'a', ARGV[4])
  redis.call('HDEL', KEYS[1], 'k', 'n')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {1, math.max(tonumber(h[6]) - now, 0), h[4], h[5] or ''}
end
if h[2] ~= ARGV[2] then return {0, 0, '', ''} end
local i = tonumber(h[3])
if ARGV[3] == '1' then
  i = i + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'i', int(i))
end
local np = now + i
redis.call('HSET', KEYS[1], 'np', int(np))
redis.call('ZADD', KEYS[2], int(np + tonumber(ARGV[6])), ARGV[1])
return {2, i, '', ''}
"#;

/// KEYS: record. The one redemption: a held answer is given out and deleted in one step
/// (GETDEL-style), so of simultaneous redemptions on any replicas one gets it.
/// Returns {code, sealed answer}: 0 no record (never, or expired), 1 the answer,
/// 2 still waiting, 3 already redeemed.
pub(super) const TAKE: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'p', 'a')
if not h[1] then return {0, ''} end
if h[1] == '1' then
  redis.call('HSET', KEYS[1], 'p', '2')
  redis.call('HDEL', KEYS[1], 'a')
  return {1, h[2] or ''}
end
if h[1] == '0' then return {2, ''} end
return {3, ''}
"#;
