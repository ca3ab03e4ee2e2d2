import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * A real `node-red` process with the packed package installed, for end-to-end and crash tests. The tarball from
 * `npm pack` is unpacked into `<userDir>/node_modules/<name>`, exactly the files a user gets; the userDir sits under
 * the repository's `.tmp/` so the package's dependencies resolve from the repository's node_modules (already built,
 * so better-sqlite3 is not compiled again for every test).
 */
const ROOT = path.resolve(__dirname, '..', '..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

let packed: string | undefined;

/** `npm pack` once per test run (the build already ran as part of `npm test`). */
export function packOnce(): string {
  if (packed && fs.existsSync(packed)) return packed;
  const out = path.join(ROOT, '.tmp', 'pack');
  fs.mkdirSync(out, { recursive: true });
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', out], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop()!;
  packed = path.join(out, name);
  return packed;
}

export function packedFiles(): string[] {
  return execFileSync('tar', ['-tzf', packOnce()], { encoding: 'utf8' }).trim().split('\n').map((f) => f.replace(/^package\//, ''));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedProcess {
  url: string;
  userDir: string;
  proc: ChildProcess;
  log: string[];
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function makeUserDir(label: string): string {
  const dir = path.join(ROOT, '.tmp', `e2e-${label}-${process.pid}-${Date.now()}`);
  const modules = path.join(dir, 'node_modules', PKG.name);
  fs.mkdirSync(modules, { recursive: true });
  execFileSync('tar', ['-xzf', packOnce(), '-C', modules, '--strip-components=1']);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'e2e', private: true, dependencies: { [PKG.name]: PKG.version } }));
  return dir;
}

/**
 * Starts Node-RED on a free port with the given flows (and plain-text credentials) and waits until flows run and the
 * HTTP server listens. (node-red's red.js calls listen only after the runtime has started, so "Started flows" can come
 * first, and a request sent then was refused: seen once in a full Node-RED 5 run.)
 */
export async function startRed(userDir: string, flows: unknown[], credentials: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<RedProcess> {
  const port = await freePort();
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows));
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials));
  fs.writeFileSync(path.join(userDir, 'settings.js'), `module.exports = {
    uiHost: '127.0.0.1', uiPort: ${port}, flowFile: 'flows.json', credentialSecret: false,
    telemetry: { enabled: false }, diagnostics: { enabled: false },
    editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
    mixpanelSync: { backoff: { baseMs: 20, maxMs: 200, jitterMinMs: 0, jitterMaxMs: 10 } },
    logging: { console: { level: 'info', metrics: false, audit: false } },
  };`);
  const proc = spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  const started = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node-red did not start:\n${log.join('')}`)), 30000);
    const onData = (b: Buffer) => {
      log.push(b.toString());
      const text = log.join('');
      if (/Started flows/.test(text) && /Server now running/.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node-red exited with ${code}:\n${log.join('')}`));
    });
  });
  await started;
  return {
    url: `http://127.0.0.1:${port}`,
    userDir,
    proc,
    log,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      return new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill(signal);
      });
    },
  };
}

export function removeUserDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
