import { expect } from 'chai';
import { RatePacer } from '../../src/audience/pacer';

/**
 * The pacer against a simulated Mixpanel rate limit (a token bucket of R updates/s, capacity R, as a rolling window
 * behaves), on a simulated clock: it must settle just under the limit — most of the allowance used, few 429s.
 */
function simulate(limit: number, batch: number, seconds: number) {
  const pacer = new RatePacer();
  let tokens = limit;
  let t = 0;
  let last = 0;
  let sent = 0;
  let rejected = 0;
  while (t < seconds * 1000) {
    t = Math.max(t + 1, pacer.nextSendAt(t)); // 1 ms of work per request at least
    tokens = Math.min(limit, tokens + ((t - last) / 1000) * limit);
    last = t;
    pacer.reserve(batch, t);
    if (tokens >= batch) {
      tokens -= batch;
      sent += batch;
      pacer.acked(batch, t);
    } else {
      rejected += 1;
      pacer.rateLimited(t);
    }
  }
  return { perSec: sent / seconds, rejected };
}

describe('rate pacer', () => {
  for (const [limit, batch] of [[30000, 2000], [10000, 2000], [3000, 500]] as const) {
    it(`uses at least 90 % of a ${limit}/s limit with few 429s (batches of ${batch})`, () => {
      const { perSec, rejected } = simulate(limit, batch, 120);
      expect(perSec / limit).to.be.at.least(0.9);
      expect(rejected, `${rejected} 429s in 120 s`).to.be.below(120);
    });
  }

  it('is unlimited until the first 429', () => {
    const p = new RatePacer();
    p.reserve(2000, 0);
    expect(p.nextSendAt(0)).to.equal(0);
    p.acked(2000, 10);
    p.rateLimited(20);
    expect(p.rate).to.be.lessThan(Infinity);
    expect(p.nextSendAt(20)).to.equal(20);
    p.reserve(2000, 20);
    expect(p.nextSendAt(20)).to.be.greaterThan(20);
  });
});
