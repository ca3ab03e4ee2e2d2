import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { processWebhook, type WebhookContext, type WebhookResult } from '../../src/cohort/protocol';
import { CohortInSettings } from '../../src/cohort/settings';
import { openMemoryStore } from '../../src/store/memory';
import { openSqliteStore } from '../../src/store/sqlite';
import type { SyncStore } from '../../src/store/types';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';

/**
 * Property (reliability matrix row 22, invariant I6): random histories of Mixpanel cohort-sync requests — `members`
 * exports of random member sets, paginated at random, pages delivered in random order, some pages delivered again,
 * exports abandoned and restarted from the top under the same or a new session id (sometimes with the abandoned
 * session's last pages arriving late), `add_members` / `remove_members` diff pages interleaved anywhere — run
 * through the real protocol core (`processWebhook`) on a real store (memory, and a SQLite file), and compared with
 * a plain model.
 *
 * The model, in time order (t = position of the request in the history):
 * - a request whose key was seen before (same session and page; for `members`, any page of a completed session) is
 *   a duplicate: it must emit nothing;
 * - `add_members` makes every listed member a member (sends `true` for each), `remove_members` makes every listed
 *   member a non-member (sends `false` for each): Mixpanel computed the diff;
 * - a `members` page makes its members members; only the ones that were not members before are sent (`true`);
 * - when the last missing page of an export arrives, every member whose latest addition is older than the export's
 *   first page (an export page counts as of its export's start) leaves the cohort and is sent `false` — unless a
 *   newer export has completed already (then nothing leaves).
 * Checked after every request: exactly the model's changes were emitted. At the end: the membership implied by the
 * outputs (the latest true/false per member, both outputs) equals the model's, and so does the store's.
 */

const UNIVERSE = 8;
const id = (i: number) => `u${i}`;
/** Members 0..5 carry an MPID (output 1); 6 and 7 do not (update-only: output 2). Both count for membership. */
const mpidOf = (i: number) => (i < 6 ? String(1000000000000000000n + BigInt(i)) : undefined);

interface Delivery {
  action: 'members' | 'add_members' | 'remove_members';
  session: string;
  page: number;
  total: number;
  members: number[];
}

type Segment =
  | { t: 'diff'; kind: 'add_members' | 'remove_members'; pages: number[][]; dup: boolean[]; inside: number | null }
  | {
    t: 'export'; members: number[]; pageCount: number; assign: number[]; order: number[]; dups: Array<[number, number]>;
    restart: null | { attempt: number[]; same: boolean; late: boolean };
  };

const memberSet = fc.uniqueArray(fc.nat(UNIVERSE - 1), { maxLength: UNIVERSE });

const diffSeg: fc.Arbitrary<Segment> = fc.record({
  t: fc.constant('diff' as const),
  kind: fc.constantFrom('add_members' as const, 'remove_members' as const),
  pages: fc.array(memberSet, { minLength: 1, maxLength: 2 }),
  dup: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
  inside: fc.option(fc.nat(50), { freq: 2, nil: null }),
});

const exportSeg: fc.Arbitrary<Segment> = fc.integer({ min: 1, max: 4 }).chain((pageCount) => fc.record({
  t: fc.constant('export' as const),
  members: memberSet,
  pageCount: fc.constant(pageCount),
  assign: fc.array(fc.nat(pageCount - 1), { minLength: UNIVERSE, maxLength: UNIVERSE }),
  order: fc.shuffledSubarray([...Array(pageCount).keys()], { minLength: pageCount, maxLength: pageCount }),
  dups: fc.array(fc.tuple(fc.nat(pageCount - 1), fc.nat(20)), { maxLength: 3 }),
  restart: fc.option(fc.record({
    attempt: fc.shuffledSubarray([...Array(pageCount).keys()], { minLength: 0, maxLength: Math.max(0, pageCount - 1) }),
    same: fc.boolean(),
    late: fc.boolean(),
  }), { freq: 3, nil: null }),
}));

const history = fc.array(fc.oneof({ weight: 2, arbitrary: exportSeg }, { weight: 3, arbitrary: diffSeg }), { minLength: 1, maxLength: 10 });

