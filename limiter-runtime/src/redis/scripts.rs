//! The Lua scripts of the Redis rate limiters. Each check is one script
//! run: atomic on the server, one round trip, timed by the server's clock
//! (`TIME`) so that instances with skewed clocks still share one limit.
//! `redis::Script` sends `EVALSHA` and falls back to `EVAL` (loading the
//! script) on `NOSCRIPT`, e.g. after a server restart or `SCRIPT FLUSH`.
//!
//! Times are microseconds; Lua numbers are doubles, exact up to 2^53 µs
//! (285 years since the epoch).

use once_cell::sync::Lazy;
use redis::Script;

/// GCRA over several windows, one key each (all under one hash tag).
///
/// `ARGV`: for each window its emission interval `T` and horizon `B·T`,
/// in µs. Admits when every window would: each key's theoretical arrival
/// time `tat` moves to `max(tat, now) + T` and expires when the bucket is
/// full again. Returns `{1, remaining, -1}` or `{0, wait_us, window}`.
pub(crate) static GCRA: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_tats = {}
local wait, refused = 0, -1
local remaining = nil
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local horizon = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local nxt = tat + interval
  local ahead = nxt - now
  if ahead > horizon then
    if ahead - horizon > wait then
      wait = ahead - horizon
      refused = i - 1
    end
  else
    local left = math.floor((horizon - ahead) / interval)
    if remaining == nil or left < remaining then remaining = left end
  end
  next_tats[i] = nxt
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local ttl = math.ceil((next_tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', next_tats[i]), 'PX', ttl)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// Sliding-window counter over several windows, one hash key each (all under
/// one hash tag) holding the window index `w`, its count `c` and the
/// previous window's count `p`.
///
/// `ARGV`: for each window its period (µs) and limit. The estimate is
/// `p · (1 − elapsed/period) + c`; a call is admitted when the estimate plus
/// one stays within the limit in every window. Returns `{1, remaining, -1}`
/// or `{0, wait_us, window}`.
pub(crate) static SLIDING: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
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
  elseif w == idx - 1 then
    p, c = c, 0
  elseif w ~= idx then
    c, p = 0, 0
  end
  local elapsed = now - idx * period
  local weight = 1 - elapsed / period
  local estimate = p * weight + c
  if estimate + 1 > limit then
    local w_us
    if c + 1 > limit then
      -- Not before the next window, and then the previous count weighs in.
      w_us = (period - elapsed) + period * math.max(0, 1 - (limit - 1) / math.max(c, 1))
    else
      -- When the previous window's share has shrunk enough.
      local f = 1 - (limit - 1 - c) / p
      w_us = math.max(1, f * period - elapsed)
    end
    if w_us > wait then
      wait = w_us
      refused = i - 1
    end
  else
    local left = math.floor(limit - estimate - 1)
    if remaining == nil or left < remaining then remaining = left end
  end
  state[i] = {idx, c, p, period}
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local s = state[i]
  redis.call('HSET', KEYS[i], 'w', string.format('%.0f', s[1]), 'c', s[2] + 1, 'p', s[3])
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * s[4] / 1000) + 1)
end
return {1, remaining or 0, -1}
"#,
    )
});

/// Fixed-window counter over several windows, one key each, expiring at
/// the end of its window. Returns `{1, remaining, -1}` or
/// `{0, wait_us, window}`.
pub(crate) static FIXED: Lazy<Script> = Lazy::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, refused = 0, -1
local remaining = nil
local ends = {}
for i = 1, #KEYS do
  local period = tonumber(ARGV[2 * i - 1])
  local limit = tonumber(ARGV[2 * i])
  local idx = math.floor(now / period)
  local key = KEYS[i]
  local h = redis.call('HMGET', key, 'w', 'c')
  local c = 0
  if tonumber(h[1]) == idx then c = tonumber(h[2]) or 0 end
  local left_us = (idx + 1) * period - now
  if c + 1 > limit then
    if left_us > wait then
      wait = left_us
      refused = i - 1
    end
  else
    local left = limit - c - 1
    if remaining == nil or left < remaining then remaining = left end
  end
  ends[i] = {idx, c, left_us}
end
if refused >= 0 then
  return {0, math.ceil(wait), refused}
end
for i = 1, #KEYS do
  local e = ends[i]
  redis.call('HSET', KEYS[i], 'w', string.format('%.0f', e[1]), 'c', e[2] + 1)
  redis.call('PEXPIRE', KEYS[i], math.ceil(e[3] / 1000) + 1)
end
return {1, remaining or 0, -1}
"#,
    )
});
