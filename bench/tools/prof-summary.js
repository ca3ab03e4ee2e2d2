#!/usr/bin/env node
// Summarises a .cpuprofile: self time by function and by file, and inclusive time of functions matching a filter.
// Usage: node bench/tools/prof-summary.js FILE.cpuprofile [top=30] [inclusiveFilter]
'use strict';
const fs = require('node:fs');
const [file, topArg, filter] = process.argv.slice(2);
const top = Number(topArg || 30);
const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = prof.timeDeltas;
for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) || 0) + (dt[i] || 0));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children || []) parent.set(c, n.id);
const total = [...self.values()].reduce((a, b) => a + b, 0);
const short = (u) => (u || '').replace(/^file:\/\//, '').replace(/.*node_modules\//, 'nm/').replace(/.*\/dist\//, 'dist/');
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const agg = (f) => {
  const m = new Map();
  for (const [id, t] of self) {
    const k = f(byId.get(id));
    m.set(k, (m.get(k) || 0) + t);
  }
  return [...m].sort((a, b) => b[1] - a[1]);
};
const pct = (t) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
console.log(`total sampled ${(total / 1e6).toFixed(2)} s`);
console.log('\n-- self time by function');
for (const [k, t] of agg(key).slice(0, top)) console.log(pct(t), k);
console.log('\n-- self time by file/package');
for (const [k, t] of agg((n) => { const u = short(n.callFrame.url); return u.startsWith('nm/') ? u.split('/').slice(0, u.split('/')[1].startsWith('@') ? 3 : 2).join('/') : u || n.callFrame.functionName; }).slice(0, top)) console.log(pct(t), k);
if (filter) {
  // inclusive: a sample counts for a function if it appears anywhere on the stack (once per stack)
  const incl = new Map();
  for (const [id, t] of self) {
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      const k = key(n);
      if (!seen.has(k) && new RegExp(filter).test(k)) {
        seen.add(k);
        incl.set(k, (incl.get(k) || 0) + t);
      }
    }
  }
  console.log(`\n-- inclusive time, functions matching /${filter}/`);
  for (const [k, t] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(t), k);
}
