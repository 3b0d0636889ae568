//! The Lua scripts of the Redis rate limiters. Each check is one script
//! run: atomic on the server, one round trip, timed by the server's clock
//! (`TIME`) so that instances with skewed clocks still share one limit.
//! A rate check sends `EVALSHA` ([`Lua`]) and loads the script on
//! `NOSCRIPT`, e.g. after a server restart or `SCRIPT FLUSH`.
//!
//! Times are microseconds; Lua numbers are doubles, exact up to 2^53 µs
//! (285 years since the epoch). Numbers are handed to `redis.call` as
//! numbers: Redis writes them with `%.17g`, exact for these integers, so
//! no `string.format` runs per call.

use std::sync::LazyLock as Lazy;

use redis::{Cmd, Script};

use crate::settings::Algorithm;

/// A rate script: its command is built by the caller (keys and arguments
/// written straight into one [`Cmd`]) and run by hash.
pub(crate) struct Lua(Script);

impl Lua {
    fn new(source: &str) -> Self {
        Lua(Script::new(source))
    }

    /// `EVALSHA <hash> <keys>`, for the caller to append keys and
    /// arguments to.
    pub(crate) fn evalsha(&self, keys: usize) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.0.get_hash()).arg(keys);
        cmd
    }

    /// Runs `cmd` (made by [`Lua::evalsha`]); on `NOSCRIPT` loads the
    /// script and runs it again.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &Cmd,
        con: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        match cmd.query_async(con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.0.load_async(con).await?;
                cmd.query_async(con).await
            }
            other => other,
        }
    }
}

/// The script of `algorithm` over `windows` windows: the token bucket has
/// one for a single window (the common case: no loop, no tables) and one
/// for several.
pub(crate) fn rate(algorithm: Algorithm, windows: usize) -> &'static Lua {
    match (algorithm, windows) {
        (Algorithm::TokenBucket, 1) => &GCRA_ONE,
        (Algorithm::TokenBucket, _) => &GCRA,
        (Algorithm::SlidingWindow, _) => &SLIDING,
        (Algorithm::FixedWindow, _) => &FIXED,
        (Algorithm::SlidingExact, _) => &EXACT,
    }
}

/// GCRA over one window: [`GCRA`] without the loop. `ARGV`: interval,
/// horizon, take, forced.
pub(crate) static GCRA_ONE: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval, horizon, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local inc = n * interval
local ahead = tat - now
if inc < horizon then ahead = ahead + inc else ahead = ahead + horizon end
if ahead > horizon and ARGV[4] ~= '1' then
  return {0, ahead - horizon, 0}
end
local lead = tat + inc - now
redis.call('SET', KEYS[1], now + lead, 'PX', math.floor(lead / 1000) + 2)
local left = math.floor((horizon - lead) / interval)
if left < 0 then left = 0 end
return {1, left, -1}
"#,
    )
});

