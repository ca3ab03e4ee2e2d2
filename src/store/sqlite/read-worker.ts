import { Worker } from 'node:worker_threads';

/**
 * The worker's whole program: a read-only connection of its own to the file and the statements it was given. A
 * request runs one statement once per parameter, all inside one read transaction (one snapshot), and answers with
 * the raw rows of each run.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { readonly: true, fileMustExist: true });
db.pragma('cache_size = ' + workerData.cacheSize);
const statements = {};
for (const [name, sql] of Object.entries(workerData.statements)) statements[name] = db.prepare(sql).raw();
const runAll = db.transaction((st, params) => params.map((p) => st.all(p)));
parentPort.on('message', (m) => {
  if (m === 'stop') {
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  try {
    parentPort.postMessage({ id: m.id, rows: runAll(statements[m.statement], m.params) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.message || err) });
  }
});
parentPort.postMessage({ ready: true });
`;

interface Pending {
  resolve(rows: unknown[][][]): void;
  reject(err: Error): void;
}

/**
 * Read-only statements on a worker thread, for reads big enough to hold Node-RED's event loop: identity-resolve's
 * arrays of 1000 spent ~10 ms each in one statement, and with the statement here the event loop runs other flows
 * meanwhile, and the two cores work at once (the node's own work on one, SQLite's on the other).
 *
 * Started on first use, not at open: a runtime that never sends a big array never pays its ~9 MB. The request that
 * starts it is not kept waiting: `available()` says no until the worker is ready, and the caller reads on its own
 * thread meanwhile (and for good, should the worker fail: reads on the main thread give the same answers).
 *
 * The worker sees the file as last committed, never the writer's memory: callers decide whether that is the state
 * they need (SqliteIdentityStore checks nothing changed while the worker read).
 */
export class SqliteReadWorker {
  private worker: Worker | undefined;
  private ready = false;
  private failed = false;
  private closing: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private readonly readyWaiters: Array<(ready: boolean) => void> = [];
  private seq = 0;

  constructor(private readonly file: string, private readonly statements: Record<string, string>, private readonly cacheSize = -4096) {}

  /** Whether a request would go to the worker now; starts the worker the first time it is asked. */
  available(): boolean {
    if (this.ready) return true;
    if (!this.worker && !this.failed && !this.closing) this.start();
    return false;
  }

  /** Starts the worker if need be; true once it is ready, false if it failed or is closed. */
  whenReady(): Promise<boolean> {
    if (this.available()) return Promise.resolve(true);
    if (this.failed || this.closing) return Promise.resolve(false);
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** Runs `statement` once per parameter in one read transaction; the rows of each run, in order. */
  all(statement: string, params: unknown[]): Promise<unknown[][][]> {
    const worker = this.worker;
    if (!this.ready || !worker) return Promise.reject(new Error('the read worker is not running'));
    return new Promise((resolve, reject) => {
      const id = this.seq++;
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref(); // keeps the process up only while a read is waiting for it
      worker.postMessage({ id, statement, params });
    });
  }

  private start(): void {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: require.resolve('better-sqlite3'), file: this.file, statements: this.statements, cacheSize: this.cacheSize },
      execArgv: [], // the runtime's flags (e.g. --cpu-prof) are no use to a plain SQLite connection
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    worker.unref();
    worker.on('message', (m: { ready?: boolean; id?: number; rows?: unknown[][][]; error?: string }) => {
      if (m.ready) {
        this.ready = !this.closing;
        this.wake();
        return;
      }
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.rows!);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', () => this.fail(new Error('the read worker stopped')));
  }

  /** The worker is gone: every waiting read fails (its caller reads on the main thread instead), and so do later ones. */
  private fail(err: Error): void {
    this.ready = false;
    this.failed = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.wake();
  }

  private wake(): void {
    for (const w of this.readyWaiters.splice(0)) w(this.ready);
  }

  /** Stops the worker; waiting reads fail (their callers read on the main thread). Resolves once it has exited. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ready = false;
      const worker = this.worker;
      if (!worker || this.failed) {
        this.fail(new Error('the read worker is closed'));
        if (worker) await worker.terminate();
        return;
      }
      // Its connection closes before it exits (a read-only connection holds no data, but a clean close is cheap).
      await new Promise<void>((resolve) => {
        const guard = setTimeout(() => { void worker.terminate().then(() => resolve(), () => resolve()); }, 5000);
        worker.once('exit', () => {
          clearTimeout(guard);
          resolve();
        });
        worker.on('message', (m: { closed?: boolean }) => { if (m.closed) void worker.terminate(); });
        worker.postMessage('stop');
      });
      this.fail(new Error('the read worker is closed'));
    })();
    return this.closing;
  }

  /** For tests: makes the worker fail as a crash would. */
  async crashForTest(): Promise<void> {
    await this.worker?.terminate();
  }
}
