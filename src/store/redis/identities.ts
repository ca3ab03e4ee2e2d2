import { SyncError } from '../../errors';
import { planLearn, type IdentityView } from '../../identity/plan';
import { publicProfile, type IdentityMap, type IdentityMatch, type IdentityProfile, type ProfileRecord } from '../../identity/types';
import type { IdentityName } from '../../identity/names';
import { IDENTITY_PRIORITY, linkId, orderedEntries } from '../../identity/values';
import type { IdentityStore } from '../identity-store';
import { MAX_CAS_ATTEMPTS, backoffMs, sleep, type RedisConnection, type Scripts } from './connection';

/**
 * The identity graph in two hashes: `<prefix>id:links` (`name:value` → profile key) and `<prefix>id:profiles`
 * (key → profile JSON). Reads of a whole array are one script (links, then the profiles they point to); learning is
 * that read, the shared planner, and one compare-and-set script that writes only if every link and profile read is
 * unchanged (otherwise the batch is planned again on fresh data).
 */
export const IDENTITY_SCRIPTS: Scripts = {
  // KEYS: links, profiles. ARGV: link ids. Returns {key or '' per id, [key, json, key, json, …] of distinct keys}.
  idRead: {
    keys: 2,
    lua: `
-- HMGETs in chunks instead of one HGET per identity (redis.call is the cost that grows with the array; unpack is
-- limited by Lua's C stack, hence the chunks).
local function hmget(key, list)
  local out = {}
  for s = 1, #list, 1000 do
    local part = redis.call('HMGET', key, unpack(list, s, math.min(s + 999, #list)))
    for i = 1, #part do out[s + i - 1] = part[i] end
  end
  return out
end
local found = hmget(KEYS[1], ARGV)
local keys, want, seen = {}, {}, {}
for i = 1, #ARGV do
  local k = found[i]
  if k then
    keys[i] = k
    if not seen[k] then seen[k] = true; want[#want + 1] = k end
  else
    keys[i] = ''
  end
end
local profiles = {}
if #want > 0 then
  local ps = hmget(KEYS[2], want)
  for i = 1, #want do
    if ps[i] then profiles[#profiles + 1] = want[i]; profiles[#profiles + 1] = ps[i] end
  end
end
return {keys, profiles}`,
  },
  // KEYS: links, profiles. ARGV[1]: {el: [[id, keyOr'']], ep: [[key, jsonOr'']], sl: [[id, key]], dl: [id],
  // sp: [[key, json]], dp: [key]}. Returns 0 when something read has changed since, 1 when written.
  idWrite: {
    keys: 2,
    lua: `
local d = cjson.decode(ARGV[1])
for _, e in ipairs(d.el) do
  local cur = redis.call('HGET', KEYS[1], e[1])
  if cur == false then cur = '' end
  if cur ~= e[2] then return 0 end
end
for _, e in ipairs(d.ep) do
  local cur = redis.call('HGET', KEYS[2], e[1])
  if cur == false then cur = '' end
  if cur ~= e[2] then return 0 end
end
for _, l in ipairs(d.sl) do redis.call('HSET', KEYS[1], l[1], l[2]) end
for _, id in ipairs(d.dl) do redis.call('HDEL', KEYS[1], id) end
for _, p in ipairs(d.sp) do redis.call('HSET', KEYS[2], p[1], p[2]) end
for _, k in ipairs(d.dp) do redis.call('HDEL', KEYS[2], k) end
return 1`,
  },
};

/** Priority rank of each identity name (`IDENTITY_PRIORITY` order). */
const RANK = new Map<string, number>(IDENTITY_PRIORITY.map((n, i) => [n, i]));

/**
 * The link ids of one lookup in priority order: what `orderedEntries(l).map((e) => e[2])` gives, without walking the
 * whole priority list for every lookup (a lookup carries one to three identities, the list has dozens of names).
 */
function lookupIds(l: IdentityMap): Array<[IdentityName, string]> {
  const out: Array<[IdentityName, string, number]> = [];
  for (const name of Object.keys(l)) {
    const rank = RANK.get(name);
    const v = l[name as IdentityName];
    if (rank !== undefined && v !== undefined) out.push([name as IdentityName, linkId(name as IdentityName, v), rank]);
  }
  if (out.length > 1) out.sort((a, b) => a[2] - b[2]);
  return out.map((e) => [e[0], e[1]]);
}