/** Turns segments into the requests Mixpanel would send, in order. */
function compile(segments: Segment[]): Delivery[] {
  const out: Delivery[] = [];
  let exportStart = 0;
  segments.forEach((seg, n) => {
    if (seg.t === 'diff') {
      const session = `d${n}`;
      const ds: Delivery[] = [];
      seg.pages.forEach((members, p) => ds.push({ action: seg.kind, session, page: p + 1, total: seg.pages.length, members }));
      seg.pages.forEach((_, p) => { if (seg.dup[p]) ds.push(ds[p]); });
      if (seg.inside === null) out.push(...ds);
      else out.splice(exportStart + (seg.inside % (out.length - exportStart + 1)), 0, ...ds);
      return;
    }
    exportStart = out.length;
    const pages: number[][] = Array.from({ length: seg.pageCount }, () => []);
    for (const m of seg.members) pages[seg.assign[m]].push(m);
    const page = (session: string, p: number): Delivery => ({ action: 'members', session, page: p + 1, total: seg.pageCount, members: pages[p] });
    let session = `e${n}`;
    if (seg.restart) {
      // An attempt that never completes, then Mixpanel restarts from the top.
      for (const p of seg.restart.attempt) out.push(page(session, p));
      if (!seg.restart.same) session = `e${n}-restart`;
    }
    const ds = seg.order.map((p) => page(session, p));
    for (const [p, at] of seg.dups) ds.splice(at % (ds.length + 1), 0, page(session, p));
    out.push(...ds);
    if (seg.restart && !seg.restart.same && seg.restart.late) {
      // The abandoned attempt's missing pages arrive after all: an older export completing after a newer one.
      for (let p = 0; p < seg.pageCount; p++) if (!seg.restart.attempt.includes(p)) out.push(page(`e${n}`, p));
    }
  });
  return out;
}

/** The model: what each request must emit, and the membership after it. */
class Model {
  /** member → time of its latest addition (export pages count as of their export's start). */
  readonly members = new Map<number, number>();
  private readonly sessions = new Map<string, { start: number; pages: Set<number>; complete: boolean }>();
  private readonly diffPages = new Set<string>();
  private newestCompleted = -1;

  apply(d: Delivery, t: number): { duplicate: boolean; changes: Array<[number, boolean]> } {
    if (d.action !== 'members') {
      const key = JSON.stringify([d.action, d.session, d.page]);
      if (this.diffPages.has(key)) return { duplicate: true, changes: [] };
      this.diffPages.add(key);
      for (const m of d.members) {
        if (d.action === 'add_members') this.members.set(m, t);
        else this.members.delete(m);
      }
      return { duplicate: false, changes: d.members.map((m) => [m, d.action === 'add_members']) };
    }
    let s = this.sessions.get(d.session);
    if (s && (s.complete || s.pages.has(d.page))) return { duplicate: true, changes: [] };
    if (!s) {
      s = { start: t, pages: new Set(), complete: false };
      this.sessions.set(d.session, s);
    }
    s.pages.add(d.page);
    const changes: Array<[number, boolean]> = [];
    for (const m of d.members) {
      const prev = this.members.get(m);
      if (prev === undefined) changes.push([m, true]);
      this.members.set(m, Math.max(prev ?? -1, s.start));
    }
    if (s.pages.size === d.total) {
      s.complete = true;
      if (s.start > this.newestCompleted) {
        this.newestCompleted = s.start;
        for (const [m, at] of this.members) {
          if (at < s.start) {
            this.members.delete(m);
            changes.push([m, false]);
          }
        }
      }
    }
    return { duplicate: false, changes };
  }
}

const byMpid = new Map<string, number>();
for (let i = 0; i < UNIVERSE; i++) { const m = mpidOf(i); if (m) byMpid.set(m, i); }

/** The [member, value] pairs a result emitted, on both outputs. */
function emitted(r: WebhookResult): Array<[number, boolean]> {
  const out: Array<[number, boolean]> = [];
  for (const msg of r.updates) {
    for (const b of msg.payload as Array<{ mpid: string; user_attributes: Record<string, boolean> }>) {
      expect(typeof b.mpid).to.equal('string');
      out.push([byMpid.get(b.mpid)!, b.user_attributes.VIP]);
    }
  }
  for (const msg of r.unmatched) {
    for (const m of (msg.payload as { members: Array<{ mixpanel_distinct_id: string; value: boolean }> }).members) {
      out.push([Number(m.mixpanel_distinct_id.slice(1)), m.value]);
    }
  }
  return out;
}

const sortPairs = (p: Array<[number, boolean]>) => [...p].sort((a, b) => a[0] - b[0] || Number(a[1]) - Number(b[1]));

/**
 * Runs a history through processWebhook on `store` and checks it against the model. With `reopen`, the store is
 * closed and opened again after every `every` requests (a Node-RED restart), and the last one is returned.
 */
