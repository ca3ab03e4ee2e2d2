#!/usr/bin/env node
// `npm test` after the build: makes sure everything the tests need is installed and running (a redis-server on
// 127.0.0.1, installed with apt when missing), then runs every mocha suite once and exits with mocha's code.
'use strict';
const { spawn, spawnSync, execSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const REDIS_PORT = Number(process.env.TEST_REDIS_PORT || 16379);

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureRedis() {
  if (have('redis-server')) return;
  console.log('[test] redis-server is missing: installing it with apt-get');
  const sudo = process.getuid && process.getuid() === 0 ? '' : 'sudo ';
  execSync(`${sudo}apt-get update -qq && ${sudo}DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server`, { stdio: 'inherit' });
}

function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.end(); resolve(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listens on 127.0.0.1:${port}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

async function main() {
  ensureRedis();
  const redis = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const stopRedis = () => { try { redis.kill('SIGTERM'); } catch { /* already gone */ } };
  process.on('exit', stopRedis);
  await waitForPort(REDIS_PORT, 10000);

  const suites = process.argv.slice(2);
  const defaults = ['test/unit/**/*.spec.ts', 'test/nodes/**/*.spec.ts', 'test/e2e/**/*.spec.ts'];
  // The editor's browser tests drive Debian's Chromium (installed with apt-get when /usr/bin/chromium is missing).
  const wantsBrowser = suites.length ? suites.some((s) => s.startsWith('test/browser')) : fs.existsSync(path.join(root, 'test', 'browser'));
  if (wantsBrowser) require('./ensure-chromium.js').ensureChromium();
  if (!suites.length && fs.existsSync(path.join(root, 'test', 'browser'))) defaults.push('test/browser/**/*.spec.ts');
  const args = suites.length ? suites : defaults;
  const mocha = spawn(process.execPath, [require.resolve('mocha/bin/mocha.js'), ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}` },
  });
  mocha.on('exit', (code, signal) => {
    stopRedis();
    process.exit(code ?? (signal ? 1 : 0));
  });
}

main().catch((err) => {
  console.error('[test]', err);
  process.exit(1);
});
