import type { ErrorCode } from '../errors';
import { backoffDelay, type BackoffPolicy } from '../mixpanel/backoff';
import type { EngageOutcome, EngagePost } from '../mixpanel/engage-client';
import type { AudienceStore, OutboxItem } from '../store/audience-store';
import { DEFAULT_RATE_LIMIT } from '../schemas/settings';
import { RatePacer } from './pacer';

export type SenderPhase = 'idle' | 'sending' | 'retrying' | 'paused' | 'store-error';

export interface SenderState {
  phase: SenderPhase;
  reason?: string;
  retryAt?: number;
}

export interface SenderEvents {
  acked(items: OutboxItem[]): void;
  dead(items: OutboxItem[], reason: string, code: ErrorCode): void;
  state(state: SenderState): void;
}

export interface SenderOptions {
  store: AudienceStore;
  scope: string;
  token: () => string;
  post: EngagePost;
  batchSize: number;
  flushMs: number;
  concurrency: number;
  retryWindowMs: number;
  backoff: BackoffPolicy;
  /** While paused on 401/403, try one batch again this often (a revoked token may come back). */
  authRetryMs: number;
  /** A claimed batch is invisible to other senders this long; after a crash it becomes due again. */
  leaseMs?: number;
  /** Split requests above this many bytes (no byte limit is documented for /engage; stay well below /import's 10 MB). */
  maxBytes?: number;
  /** An update is dead only after the retry window AND at least this many attempts. */
  minAttempts?: number;
  /** The project's pacer, shared by every sender to that project; by default one of its own at Mixpanel's 30k/s. */
  pacer?: RatePacer;
  now?: () => number;
  events: SenderEvents;
}

/** One `$set` profile update in Mixpanel's format. `$ignore_time`: an audience sync is not user activity. */
export function toEngageUpdate(token: string, item: Pick<OutboxItem, 'distinctId' | 'props'>) {
  return { $token: token, $distinct_id: item.distinctId, $ip: '0', $ignore_time: true, $set: item.props };
}

/**
 * `toEngageUpdate` as JSON text, the same bytes as `JSON.stringify` of it. Props the store keeps as JSON go in as
 * they are: parsing them at the claim and encoding them again here cost about a tenth of the sending path.
 */
export function encodeEngageUpdate(token: string, tokenJson: string, item: OutboxItem): string {
  if (item.propsJson === undefined) return JSON.stringify(toEngageUpdate(token, item));
  return `{"$token":${tokenJson},"$distinct_id":${JSON.stringify(item.distinctId)},"$ip":"0","$ignore_time":true,"$set":${item.propsJson}}`;
}

/**
 * `[a,b,…]` as one flat string. A template around the join is a cons string, which the HTTP client flattens into a
 * second copy of the whole body (~400 KB per 2000 updates, a large object on V8's heap) before encoding it.
 */
function jsonArray(encoded: string[]): string {
  if (encoded.length === 0) return '[]';
  const parts = encoded.slice();
  parts[0] = `[${parts[0]}`;
  parts[parts.length - 1] = `${parts[parts.length - 1]}]`;
  return parts.join(',');
}

/**
 * Drains one scope's outbox to `/engage`: claims due profiles in batches of ≤ 2000, sends their latest desired state,
 * and settles each batch by what Mixpanel answered — ack, retry with backoff (the whole sender waits, so a rate limit
 * is not hammered by the other workers), bisect on 400/413/`status:0` so one bad profile cannot take good ones down
 * with it, or pause on 401/403. All state is in the store; this object holds only timers.
 */
export class AudienceSender {
  private readonly o: Required<Omit<SenderOptions, 'events' | 'pacer'>> & { events: SenderEvents };
  private timer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private inflight = new Set<Promise<void>>();
  private pumping = false;
  /** The last claim found less than a full batch due: the intake is slower than the sender. */
  private caughtUp = false;
  /**
   * A partial batch claimed before its oldest update had waited out the flush window: kept (leased) until then and
   * topped up by the next claim, so a steady stream goes out in full batches instead of one short batch per wake-up.
   */
  private held: OutboxItem[] = [];
  /** When the held items were first claimed: their leases run from then. */
  private heldSince = 0;
  private closed = false;
  private paused = false;
  private blockedUntil = 0;
  private failures = 0;
  private readonly pacer: RatePacer;
  private resumeTimer: NodeJS.Timeout | undefined;