async function run(first: SyncStore, deliveries: Delivery[], reopen?: (old: SyncStore) => Promise<SyncStore>, every = 3): Promise<SyncStore> {
  let store = first;
  const model = new Model();
  const implied = new Map<number, boolean>();
  const contextOf = (s: SyncStore): WebhookContext => ({
    settings: CohortInSettings.parse({}), secrets: { username: 'u', password: 'p' }, store: s.cohorts,
    lookup: (l) => s.identities.resolve(l),
  });
  let ctx = contextOf(store);
  const auth = `Basic ${Buffer.from('u:p').toString('base64')}`;
  for (let t = 0; t < deliveries.length; t++) {
    const d = deliveries[t];
    const body = {
      action: d.action,
      parameters: {
        mixpanel_project_id: '1', mixpanel_cohort_id: '42', mixpanel_cohort_name: 'VIP', mixpanel_session_id: d.session,
        page_info: { total_pages: d.total, page_count: d.page },
        members: d.members.map((m) => ({ mixpanel_distinct_id: id(m), ...(mpidOf(m) ? { $mparticle_user_id: mpidOf(m) } : {}) })),
      },
    };
    const r = await processWebhook({ headers: { authorization: auth }, rawBody: JSON.stringify(body) }, { ...ctx, now: 1000 + t });
    const want = model.apply(d, t);
    const where = `request ${t}: ${JSON.stringify(d)}`;
    expect(r.status, where).to.equal(200);
    expect(r.outcome, where).to.equal(want.duplicate ? 'duplicate' : 'applied');
    const got = emitted(r);
    expect(sortPairs(got), where).to.deep.equal(sortPairs(want.changes));
    for (const [m, v] of got) implied.set(m, v);
    if (reopen && t % every === every - 1) {
      store = await reopen(store);
      ctx = contextOf(store);
    }
  }
  const expected = [...model.members.keys()].sort((a, b) => a - b);
  const fromOutputs = [...implied].filter(([, v]) => v).map(([m]) => m).sort((a, b) => a - b);
  expect(fromOutputs, 'membership implied by the outputs').to.deep.equal(expected);
  const stored = (await store.cohorts.members('1/42', undefined, 1000)).map((r) => Number(r.distinctId.slice(1))).sort((a, b) => a - b);
  expect(stored, 'membership in the store').to.deep.equal(expected);
  return store;
}

describe('cohort-in model (property): exports, restarts, duplicates and diffs', function () {
  this.timeout(120000);
  after(() => cleanupTempDirs());

  it('compiles histories with restarts, late pages, duplicates and interleaved diffs (the generator covers them)', () => {
    const seen = { restartSame: 0, restartNew: 0, late: 0, dups: 0, inside: 0 };
    fc.sample(history, { numRuns: 300, seed: 1 }).forEach((segs) => {
      for (const s of segs) {
        if (s.t === 'export' && s.restart) s.restart.same ? seen.restartSame++ : (seen.restartNew++, s.restart.late && seen.late++);
        if (s.t === 'export' && s.dups.length) seen.dups++;
        if (s.t === 'diff' && s.inside !== null) seen.inside++;
      }
      expect(compile(segs).length).to.be.greaterThan(0);
    });
    for (const [k, v] of Object.entries(seen)) expect(v, k).to.be.greaterThan(10);
  });

  it('memory store: outputs and store follow the model', async () => {
    await fc.assert(fc.asyncProperty(history, async (segs) => {
      await run(openMemoryStore(), compile(segs));
    }), { numRuns: 300 });
  });

  it('SQLite store (temp file): outputs and store follow the model', async () => {
    const dir = tempDir('cohort-prop-');
    let n = 0;
    await fc.assert(fc.asyncProperty(history, async (segs) => {
      const store = openSqliteStore(path.join(dir, `c${n++}.db`));
      try {
        await run(store, compile(segs));
      } finally {
        await store.close();
      }
    }), { numRuns: 60 });
  });

  it('SQLite store folding every few members and reopened every three requests: outputs and store follow the model', async () => {
    // Members wait in memory and in the store's log before they are folded into its table (LogFold): tiny folds and
    // restarts put every history through rounds in progress, restarts mid-round and the log read back at open. With
    // foldAt 2 a round ends in the transaction that starts it; with 6, rounds span pages (completing pages and their
    // sweep included).
    const dir = tempDir('cohort-prop-fold-');
    let n = 0;
    await fc.assert(fc.asyncProperty(fc.constantFrom(2, 6), history, async (foldAt, segs) => {
      const file = path.join(dir, `f${n++}.db`);
      let store = openSqliteStore(file, { foldAt });
      try {
        store = await run(store, compile(segs), async (old) => {
          await old.close();
          return openSqliteStore(file, { foldAt });
        });
      } finally {
        await store.close();
      }
    }), { numRuns: 40 });
  });
});
