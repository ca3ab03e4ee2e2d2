import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import helper from 'node-red-node-test-helper';

/**
 * Loads our nodes into a real Node-RED runtime (node-red-node-test-helper) straight from the TypeScript sources.
 * Also serves the runtime's `RED.httpNode` app on a real port: the helper's own `request()` only reaches the admin
 * app, and webhook tests must send real HTTP requests to our routes.
 */
helper.init(require.resolve('node-red'));

export { helper };

const NODE_FILES = {
  'mixpanel-config': '../../nodes/mixpanel-config',
  'mixpanel-sync-store': '../../nodes/mixpanel-sync-store',
  'mixpanel-audience-out': '../../nodes/mixpanel-audience-out',
  'mixpanel-cohort-in': '../../nodes/mixpanel-cohort-in',
  'identity-resolve': '../../nodes/identity-resolve',
} as const;
export type NodeType = keyof typeof NODE_FILES;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Initializer = (RED: any) => void;

/** Our en-US message catalogs, interpolated the way i18next does (`__name__`). */
const catalog: Record<string, unknown> = {};
const localesDir = path.join(__dirname, '..', '..', 'nodes', 'locales', 'en-US');
for (const f of fs.readdirSync(localesDir)) {
  if (f.endsWith('.json')) Object.assign(catalog, JSON.parse(fs.readFileSync(path.join(localesDir, f), 'utf8')));
}
export function translate(key: string, vars: Record<string, unknown> = {}): string {
  let v: unknown = catalog;
  for (const part of key.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  if (typeof v !== 'string') return key;
  return v.replace(/__(\w+)__/g, (_, name: string) => String(vars[name] ?? ''));
}

let httpNodeApp: http.RequestListener | undefined;
let httpServer: http.Server | undefined;

/** The node modules to pass to `helper.load`, with the first one wrapped to capture `RED.httpNode`. */
export function nodeModules(...types: NodeType[]): Initializer[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mods = types.map((t) => require(NODE_FILES[t]) as Initializer);
  const [first, ...rest] = mods;
  const wrapped: Initializer = (RED) => {
    httpNodeApp = RED.httpNode;
    RED._ = translate; // the helper's RED._ returns keys; use our real en-US catalog so messages read as users see them
    return first(RED);
  };
  return [wrapped, ...rest];
}

/** Base URL of a real HTTP server in front of `RED.httpNode` (started on first use, on 127.0.0.1). */
export async function httpNodeUrl(): Promise<string> {
  if (!httpNodeApp) throw new Error('load the nodes with nodeModules(...) first');
  if (!httpServer) {
    const app = httpNodeApp;
    httpServer = http.createServer((req, res) => (httpNodeApp ?? app)(req, res));
    await new Promise<void>((resolve) => httpServer!.listen(0, '127.0.0.1', resolve));
  }
  return `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
}

export async function stopHttpNode(): Promise<void> {
  if (!httpServer) return;
  const s = httpServer;
  httpServer = undefined;
  s.closeAllConnections();
  await new Promise<void>((resolve) => s.close(() => resolve()));
}

/** A fresh temporary directory (a userDir or a SQLite file's home), removed by `cleanupTempDirs`. */
const temps: string[] = [];
export function tempDir(prefix = 'mpsync-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}
export function cleanupTempDirs(): void {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** Resolves with the next message a `helper` node receives (or rejects after `ms`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function nextMessage(nodeId: string, ms = 5000): Promise<any> {
  const n = helper.getNode(nodeId);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no message on ${nodeId} within ${ms} ms`)), ms);
    n.once('input', (msg: unknown) => {
      clearTimeout(t);
      resolve(msg);
    });
  });
}

/** Collects every message a `helper` node receives. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function collect(nodeId: string): any[] {
  const got: unknown[] = [];
  helper.getNode(nodeId).on('input', (msg: unknown) => got.push(msg));
  return got;
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
