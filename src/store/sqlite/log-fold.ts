import type Database from 'better-sqlite3';

/** A key's state as text, or null once it is gone (deleted, forgotten). */
export type Stored = string | null;

/** The SQLite side of a LogFold: its log table and the table the log is folded into. */
export interface FoldTables<P> {
  /** Appends a change to the log table (rows in arrival order share pages). */
  log(part: P, key: string, data: Stored): void;
  /** Writes a folded state into the main table. */
  put(part: P, key: string, data: string): void;
  del(part: P, key: string): void;
  /** The last log row now (a round covers the rows up to it). */
  lastSeq(): number;
  dropLog(upTo: number): void;
}

export interface LogFoldOptions {
  /**
   * Keys kept in memory before a fold round starts (default 50,000; an audience user costs ~230 bytes of heap). Tests
   * use tiny values so that every path runs.
   */
  foldAt?: number;
  /**
   * Keys folded per key written while a round runs (default 2). The round's generation stays in memory until it is
   * all folded, so the more per write, the sooner it goes: a round of foldAt keys lasts foldAt / foldPerWrite writes,
   * and memory holds foldAt × (1/2 + 1/foldPerWrite) keys on average. The fold's work is the same either way (each
   * key is written once per round); it is only done in fewer, larger helpings.
   */
  foldPerWrite?: number;
}

/** part → key → state. */
type States<P> = Map<P, Map<string, Stored>>;

/**
 * A fold in progress: the states waiting when it began (`folding`, which no write touches again: newer states go to
 * `recent`), their keys in order part by part, how far it got, and the last log row it covers (when it ends, those
 * rows are all in the main table and go).
 */
interface FoldRound<P> {
  parts: Array<{ part: P; keys: string[] }>;
  part: number;
  at: number;
  lastSeq: number;
}

/**
 * Keyed rows laid out for random keys, like a log-structured merge. Real MPIDs, customer IDs and distinct IDs arrive
 * in no order, so writing each row in place dirtied a B-tree page of its own per change: that page went to the WAL
 * and back to the file once per change, and set the speed of whole nodes. Instead:
 * - a change is appended to a log table (rows in arrival order share pages) and kept in memory (`recent`), which
 *   reads look at first;
 * - once `foldAt` keys are waiting, they become the round's `folding` generation and `recent` starts empty; the round
 *   writes them into the main table in key order, a slice with each write transaction, so neighbouring keys share a
 *   page write; when it ends, its log rows go and so does the whole generation (one object dropped, instead of
 *   deletions shrinking a Map step by step: ~4 % of all audience-out promoted to V8's old space, in a sampling
 *   profile).
 * The log is the durable copy: a restart reads it back (`replay`), so nothing depends on the memory surviving.
 *
 * Every method that changes state must run inside `transaction`, which undoes the in-memory side when the SQLite
 * transaction rolls back.
 */
export class LogFold<P extends number | string> {
  /** Latest states written since the current round began (plain strings: ~230 bytes of heap a key, measured). */
  private recent: States<P> = new Map();
  private recentCount = 0;
  /** The states the round in progress is folding (read after `recent`, before the main table). */
  private folding: States<P> | undefined;
  private foldingCount = 0;
  private round: FoldRound<P> | undefined;
  /** How to put the in-memory side back if the transaction in progress rolls back (newest last). */
  private undo: Array<() => void> = [];

  private readonly foldAt: number;
  private readonly foldPerWrite: number;
  /**
   * Write transactions begun so far (rolled back ones too). Unchanged across a stretch of time means neither memory
   * nor the main table changed in it: what a read on another connection checks before it trusts its snapshot.
   */
  private transactions = 0;

  constructor(private readonly db: Database.Database, private readonly tables: FoldTables<P>, opts: LogFoldOptions = {}) {
    this.foldAt = opts.foldAt ?? 50_000;
    this.foldPerWrite = opts.foldPerWrite ?? 2;
  }

