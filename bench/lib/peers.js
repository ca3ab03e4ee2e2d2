'use strict';
// One peer run in a fresh process: `node peers.js <tool> <sinkUrl> <n> [options-json]`. Sends the same records as
// mixpanel-audience-out writes to the sink and prints one JSON line: {sent, failed, wallSec, cpuSec, peakRssMb, ...}.
// Records are generated lazily inside the timed region (a generator stream, one batch or one call at a time).
const fs = require('node:fs');
const { Readable } = require('node:stream');
const { record } = require('./records');

const [tool, sinkUrl, nArg, optsArg] = process.argv.slice(2);
const N = Number(nArg);
const opts = optsArg ? JSON.parse(optsArg) : {};
const sink = new URL(sinkUrl);

function peakRssMb() {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1048576;
}

function* gen(n) {
  for (let i = 0; i < n; i++) yield record(i);
}

async function runImport() {
  // mixpanel-import has no host option: its undici Pools are created with hard-coded *.mixpanel.com origins when the
  // module loads. Swap Pool for a subclass that points those origins at the sink (peer-bench.md, patch 1).
  const undici = require('undici');
  const Pool = undici.Pool;
  undici.Pool = class SinkPool extends Pool {
    constructor(origin, o) {
      super(/mixpanel\.com/.test(String(origin)) ? sink.origin : origin, o);
    }
  };
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const mp = require('mixpanel-import');
  const loadCpu = process.cpuUsage(cpu0);
  const start = process.hrtime.bigint();
  const summary = await mp({ token: 't' }, Readable.from(gen(N), { objectMode: true }), {
    recordType: 'user', region: 'US', verbose: false, logs: false, showProgress: false, ...opts,
  });
  const end = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  return {
    sent: summary.success, failed: summary.failed, rateLimitReported: summary.rateLimit, requestsReported: summary.requests,
    wallSec: Number(end - start) / 1e9, totalSec: Number(end - t0) / 1e9,
    cpuSec: (cpu.user + cpu.system) / 1e6, loadCpuSec: (loadCpu.user + loadCpu.system) / 1e6,
  };
}

async function runOfficial() {
  const Mixpanel = require('mixpanel');
  const mp = Mixpanel.init('t', { host: sink.hostname, port: Number(sink.port), protocol: 'http', verbose: true, keepAlive: true });
  const window = opts.window ?? 64;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  let next = 0;
  let sent = 0;
  let failed = 0;
  await new Promise((resolve) => {
    let active = 0;
    const pump = () => {
      while (active < window && next < N) {
        const r = record(next++);
        active += 1;
        mp.people.set(r.$distinct_id, r.$set, { $ignore_time: true, $ip: '0' }, (err) => {
          active -= 1;
          if (err) failed += 1;
          else sent += 1;
          if (next >= N && active === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const end = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  return { sent, failed, wallSec: Number(end - start) / 1e9, cpuSec: (cpu.user + cpu.system) / 1e6 };
}

async function runCeiling() {
  // The physical limit of this box: a keep-alive POST loop with no queue, no store and no retry.
  const { Pool } = require('undici');
  const conc = opts.concurrency ?? 8;
  const batch = 2000;
  const pool = new Pool(sink.origin, { connections: conc });
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  let next = 0;
  let sent = 0;
  let failed = 0;
  async function worker() {
    while (next < N) {
      const from = next;
      const to = Math.min(N, from + batch);
      next = to;
      const recs = new Array(to - from);
      for (let i = from; i < to; i++) recs[i - from] = record(i);
      const res = await pool.request({ path: '/engage?verbose=1&ip=0', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(recs) });
      const text = await res.body.text();
      if (res.statusCode === 200 && text.includes('"status":1')) sent += to - from;
      else failed += to - from;
    }
  }
  await Promise.all(Array.from({ length: conc }, worker));
  const end = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  await pool.close();
  return { sent, failed, wallSec: Number(end - start) / 1e9, cpuSec: (cpu.user + cpu.system) / 1e6 };
}

async function runCeilingClient() {
  // The same loop through this package's own /engage client (dist/src/mixpanel/engage-client.js: node:http with a
  // keep-alive agent), so the table shows what the client costs against the bare undici loop.
  const { createEngagePost } = require(require('node:path').resolve(__dirname, '..', '..', 'dist', 'src', 'mixpanel', 'engage-client.js'));
  const conc = opts.concurrency ?? 8;
  const client = createEngagePost(sink.origin);
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  let next = 0;
  let sent = 0;
  let failed = 0;
  async function worker() {
    while (next < N) {
      const from = next;
      const to = Math.min(N, from + 2000);
      next = to;
      const recs = new Array(to - from);
      for (let i = from; i < to; i++) recs[i - from] = record(i);
      const outcome = await client.post(JSON.stringify(recs));
      if (outcome.kind === 'ok') sent += to - from;
      else failed += to - from;
    }
  }
  await Promise.all(Array.from({ length: conc }, worker));
  const end = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  client.close();
  return { sent, failed, wallSec: Number(end - start) / 1e9, cpuSec: (cpu.user + cpu.system) / 1e6 };
}

const runs = { import: runImport, official: runOfficial, ceiling: runCeiling, 'ceiling-client': runCeilingClient };
const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: 'timed out' })}\n`);
  process.exit(2);
}, Number(opts.timeoutMs ?? 300000));
watchdog.unref();
runs[tool]().then((r) => {
  process.stdout.write(`\n${JSON.stringify({ ...r, n: N, peakRssMb: peakRssMb() })}\n`);
  process.exit(0);
}, (err) => {
  process.stdout.write(`\n${JSON.stringify({ error: String(err && err.stack || err) })}\n`);
  process.exit(1);
});
