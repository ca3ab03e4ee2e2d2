/**
 * Which members an export confirmed without changing them: one byte per member (its slot, a number the member keeps
 * for as long as it is in the cohort) per generation not swept yet, 1 when confirmed. 1 MB per generation for a
 * 1M-member cohort; a byte rather than a bit so that the sweep's SQL can read it (`substr(seen, slot + 1, 1)`).
 *
 * Why: a recurring export lists every member again, and recording "seen in this export" in each member's row rewrote
 * the row of every member, unchanged or not. With scattered distinct IDs that was a B-tree page written per member or
 * two, ~1.7 GB written to the WAL and copied back per 1M-member export: the speed of the whole export. A page of
 * confirmations is now one row of slot numbers (coh_seen, appended), and only new and changed members are written.
 *
 * The table is the durable copy; this is read back from it at open and after a rolled-back transaction.
 */
export class ConfirmedSlots {
  /** cohort → generation → a byte per slot. */
  private readonly byCohort = new Map<string, Map<number, Uint8Array>>();

  add(cohort: string, gen: number, slots: ArrayLike<number>): void {
    let gens = this.byCohort.get(cohort);
    if (!gens) this.byCohort.set(cohort, (gens = new Map()));
    let seen = gens.get(gen) ?? new Uint8Array(0);
    let max = -1;
    for (let i = 0; i < slots.length; i++) if (slots[i] > max) max = slots[i];
    if (max >= seen.length) {
      const grown = new Uint8Array(Math.max(seen.length * 2, max + 1, 1024));
      grown.set(seen);
      seen = grown;
      gens.set(gen, seen);
    }
    for (let i = 0; i < slots.length; i++) seen[slots[i]] = 1;
  }

  /** The slots confirmed in generation `gen` or a later one (a later export saw them too), a byte each. */
  since(cohort: string, gen: number): Uint8Array {
    const all = [...(this.byCohort.get(cohort) ?? [])].filter(([g]) => g >= gen).map(([, seen]) => seen);
    if (all.length <= 1) return all[0] ?? new Uint8Array(0);
    const out = new Uint8Array(Math.max(...all.map((seen) => seen.length)));
    for (const seen of all) for (let i = 0; i < seen.length; i++) out[i] |= seen[i];
    return out;
  }

  /** Forgets the generations up to `gen`: an export of that generation was swept, no sweep will ask for them. */
  drop(cohort: string, gen: number): void {
    const gens = this.byCohort.get(cohort);
    if (!gens) return;
    for (const g of [...gens.keys()]) if (g <= gen) gens.delete(g);
  }

  clear(): void {
    this.byCohort.clear();
  }
}

/** Slot numbers as stored in coh_seen.slots: unsigned 32-bit, little-endian. */
export function encodeSlots(slots: number[]): Buffer {
  const buf = Buffer.allocUnsafe(slots.length * 4);
  for (let i = 0; i < slots.length; i++) buf.writeUInt32LE(slots[i], i * 4);
  return buf;
}

export function decodeSlots(buf: Buffer): number[] {
  const out = new Array<number>(buf.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = buf.readUInt32LE(i * 4);
  return out;
}