  constructor(opts: SenderOptions) {
    const { pacer, ...rest } = opts;
    const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) as unknown as Omit<SenderOptions, 'pacer'>;
    this.o = { leaseMs: 60000, maxBytes: 5 * 1024 * 1024, minAttempts: 5, now: Date.now, ...defined };
    this.pacer = pacer ?? new RatePacer(DEFAULT_RATE_LIMIT);
  }

  /** Starts sending: first takes back what a previous run of this sender had claimed but never settled (a crash). */
  async start(): Promise<void> {
    try {
      await this.o.store.recoverLeases(this.o.scope, this.o.now());
    } catch (err) {
      this.storeFailed(err);
    }
    this.kick(0);
  }

  /** New work was queued: send it after the flush window (changes to the same profile meanwhile coalesce). */
  kick(delayMs = this.o.flushMs): void {
    if (this.closed) return;
    this.schedule(this.o.now() + delayMs);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stops sending. In-flight requests finish (or time out) and settle in the store; nothing is left half-done. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.timer = undefined;
    await Promise.allSettled([...this.inflight]);
    await this.releaseHeld(this.o.now()).catch(() => undefined); // the lease would free them too; this is sooner
  }

  /**
   * Hands held items back to the store, due at `dueAt`, counted as an attempt like any claimed batch that could not be
   * sent (a closing or blocked sender does the same with the batches it had claimed).
   */
  private async releaseHeld(dueAt: number): Promise<void> {
    const held = this.held;
    this.held = [];
    if (held.length) await this.o.store.retryLater(this.o.scope, held, dueAt);
  }

  private schedule(at: number): void {
    if (this.closed || at >= this.wakeAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.wakeAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.wakeAt = Infinity;
      void this.pump();
    }, Math.max(0, at - this.o.now()));
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    const { store, scope } = this.o;
    try {
      while (!this.closed && !this.paused && this.inflight.size < this.o.concurrency) {
        const now = this.o.now();
        const allowedAt = Math.max(this.blockedUntil, this.pacer.nextSendAt(now));
        if (now < allowedAt) {
          this.schedule(allowedAt);
          break;
        }
        const held = this.held;
        const claimedAt = held.length ? this.heldSince : now;
        this.held = [];
        const fresh = await store.claimDue(scope, this.o.batchSize - held.length, now, this.o.leaseMs);
        const items = held.length ? held.concat(fresh) : fresh;
        if (items.length === 0) {
          const next = await store.nextDueAt(scope);
          if (next !== undefined) this.schedule(Math.max(next, now + 50));
          break;
        }
        this.caughtUp = items.length < this.o.batchSize;
        if (this.caughtUp) {
          // Send a short batch only once its oldest update has waited the flush window; until then later updates may
          // still fill it. The hold ends well inside the first lease, so no other claim can take these items meanwhile.
          let oldest = Infinity;
          for (const i of items) if (i.queuedAt < oldest) oldest = i.queuedAt;
          const sendAt = Math.min(oldest + this.o.flushMs, claimedAt + this.o.leaseMs / 2);
          // Not while closing, paused or backing off (any of which can start during the claim): sendBatch hands them
          // back to the store then, instead of holding them past their lease.
          if (now < sendAt && !this.closed && !this.paused && this.o.now() >= this.blockedUntil) {
            this.held = items;
            this.heldSince = claimedAt;
            this.schedule(sendAt);
            break;
          }
        }
        this.pacer.reserve(items.length, now);
        this.o.events.state({ phase: 'sending' });
        const run: Promise<void> = this.sendBatch(items)
          .catch((err: unknown) => this.storeFailed(err))
          .finally(() => {
            this.inflight.delete(run);
            // Caught up with the intake: let the flush window fill the next batch (like Nagle's algorithm) instead of
            // sending whatever trickled in meanwhile, which would halve the batches under a steady stream.
            if (this.caughtUp) this.kick();
            else if (!this.closed) void this.pump();
          });
        this.inflight.add(run);
        if (this.caughtUp) break;
      }
    } catch (err) {
      this.storeFailed(err);
    } finally {
      this.pumping = false;
    }
    if (!this.closed && !this.paused && this.inflight.size === 0 && this.o.now() >= this.blockedUntil && this.wakeAt === Infinity) {
      this.o.events.state({ phase: 'idle' });
    }
  }

  private storeFailed(err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    this.o.events.state({ phase: 'store-error', reason });
    this.schedule(this.o.now() + 2000); // the store may come back (Redis restarts): try again soon, never give up
  }

  private async sendBatch(items: OutboxItem[]): Promise<void> {
    const token = this.o.token();
    const tokenJson = JSON.stringify(token);
    const encoded = items.map((i) => encodeEngageUpdate(token, tokenJson, i));
    // Split by bytes first: a batch of many large profiles may exceed what one request should carry.
    let start = 0;
    let bytes = 2;
    for (let i = 0; i < items.length; i++) {
      if (i > start && bytes + encoded[i].length + 1 > this.o.maxBytes) {
        await this.sendChunk(items.slice(start, i), encoded.slice(start, i));
        start = i;
        bytes = 2;
      }
      bytes += encoded[i].length + 1;
    }
    await this.sendChunk(items.slice(start), encoded.slice(start));
  }

  private async sendChunk(items: OutboxItem[], encoded: string[]): Promise<void> {
    if (items.length === 0) return;
    const { store, scope } = this.o;
    if (this.closed || this.paused || this.o.now() < this.blockedUntil) {
      await store.retryLater(scope, items, Math.max(this.blockedUntil, this.o.now()));
      return;
    }
    const outcome: EngageOutcome = this.o.token()
      ? await this.o.post(jsonArray(encoded))
      : { kind: 'auth', status: 0, reason: 'no Mixpanel token is configured' };
    const now = this.o.now();
    switch (outcome.kind) {
      case 'ok':
        this.failures = 0;
        this.pacer.acked(items.length, now);
        await store.ack(scope, items, now);
        this.o.events.acked(items);
        return;
      case 'rejected':
      case 'too-large':
        if (items.length > 1) {
          // Mixpanel judges a batch as a whole: halve it until the bad update is alone, so the good ones still land.
          const mid = items.length >> 1;
          await this.sendChunk(items.slice(0, mid), encoded.slice(0, mid));
          await this.sendChunk(items.slice(mid), encoded.slice(mid));
          return;
        }
        await store.bury(scope, items.map((item) => ({ item, reason: outcome.reason })), now);
        this.o.events.dead(items, outcome.reason, 'MIXPANEL_REJECTED');
        return;
      case 'auth':
        this.paused = true;
        await store.retryLater(scope, items, now);
        await this.releaseHeld(now);
        this.o.events.state({ phase: 'paused', reason: outcome.reason });
        this.resumeLater();
        return;
      case 'retry': {
        // A 429 without Retry-After means "too fast", not "down": this batch backs off (2 s doubling, as Mixpanel
        // asks) while the pacer slows everything else to just under the accepted rate, so the limit is used, not
        // wasted. 5xx, timeouts, connection errors and an explicit Retry-After stop the whole sender instead.
        const tooFast = outcome.status === 429 && outcome.retryAfterMs === undefined;
        let retryAt: number;
        if (tooFast) {
          this.pacer.rateLimited(now);
          retryAt = now + backoffDelay(this.o.backoff, Math.min(...items.map((i) => i.attempts)));
        } else {
          const delay = backoffDelay(this.o.backoff, this.failures, outcome.retryAfterMs);
          this.failures += 1;
          this.blockedUntil = Math.max(this.blockedUntil, now + delay);
          retryAt = this.blockedUntil;
          await this.releaseHeld(retryAt); // a backoff can outlast their lease
        }
        const expired = items.filter((i) => now - i.queuedAt >= this.o.retryWindowMs && i.attempts + 1 >= this.o.minAttempts);
        const keep = items.filter((i) => !expired.includes(i));
        if (expired.length) {
          const reason = `gave up after ${Math.round(this.o.retryWindowMs / 1000)} s of retries: ${outcome.reason}`;
          await store.bury(scope, expired.map((item) => ({ item, reason })), now);
          this.o.events.dead(expired, reason, outcome.status === 429 ? 'MIXPANEL_RATE_LIMITED' : 'MIXPANEL_UNAVAILABLE');
        }
        if (keep.length) await store.retryLater(scope, keep, retryAt);
        this.o.events.state({ phase: 'retrying', reason: outcome.reason, retryAt });
        this.schedule(tooFast ? this.pacer.nextSendAt(now) : retryAt);
        return;
      }
    }
  }

  private resumeLater(): void {
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      if (this.closed) return;
      this.paused = false;
      void this.pump();
    }, this.o.authRetryMs);
    this.resumeTimer.unref?.();
  }
}
