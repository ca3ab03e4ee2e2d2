export interface GroupLimits<T> {
  /** Items per group at most. */
  maxItems?: number;
  /**
   * Total weight per group at most (an item heavier than this still goes, alone). The audience node weighs a message
   * by its users: everything a group parses and writes stays alive until the group's transaction ends, so a group of
   * sixteen 1000-user messages (~100 MB of short-lived objects) outlived V8's young generation and was promoted to
   * the old one as garbage, which let the heap grow to ~300 MB between full collections under a backlog.
   */
  maxWeight?: number;
  weight?: (item: T) => number;
}

/**
 * Collects the items submitted during one turn of the event loop and hands them to `run` together, so messages
 * that arrive close together share one store transaction. Each caller gets its own result; if `run` fails, every
 * caller of that group gets the error (and nothing else is affected). Groups are cut by count and by weight; the
 * rest waits for the next turn, in order.
 */
export class GroupCommit<T, R> {
  private queue: Array<{ item: T; weight: number; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  private readonly maxItems: number;
  private readonly maxWeight: number;
  private readonly weight: (item: T) => number;

  constructor(private readonly run: (items: T[]) => Promise<R[]>, limits: GroupLimits<T> = {}) {
    this.maxItems = limits.maxItems ?? 1000;
    this.maxWeight = limits.maxWeight ?? Infinity;
    this.weight = limits.weight ?? (() => 1);
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, weight: this.weight(item), resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    let n = 0;
    let weight = 0;
    while (n < this.queue.length && n < this.maxItems && (n === 0 || weight + this.queue[n].weight <= this.maxWeight)) {
      weight += this.queue[n].weight;
      n += 1;
    }
    const group = this.queue.splice(0, n);
    if (this.queue.length) this.schedule();
    try {
      const results = await this.run(group.map((g) => g.item));
      group.forEach((g, i) => g.resolve(results[i]));
    } catch (err) {
      for (const g of group) g.reject(err);
    }
  }
}
