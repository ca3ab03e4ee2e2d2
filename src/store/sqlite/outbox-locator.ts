import type Database from 'better-sqlite3';

/** The index a large backlog is looked up through (and the one every file had before this class existed). */
const INDEX = 'aud_outbox_id';

export interface OutboxLocatorOptions {
  /** Outbox rows (all scopes together) from which users are looked up through a SQLite index instead of memory. */
  outboxIndexAt?: number;
  /** Rows below which the index goes again and memory takes over (below outboxIndexAt, so the two do not flap). */
  outboxDropIndexAt?: number;
}

/**
 * Where each waiting user's outbox row is: its due_at. The outbox is keyed (scope, due_at, distinct_id), so once that
 * is known, every statement on one user's row is a primary-key search.
 *
 * Why not a unique index on (scope, distinct_id), as before: with scattered distinct IDs each update inserted into a
 * random page of it and each acknowledgement deleted from another, so a 1000-user transaction rewrote most of the
 * index's pages, twice over an update's life. Those WAL pages were ~40 % of the outbox's cost in a micro-benchmark at
 * 20,000 rows waiting, and audience-out in node-red went from 26,089 to 33,611 updates/s without them.
 *
 * So with a small backlog (the normal state: acknowledgements keep up) the positions are kept in memory, a Map per
 * scope. A large backlog (an outage, a burst: up to millions of rows) would make that Map as large, so from
 * `outboxIndexAt` rows the index is built, in the transaction that reached that many, and lookups go through it until
 * the backlog is back under `outboxDropIndexAt`.
 *
 * The memory side is only ever derived from the table: loaded at open and again after a transaction that rolled back.
 * A file without the index never holds much more than `outboxIndexAt` rows, so loading it is bounded. An older
 * version of this package opening the file creates the index again (its schema says IF NOT EXISTS).
 *
 * The callers (SqliteAudienceStore) run inside a write transaction and report every row they add, move or remove.
 */
export class OutboxLocator {
  /** scope → distinct ID → due_at, while memory is in use; undefined while the index is. */
  private places: Map<string, Map<string, number>> | undefined;
  /** Outbox rows, all scopes. */
  private rows = 0;
  private readonly indexAt: number;
  private readonly dropIndexAt: number;
  private readonly st;

  constructor(private readonly db: Database.Database, opts: OutboxLocatorOptions = {}) {
    this.indexAt = opts.outboxIndexAt ?? 50_000;
    this.dropIndexAt = Math.min(opts.outboxDropIndexAt ?? Math.floor(this.indexAt / 5), this.indexAt - 1);
    this.st = {
      hasIndex: db.prepare<[string], number>("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?").pluck(),
      count: db.prepare<[], number>('SELECT COUNT(*) FROM aud_outbox').pluck(),
      all: db.prepare<[], [string, string, number]>('SELECT scope, distinct_id, due_at FROM aud_outbox').raw(),
      // Through the index: it is only run while the index exists.
      dueOf: db.prepare<[string, string], number>('SELECT due_at FROM aud_outbox WHERE scope = ? AND distinct_id = ?').pluck(),
    };
    this.rows = this.st.count.get()!;
    const indexed = this.indexed();
    if (this.rows >= this.indexAt) {
      if (!indexed) this.createIndex();
    } else if (!indexed || this.rows < this.dropIndexAt) {
      this.loadPlaces();
      if (indexed) this.db.exec(`DROP INDEX ${INDEX}`);
    }
  }

  /** The due_at of the user's row, or undefined when the user has none. */
  dueAt(scope: string, distinctId: string): number | undefined {
    return this.places ? this.places.get(scope)?.get(distinctId) : this.st.dueOf.get(scope, distinctId);
  }

  added(scope: string, distinctId: string, dueAt: number): void {
    this.rows += 1;
    if (this.places) this.placesOf(scope).set(distinctId, dueAt);
  }

  moved(scope: string, distinctId: string, dueAt: number): void {
    if (this.places) this.placesOf(scope).set(distinctId, dueAt);
  }

  removed(scope: string, distinctId: string): void {
    this.rows -= 1;
    this.places?.get(scope)?.delete(distinctId);
  }

  /** At the end of each write transaction: index or memory, for the backlog there is now. */
  settle(): void {
    if (this.places && this.rows >= this.indexAt) {
      this.createIndex();
      this.places = undefined;
    } else if (!this.places && this.rows < this.dropIndexAt) {
      this.loadPlaces();
      this.db.exec(`DROP INDEX ${INDEX}`);
    }
  }

  /** After a transaction rolled back: the memory side again from what the table holds now. */
  reload(): void {
    this.rows = this.st.count.get()!;
    if (this.indexed()) this.places = undefined;
    else this.loadPlaces();
  }

  /** Whether lookups go through the index (for tests). */
  get usesIndex(): boolean {
    return this.places === undefined;
  }

  private indexed(): boolean {
    return this.st.hasIndex.get(INDEX) !== undefined;
  }

  private createIndex(): void {
    this.db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS ${INDEX} ON aud_outbox (scope, distinct_id)`);
  }

  private loadPlaces(): void {
    const places = new Map<string, Map<string, number>>();
    this.places = places;
    for (const [scope, distinctId, dueAt] of this.st.all.iterate()) this.placesOf(scope).set(distinctId, dueAt);
  }

  private placesOf(scope: string): Map<string, number> {
    let m = this.places!.get(scope);
    if (!m) this.places!.set(scope, (m = new Map()));
    return m;
  }
}
