import type {
  AudienceStore, DeadItem, MembershipCompute, OutboxItem, OutboxStats, ProfileProps, QueuedVersion, UserMembership,
} from '../audience-store';

interface Row extends OutboxItem {
  dueAt: number;
  leased: boolean;
}

interface Scope {
  users: Map<string, UserMembership>;
  outbox: Map<string, Row>;
  dead: Array<{ distinctId: string; props: ProfileProps; reason: string; at: number }>;
  accepted: number;
  acked: number;
  deadCount: number;
  nextVersion: number;
}

/** The memory backend: the same semantics as SQLite, kept in Maps. It forgets everything on restart. */
export class MemoryAudienceStore implements AudienceStore {
  private readonly scopes = new Map<string, Scope>();

  private scope(name: string): Scope {
    let s = this.scopes.get(name);
    if (!s) {
      s = { users: new Map(), outbox: new Map(), dead: [], accepted: 0, acked: 0, deadCount: 0, nextVersion: 1 };
      this.scopes.set(name, s);
    }
    return s;
  }

  async updateMemberships(scope: string, userKeys: string[], compute: MembershipCompute, now: number): Promise<QueuedVersion[]> {
    const s = this.scope(scope);
    const current = new Map<string, UserMembership>();
    for (const key of userKeys) {
      const m = s.users.get(key);
      if (m) current.set(key, structuredClone(m));
    }
    const writes = compute(current);
    const versions: QueuedVersion[] = [];
    for (const w of writes) {
      if (w.membership.audiences.length === 0 && w.membership.targets.length === 0) s.users.delete(w.userKey);
      else s.users.set(w.userKey, structuredClone(w.membership));
      for (const set of w.profileSets) {
        const version = s.nextVersion++;
        const row = s.outbox.get(set.distinctId);
        if (row) {
          Object.assign(row.props, set.props);
          row.version = version;
          row.count += 1;
        } else {
          s.outbox.set(set.distinctId, {
            distinctId: set.distinctId, props: { ...set.props }, version, count: 1, attempts: 0, queuedAt: now, dueAt: now, leased: false,
          });
        }
        s.accepted += 1;
        versions.push({ distinctId: set.distinctId, version });
      }
    }
    return versions;
  }

  async membersOfAudience(scope: string, audienceId: string, afterKey: string | undefined, limit: number): Promise<string[]> {
    const keys: string[] = [];
    for (const [key, m] of this.scope(scope).users) {
      if ((afterKey === undefined || key > afterKey) && m.audiences.some((a) => a.id === audienceId)) keys.push(key);
    }
    return keys.sort().slice(0, limit);
  }

  async claimDue(scope: string, limit: number, now: number, leaseMs: number): Promise<OutboxItem[]> {
    const due = [...this.scope(scope).outbox.values()].filter((r) => r.dueAt <= now);
    due.sort((a, b) => a.dueAt - b.dueAt);
    return due.slice(0, limit).map((r) => {
      r.dueAt = now + leaseMs;
      r.leased = true;
      return toItem(r);
    });
  }

  async ack(scope: string, items: OutboxItem[], now: number): Promise<void> {
    const s = this.scope(scope);
    for (const item of items) {
      const row = s.outbox.get(item.distinctId);
      if (!row) continue;
      s.acked += item.count;
      if (row.version === item.version) {
        s.outbox.delete(item.distinctId);
      } else {
        // Newer changes arrived while this one was in flight: they are merged into `row`, send them now.
        row.count -= item.count;
        row.attempts = 0;
        row.queuedAt = now;
        row.dueAt = now;
        row.leased = false;
      }
    }
  }

  async retryLater(scope: string, items: OutboxItem[], dueAt: number): Promise<void> {
    const s = this.scope(scope);
    for (const item of items) {
      const row = s.outbox.get(item.distinctId);
      if (!row) continue;
      row.attempts += 1;
      row.dueAt = dueAt;
      row.leased = false;
    }
  }

  async bury(scope: string, dead: DeadItem[], now: number): Promise<void> {
    const s = this.scope(scope);
    for (const { item, reason } of dead) {
      const row = s.outbox.get(item.distinctId);
      if (!row) continue;
      s.deadCount += item.count;
      s.dead.push({ distinctId: item.distinctId, props: { ...item.props }, reason, at: now });
      if (row.version === item.version) s.outbox.delete(item.distinctId);
      else {
        row.count -= item.count;
        row.dueAt = now;
        row.leased = false;
      }
    }
  }

  async recoverLeases(scope: string, now: number): Promise<void> {
    for (const r of this.scope(scope).outbox.values()) {
      if (r.leased) {
        r.leased = false;
        r.dueAt = now;
      }
    }
  }

  async nextDueAt(scope: string): Promise<number | undefined> {
    let min: number | undefined;
    for (const r of this.scope(scope).outbox.values()) if (min === undefined || r.dueAt < min) min = r.dueAt;
    return min;
  }

  async stats(scope: string): Promise<OutboxStats> {
    const s = this.scope(scope);
    let pending = 0;
    for (const r of s.outbox.values()) pending += r.count;
    return { accepted: s.accepted, acked: s.acked, dead: s.deadCount, pending, profiles: s.outbox.size };
  }

  async deadLetters(scope: string, limit: number) {
    return this.scope(scope).dead.slice(-limit).reverse();
  }
}

function toItem(r: Row): OutboxItem {
  return {
    distinctId: r.distinctId, props: { ...r.props }, version: r.version, count: r.count, attempts: r.attempts, queuedAt: r.queuedAt,
  };
}
