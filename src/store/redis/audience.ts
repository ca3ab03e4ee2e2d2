import type {
  AudienceStore, DeadItem, MembershipCompute, OutboxItem, OutboxStats, ProfileProps, QueuedVersion, UserMembership,
} from '../audience-store';
import { StoredOutboxItem } from '../stored-outbox-item';
import { SyncError } from '../../errors';
import { MAX_CAS_ATTEMPTS, backoffMs, sleep, type RedisConnection } from './connection';

type ClaimRow = [string, string, string, string, string, string];

/**
 * The AudienceStore on Redis, with the semantics of `sqlite/audience.ts` (scripts in `audience-scripts.ts`).
 *
 * `updateMemberships` is optimistic: it reads the users (MGET), runs the pure `compute`, and writes with one script
 * that first checks every user it read is unchanged (compare-and-set on the stored JSON); if another instance
 * changed one in between, nothing is written and the read-compute-write runs again. This is what WATCH/MULTI would
 * do, without tying a transaction to a connection (WATCH is connection state, and one ioredis connection is shared
 * by every concurrent call of this process).
 */
export class RedisAudienceStore implements AudienceStore {
  constructor(private readonly conn: RedisConnection, private readonly prefix: string) {}

  private base(scope: string): string {
    return `${this.prefix}aud:${encodeURIComponent(scope)}:`;
  }

  async updateMemberships(scope: string, userKeys: string[], compute: MembershipCompute, now: number): Promise<QueuedVersion[]> {
    const B = this.base(scope);
    const keys = [...new Set(userKeys)];
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const raw = keys.length ? await this.conn.run((c) => c.mget(keys.map((k) => `${B}u:${k}`))) : [];
      const current = new Map<string, UserMembership>();
      const before = new Map<string, UserMembership>();
      keys.forEach((k, i) => {
        const r = raw[i];
        if (r) {
          current.set(k, JSON.parse(r) as UserMembership);
          before.set(k, JSON.parse(r) as UserMembership); // our own copy: compute may mutate what it is given
        }
      });
      const writes = compute(current);
      const u: Array<{ k: string; v: string; add: string[]; del: string[] }> = [];
      const s: Array<[string, string]> = [];
      for (const w of writes) {
        const oldIds = new Set((before.get(w.userKey)?.audiences ?? []).map((a) => a.id));
        const newIds = new Set(w.membership.audiences.map((a) => a.id));
        const empty = w.membership.audiences.length === 0 && w.membership.targets.length === 0;
        u.push({
          k: w.userKey,
          v: empty ? '' : JSON.stringify(w.membership),
          add: [...newIds].filter((id) => !oldIds.has(id)),
          del: [...oldIds].filter((id) => !newIds.has(id)),
        });
        before.set(w.userKey, structuredClone(w.membership));
        for (const set of w.profileSets) s.push([set.distinctId, JSON.stringify(set.props)]);
      }
      const e = keys.map((k, i) => [k, raw[i] ?? '']);
      const res = await this.conn.run((c) => this.conn.script(c, 'audUpdate', `${B}c`, `${B}due`, B, now, JSON.stringify({ e, u, s })));
      if (Array.isArray(res)) return res.map((v, i) => ({ distinctId: s[i][0], version: Number(v) }));
      await sleep(backoffMs(attempt));
    }
    throw new SyncError('STORE_UNAVAILABLE', `store unavailable: gave up after ${MAX_CAS_ATTEMPTS} concurrent changes to the same users`);
  }

  async membersOfAudience(scope: string, audienceId: string, afterKey: string | undefined, limit: number): Promise<string[]> {
    const key = `${this.base(scope)}m:${audienceId}`;
    return this.conn.run((c) => c.zrangebylex(key, afterKey === undefined ? '-' : `(${afterKey}`, '+', 'LIMIT', 0, limit));
  }

  async claimDue(scope: string, limit: number, now: number, leaseMs: number): Promise<OutboxItem[]> {
    const B = this.base(scope);
    const rows = (await this.conn.run((c) => this.conn.script(c, 'audClaim', `${B}due`, B, now, limit, now + leaseMs))) as ClaimRow[];
    return rows.map(([distinctId, p, v, n, a, q]) => new StoredOutboxItem(distinctId, p, Number(v), Number(n), Number(a), Number(q)));
  }

  /**
   * Redis is shared by several Node-RED instances: a lease may belong to a live sender elsewhere, so nothing is taken
   * back here; a crashed sender's leases become due when they expire (the lease time of `claimDue`).
   */
  async recoverLeases(_scope: string, _now: number): Promise<void> {}

  async ack(scope: string, items: OutboxItem[], now: number): Promise<void> {
    if (!items.length) return;
    const B = this.base(scope);
    const list = items.map((i) => [i.distinctId, i.version, i.count]);
    await this.conn.run((c) => this.conn.script(c, 'audAck', `${B}c`, `${B}due`, B, now, JSON.stringify(list)));
  }

  async retryLater(scope: string, items: OutboxItem[], dueAt: number): Promise<void> {
    if (!items.length) return;
    const B = this.base(scope);
    await this.conn.run((c) => this.conn.script(c, 'audRetry', `${B}due`, B, dueAt, JSON.stringify(items.map((i) => i.distinctId))));
  }

  async bury(scope: string, dead: DeadItem[], now: number): Promise<void> {
    if (!dead.length) return;
    const B = this.base(scope);
    const list = dead.map(({ item, reason }) => [item.distinctId, item.version, item.count,
      JSON.stringify({ distinctId: item.distinctId, props: item.props, reason, at: now })]);
    await this.conn.run((c) => this.conn.script(c, 'audBury', `${B}c`, `${B}due`, `${B}dead`, B, now, JSON.stringify(list)));
  }

  async nextDueAt(scope: string): Promise<number | undefined> {
    const r = await this.conn.run((c) => c.zrange(`${this.base(scope)}due`, '0', '0', 'WITHSCORES'));
    return r.length ? Number(r[1]) : undefined;
  }

  async stats(scope: string): Promise<OutboxStats> {
    const B = this.base(scope);
    const res = await this.conn.run((c) => c.multi().hmget(`${B}c`, 'accepted', 'acked', 'dead', 'pending').zcard(`${B}due`).exec());
    const [[, counters], [, profiles]] = res as [[unknown, Array<string | null>], [unknown, number]];
    const n = (v: string | null) => Number(v ?? 0);
    return { accepted: n(counters[0]), acked: n(counters[1]), dead: n(counters[2]), pending: n(counters[3]), profiles: Number(profiles) };
  }

  async deadLetters(scope: string, limit: number) {
    const rows = await this.conn.run((c) => c.lrange(`${this.base(scope)}dead`, 0, limit - 1));
    return rows.map((r) => JSON.parse(r) as { distinctId: string; props: ProfileProps; reason: string; at: number });
  }
}
