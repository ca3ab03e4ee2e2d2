#!/usr/bin/env node
// Micro-benchmark of mixpanel-cohort-in's store path outside Node-RED (SQLite): a first `members` export of P pages
// × 1000 (all new), then a recurring export with 2 % replaced, timing stageMembersPage per member and the slowest
// pages. Usage: node bench/tools/cohort-micro.js [pages=200]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { openSqliteStore } = require('../../dist/src/store/sqlite');

const P = Number(process.argv[2] || 200);
const N = P * 1000;
const { memberDigits } = require('../lib/records');

// Member IDs scattered as in the benchmark (digits reversed): real distinct IDs and MPIDs come in no order.
const ref = (i) => ({ distinctId: `mp-${memberDigits(i)}`, mpid: `7${memberDigits(i).padStart(18, '0')}`, email: `user${i}@example.com` });
const memberAt = (p, recurring) => ref(recurring && p % 50 === 7 ? N + Math.floor(p / 50) : p);
const hr = () => process.hrtime.bigint();

async function exportOnce(store, session, recurring) {
  let ns = 0;
  const slow = [];
  let added = 0;
  let removed = 0;
  for (let page = 1; page <= P; page++) {
    const members = [];
    for (let p = (page - 1) * 1000; p < page * 1000; p++) members.push(memberAt(p, recurring));
    const a = hr();
    const r = await store.cohorts.stageMembersPage('2195193/5471208', session, page, P, members, Date.now());
    const d = Number(hr() - a);
    ns += d;
    slow.push([d, page]);
    added += r.added.length;
    removed += r.removed.length;
  }
  slow.sort((x, y) => y[0] - x[0]);
  const worst = slow.slice(0, 4).map(([d, p]) => `p${p} ${(d / 1e6).toFixed(1)} ms`).join(', ');
  return `${(ns / N / 1000).toFixed(2)} µs/member (${(N / (ns / 1e9)).toFixed(0)}/s); slowest pages ${worst}; +${added} −${removed}`;
}

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cohort-micro-'));
  const store = openSqliteStore(path.join(dir, 'c.db'));
  const first = await exportOnce(store, 'e1', false);
  const second = await exportOnce(store, 'e2', true);
  console.log(`first export ${first}\nrecurring export ${second}`);
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
})();
