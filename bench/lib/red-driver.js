'use strict';
// Loaded inside the node-red process (settings.js `functionGlobalContext.bench`). A function node registers itself
// at flow start ("On Start": `global.get('bench').register(node)`) and the driver sends the benchmark's messages
// through it into mixpanel-audience-out, keeping `window` messages in flight (closed loop). The node's output goes
// to another function node that calls `out(msg)`: enqueue→output latency per message (output = Mixpanel acknowledged,
// outputWhen 'acked'). CPU is this process's own process.cpuUsage(); RSS is sampled every 20 ms and read as VmHWM.
// The harness talks to it over a loopback control port (BENCH_CTL_PORT): POST /run, GET /status, POST /stats.
const fs = require('node:fs');
const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { firehoseRequest, plainChange } = require('./records');

let gen = null;
let run = null;
let statsWaiters = [];

function vmHwmMb() {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

function quantile(sorted, q) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function buildMessage(r) {
  const from = r.offset + r.nextUpdate;
  const count = Math.min(r.perMsg, r.n - r.nextUpdate);
  r.nextUpdate += count;
  const payload = r.shape === 'plain'
    ? (count === 1 ? plainChange(from) : Array.from({ length: count }, (_, k) => plainChange(from + k)))
    : firehoseRequest(from, count);
  return { payload, _bench: { t: performance.now(), count } };
}

function pump() {
  const r = run;
  if (!r || r.finished) return;
  while (r.inflight < r.window && r.nextUpdate < r.n) {
    const msg = buildMessage(r);
    r.inflight += 1;
    r.sentMsgs += 1;
    gen.send(msg, false); // no clone: the driver never touches a message again
  }
}

function finish(r, why) {
  if (r.finished) return;
  r.finished = why;
  r.t1 = performance.now();
  r.cpu1 = process.cpuUsage(r.cpu0);
  clearInterval(r.sampler);
  clearTimeout(r.deadline);
}

const api = {
  register(node) {
    gen = node;
  },
  out(msg) {
    if (msg && msg._benchStats) {
      const w = statsWaiters;
      statsWaiters = [];
      for (const resolve of w) resolve(msg.payload);
      return;
    }
    const r = run;
    const b = msg && msg._bench;
    if (!r || !b || r.finished) return;
    const now = performance.now();
    r.lat.push(now - b.t);
    r.inflight -= 1;
    r.outMsgs += 1;
    r.outUpdates += b.count;
    const res = msg.result || {};
    r.acked += (res.sent || []).length;
    r.failed += (res.failed || []).length;
    r.rejected += (res.rejected || []).length;
    r.queued += (res.queued || []).length;
    if (r.outUpdates >= r.n) finish(r, 'done');
    else pump();
  },
  err(msg) {
    if (!run) return;
    run.errors += 1;
    if (run.errorSamples.length < 3) run.errorSamples.push(String(msg && msg.error && msg.error.message).slice(0, 300));
  },
};

function startRun(cfg) {
  if (!gen) throw new Error('the generator node has not registered');
  const r = {
    n: cfg.n, perMsg: cfg.perMsg || 1000, shape: cfg.shape || 'firehose', window: cfg.window || 32, offset: cfg.offset || 0,
    nextUpdate: 0, inflight: 0, sentMsgs: 0, outMsgs: 0, outUpdates: 0, acked: 0, failed: 0, rejected: 0, queued: 0,
    errors: 0, errorSamples: [], lat: [], peakRss: 0, finished: null,
    t0: performance.now(), cpu0: process.cpuUsage(),
  };
  r.sampler = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > r.peakRss) r.peakRss = rss;
  }, 20);
  r.deadline = setTimeout(() => finish(r, 'deadline'), cfg.deadlineMs || 600000);
  run = r;
  setImmediate(pump);
}

function status() {
  const r = run;
  if (!r) return { registered: !!gen, running: false, rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb() };
  const end = r.finished ? r.t1 : performance.now();
  const cpu = r.finished ? r.cpu1 : process.cpuUsage(r.cpu0);
  const sorted = Float64Array.from(r.lat).sort();
  return {
    registered: !!gen, running: !r.finished, finished: r.finished,
    n: r.n, sentMsgs: r.sentMsgs, outMsgs: r.outMsgs, outUpdates: r.outUpdates,
    acked: r.acked, failed: r.failed, rejected: r.rejected, queued: r.queued, errors: r.errors, errorSamples: r.errorSamples,
    wallSec: (end - r.t0) / 1000, cpuSec: (cpu.user + cpu.system) / 1e6,
    p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), maxMs: sorted.length ? sorted[sorted.length - 1] : 0,
    peakRssMb: r.peakRss / 1048576, rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb(),
  };
}

/** The node's own counters: a `stats` message through the node (accepted, acked, dead, pending, profiles). */
function nodeStats() {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no stats reply')), 10000);
    statsWaiters.push((p) => {
      clearTimeout(t);
      resolve(p);
    });
    gen.send({ topic: 'stats', _benchStats: true }, false);
  });
}

const port = Number(process.env.BENCH_CTL_PORT || 0);
if (port) {
  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (b) => chunks.push(b));
    req.on('end', async () => {
      const reply = (code, o) => {
        res.writeHead(code, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(o));
      };
      try {
        const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
        if (req.url === '/run') {
          startRun(body);
          return reply(200, { ok: true });
        }
        if (req.url === '/status') return reply(200, status());
        if (req.url === '/stats') return reply(200, await nodeStats());
        return reply(404, {});
      } catch (err) {
        return reply(500, { error: String(err && err.message || err) });
      }
    });
  }).listen(port, '127.0.0.1');
}

module.exports = api;
