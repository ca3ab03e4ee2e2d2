#!/usr/bin/env node
// `npm start`: a local Node-RED (the 4.1.x from devDependencies) on http://127.0.0.1:1880 with this package
// loaded and the audience example deployed. With MIXPANEL_TOKEN set it sends to Mixpanel for real (MIXPANEL_REGION:
// us, eu or in); without it the Mixpanel config runs in dry run, so the flow works for a newcomer straight away.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = process.env.NODE_RED_USER_DIR || path.join(root, '.tmp', 'userdir');
const port = Number(process.env.PORT || 1880);
const pkg = require(path.join(root, 'package.json'));

fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
// Install this package into the userDir the way `npm install <folder>` does: a link Node-RED finds in node_modules.
const link = path.join(userDir, 'node_modules', pkg.name);
fs.rmSync(link, { recursive: true, force: true });
fs.symlinkSync(root, link, 'dir');
fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'mixpanel-sync-demo', private: true, dependencies: { [pkg.name]: `file:${root}` } }, null, 2));

fs.writeFileSync(path.join(userDir, 'settings.js'), `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: ${port},
  flowFile: 'flows.json',
  credentialSecret: false,
  telemetry: { enabled: false },
  diagnostics: { enabled: false },
  editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
  logging: { console: { level: 'info', metrics: false, audit: false } },
};
`);

// The example flow, in its own tab, with the Mixpanel config read from the environment.
const example = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'mixpanel-audience-out.json'), 'utf8'));
const tab = { id: 'demo-tab-000001', type: 'tab', label: 'Mixpanel audience demo' };
const flows = [tab, ...example.map((n) => {
  if (n.type === 'mixpanel-config') return { ...n, region: '${MIXPANEL_REGION}', dryRun: '${MIXPANEL_DRY_RUN}' };
  return n.type.startsWith('mixpanel-') && n.type.endsWith('-config') ? n : { ...n, z: tab.id };
})];
const cfg = example.find((n) => n.type === 'mixpanel-config');
fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows, null, 2));
fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify({ [cfg.id]: { token: '${MIXPANEL_TOKEN}' } }, null, 2));

const token = (process.env.MIXPANEL_TOKEN || '').trim();
const env = { ...process.env, MIXPANEL_DRY_RUN: token ? 'false' : 'true', MIXPANEL_REGION: process.env.MIXPANEL_REGION || 'us' };
console.log(token
  ? `[start] sending to Mixpanel (region ${env.MIXPANEL_REGION})`
  : '[start] no MIXPANEL_TOKEN: the Mixpanel config runs in dry run (requests are built and checked, not sent)');
console.log(`[start] Node-RED editor: http://127.0.0.1:${port}/  (userDir ${path.relative(root, userDir) || userDir})`);

const red = spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js'), '--port', String(port)], { stdio: 'inherit', env });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => red.kill(sig));
red.on('exit', (code) => process.exit(code ?? 0));
