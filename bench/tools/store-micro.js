#!/usr/bin/env node
// Micro-benchmark of the SQLite audience store's hot path, outside Node-RED: updateMemberships (1000 users a call),
// claimDue (2000), ack. `lag` is how many updates wait in the outbox before a claim: in node-red at full speed
// ~16,000 wait (16 messages of 1000 in flight), and what the outbox costs depends on it.
// Usage: node bench/tools/store-micro.js [n=100000] [lag=2000]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { openSqliteStore } = require('../../dist/src/store/sqlite');
const { forwardAudienceMessage } = require('../../dist/src/audience/forwarder');
const { AudienceOutSettings } = require('../../dist/src/schemas/settings');
const { firehoseRequest } = require('../lib/records');

const N = Number(process.argv[2] || 100000);
const LAG = Number(process.argv[3] || 2000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-micro-'));
const store = openSqliteStore(path.join(dir, 'a.db'));
const settings = AudienceOutSettings.parse({ perAudienceAttribute: true });
const t = { forward: 0, claim: 0, ack: 0 };
const now = () => process.hrtime.bigint();
(async () => {
  const messages = [];
  for (let i = 0; i < N; i += 1000) messages.push(firehoseRequest(i, Math.min(1000, N - i)));
  const cpu0 = process.cpuUsage();
  let waiting = 0;
  for (const msg of messages) {
    let a = now();
    await forwardAudienceMessage({ store: store.audience, scope: 's', settings, now: Date.now }, msg);
    t.forward += Number(now() - a);
    waiting += msg.user_profiles.length;
    while (waiting >= LAG) {
      a = now();
      const items = await store.audience.claimDue('s', 2000, Date.now() + 1000, 60000);
      t.claim += Number(now() - a);
      a = now();
      await store.audience.ack('s', items, Date.now());
      t.ack += Number(now() - a);
      waiting -= items.length;
      if (items.length === 0) break;
    }
  }
  // Process CPU includes the checkpoint worker thread.
  const cpu = process.cpuUsage(cpu0);
  const per = (x) => `${(x / N / 1000).toFixed(2)} µs/update`;
  console.log(`N=${N} lag=${LAG}: forward ${per(t.forward)}, claimDue ${per(t.claim)}, ack ${per(t.ack)}; process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s = ${((cpu.user + cpu.system) / N).toFixed(1)} µs/update`);
  console.log(await store.audience.stats('s'));
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
})();
