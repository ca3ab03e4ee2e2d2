#!/usr/bin/env node
// Micro-benchmark of identity-resolve's resolve path outside Node-RED (SQLite store): learn N profiles, then time
// processIdentities (mode resolve) on arrays of 1000, and split it: the store's resolve alone, its two point queries
// (link, profile) bare, JSON.parse of the profile rows, and the rest (parse input, describe, sort).
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
const store = openSqliteStore(file);
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
  const t = { process: 0, storeResolve: 0, parse: 0, linkGet: 0, profileGet: 0, jsonParse: 0 };
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
  // The same two point queries, bare, on the same file (own connection, as the store's pragmas).
  const db = new Database(file, { readonly: true });
  db.pragma('cache_size = -65536');
  const link = db.prepare('SELECT pkey FROM id_links WHERE link = ?');
  const prof = db.prepare('SELECT data FROM id_profiles WHERE pkey = ?');
  const linkIds = msgs.flat().map((u) => {
    const [k, v] = Object.entries(u)[0];
    return `${k}:${k === 'email' ? v.toLowerCase() : v}`;
  });
  const keys = [];
  a = hr();
  db.transaction(() => { for (const id of linkIds) keys.push(link.get(id)?.pkey); })();
  t.linkGet = Number(hr() - a);
  const rows = [];
  a = hr();
  db.transaction(() => { for (const k of keys) rows.push(prof.get(k)); })();
  t.profileGet = Number(hr() - a);
  a = hr();
  for (const r of rows) if (r) JSON.parse(r.data);
  t.jsonParse = Number(hr() - a);
  // Alternatives for the store: pluck() (no row object) and one JOIN (link → profile data in one statement).
  const linkP = db.prepare('SELECT pkey FROM id_links WHERE link = ?').pluck();
  const join = db.prepare('SELECT p.data FROM id_links l JOIN id_profiles p ON p.pkey = l.pkey WHERE l.link = ?').pluck();
  a = hr();
  db.transaction(() => { for (const id of linkIds) linkP.get(id); })();
  t.linkPluck = Number(hr() - a);
  a = hr();
  db.transaction(() => { for (const id of linkIds) JSON.parse(join.get(id)); })();
  t.joinPluckParse = Number(hr() - a);
  const found = keys.filter(Boolean).length;
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const us = (x) => `${(x / N / 1000).toFixed(2)} µs`;
  console.log(`learn ${LEARN}: ${(LEARN / (learnNs / 1e9)).toFixed(0)} profiles/s; lookups ${N} (unresolved ${unresolved}; bare link hits ${found})`);
  console.log(`per lookup: processIdentities ${us(t.process)} (= ${(N / (t.process / 1e9)).toFixed(0)}/s) | store.resolve ${us(t.storeResolve)} | parseIdentityInput ${us(t.parse)} | rest (describe, sort, …) ${us(t.process - t.storeResolve - t.parse)}`);
  console.log(`  alternatives: link SELECT with pluck() ${us(t.linkPluck)}; one JOIN link→profile with pluck() + JSON.parse ${us(t.joinPluckParse)} (vs ${us(t.linkGet + t.profileGet + t.jsonParse)} now)`);
  console.log(`  inside store.resolve: bare link SELECT ${us(t.linkGet)}, bare profile SELECT ${us(t.profileGet)}, JSON.parse ${us(t.jsonParse)}, plan/overhead ${us(t.storeResolve - t.linkGet - t.profileGet - t.jsonParse)}`);
})();
