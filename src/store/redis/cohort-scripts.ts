import type { Scripts } from './connection';

/**
 * Cohort membership and `members`-export staging in Redis (semantics of `sqlite/cohorts.ts`, one script per call).
 *
 * Per cohort, base `C` = `<prefix>coh:<encodeURIComponent(cohortKey)>:`:
 * - `C h`  hash: `gen` (generation counter), `done` (generation of the newest completed export);
 * - `C g`  sorted set: distinct ID scored by its `seenGen` (the sweep of a completed export is one ZRANGEBYSCORE);
 * - `C l`  sorted set, score 0: distinct IDs in byte order (`members()` pages through it with ZRANGEBYLEX);
 * - `C d`  hash: distinct ID → `[mpid, email]` JSON, absent when the member has neither;
 * - `C s:<session>` hash of one `members` session: `gen`, `total`, `received`, `complete`, `at`.
 * Global, for expiry: `<prefix>coh:sessions` (session hash key suffix, scored by creation time) and
 * `<prefix>coh:pages` (page key `<enc cohort>|<kind>|<page>|<session>`, scored by the time it was recorded).
 *
 * Members travel as flat ARGV pairs (distinct ID, data), already deduplicated by the caller (last data wins), and are
 * read and written with chunked variadic commands (ZMSCORE, ZADD, HSET, ZREM, HDEL): a 1000-member page is a handful
 * of commands, not thousands (on Redis < 6.2, which has no ZMSCORE, one ZSCORE per member instead). Chunks stay below
 * Lua's unpack limit.
 */

// Shared Lua: upsert of the members in ARGV[first..] with seenGen = max(seenGen, gen); returns the 1-based indexes
// (in member order) of the members that were absent.
const UPSERT = `
local CHUNK = 500
local function upsert(C, gen, first)
  local added = {}
  local n = (#ARGV - first + 1) / 2
  for s = 0, n - 1, CHUNK do
    local e = math.min(s + CHUNK, n) - 1
    local ids = {}
    for i = s, e do ids[#ids + 1] = ARGV[first + 2 * i] end
    local scores = redis.pcall('ZMSCORE', C .. 'g', unpack(ids))
    if type(scores) == 'table' and scores.err then -- Redis < 6.2: one ZSCORE per member
      scores = {}
      for j = 1, #ids do scores[j] = redis.call('ZSCORE', C .. 'g', ids[j]) end
    end
    local zg, zl, hs, hd = {}, {}, {}, {}
    for j = 1, #ids do
      local id = ids[j]
      local data = ARGV[first + 2 * (s + j - 1) + 1]
      local old = scores[j]
      if old then
        old = tonumber(old)
        if old < gen then zg[#zg + 1] = gen; zg[#zg + 1] = id end
      else
        added[#added + 1] = s + j
        zg[#zg + 1] = gen; zg[#zg + 1] = id
        zl[#zl + 1] = 0; zl[#zl + 1] = id
      end
      if data == '' then
        if old then hd[#hd + 1] = id end
      else
        hs[#hs + 1] = id; hs[#hs + 1] = data
      end
    end
    if #zg > 0 then redis.call('ZADD', C .. 'g', unpack(zg)) end
    if #zl > 0 then redis.call('ZADD', C .. 'l', unpack(zl)) end
    if #hs > 0 then redis.call('HSET', C .. 'd', unpack(hs)) end
    if #hd > 0 then redis.call('HDEL', C .. 'd', unpack(hd)) end
  end
  return added
end

local function forget(C, ids)
  for s = 1, #ids, CHUNK do
    local part = {}
    for i = s, math.min(s + CHUNK - 1, #ids) do part[#part + 1] = ids[i] end
    redis.call('ZREM', C .. 'g', unpack(part))
    redis.call('ZREM', C .. 'l', unpack(part))
    redis.call('HDEL', C .. 'd', unpack(part))
  end
end
`;

