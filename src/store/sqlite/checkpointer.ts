import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/**
 * The worker's whole program: its own connection to the file, a PASSIVE checkpoint whenever the WAL holds frames not
 * yet copied back, and the WAL's counts published in shared memory ([frames in the WAL, frames copied back]).
 * PASSIVE never waits for the writer and never blocks it.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const state = new Int32Array(workerData.state); // [frames in the WAL, frames copied back]
let db;
let stopping = false;
let next;
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopping = true;
  clearTimeout(next); // close now, not after the idle wait: a redeploy waits for this
  tick();
});
function tick() {
  if (stopping) {
    try { db?.close(); } catch {}
    parentPort.postMessage({ closed: true });
    return;
  }
  // Nothing to copy: look again soon. The main thread's bounds (restart, maxFrames) only know what the worker last
  // published, so a long idle wait would let a burst after a quiet spell grow the WAL unseen (measured: 1 s let a
  // 2-second burst reach 146 MB).
  let wait = workerData.idleMs;
  try {
    db ??= new Database(workerData.file, { fileMustExist: true });
    const r = db.pragma('wal_checkpoint(PASSIVE)')[0];
    Atomics.store(state, 0, r.log);
    Atomics.store(state, 1, r.checkpointed);
    if (r.log - r.checkpointed >= 256) wait = 0; // more came in meanwhile: copy it now
    else if (r.log > r.checkpointed) wait = 25;
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
    wait = 1000;
  }
  next = setTimeout(tick, wait);
}
tick();
`;

export interface CheckpointerOptions {
  /** Let the WAL start over once it holds this many frames (4 KB pages) and the worker has copied nearly all back. */
  restartFrames?: number;
  /** Copy back on the main thread anyway past this many frames: the disk cannot keep up, and the WAL must stay bounded. */
  maxFrames?: number;
  onError?: (message: string) => void;
}

/**
 * Checkpoints a WAL-mode SQLite file from a worker thread, so most of the copying back into the database file, and
 * its fsync, happen off Node-RED's event loop.
 *
 * Why: with SQLite's automatic checkpoint, every ~16 MB of WAL the writing call itself copied every frame back and
 * fsynced the file. With real (random) MPIDs each update dirties a page of its own, so that was a 16 MB copy and fsync
 * every few thousand updates, on the event loop: over half of audience-out's time, with every flow of the runtime
 * stalled meanwhile.
 *
 * The WAL only starts over when a write begins after everything in it was copied back, and under a steady stream the
 * worker is always a little behind. So between two transactions the main thread finishes the job once the WAL is
 * long enough and the worker is close behind: a PASSIVE checkpoint of the frames left; past `maxFrames` it does so
 * regardless. (Making writes wait for the worker instead was tried: an asynchronous gap in every store write, and
 * it stalled the pipeline.)
 */
export class BackgroundCheckpointer {
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(8));
  private readonly timer: NodeJS.Timeout;
  private readonly restartFrames: number;
  private readonly maxFrames: number;
  private closing: Promise<void> | undefined;
  private fellBack = false;
  /**
   * The WAL length at which the main thread last found it all copied back. The WAL only starts over at the next
   * write, so until one comes the worker keeps reporting that same length: checking again would be a checkpoint
   * every 50 ms that can do nothing (measured: ~5 % of the event loop while identity-resolve only read).
   */
  private copiedAllAt = -1;

  constructor(private readonly db: Database.Database, file: string, opts: CheckpointerOptions = {}) {
    this.restartFrames = opts.restartFrames ?? 4000;
    this.maxFrames = opts.maxFrames ?? 64000;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: require.resolve('better-sqlite3'), file, state: this.state.buffer, idleMs: 100 },
      // The worker has no use for the runtime's flags (e.g. --cpu-prof); it is a plain SQLite connection.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    this.worker.unref();
    this.worker.on('message', (m: { error?: string }) => { if (m.error) this.fallBack(m.error, opts.onError); });
    this.worker.on('error', (err) => this.fallBack(err.message, opts.onError));
    this.worker.on('exit', () => this.fallBack('the checkpoint worker stopped', opts.onError));
    this.timer = setInterval(() => this.maybeRestart(), 50);
    this.timer.unref();
  }

  /**
   * The worker failed (or stopped without being asked): hand checkpoints back to SQLite's automatic checkpoint in the
   * writing call, as before this class existed, so the WAL never grows without bound.
   */
  private fallBack(reason: string, onError: ((message: string) => void) | undefined): void {
    if (this.closing || this.fellBack) return;
    this.fellBack = true;
    clearInterval(this.timer);
    if (this.db.open) this.db.pragma('wal_autocheckpoint = 4000');
    void this.worker.terminate();
    onError?.(reason);
  }

  /** Between transactions: let the WAL start over if it is long and (nearly) all copied back, or far too long. */
  private maybeRestart(): void {
    if (this.closing || this.fellBack || !this.db.open) return;
    // How far the WAL is, as the worker last saw it.
    const log = Atomics.load(this.state, 0);
    const copied = Atomics.load(this.state, 1);
    if (log === this.copiedAllAt) return;
    if ((log >= this.restartFrames && log - copied <= this.restartFrames / 4) || log >= this.maxFrames) {
      try {
        const [r] = this.db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
        // The next write starts the WAL over; until the worker looks again, count it as empty.
        if (r && r.busy === 0 && r.log === r.checkpointed) {
          this.copiedAllAt = r.log;
          Atomics.store(this.state, 0, 0);
          Atomics.store(this.state, 1, 0);
        }
      } catch {
        // Busy or closing: the next tick tries again.
      }
    }
  }

  /** Stops the worker after its current checkpoint; resolves once its connection is closed. */
  close(): Promise<void> {
    if (this.fellBack) this.closing ??= Promise.resolve(); // the worker is gone already
    this.closing ??= new Promise<void>((resolve) => {
      clearInterval(this.timer);
      const done = (): void => {
        clearTimeout(guard);
        resolve();
      };
      const guard = setTimeout(() => { void this.worker.terminate().then(done, done); }, 5000);
      this.worker.once('exit', done);
      this.worker.on('message', (m: { closed?: boolean }) => { if (m.closed) void this.worker.terminate().then(done, done); });
      this.worker.postMessage('stop');
    });
    return this.closing;
  }
}