/// GCRA over several windows, one key each (all under one hash tag).
///
/// `ARGV`: for each window its emission interval `T` and horizon `B·T`,
/// in µs, then the take `n` and whether it is forced (a charge). Admits
/// when every window would: each key's theoretical arrival time `tat`
/// moves to `max(tat, now) + n·T` and expires when the bucket is full
/// again. Returns `{1, remaining, -1}` or `{0, wait_us, window}`.
pub(crate) static GCRA: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = tonumber(ARGV[#ARGV - 1])
local force = ARGV[#ARGV] == '1'
local next_tats = {}
local wait, refused = 0, -1
local remaining = nil
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local horizon = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  -- A take costing more than the bucket holds needs a full bucket and
  -- leaves it in debt (the in-process rule).
  local nxt = tat + n * interval
  local ahead = tat + math.min(n * interval, horizon) - now
  if ahead > horizon and not force then
    if ahead - horizon > wait then
      wait = ahead - horizon
      refused = i - 1
    end
  else
    local left = math.max(0, math.floor((horizon - (nxt - now)) / interval))
    if remaining == nil or left < remaining then remaining = left end
  end
  next_tats[i] = nxt
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local ttl = math.ceil((next_tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], next_tats[i], 'PX', ttl)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// A lease: a slice of every window's GCRA timeline (`rate/lease.rs`).
///
/// `ARGV`: for each window its interval and horizon (µs), then the least
/// and the most tokens wanted, and how far ahead (µs) a slice may reach.
/// Grants `g` ≤ the most, every one of whose tokens is usable (`tat +
/// j·T − horizon`) by `now + reach` in every window, moving each `tat` on
/// by `g·T`. Returns `{g, 0, now, tat_1, …}` (the slice starts, server
/// µs) or, when fewer than the least fit, `{0, wait_us, now}`.
pub(crate) static LEASE_GCRA: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local nw = #KEYS
local least = tonumber(ARGV[2 * nw + 1])
local g = tonumber(ARGV[2 * nw + 2])
local reach = tonumber(ARGV[2 * nw + 3])
local tats = {}
local wait = 0
for i = 1, nw do
  local interval, horizon = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local fit = math.floor((now + reach + horizon - tat) / interval)
  if fit < g then g = fit end
  local at = tat + least * interval - horizon - reach - now
  if at > wait then wait = at end
end
if g < least then
  return {0, math.max(1, wait), now}
end
local out = {g, 0, now}
for i = 1, nw do
  local nxt = tats[i] + g * tonumber(ARGV[2 * i - 1])
  redis.call('SET', KEYS[i], nxt, 'PX', math.floor((nxt - now) / 1000) + 2)
  out[i + 3] = tats[i]
end
return out
"#,
    )
});

/// Gives the unused tail of a slice back: when every window's `tat` is
/// still where the slice left it (nobody took tokens after), each moves
/// back by `n·T`. `ARGV`: for each window its interval and the `tat` the
/// slice left, then `n`. Returns 1 when given back, else 0.
pub(crate) static LEASE_RETURN: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local nw = #KEYS
local n = tonumber(ARGV[2 * nw + 1])
for i = 1, nw do
  if tonumber(redis.call('GET', KEYS[i])) ~= tonumber(ARGV[2 * i]) then return 0 end
end
for i = 1, nw do
  redis.call('SET', KEYS[i], tonumber(ARGV[2 * i]) - n * tonumber(ARGV[2 * i - 1]), 'KEEPTTL')
end
return 1
"#,
    )
});

