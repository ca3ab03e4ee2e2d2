/**
 * Paces requests under Mixpanel's rate limit (about 30k updates/s per project, a rolling window) instead of
 * stopping everything on every 429: additive increase, multiplicative decrease on the acknowledged rate, like
 * rudder-server's limiter. Unlimited until the first 429; then the rate is set just under what Mixpanel actually
 * acknowledged over the last two seconds, and creeps up 5 % a second while no 429 comes, so it settles right
 * under the limit with a 429 only now and then.
 */
export class RatePacer {
  /** Updates per second; Infinity until Mixpanel first says 429. */
  rate = Infinity;
  private nextAt = 0;
  private readonly acks: Array<{ at: number; n: number }> = [];
  private lastCut = -Infinity;
  private lastRaise = -Infinity;
  private firstAck: number | undefined;

  constructor(private readonly windowMs = 2000, private readonly floor = 50) {}

  /** The earliest time the next batch may go. */
  nextSendAt(now: number): number {
    return Number.isFinite(this.rate) ? Math.max(now, this.nextAt) : now;
  }

  /** Books a batch of `n` updates sent at `at`: the one after it waits n / rate. */
  reserve(n: number, at: number): void {
    if (Number.isFinite(this.rate)) this.nextAt = Math.max(at, this.nextAt) + (n / this.rate) * 1000;
  }

  acked(n: number, now: number): void {
    this.firstAck ??= now;
    this.acks.push({ at: now, n });
    this.trim(now);
    if (Number.isFinite(this.rate) && now - this.lastCut >= this.windowMs && now - this.lastRaise >= 1000) {
      this.rate *= 1.05;
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
    // creep back up: a 30 % cut of what was accepted, like TCP's multiplicative decrease.
    this.rate = Math.max(this.floor, Math.min(Number.isFinite(this.rate) ? this.rate : Infinity, base) * 0.7);
    this.lastCut = now;
  }

  private trim(now: number): void {
    while (this.acks.length && this.acks[0].at < now - this.windowMs) this.acks.shift();
  }
}