interface Snapshot {
  links: Map<string, string>;
  /** Raw JSON as stored, for the compare-and-set. */
  profiles: Map<string, string>;
}

export class RedisIdentityStore implements IdentityStore {
  private readonly linksKey: string;
  private readonly profilesKey: string;

  constructor(private readonly conn: RedisConnection, prefix: string) {
    this.linksKey = `${prefix}id:links`;
    this.profilesKey = `${prefix}id:profiles`;
  }

  private async read(ids: string[]): Promise<Snapshot> {
    const snap: Snapshot = { links: new Map(), profiles: new Map() };
    if (!ids.length) return snap;
    const [keys, profiles] = (await this.conn.run((c) => this.conn.script(c, 'idRead', this.linksKey, this.profilesKey, ...ids))) as [string[], string[]];
    for (let i = 0; i < ids.length; i++) if (keys[i]) snap.links.set(ids[i], keys[i]);
    for (let i = 0; i < profiles.length; i += 2) snap.profiles.set(profiles[i], profiles[i + 1]);
    return snap;
  }

  async learn(observations: IdentityMap[], now: number): Promise<Array<IdentityProfile | undefined>> {
    const ids = [...new Set(observations.flatMap((o) => orderedEntries(o).map((e) => e[2])))];
    if (!ids.length) return observations.map(() => undefined);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const snap = await this.read(ids);
      const parsed = new Map<string, ProfileRecord>();
      const view: IdentityView = {
        link: (id) => snap.links.get(id),
        profile: (key) => {
          const raw = snap.profiles.get(key);
          if (raw === undefined) return undefined;
          let p = parsed.get(key);
          if (!p) parsed.set(key, (p = JSON.parse(raw) as ProfileRecord));
          return p;
        },
      };
      const { changes, profiles } = planLearn(view, observations, now);
      // Every link of the batch was read (absent ones expected absent); every profile read is expected unchanged.
      // A planned new profile's key is either `anon:<uuid>` (fresh) or an MPID whose `mpid:` link was read.
      const write = {
        el: ids.map((id) => [id, snap.links.get(id) ?? '']),
        ep: [...snap.profiles],
        sl: [] as Array<[string, string]>, dl: [] as string[], sp: [] as Array<[string, string]>, dp: [] as string[],
      };
      for (const [id, key] of changes.links) {
        if (key === null) write.dl.push(id);
        else if (snap.links.get(id) !== key) write.sl.push([id, key]);
      }
      for (const [key, p] of changes.profiles) {
        if (p === null) write.dp.push(key);
        else write.sp.push([key, JSON.stringify(p)]);
      }
      const ok = await this.conn.run((c) => this.conn.script(c, 'idWrite', this.linksKey, this.profilesKey, JSON.stringify(write)));
      if (Number(ok) === 1) return profiles;
      await sleep(backoffMs(attempt));
    }
    throw new SyncError('STORE_UNAVAILABLE', `store unavailable: gave up after ${MAX_CAS_ATTEMPTS} concurrent changes to the same identities`);
  }

  /**
   * One read for the whole array. Each lookup's identities are ordered once (not once for the read and again for the
   * match), and each matched profile's JSON is parsed once per call, however many lookups share it. The match is
   * `matchLookup`'s: the first identity in priority order that has a link.
   */
  async resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>> {
    const perLookup = lookups.map(lookupIds);
    const seen = new Set<string>();
    const ids: string[] = [];
    for (const entries of perLookup) {
      for (const [, id] of entries) {
        if (!seen.has(id)) {
          seen.add(id);
          ids.push(id);
        }
      }
    }
    const snap = await this.read(ids);
    const cache = new Map<string, ProfileRecord>();
    return perLookup.map((entries) => {
      for (const [name, id] of entries) {
        const key = snap.links.get(id);
        if (key === undefined) continue;
        const raw = snap.profiles.get(key);
        if (raw === undefined) return undefined;
        let p = cache.get(key);
        if (!p) cache.set(key, (p = JSON.parse(raw) as ProfileRecord));
        return { profile: publicProfile(p), matchedBy: name };
      }
      return undefined;
    });
  }

  async profileCount(): Promise<number> {
    return this.conn.run((c) => c.hlen(this.profilesKey));
  }
}