export const COHORT_SCRIPTS: Scripts = {
  // KEYS: pages. ARGV: C, kind ('add_members'|'remove_members'), pageKey or '' (no session: not recorded), now,
  // then id, data pairs. Returns 1 for a duplicate page, 0 when applied.
  cohDiff: {
    keys: 1,
    lua: `${UPSERT}
local C = ARGV[1]
if ARGV[3] ~= '' then
  if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
end
if ARGV[2] == 'remove_members' then
  local ids = {}
  for i = 5, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
  forget(C, ids)
else
  local gen = tonumber(redis.call('HGET', C .. 'h', 'gen') or '0')
  upsert(C, gen, 5)
end
return 0`,
  },
  // KEYS: pages, sessions. ARGV: C, session member (of sessions), session hash key, pageKey, totalPages, now, then
  // id, data pairs. Returns {duplicate 0|1, received, total, complete 0|1, {added indexes}, {removed id, data, …}}.
  cohStage: {
    keys: 2,
    lua: `${UPSERT}
local C = ARGV[1]
local skey = ARGV[3]
local now = ARGV[6]
local s = redis.call('HMGET', skey, 'gen', 'total', 'received', 'complete')
local exists = s[1] ~= false
if exists and s[4] == '1' then return {1, tonumber(s[3]), tonumber(s[2]), 0, {}, {}} end
local pageSeen = redis.call('ZSCORE', KEYS[1], ARGV[4])
if not pageSeen then redis.call('ZADD', KEYS[1], now, ARGV[4]) end
if pageSeen and exists then return {1, tonumber(s[3]), tonumber(s[2]), 0, {}, {}} end
local gen, total, received
if exists then
  gen, total, received = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
else
  gen = redis.call('HINCRBY', C .. 'h', 'gen', 1)
  total, received = tonumber(ARGV[5]), 0
  redis.call('HSET', skey, 'gen', gen, 'total', total, 'received', 0, 'complete', 0, 'at', now)
  redis.call('ZADD', KEYS[2], now, ARGV[2])
end
received = received + 1
local complete = 0
if received >= total then complete = 1 end
redis.call('HSET', skey, 'received', received, 'complete', complete)
local added = upsert(C, gen, 7)
local removed = {}
if complete == 1 then
  local done = tonumber(redis.call('HGET', C .. 'h', 'done') or '0')
  if gen > done then
    redis.call('HSET', C .. 'h', 'done', gen)
    local ids = redis.call('ZRANGEBYSCORE', C .. 'g', '-inf', '(' .. gen)
    for s0 = 1, #ids, 500 do
      local part = {}
      for i = s0, math.min(s0 + 499, #ids) do part[#part + 1] = ids[i] end
      local data = redis.call('HMGET', C .. 'd', unpack(part))
      for j = 1, #part do
        removed[#removed + 1] = part[j]
        removed[#removed + 1] = data[j] or ''
      end
    end
    forget(C, ids)
  end
end
return {0, received, total, complete, added, removed}`,
  },
  // KEYS: sessions, pages. ARGV: key prefix + 'coh:', before, limit. Drops up to `limit` of each; returns
  // {sessions dropped, pages dropped}.
  cohExpire: {
    keys: 2,
    lua: `
local ss = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ss) do
  redis.call('DEL', ARGV[1] .. m)
  redis.call('ZREM', KEYS[1], m)
end
local ps = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for s = 1, #ps, 500 do
  local part = {}
  for i = s, math.min(s + 499, #ps) do part[#part + 1] = ps[i] end
  redis.call('ZREM', KEYS[2], unpack(part))
end
return {#ss, #ps}`,
  },
  // KEYS: none. ARGV: C, lex start, limit. Returns {id, data, …} in byte order.
  cohList: {
    keys: 0,
    lua: `
local C = ARGV[1]
local ids = redis.call('ZRANGEBYLEX', C .. 'l', ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
if #ids == 0 then return out end
for s = 1, #ids, 500 do
  local part = {}
  for i = s, math.min(s + 499, #ids) do part[#part + 1] = ids[i] end
  local data = redis.call('HMGET', C .. 'd', unpack(part))
  for j = 1, #part do out[#out + 1] = part[j]; out[#out + 1] = data[j] or '' end
end
return out`,
  },
};
