/**
 * Paces requests under Mixpanel's rate limit ("~30k events per second" per project, on a rolling one-minute window)
 * instead of stopping everything on every 429. It starts at the project's configured limit (Mixpanel's documented
 * 30,000 updates/s by default), so an unshared project never sees a 429 at all. When Mixpanel still says 429 —
 * other senders share the project, or its limit is lower — it slows to 80 % of what Mixpanel actually acknowledged
 * over the last two seconds and creeps back up 3 % a second while no 429 comes (additive increase, multiplicative
 * decrease, like rudder-server's limiter): it settles right under the real limit with a 429 only now and then.
 *
 * It limits the average, not each gap (a generic cell rate algorithm): a sender that fell behind for a moment — a
 * start-up, a slow store write — may catch up by a quarter of a second's worth at once instead of losing that time
 * for good. Mixpanel measures over a rolling minute, so that is at most 0.4 % over the limit in any minute. After a
 * 429 there is no catching up until the rate is back at the ceiling.
 *
 * One pacer per project (the `mixpanel-config` node holds it), shared by every node sending to that project.
 */
const BURST_MS = 250;

export class RatePacer {
  /** Updates per second now; Infinity when no limit is configured and Mixpanel has not said 429 yet. */
  rate: number;
  private nextAt = 0;
  private readonly acks: Array<{ at: number; n: number }> = [];
  private lastCut = -Infinity;
  private lastRaise = -Infinity;
  private firstAck: number | undefined;

  /**
   * @param ceiling the project's limit in updates/s; 0 or Infinity = none until Mixpanel answers 429.
   * The cut (0.8) and the creep (3 %/s) were chosen with a simulation of a token-bucket limit, closed-loop senders
   * and Mixpanel's 2 s + 1–5 s retry wait (test/unit/pacer.spec.ts keeps the simple version of it).
   */
  constructor(readonly ceiling = Infinity, private readonly windowMs = 2000, private readonly floor = 50) {
    this.ceiling = ceiling > 0 ? ceiling : Infinity;
    this.rate = this.ceiling;
  }

  /** The earliest time the next batch may go. */
  nextSendAt(now: number): number {
    return Number.isFinite(this.rate) ? Math.max(now, this.nextAt - this.burstMs()) : now;
  }

  private burstMs(): number {
    return this.rate >= this.ceiling ? BURST_MS : 0;
  }

  /** Books a batch of `n` updates sent at `at`: the one after it waits n / rate. */
  reserve(n: number, at: number): void {
    if (Number.isFinite(this.rate)) this.nextAt = Math.max(at, this.nextAt) + (n / this.rate) * 1000;
  }

  acked(n: number, now: number): void {
    this.firstAck ??= now;
    this.acks.push({ at: now, n });
    this.trim(now);
    if (this.rate < this.ceiling && now - this.lastCut >= this.windowMs && now - this.lastRaise >= 1000) {
      this.rate = Math.min(this.ceiling, this.rate * 1.03);
      this.lastRaise = now;
    }
  }

  /** Mixpanel said 429: slow down to just under the rate it accepted (once per second at most). */
  rateLimited(now: number): void {
    if (now - this.lastCut < 1000) return;
    this.trim(now);
    // Over the time actually covered: right after start-up the window is not full yet.
    const span = Math.max(250, Math.min(this.windowMs, now - (this.firstAck ?? now)));
    const accepted = (this.acks.reduce((sum, a) => sum + a.n, 0) * 1000) / span;
    const base = accepted > 0 ? accepted : Number.isFinite(this.rate) ? this.rate / 2 : 1000;
    // Decrease decisively (requests already in flight were sent at the old rate and will be refused too), then
    // creep back up.
    this.rate = Math.max(this.floor, Math.min(this.rate, base) * 0.8);
    this.lastCut = now;
  }

  private trim(now: number): void {
    while (this.acks.length && this.acks[0].at < now - this.windowMs) this.acks.shift();
  }
}
