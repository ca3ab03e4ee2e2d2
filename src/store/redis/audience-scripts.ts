import type { Scripts } from './connection';

/**
 * The audience outbox in Redis, per scope base `B` (`<prefix>aud:<scope>:`):
 * - `B c`      hash of counters: `nv` (last version), `accepted`, `acked`, `dead`, `pending` (= sum of `n` below);
 * - `B due`    sorted set of distinct IDs by due time (a lease is a due time in the future);
 * - `B o:<id>` hash of one profile's pending state: `p` props JSON, `v` version, `n` merged updates, `a` attempts,
 *              `q` queuedAt, `l` leased flag;
 * - `B u:<key>` a user's membership JSON; `B m:<audienceId>` sorted set (score 0) of member keys, in byte order;
 * - `B dead`   list of dead letters, newest first.
 * Every script is one atomic step; each mirrors one SQLite transaction of `sqlite/audience.ts`.
 */
/**
 * Lua shared by ack and bury: settles one sent outbox row. When the sent version is still the latest the row goes;
 * otherwise a newer change arrived meanwhile and its merged state is due now, with the sent updates taken off its
 * count. Returns how many pending updates it settled, or nil when the row is gone already.
 */
const SETTLE = `
local function settle(ok, id, version, count, due, now)
  local h = redis.call('HMGET', ok, 'v', 'n')
  if not h[1] then return nil end
  if tonumber(h[1]) == version then
    redis.call('DEL', ok)
    redis.call('ZREM', due, id)
    return tonumber(h[2])
  end
  redis.call('HINCRBY', ok, 'n', -count)
  redis.call('HSET', ok, 'a', 0, 'q', now, 'l', 0)
  redis.call('ZADD', due, now, id)
  return count
end
`;

export const AUDIENCE_SCRIPTS: Scripts = {
  // KEYS: counters, due. ARGV: base, now, {e: [[userKey, expectedJsonOr""]], u: [{k, v, add, del}], s: [[id, propsJson]]}
  // Returns 0 when a user changed since it was read (the caller computes again), else the versions.
  audUpdate: {
    keys: 2,
    lua: `
local B = ARGV[1]
local now = tonumber(ARGV[2])
local d = cjson.decode(ARGV[3])
for _, e in ipairs(d.e) do
  local cur = redis.call('GET', B .. 'u:' .. e[1])
  if cur == false then cur = '' end
  if cur ~= e[2] then return 0 end
end
for _, u in ipairs(d.u) do
  local k = B .. 'u:' .. u.k
  if u.v == '' then redis.call('DEL', k) else redis.call('SET', k, u.v) end
  for _, a in ipairs(u.add) do redis.call('ZADD', B .. 'm:' .. a, 0, u.k) end
  for _, a in ipairs(u.del) do redis.call('ZREM', B .. 'm:' .. a, u.k) end
end
local out = {}
for i, s in ipairs(d.s) do
  local id = s[1]
  local ok = B .. 'o:' .. id
  local v = redis.call('HINCRBY', KEYS[1], 'nv', 1)
  local old = redis.call('HGET', ok, 'p')
  if old then
    local merged = cjson.decode(old)
    for k, val in pairs(cjson.decode(s[2])) do merged[k] = val end
    redis.call('HSET', ok, 'p', cjson.encode(merged), 'v', v)
    redis.call('HINCRBY', ok, 'n', 1)
  else
    redis.call('HSET', ok, 'p', s[2], 'v', v, 'n', 1, 'a', 0, 'q', now, 'l', 0)
    redis.call('ZADD', KEYS[2], now, id)
  end
  out[i] = v
end
if #d.s > 0 then
  redis.call('HINCRBY', KEYS[1], 'accepted', #d.s)
  redis.call('HINCRBY', KEYS[1], 'pending', #d.s)
end
return out`,
  },
  // KEYS: due. ARGV: base, now, limit, leaseUntil. Picks the due items and leases them in one step, so two
  // instances sending from the same scope never get the same item.
  audClaim: {
    keys: 1,
    lua: `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i, id in ipairs(ids) do
  local ok = ARGV[1] .. 'o:' .. id
  redis.call('ZADD', KEYS[1], ARGV[4], id)
  redis.call('HSET', ok, 'l', 1)
  local h = redis.call('HMGET', ok, 'p', 'v', 'n', 'a', 'q')
  out[i] = {id, h[1], h[2], h[3], h[4], h[5]}
end
return out`,
  },
  // KEYS: counters, due. ARGV: base, now, [[id, version, count]]
  audAck: {
    keys: 2,
    lua: `${SETTLE}
local B = ARGV[1]
local now = tonumber(ARGV[2])
local acked, pend = 0, 0
for _, it in ipairs(cjson.decode(ARGV[3])) do
  local took = settle(B .. 'o:' .. it[1], it[1], it[2], it[3], KEYS[2], now)
  if took then
    acked = acked + it[3]
    pend = pend + took
  end
end
redis.call('HINCRBY', KEYS[1], 'acked', acked)
redis.call('HINCRBY', KEYS[1], 'pending', 0 - pend)
return acked`,
  },
  // KEYS: due. ARGV: base, dueAt, [id]
  audRetry: {
    keys: 1,
    lua: `
for _, id in ipairs(cjson.decode(ARGV[3])) do
  local ok = ARGV[1] .. 'o:' .. id
  if redis.call('EXISTS', ok) == 1 then
    redis.call('HINCRBY', ok, 'a', 1)
    redis.call('HSET', ok, 'l', 0)
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  end
end
return 1`,
  },
  // KEYS: counters, due, dead list. ARGV: base, now, [[id, version, count, deadEntryJson]]
  audBury: {
    keys: 3,
    lua: `${SETTLE}
local B = ARGV[1]
local now = tonumber(ARGV[2])
local dead, pend = 0, 0
for _, it in ipairs(cjson.decode(ARGV[3])) do
  local took = settle(B .. 'o:' .. it[1], it[1], it[2], it[3], KEYS[2], now)
  if took then
    dead = dead + it[3]
    pend = pend + took
    redis.call('LPUSH', KEYS[3], it[4])
  end
end
redis.call('HINCRBY', KEYS[1], 'dead', dead)
redis.call('HINCRBY', KEYS[1], 'pending', 0 - pend)
return dead`,
  },
};
