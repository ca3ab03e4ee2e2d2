#!/usr/bin/env node
// Flow Library readiness: runs `node-red-dev validate` (the scorecard flows.nodered.org shows) on the packed package
// and fails unless every check passes.
//
// node-red-dev fetches https://catalogue.nodered.org/catalogue.json with its own copy of axios (a literal URL in
// src/libs/checkpackage.js and checknodes.js; no setting or env var changes it). That host is unreachable here, so a
// preload wraps that axios's `get` and sends catalogue requests to a local stub served on 127.0.0.1; everything else
// (the npm registry look-ups for P06/P07/D02/D03) goes out unchanged. node-red-dev itself is installed into
// .tmp/tools/nrdev (git-ignored), not into the project.
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const toolDir = path.join(root, '.tmp', 'tools', 'nrdev');
const outDir = path.join(root, '.tmp', 'flow-library');
const NRDEV = process.env.NODE_RED_DEV_VERSION || '0.1.6';

function ensureTool() {
  const bin = path.join(toolDir, 'node_modules', 'node-red-dev', 'bin', 'run');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(toolDir, { recursive: true });
  if (!fs.existsSync(path.join(toolDir, 'package.json'))) fs.writeFileSync(path.join(toolDir, 'package.json'), JSON.stringify({ name: 'nrdev-tools', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', `node-red-dev@${NRDEV}`], { cwd: toolDir, stdio: 'inherit' });
  return bin;
}

/** The packed package, unpacked: exactly the files a user (and the Flow Library) gets. */
function packed() {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', outDir], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop();
  execFileSync('tar', ['-xzf', path.join(outDir, name), '-C', outDir]);
  return path.join(outDir, 'package');
}

/** A catalogue in the shape catalogue.nodered.org serves, holding a few well-known modules and their node types. */
const STUB_CATALOGUE = {
  name: 'Local stub of the Node-RED community catalogue (for node-red-dev validate)',
  updated_at: new Date().toISOString(),
  modules: [
    { id: 'node-red-dashboard', version: '3.6.6', description: 'A set of dashboard nodes for Node-RED', keywords: ['node-red'], types: ['ui_button', 'ui_text', 'ui_chart'], updated_at: '2024-01-01T00:00:00Z' },
    { id: 'node-red-contrib-influxdb', version: '0.7.0', description: 'Node-RED nodes to save and query data from an influxdb time series database', keywords: ['node-red'], types: ['influxdb', 'influxdb out', 'influxdb in'], updated_at: '2023-12-30T00:00:00Z' },
    { id: 'node-red-node-mysql', version: '2.0.0', description: 'A Node-RED node to read and write to a MySQL database', keywords: ['node-red'], types: ['MySQLdatabase', 'mysql'], updated_at: '2023-06-01T00:00:00Z' },
  ],
};

async function main() {
  const bin = ensureTool();
  const pkgDir = packed();
  const server = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(STUB_CATALOGUE));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const stubUrl = `http://127.0.0.1:${server.address().port}`;
  const preload = path.join(outDir, 'catalogue-stub.js');
  const axiosPath = require.resolve('axios', { paths: [path.join(toolDir, 'node_modules', 'node-red-dev', 'src', 'libs')] });
  fs.writeFileSync(preload, `'use strict';
const axios = require(${JSON.stringify(axiosPath)});
const get = axios.get.bind(axios);
axios.get = (url, ...rest) => get(String(url).replace(/^https:\\/\\/catalogue\\.nodered\\.org/, ${JSON.stringify(stubUrl)}), ...rest);
`);
  const scorecard = path.join(outDir, 'scorecard.json');
  // Asynchronous spawn: the stub server lives in this process and must keep answering while the tool runs.
  const child = spawn(process.execPath, [bin, 'validate', '-p', pkgDir, '-o', scorecard], {
    cwd: root,
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS || ''} --require ${preload}`.trim() },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const status = await new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  server.close();
  if (!fs.existsSync(scorecard)) throw new Error(`node-red-dev validate wrote no scorecard (exit ${status})`);
  const card = JSON.parse(fs.readFileSync(scorecard, 'utf8'));
  const failed = Object.entries(card).filter(([k, v]) => /^[PND]\d\d$/.test(k) && v && v.test !== true).map(([k]) => k);
  const checks = Object.keys(card).filter((k) => /^[PND]\d\d$/.test(k));
  console.log(`\n[flow-library] ${checks.length} checks (${checks.join(' ')}): ${failed.length ? `FAILED ${failed.join(' ')}` : 'all passed'}`);
  console.log(`[flow-library] scorecard: ${path.relative(root, scorecard)}`);
  if (failed.length) process.exit(1);
}

main().catch((err) => {
  console.error('[flow-library]', err.message);
  process.exit(1);
});
