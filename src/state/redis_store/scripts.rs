//! The Lua scripts behind [`RedisStore`](super::RedisStore), one per decision, each run
//! atomically by Redis. Each script's doc comment gives its `KEYS`, its `ARGV` and what it
//! returns; [`NOW_MS`] (server time and helpers) is prepended to every script, and [`PROBE`]
//! to [`POLL`].

/// Returns Redis server time in ms (plus the test skew in ARGV[n]) as `now`.
pub(super) const NOW_MS: &str = r#"
local function now_ms(skew)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(skew)
end
-- Integers as plain digits: Redis may print a large Lua number in exponent form.
local function int(n) return string.format('%d', n) end
-- A sorted set's TTL follows its latest member; an emptied set is already gone.
local function expire_set(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, int(tonumber(top[2]))) end
end
"#;

/// KEYS: entry, client set, global set. ARGV: id, client, interval ms, expires_in ms, skew,
/// prefix, grace ms. Returns the entry's expiry (ms).
pub(super) const RECORD: &str = r#"
local now = now_ms(ARGV[5])
local exp = now + tonumber(ARGV[4])
local old = redis.call('HGET', KEYS[1], 'c')
if old and old ~= ARGV[2] then
  -- Replaced under another client: stop counting it there.
  redis.call('ZREM', ARGV[6] .. 'c:' .. old, ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'c', ARGV[2], 'e', int(exp), 'i', ARGV[3], 'l', '-1', 'p', '0')
redis.call('PEXPIREAT', KEYS[1], int(exp + tonumber(ARGV[7])))
for k = 2, 3 do
  redis.call('ZADD', KEYS[k], int(exp + tonumber(ARGV[7])), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', int(now))
  expire_set(KEYS[k])
end
return exp
"#;

/// Starts a probe of an id the gateway never acknowledged, in the learned entry `key`
/// (ARGV as for POLL). Mirrors `PollState::probe`.
pub(super) const PROBE: &str = r#"
local function probe(key, now)
  local exp = now + tonumber(ARGV[10])
  redis.call('DEL', key)
  redis.call('HSET', key, 'c', ARGV[2], 'e', int(exp), 'i', ARGV[9], 'l', int(now), 'p', '3')
  redis.call('PEXPIREAT', key, int(exp + tonumber(ARGV[11])))
  for k = 3, 4 do
    redis.call('ZADD', KEYS[k], int(exp + tonumber(ARGV[11])), ARGV[8])
    expire_set(KEYS[k])
  end
end
"#;

/// KEYS: entry, learned entry, client set, global set. ARGV: id, client, tolerance ms,
/// step ms, skew, max interval ms, learn (`1`/`0`), learned member, min interval ms,
/// remember ms, grace ms, max total, max per client.
/// Returns {code, interval ms, retry-after ms}: 0 unknown, 1 forward, 2 slow_down,
/// 3 expired, 4 wrong client, 5 ended, 6 probe, 7 total full, 8 client full.
/// Mirrors `PollStore::poll` and `polling::decide_at` step for step.
pub(super) const POLL: &str = r#"
local now = now_ms(ARGV[5])
local key = KEYS[1]
local h = redis.call('HMGET', key, 'c', 'e', 'i', 'l', 'p')
if not h[1] then
  key = KEYS[2]
  h = redis.call('HMGET', key, 'c', 'e', 'i', 'l', 'p')
end
if not h[1] then
  if ARGV[7] ~= '1' then return {0, 0, 0} end
  for k = 3, 4 do redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', int(now)) end
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[12]) then return {7, 0, 0} end
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[13]) then return {8, 0, 0} end
  probe(KEYS[2], now)
  return {6, 0, 0}
