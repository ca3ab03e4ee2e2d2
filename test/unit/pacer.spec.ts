import { expect } from 'chai';
import { RatePacer } from '../../src/audience/pacer';

/**
 * The pacer against a simulated Mixpanel rate limit (a token bucket of `limit` updates/s holding one second's worth,
 * as a rolling window behaves), on a simulated clock, with requests that take `rttMs` and at most `concurrency` in
 * flight. A refused batch goes back to the queue for Mixpanel's recommended wait (2 s doubling + 1–5 s jitter), the
 * way the sender does it, so a 429 costs what it costs in real life.
 */
function simulate(opts: { limit: number; ceiling: number; total: number; batch?: number; rttMs?: number; concurrency?: number; seed?: number }) {
  const { limit, ceiling, total, batch = 2000, rttMs = 40, concurrency = 2 } = opts;
  let seed = opts.seed ?? 1;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pacer = new RatePacer(ceiling);
  const queue: Array<{ n: number; attempts: number; due: number }> = [];
  for (let left = total; left > 0; left -= batch) queue.push({ n: Math.min(batch, left), attempts: 0, due: 0 });
  let inflight: Array<{ b: (typeof queue)[number]; end: number }> = [];
  let tokens = limit;
  let filledAt = 0;
  let delivered = 0;
  let refused = 0;
  let peak = 0; // most updates delivered in any simulated second: the ceiling must hold
  const perSecond = new Map<number, number>();
  let t = 0;
  for (; delivered < total && t < 3_600_000; t += 1) {
    inflight = inflight.filter((f) => {
      if (f.end > t) return true;
      tokens = Math.min(limit, tokens + ((f.end - filledAt) / 1000) * limit);
      filledAt = f.end;
      if (tokens >= f.b.n) {
        tokens -= f.b.n;
        delivered += f.b.n;
        pacer.acked(f.b.n, t);
        const s = Math.floor(t / 1000);
        perSecond.set(s, (perSecond.get(s) ?? 0) + f.b.n);
        peak = Math.max(peak, perSecond.get(s)!);
      } else {
        refused += 1;
        pacer.rateLimited(t);
        queue.push({ ...f.b, attempts: f.b.attempts + 1, due: t + 2000 * 2 ** f.b.attempts + 1000 + random() * 4000 });
      }
      return false;
    });
    while (inflight.length < concurrency && t >= pacer.nextSendAt(t)) {
      const i = queue.findIndex((b) => b.due <= t);
      if (i < 0) break;
      const [b] = queue.splice(i, 1);
      pacer.reserve(b.n, t);
      inflight.push({ b, end: t + rttMs });
    }
  }
  return { perSec: (delivered / t) * 1000, refused, peak };
}

describe('rate pacer', () => {
  it('at the default ceiling (Mixpanel\'s 30,000/s) a 30k/s project is never refused and its limit is used', () => {
    const r = simulate({ limit: 30000, ceiling: 30000, total: 300000 });
    expect(r.refused).to.equal(0);
    expect(r.perSec / 30000).to.be.at.least(0.95);
    // A quarter second's catch-up at most, and one batch of rounding at a second's edge.
    expect(r.peak).to.be.at.most(30000 * 1.25 + 2000);
  });

  it('never goes above its ceiling, however long nothing is refused', () => {
    const r = simulate({ limit: 1_000_000, ceiling: 20000, total: 600000 });
    expect(r.refused).to.equal(0);
    expect(r.peak).to.be.at.most(20000 * 1.25 + 2000);
    expect(r.perSec / 20000).to.be.at.least(0.95);
    expect(r.perSec).to.be.at.most(20000 * 1.02); // the quarter second of catch-up and one batch, over 30 s
  });

  for (const [limit, batch, total] of [[10000, 2000, 600000], [3000, 500, 180000], [20000, 2000, 1200000]] as const) {
    it(`finds a lower limit than configured (${limit}/s, batches of ${batch}) and uses ≥ 90 % of it with few 429s`, () => {
      for (const seed of [1, 2, 3]) {
        const r = simulate({ limit, ceiling: 30000, total, batch, seed });
        expect(r.perSec / limit, `seed ${seed}: ${Math.round(r.perSec)}/s`).to.be.at.least(0.9);
        const seconds = total / limit;
        expect(r.refused, `seed ${seed}: ${r.refused} 429s in ${seconds} s`).to.be.below(seconds / 2);
      }
    });
  }

  it('with no ceiling (0) it is unlimited until the first 429, then paced', () => {
    const p = new RatePacer(0);
    expect(p.rate).to.equal(Infinity);
    p.reserve(2000, 0);
    expect(p.nextSendAt(0)).to.equal(0);
    p.acked(2000, 10);
    p.rateLimited(20);
    expect(p.rate).to.be.lessThan(Infinity);
    expect(p.nextSendAt(20)).to.equal(20);
    p.reserve(2000, 20);
    expect(p.nextSendAt(20)).to.be.greaterThan(20);
  });

  it('one pacer shared by two senders spaces their batches as one stream', () => {
    const p = new RatePacer(10000);
    p.reserve(5000, 0); // sender A: half a second's worth
    const bAt = p.nextSendAt(0); // sender B waits for A's share, less the quarter second of catch-up allowed
    expect(bAt).to.equal(250);
    p.reserve(2000, bAt);
    expect(p.nextSendAt(bAt)).to.equal(450);
  });
});
