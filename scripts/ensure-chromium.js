#!/usr/bin/env node
// Makes sure Debian's Chromium is installed for the editor's browser tests (playwright-core drives it; no browser
// is ever downloaded by a test tool). Installs `chromium` with apt-get when /usr/bin/chromium is missing.
'use strict';
const fs = require('node:fs');
const { execSync } = require('node:child_process');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function ensureChromium() {
  if (fs.existsSync(CHROMIUM)) return CHROMIUM;
  console.log(`[test] ${CHROMIUM} is missing: installing Debian's chromium with apt-get`);
  const sudo = process.getuid && process.getuid() === 0 ? '' : 'sudo ';
  execSync(`${sudo}apt-get update -qq && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium`, { stdio: 'inherit' });
  if (!fs.existsSync(CHROMIUM)) throw new Error(`apt-get install chromium did not provide ${CHROMIUM}`);
  return CHROMIUM;
}

module.exports = { ensureChromium, CHROMIUM };
if (require.main === module) ensureChromium();