  /** Runs `fn` in one IMMEDIATE transaction; if it throws, the in-memory side is put back as it was. */
  transaction<T>(fn: () => T, onRollback?: () => void): T {
    this.transactions += 1;
    this.undo = [];
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      const undo = this.undo;
      this.undo = [];
      for (const u of undo.reverse()) u();
      onRollback?.();
      throw err;
    } finally {
      this.undo = [];
    }
  }

  /** The latest state in memory: text, null (gone), or undefined when only the main table knows. */
  get(part: P, key: string): Stored | undefined {
    const r = this.recent.get(part)?.get(key);
    return r !== undefined ? r : this.folding?.get(part)?.get(key); // not `??`: null (gone since) wins
  }

  /** Stores a key's state (null: gone). */
  write(part: P, key: string, data: Stored): void {
    this.tables.log(part, key, data);
    const states = this.recentOf(part);
    const before = states.get(key);
    states.set(key, data);
    if (before === undefined) this.recentCount += 1;
    this.undo.push(() => {
      if (before !== undefined) states.set(key, before);
      else if (states.delete(key)) this.recentCount -= 1;
    });
  }

  /** At open: a log row written before the last stop, back into memory (in log order, the latest wins). */
  replay(part: P, key: string, data: Stored): void {
    const states = this.recentOf(part);
    if (!states.has(key)) this.recentCount += 1;
    states.set(key, data);
  }

  /**
   * Folds up to `budget` waiting keys into the main table, starting a round once `foldAt` are waiting (or, with
   * `everything`, whatever is waiting). Called by every write transaction with a budget in proportion to its writes,
   * so folding keeps pace with writing and no single call pays for a whole round.
   */
  fold(budget: number, everything = false): void {
    if (!this.round) {
      if (this.recentCount === 0 || (!everything && this.recentCount < this.foldAt)) return;
      const parts = [...this.recent].map(([part, states]) => ({ part, keys: [...states.keys()].sort() }));
      this.round = { parts, part: 0, at: 0, lastSeq: this.tables.lastSeq() };
      this.folding = this.recent;
      this.foldingCount = this.recentCount;
      this.recent = new Map();
      this.recentCount = 0;
      const snapshot = this.folding;
      this.undo.push(() => {
        // Writes later in this transaction went to the new `recent` and were undone before this runs.
        this.recent = snapshot;
        this.recentCount = this.foldingCount;
        this.folding = undefined;
        this.foldingCount = 0;
        this.round = undefined;
      });
    }
    const round = this.round;
    const folding = this.folding!;
    const { part: fromPart, at: fromAt } = round;
    for (let left = budget; left > 0 && round.part < round.parts.length;) {
      const { part, keys } = round.parts[round.part];
      const states = folding.get(part)!;
      const end = Math.min(keys.length, round.at + left);
      for (let i = round.at; i < end; i++) {
        const data = states.get(keys[i])!;
        if (data === null) this.tables.del(part, keys[i]);
        else this.tables.put(part, keys[i], data);
      }
      left -= end - round.at;
      if (end < keys.length) round.at = end;
      else {
        round.part += 1;
        round.at = 0;
      }
    }
    this.undo.push(() => {
      round.part = fromPart;
      round.at = fromAt;
    });
    if (round.part < round.parts.length) return;
    // Round done: every state it held is in the main table, and every log row up to lastSeq is one of those states
    // (later rows belong to `recent`), so the rows and the generation go.
    this.tables.dropLog(round.lastSeq);
    const foldingCount = this.foldingCount;
    this.folding = undefined;
    this.foldingCount = 0;
    this.round = undefined;
    this.undo.push(() => {
      this.folding = folding;
      this.foldingCount = foldingCount;
      this.round = round;
    });
  }

  /**
   * Folds in proportion to the writes a transaction just made: `foldPerWrite` keys per write, and at least 32, so
   * folding keeps pace with writing. (With a tiny foldAt the floor is a quarter of it, so that tests see rounds that
   * span several transactions, as rounds of 50,000 keys do.)
   */
  step(writes: number): void {
    this.fold(Math.max(Math.min(32, Math.ceil(this.foldAt / 4)), this.foldPerWrite * writes));
  }

  /**
   * Folds everything waiting, synchronously, in transactions of 20,000 keys (~0.3 s for a full round): before reading
   * the main table as a whole. Not in steps between other work on purpose: with writes in between it could chase
   * them forever.
   */
  foldAll(): void {
    while (this.recentCount > 0 || this.round) this.transaction(() => this.fold(20_000, true));
  }

  /** The latest state in memory of every key of a part (keys only the main table knows are not listed). */
  *entries(part: P): IterableIterator<[string, Stored]> {
    const recent = this.recent.get(part);
    if (recent) yield* recent;
    const folding = this.folding?.get(part);
    if (folding) for (const e of folding) if (!recent?.has(e[0])) yield e;
  }

  /** Write transactions begun so far (see `transactions`). */
  get version(): number {
    return this.transactions;
  }

  /** Keys waiting in memory for a fold (for tests). */
  get waiting(): number {
    return this.recentCount + this.foldingCount;
  }

  private recentOf(part: P): Map<string, Stored> {
    let states = this.recent.get(part);
    if (!states) this.recent.set(part, (states = new Map()));
    return states;
  }
}