/// Sliding-window counter over several windows, one hash key each (all under
/// one hash tag) holding the window index `w`, its count `c` and the
/// previous window's count `p`.
///
/// `ARGV`: for each window its period (µs) and limit, then the take `n`
/// and whether it is forced. The estimate is `p · (1 − elapsed/period) +
/// c`; a call is admitted when the estimate plus `n` stays within the
/// limit in every window. A count past the limit (a charge's debt) moves
/// on into the next windows, `limit` paid per window. Returns
/// `{1, remaining, -1}` or `{0, wait_us, window}`.
pub(crate) static SLIDING: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = tonumber(ARGV[#ARGV - 1])
local force = ARGV[#ARGV] == '1'
local state = {}
local wait, refused = 0, -1
local remaining = nil
for i = 1, #KEYS do
  local period = tonumber(ARGV[2 * i - 1])
  local limit = tonumber(ARGV[2 * i])
  local idx = math.floor(now / period)
  local h = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local w, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  if w == nil then
    c, p = 0, 0
  elseif w < idx then
    -- Each window passed pays `limit` of a debt a charge left.
    local passed = idx - w
    p = math.min(math.max(0, c - limit * (passed - 1)), limit)
    c = math.max(0, c - limit * passed)
  end
  local elapsed = now - idx * period
  local weight = 1 - elapsed / period
  local estimate = p * weight + c
  if estimate + n > limit and not force then
    local w_us
    if c + n > limit then
      -- Not before the window where the debt is paid, and then the
      -- previous count weighs in.
      local windows = math.max(1, math.ceil((c + n - limit) / limit))
      local prev = math.min(c - limit * (windows - 1), limit)
      w_us = (period - elapsed) + period * (windows - 1)
        + period * math.max(0, 1 - (limit - n - math.max(0, c - limit * windows)) / math.max(prev, 1))
    else
      -- When the previous window's share has shrunk enough.
      local f = 1 - (limit - n - c) / p
      w_us = math.max(1, f * period - elapsed)
    end
    if w_us > wait then
      wait = w_us
      refused = i - 1
    end
  else
    local left = math.max(0, math.floor(limit - estimate - n))
    if remaining == nil or left < remaining then remaining = left end
  end
  state[i] = {idx, c, p, period}
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local s = state[i]
  redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2] + n, 'p', s[3])
  local windows = math.max(2, math.ceil((s[2] + n) / tonumber(ARGV[2 * i])) + 1)
  redis.call('PEXPIRE', KEYS[i], math.ceil(windows * s[4] / 1000) + 1)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// Exact sliding window over several windows (the in-process
/// `rate/exact.rs`, kept in Redis): one hash key per window whose fields are
/// sub-window numbers (`period / slots` µs each) and values their counts.
/// Every sub-window overlapping the last period is counted (the oldest one
/// whole), so a call is admitted only while every span of a period ending
/// now holds fewer than the limit: never more than the limit in any span.
/// A hash keeps at most `slots + 1` fields (older ones are deleted).
///
/// `ARGV`: the sub-windows per window, then for each window its sub-window
/// length (µs) and limit, then the take `n` and whether it is forced.
/// Returns `{1, remaining, -1}` or `{0, wait_us, window}`, the wait
/// lasting until enough of the oldest sub-windows have left. A charge
/// past the limit is kept as a debt (field `d`) counted in as room frees
/// up.
pub(crate) static EXACT: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = tonumber(ARGV[#ARGV - 1])
local force = ARGV[#ARGV] == '1'
local slots = tonumber(ARGV[1])
local wait, refused = 0, -1
local remaining = nil
local cur = {}
for i = 1, #KEYS do
  local slot_us = tonumber(ARGV[2 * i])
  local limit = tonumber(ARGV[2 * i + 1])
  local slot = math.floor(now / slot_us)
  local oldest = slot - slots
  local h = redis.call('HGETALL', KEYS[i])
  local counts, stale, sum, d = {}, {}, 0, 0
  for j = 1, #h, 2 do
    if h[j] == 'd' then
      d = tonumber(h[j + 1])
    else
      local s, c = tonumber(h[j]), tonumber(h[j + 1])
      if s < oldest then
        stale[#stale + 1] = h[j]
      else
        counts[s] = c
        sum = sum + c
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  if d > 0 and sum < limit then
    -- A debt is counted in as room frees up (never faster than the
    -- limit per period: the window stays full until it is paid).
    local paid = math.min(d, limit - sum)
    d = d - paid
    sum = sum + paid
    counts[slot] = (counts[slot] or 0) + paid
    redis.call('HINCRBY', KEYS[i], slot, paid)
    if d > 0 then redis.call('HSET', KEYS[i], 'd', d) else redis.call('HDEL', KEYS[i], 'd') end
  end
  if (d > 0 or sum + n > limit) and not force then
    local need, w_us = sum + d + n - limit, nil
    for s = oldest, slot do
      local c = counts[s]
      if c then
        need = need - c
        if need <= 0 then
          w_us = (s + slots + 1) * slot_us - now
          break
        end
      end
    end
    if w_us == nil then
      -- Past this window: whole periods of the limit pay the rest.
      w_us = (slot + 1) * slot_us - now + math.ceil(need / limit) * (slots + 1) * slot_us
    end
    if w_us > wait then
      wait = w_us
      refused = i - 1
    end
  else
    local left = math.max(0, limit - sum - n)
    if d > 0 then left = 0 end
    if remaining == nil or left < remaining then remaining = left end
  end
  local counted = n
  if force then counted = math.min(n, math.max(0, limit - sum)) end
  cur[i] = {slot, slot_us, counted, d + n - counted, limit}
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local c = cur[i]
  if c[3] > 0 then redis.call('HINCRBY', KEYS[i], c[1], c[3]) end
  if c[4] > 0 then redis.call('HSET', KEYS[i], 'd', c[4]) end
  local periods = 1 + math.ceil(c[4] / c[5])
  redis.call('PEXPIRE', KEYS[i], math.ceil(periods * (slots + 1) * c[2] / 1000) + 1)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// Fixed-window counter over several windows, one key each, expiring at
/// the end of its window (or of the window a charge's debt is paid in).
/// `ARGV`: for each window its period (µs) and limit, then the take `n`
/// and whether it is forced. Returns `{1, remaining, -1}` or
/// `{0, wait_us, window}`.
pub(crate) static FIXED: Lazy<Lua> = Lazy::new(|| {
    Lua::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = tonumber(ARGV[#ARGV - 1])
local force = ARGV[#ARGV] == '1'
local wait, refused = 0, -1
local remaining = nil
local ends = {}
for i = 1, #KEYS do
  local period = tonumber(ARGV[2 * i - 1])
  local limit = tonumber(ARGV[2 * i])
  local idx = math.floor(now / period)
  local key = KEYS[i]
  local h = redis.call('HMGET', key, 'w', 'c')
  local c, w = 0, tonumber(h[1])
  if w == idx then
    c = tonumber(h[2]) or 0
  elseif w ~= nil and w < idx then
    -- Each window passed pays `limit` of a debt a charge left.
    c = math.max(0, (tonumber(h[2]) or 0) - limit * (idx - w))
  end
  local left_us = (idx + 1) * period - now
  if c + n > limit and not force then
    local windows = math.max(1, math.ceil((c + n - limit) / limit))
    local w_us = left_us + (windows - 1) * period
    if w_us > wait then
      wait = w_us
      refused = i - 1
    end
  else
    local left = math.max(0, limit - c - n)
    if remaining == nil or left < remaining then remaining = left end
  end
  ends[i] = {idx, c, left_us + math.max(0, math.ceil((c + n - limit) / limit)) * period}
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local e = ends[i]
  redis.call('HSET', KEYS[i], 'w', e[1], 'c', e[2] + n)
  redis.call('PEXPIRE', KEYS[i], math.ceil(e[3] / 1000) + 1)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// The state of a breaker kept in one hash and its outcome list, for
/// monitoring; writes nothing. Returns `{state, wait_us, calls, failures}`
/// (`wait_us` -1 when held open until reset, 0 when not open).
pub(crate) static BREAKER_VIEW: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'state', 'until')
local state = tonumber(h[1]) or 0
local wait = 0
if state == 1 then
  local u = tonumber(h[2]) or 0
  if u >= 9007199254740991 then wait = -1 elseif u > now then wait = u - now end
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local f = 0
for _, v in ipairs(items) do
  if v == '1' then f = f + 1 end
end
return {state, wait, #items, f}
"#,
    )
});

/// Admission through a breaker kept in one hash (`state` 0 closed, 1 open,
/// 2 half-open; `until` in µs; `probes` in flight; `round`, bumped by every
/// transition so that outcomes of an earlier round are ignored).
///
/// `ARGV`: probes allowed at once while half-open, and after how long
/// (µs, the recovery time) a probe place whose outcome never came is taken
/// back. Returns
/// `{1, 0, round}` (closed), `{2, 0, round}` (a probe) or
/// `{0, wait_us, round}` (refused).
pub(crate) static BREAKER_ADMIT: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'state', 'until', 'probes', 'round')
local state = tonumber(h[1]) or 0
local round = tonumber(h[4]) or 0
local probes = tonumber(h[3]) or 0
if state == 1 then
  local u = tonumber(h[2]) or 0
  if now < u then return {0, math.ceil(u - now), round} end
  round = round + 1
  redis.call('HSET', KEYS[1], 'state', 2, 'probes', 0, 'ok', 0, 'round', round)
  state = 2
  probes = 0
end
if state == 2 then
  if probes >= tonumber(ARGV[1]) then
    -- Probe places whose outcome never came (the instance died, or its
    -- caller went away mid-call) are taken back after the recovery time.
    local at = tonumber(redis.call('HGET', KEYS[1], 'probe_at')) or 0
    if now - at < tonumber(ARGV[2]) then return {0, 100000, round} end
    redis.call('HSET', KEYS[1], 'probes', 0)
  end
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  redis.call('HSET', KEYS[1], 'probe_at', string.format('%.0f', now))
  return {2, 0, round}
end
return {1, 0, round}
"#,
    )
});

/// Records the outcome of a call admitted by [`BREAKER_ADMIT`] with the
/// same transitions as the in-process breaker: a count window of the last
/// `window` outcomes in a list (opens at `failure_rate` once `min_calls`
/// are in), consecutive failures, probes that close after
/// `success_threshold` successes or reopen at the first failure.
///
/// `ARGV`: failed (0/1), probe (0/1, or 2 to give a cancelled probe's
/// place back), round, window, min_calls,
/// failure_rate, recovery (µs), success_threshold, consecutive (0 = off),
/// idle expiry (ms). Returns `{state, transitioned}`.
pub(crate) static BREAKER_RECORD: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'state', 'round')
local state = tonumber(h[1]) or 0
local round = tonumber(h[2]) or 0
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if tonumber(ARGV[3]) ~= round then return {state, 0} end
if ARGV[2] == '2' then
  -- A probe that ended without an outcome (cancelled) gives its place back.
  if state == 2 then redis.call('HINCRBY', KEYS[1], 'probes', -1) end
  return {state, 0}
end
local failed = ARGV[1] == '1'
local function open()
  redis.call('HSET', KEYS[1], 'state', 1, 'until', string.format('%.0f', now + tonumber(ARGV[7])),
    'round', round + 1, 'consec', 0, 'probes', 0, 'ok', 0)
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
  redis.call('DEL', KEYS[2])
  return {1, 1}
end
if ARGV[2] == '1' then
  if state ~= 2 then return {state, 0} end
  if failed then return open() end
  redis.call('HINCRBY', KEYS[1], 'probes', -1)
  local ok = redis.call('HINCRBY', KEYS[1], 'ok', 1)
  if ok >= tonumber(ARGV[8]) then
    redis.call('HSET', KEYS[1], 'state', 0, 'round', round + 1, 'consec', 0, 'probes', 0, 'ok', 0)
    redis.call('DEL', KEYS[2])
    return {0, 1}
  end
  return {2, 0}
end
if state ~= 0 then return {state, 0} end
redis.call('LPUSH', KEYS[2], failed and 1 or 0)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[10])
local consec = 0
if failed then
  consec = redis.call('HINCRBY', KEYS[1], 'consec', 1)
else
  redis.call('HSET', KEYS[1], 'consec', 0)
end
local limit = tonumber(ARGV[9])
if limit > 0 and consec >= limit then return open() end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
if #items >= tonumber(ARGV[5]) then
  local f = 0
  for _, v in ipairs(items) do
    if v == '1' then f = f + 1 end
  end
  if f / #items >= tonumber(ARGV[6]) then return open() end
end
return {0, 0}
"#,
    )
});

/// Holds a breaker open (`ARGV[1]` = 1: until reset) or closes it and
/// clears its window (`ARGV[1]` = 0), bumping its round either way.
pub(crate) static BREAKER_SET: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local round = redis.call('HINCRBY', KEYS[1], 'round', 1)
redis.call('DEL', KEYS[2])
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 1, 'until', '9007199254740991', 'probes', 0, 'ok', 0, 'consec', 0)
else
  redis.call('HSET', KEYS[1], 'state', 0, 'until', 0, 'probes', 0, 'ok', 0, 'consec', 0)
end
return round
"#,
    )
});
