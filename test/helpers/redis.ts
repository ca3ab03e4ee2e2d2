import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePort } from './red-process';

/**
 * Redis for tests. `npm test` starts one redis-server on 127.0.0.1 and exports REDIS_URL; a suite run on its own
 * (plain `npx mocha …`) starts its own. An unreachable REDIS_URL fails the tests: they never skip.
 */
export interface RedisServer {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Kills the server (like a crash: no save) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** Resolves when the Redis at `url` answers PING within `ms`. */
export function pingRedis(url: string, ms: number): Promise<void> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port || 6379), u.hostname);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`redis at ${url} did not answer`)); }, ms);
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (b: Buffer) => {
      clearTimeout(timer);
      s.end();
      // NOAUTH (a password-protected server) still proves it listens.
      if (/^(\+PONG|-NOAUTH)/.test(b.toString())) resolve();
      else reject(new Error(`redis at ${url} answered ${JSON.stringify(b.toString().slice(0, 80))}`));
    });
    s.once('error', (err) => { clearTimeout(timer); s.destroy(); reject(new Error(`redis at ${url} is unreachable: ${err.message}`)); });
  });
}

/** A redis-server on 127.0.0.1 without persistence, on `port` (a free one by default), ready when this resolves. */
export async function startRedisServer(port?: number, extra: string[] = []): Promise<RedisServer> {
  const p = port ?? (await freePort());
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${p}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      await pingRedis(url, 1000);
      break;
    } catch (err) {
      if (Date.now() > deadline || proc.exitCode !== null) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    port: p,
    proc,
    stop: () => new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    }),
  };
}

let own: RedisServer | undefined;

/** REDIS_URL when set (checked, so an unreachable one fails), else one redis-server of our own per test process. */
export async function redisTestUrl(): Promise<string> {
  if (process.env.REDIS_URL) {
    await pingRedis(process.env.REDIS_URL, 5000);
    return process.env.REDIS_URL;
  }
  if (!own) {
    own = await startRedisServer();
    const server = own;
    process.once('exit', () => server.proc.kill('SIGKILL'));
  }
  return own.url;
}
