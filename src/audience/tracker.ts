import type { ErrorCode } from '../errors';
import type { OutboxItem, QueuedVersion } from '../store/audience-store';

export interface ProfileResult {
  distinctId: string;
}
export interface FailedProfile extends ProfileResult {
  reason: string;
  code: ErrorCode;
}
export interface DeliveryResult {
  sent: ProfileResult[];
  failed: FailedProfile[];
}

interface Waiter {
  remaining: number;
  result: DeliveryResult;
  resolve(result: DeliveryResult): void;
}

/**
 * Tells each input message when the profile updates it queued are settled. A message waits for the outbox version
 * of each profile it wrote; an acknowledgement of version v settles every waiter at or below v, because the outbox
 * always sends the latest merged state. Holds nothing but these small records; `size` lets the node cap them.
 */
export class DeliveryTracker {
  private readonly byProfile = new Map<string, Array<{ version: number; waiter: Waiter }>>();
  private waiting = 0;
  private entries = 0;

  /** Messages waiting. */
  get size(): number {
    return this.waiting;
  }

  /** Profile versions waited for, over all messages: what the memory bound is about. */
  get tracked(): number {
    return this.entries;
  }

  track(versions: QueuedVersion[]): Promise<DeliveryResult> {
    const result: DeliveryResult = { sent: [], failed: [] };
    if (versions.length === 0) return Promise.resolve(result);
    return new Promise((resolve) => {
      const waiter: Waiter = { remaining: versions.length, result, resolve };
      this.waiting += 1;
      this.entries += versions.length;
      for (const v of versions) {
        const list = this.byProfile.get(v.distinctId);
        if (list) list.push({ version: v.version, waiter });
        else this.byProfile.set(v.distinctId, [{ version: v.version, waiter }]);
      }
    });
  }

  acked(items: OutboxItem[]): void {
    for (const item of items) this.settle(item, (w) => w.result.sent.push({ distinctId: item.distinctId }));
  }

  dead(items: OutboxItem[], reason: string, code: ErrorCode): void {
    for (const item of items) this.settle(item, (w) => w.result.failed.push({ distinctId: item.distinctId, reason, code }));
  }

  private settle(item: OutboxItem, record: (w: Waiter) => void): void {
    const list = this.byProfile.get(item.distinctId);
    if (!list) return;
    const rest = list.filter((entry) => {
      if (entry.version > item.version) return true;
      record(entry.waiter);
      this.entries -= 1;
      entry.waiter.remaining -= 1;
      if (entry.waiter.remaining === 0) {
        this.waiting -= 1;
        entry.waiter.resolve(entry.waiter.result);
      }
      return false;
    });
    if (rest.length) this.byProfile.set(item.distinctId, rest);
    else this.byProfile.delete(item.distinctId);
  }
}