end
-- Before anything else: another client learns nothing and changes nothing.
if h[1] ~= ARGV[2] then return {4, 0, 0} end
if h[5] == '1' then return {5, 0, 0} end
if h[5] == '2' then return {3, 0, 0} end
if now >= tonumber(h[2]) then
  if h[5] == '3' then
    probe(key, now)
    return {6, 0, 0}
  end
  -- Kept until its TTL (expiry plus grace): late polls keep getting expired_token.
  return {3, 0, 0}
end
local interval = tonumber(h[3])
local last = tonumber(h[4])
-- The first poll after the ack is always allowed.
if last >= 0 then
  local tol = tonumber(ARGV[3])
  if now < last + math.max(interval - tol, 0) then
    local cap = tonumber(ARGV[6])
    if interval < cap then
      interval = math.min(interval + tonumber(ARGV[4]), cap)
      redis.call('HSET', key, 'i', int(interval))
    end
    -- Measured from the last forwarded poll: a refused one does not restart the clock.
    return {2, interval, last + math.max(interval - tol, 0) - now}
  end
end
redis.call('HSET', key, 'l', int(now))
return {1, interval, 0}
"#;

/// KEYS: client set, global set. ARGV: max total, max per client, skew.
/// Returns 0 (room), 1 (total full) or 2 (client full).
pub(super) const ADMIT: &str = r#"
local now = now_ms(ARGV[3])
for k = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', int(now)) end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 2 end
return 0
"#;

/// KEYS: entry, learned entry, client set, global set. ARGV: client, verdict (0 pending,
/// 1 slow_down, 2 ended, 3 expired), skew, step ms, max interval ms, max expires_in ms,
/// remember ms, grace ms, learned member. Returns 1 if the client's entry existed.
/// Mirrors `polling::learn`.
pub(super) const REPORT: &str = r#"
local key = KEYS[1]
local h = redis.call('HMGET', key, 'c', 'p', 'i')
if not h[1] then
  key = KEYS[2]
  h = redis.call('HMGET', key, 'c', 'p', 'i')
end
if not h[1] or h[1] ~= ARGV[1] then return 0 end
local now = now_ms(ARGV[3])
local probing = h[2] == '3'
local v = ARGV[2]
-- Only a probe (always a learned entry) changes its lifetime.
local function relife(exp)
  redis.call('HSET', key, 'e', int(exp))
  redis.call('PEXPIREAT', key, int(exp + tonumber(ARGV[8])))
  for k = 3, 4 do
    redis.call('ZADD', KEYS[k], int(exp + tonumber(ARGV[8])), ARGV[9])
    expire_set(KEYS[k])
  end
end
if v == '0' or v == '1' then
  if v == '1' then
    local i = tonumber(h[3])
    local cap = tonumber(ARGV[5])
    if i < cap then redis.call('HSET', key, 'i', int(math.min(i + tonumber(ARGV[4]), cap))) end
  end
  if probing then
    redis.call('HSET', key, 'p', '0')
    relife(now + tonumber(ARGV[6]))
  end
elseif v == '2' or v == '3' then
  redis.call('HSET', key, 'p', v == '2' and '1' or '2')
  if probing then relife(now + tonumber(ARGV[7])) end
end
return 1
"#;

/// KEYS: entry, global set. ARGV: id, prefix. Returns 1 if it existed.
pub(super) const CANCEL: &str = r#"
local c = redis.call('HGET', KEYS[1], 'c')
if not c then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[2] .. 'c:' .. c, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: global set. ARGV: skew. Counts unexpired entries, read-only.
pub(super) const LEN: &str = r#"
return redis.call('ZCOUNT', KEYS[1], '(' .. int(now_ms(ARGV[1])), '+inf')
"#;

/// KEYS: bucket. ARGV: emission interval µs, burst, skew ms. GCRA: returns -1 when allowed,
/// else the wait in µs.
pub(super) const RATE: &str = r#"
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2]) + tonumber(ARGV[3]) * 1000
local t = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - tonumber(ARGV[2]) * t
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], int(new_tat), 'PX', int(math.ceil((new_tat - now) / 1000) + 1))
return -1
"#;
