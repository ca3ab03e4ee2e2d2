/**
 * Collects the items submitted during one turn of the event loop and hands them to `run` together, so messages
 * that arrive close together share one store transaction. Each caller gets its own result; if `run` fails, every
 * caller of that group gets the error (and nothing else is affected).
 */
export class GroupCommit<T, R> {
  private queue: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;

  constructor(private readonly run: (items: T[]) => Promise<R[]>, private readonly max = 1000) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
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
    const group = this.queue.splice(0, this.max);
    if (this.queue.length) this.schedule();
    try {
      const results = await this.run(group.map((g) => g.item));
      group.forEach((g, i) => g.resolve(results[i]));
    } catch (err) {
      for (const g of group) g.reject(err);
    }
  }
}
