#!/usr/bin/env node
// Micro-benchmark of identity-resolve's resolve path outside Node-RED (SQLite store): learn N profiles, then time
// processIdentities (mode resolve) on arrays of 1000, and split it: the store's resolve alone, its one batched
// statement bare (link → public part for a whole array), JSON.parse of the rows, and the rest (parse input, describe,
// sort). Full bench size: node bench/tools/identity-micro.js 200000 500000.
// Usage: node bench/tools/identity-micro.js [learn=50000] [lookups=200000]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Database = require('better-sqlite3');
const { openSqliteStore } = require('../../dist/src/store/sqlite');
const { processIdentities } = require('../../dist/src/identity/process');
const { parseIdentityInput } = require('../../dist/src/identity/parse');
const { IdentityResolveSettings } = require('../../dist/src/schemas/identity');

const LEARN = Number(process.argv[2] || 50000);
const N = Number(process.argv[3] || 200000);
const mpidOf = (i) => `7${String(i).padStart(18, '0')}`;
const idfvOf = (i) => `6B1D0E3A-0000-4000-8000-${i.toString(16).toUpperCase().padStart(12, '0')}`;
const KINDS = ['customer_id', 'email', 'ios_idfv', 'mpid'];
const resolveUser = (j) => {
  const i = (j * 7919 + 13) % LEARN;
  const kind = KINDS[j & 3];
  return { [kind]: kind === 'customer_id' ? `cust-${i}` : kind === 'email' ? `user${i}@example.com` : kind === 'ios_idfv' ? idfvOf(i) : mpidOf(i) };
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'identity-micro-'));
const file = path.join(dir, 'i.db');
// Every resolve on the main thread (no read worker): this splits the work of one resolve, not the two threads' overlap.
const store = openSqliteStore(file, { readWorkerFrom: Number.MAX_SAFE_INTEGER });
const hr = () => process.hrtime.bigint();
(async () => {
  let a = hr();
  for (let i = 0; i < LEARN; i += 1000) {
    const batch = [];
    for (let k = i; k < Math.min(LEARN, i + 1000); k++) batch.push({ mpid: mpidOf(k), customer_id: `cust-${k}`, email: `user${k}@example.com`, ios_idfv: idfvOf(k) });
    await store.identities.learn(parseIdentityInput(batch).items, Date.now());
  }
  const learnNs = Number(hr() - a);
  const settings = IdentityResolveSettings.parse({ mode: 'resolve' });
  const msgs = [];
  for (let j = 0; j < N; j += 1000) msgs.push(Array.from({ length: Math.min(1000, N - j) }, (_, k) => resolveUser(j + k)));
  const t = { process: 0, storeResolve: 0, parse: 0, statement: 0, jsonParse: 0, joinPerId: 0 };
  let unresolved = 0;
  for (const m of msgs) {
    a = hr();
    const o = await processIdentities(store.identities, settings, m, Date.now());
    t.process += Number(hr() - a);
    unresolved += o.unresolved.length;
    a = hr();
    const items = parseIdentityInput(m).items;
    t.parse += Number(hr() - a);
    a = hr();
    await store.identities.resolve(items);
    t.storeResolve += Number(hr() - a);
  }
  await store.close();
  // The store's resolve statement bare, on the same file (own connection, the store's pragmas), then JSON.parse of the
  // public parts it returns, and for comparison the earlier shape: one joined statement per identity reading the
  // whole profile JSON (links history included), parsed.
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('locking_mode = EXCLUSIVE');
  db.pragma('cache_size = -16384');
  const linkIds = msgs.map((m) => m.map((u) => {
    const [k, v] = Object.entries(u)[0];
    return `${k}:${k === 'email' ? v.toLowerCase() : v}`;
  }));
  const many = db.prepare(`SELECT j.key, l.pkey, p.mpid, p.identities FROM json_each(?) AS j
    CROSS JOIN id_links AS l ON l.link = j.value CROSS JOIN id_public AS p ON p.pkey = l.pkey`).raw();
  const rows = [];
  a = hr();
  db.transaction(() => { for (const ids of linkIds) rows.push(many.all(JSON.stringify(ids))); })();
  t.statement = Number(hr() - a);
  let found = 0;
  a = hr();
  for (const rs of rows) for (const r of rs) { JSON.parse(r[3]); found++; }
  t.jsonParse = Number(hr() - a);
  const join = db.prepare('SELECT p.data FROM id_links l JOIN id_profiles p ON p.pkey = l.pkey WHERE l.link = ?').pluck();
  a = hr();
  db.transaction(() => { for (const ids of linkIds) for (const id of ids) JSON.parse(join.get(id)); })();
  t.joinPerId = Number(hr() - a);
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const us = (x) => `${(x / N / 1000).toFixed(2)} µs`;
  console.log(`learn ${LEARN}: ${(LEARN / (learnNs / 1e9)).toFixed(0)} profiles/s; lookups ${N} (unresolved ${unresolved}; bare statement hits ${found})`);
  console.log(`per lookup: processIdentities ${us(t.process)} (= ${(N / (t.process / 1e9)).toFixed(0)}/s) | store.resolve ${us(t.storeResolve)} | parseIdentityInput ${us(t.parse)} | rest (describe, sort, …) ${us(t.process - t.storeResolve - t.parse)}`);
  console.log(`  inside store.resolve: the batched statement bare ${us(t.statement)}, JSON.parse of the public part ${us(t.jsonParse)}, the rest (ordering, mapping, objects) ${us(t.storeResolve - t.statement - t.jsonParse)}`);
  console.log(`  earlier shape: one joined statement per identity + JSON.parse of the whole profile ${us(t.joinPerId)}`);
})();
