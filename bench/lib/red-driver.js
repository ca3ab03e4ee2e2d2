'use strict';
// Loaded inside the node-red process (settings.js `functionGlobalContext.bench`). A function node registers itself
// at flow start ("On Start": `global.get('bench').register(node)`) and the driver sends the benchmark's messages
// through it into mixpanel-audience-out, keeping `window` messages in flight (closed loop). The node's output goes
// to another function node that calls `out(msg)`: enqueue→output latency per message (output = Mixpanel acknowledged,
// outputWhen 'acked'). CPU is this process's own process.cpuUsage(); RSS is sampled every 20 ms and read as VmHWM.
// The harness talks to it over a loopback control port (BENCH_CTL_PORT): POST /run, GET /status, POST /stats.
// identityResolve: generators registered by name ('learn', 'resolve') feed identity-resolve nodes (POST /idrun,
// GET /idstatus); cohortIn: mixpanel-cohort-in's outputs are counted member by member (POST /cohort-reset,
// GET /cohort-status). GET /proc: this process's CPU seconds, RSS and VmHWM.
const fs = require('node:fs');
const http = require('node:http');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const { firehoseRequest, plainChange, memberIndex } = require('./records');

let gen = null;
let run = null;
let statsWaiters = [];
const gens = {}; // named generators (identityResolve: 'learn', 'resolve')
let idRun = null; // identity-resolve closed loop (see startIdRun)
let cohort = null; // mixpanel-cohort-in output counters (see cohortReset)
// How long the event loop was held up (every flow of the runtime waits meanwhile), per run: max and p99 in ms.
let loopDelay = null;
function resetLoopDelay() {
  loopDelay?.disable();
  loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
}
function loopDelayMs() {
  return loopDelay ? { loopMaxMs: loopDelay.max / 1e6, loopP99Ms: loopDelay.percentile(99) / 1e6 } : {};
}

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
  loopDelay?.disable(); // the figures stay those of the run
  clearInterval(r.sampler);
  clearTimeout(r.deadline);
}

const api = {
  register(node, name) {
    if (name) gens[name] = node;
    else gen = node;
  },
  idOut(msg, port) {
    idOutput(msg, port);
  },
  idErr(msg) {
    idError(msg);
  },
  cohortOut(msg, port) {
    cohortOutput(msg, port);
  },
  cohortErr(msg) {
    if (!cohort) return;
    cohort.errors += 1;
    if (cohort.errorSamples.length < 3) cohort.errorSamples.push(String(msg && msg.error && msg.error.message).slice(0, 300));
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
  resetLoopDelay();
  run = r;
  setImmediate(pump);
}

function status() {
  const r = run;
  if (!r) return { registered: !!gen || Object.keys(gens).length > 0, running: false, rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb() };
  const end = r.finished ? r.t1 : performance.now();
  const cpu = r.finished ? r.cpu1 : process.cpuUsage(r.cpu0);
  const sorted = Float64Array.from(r.lat).sort();
  return {
    registered: !!gen, running: !r.finished, finished: r.finished,
    n: r.n, sentMsgs: r.sentMsgs, outMsgs: r.outMsgs, outUpdates: r.outUpdates,
    acked: r.acked, failed: r.failed, rejected: r.rejected, queued: r.queued, errors: r.errors, errorSamples: r.errorSamples,
    wallSec: (end - r.t0) / 1000, cpuSec: (cpu.user + cpu.system) / 1e6,
    p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), maxMs: sorted.length ? sorted[sorted.length - 1] : 0,
    peakRssMb: r.peakRss / 1048576, rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb(), ...loopDelayMs(),
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

// ---- identity-resolve: arrays of users through the node, `window` messages in flight (closed loop) -------------------
// learn(i): the profile {mpid, customer_id, email, ios_idfv} of user i. resolve(j): one identity of user
// (j * 7919 + 13) mod space (scattered over the learnt profiles), in turn customer_id, email, ios_idfv, mpid, so
// every lookup is a hit. Each resolved identity is checked: same profile (MPID) and distinct ID = customer ID.
const mpidOf = (i) => `7${String(i).padStart(18, '0')}`; // a decimal string, signed-64-bit range, like real MPIDs
const idfvOf = (i) => `6B1D0E3A-0000-4000-8000-${i.toString(16).toUpperCase().padStart(12, '0')}`;
const KINDS = ['customer_id', 'email', 'ios_idfv', 'mpid'];
function learnUser(i) {
  return { mpid: mpidOf(i), customer_id: `cust-${i}`, email: `user${i}@example.com`, ios_idfv: idfvOf(i) };
}
// The learn order, scattered over [0, n) (a multiplicative permutation): real MPIDs arrive in no order, and learning
// them in key order filled the store's B-trees page by page, a best case.
function scattered(x, n) {
  const p = n % 7919 === 0 ? 7907 : 7919;
  return (x * p) % n;
}
function resolveUser(j, space) {
  const i = (j * 7919 + 13) % space;
  const kind = KINDS[j & 3];
  const v = kind === 'customer_id' ? `cust-${i}` : kind === 'email' ? `user${i}@example.com` : kind === 'ios_idfv' ? idfvOf(i) : mpidOf(i);
  return { [kind]: v };
}

function idPump() {
  const r = idRun;
  if (!r || r.finished) return;
  const node = gens[r.kind];
  while (r.inflight < r.window && r.next < r.n) {
    const from = r.next;
    const count = Math.min(r.perMsg, r.n - from);
    r.next += count;
    const payload = new Array(count);
    for (let k = 0; k < count; k++) payload[k] = r.kind === 'learn' ? learnUser(r.offset + scattered(from + k, r.n)) : resolveUser(from + k, r.space);
    const id = ++r.seq;
    r.open.set(id, { t: performance.now(), left: count });
    r.inflight += 1;
    node.send({ payload, _bench: { id, count } }, false);
  }
}

function idSettle(r, id, n) {
  const m = r.open.get(id);
  if (!m) return;
  m.left -= n;
  if (m.left > 0) return;
  r.open.delete(id);
  r.lat.push(performance.now() - m.t);
  r.inflight -= 1;
  r.doneMsgs += 1;
  if (r.next >= r.n && r.inflight === 0) idFinish(r, 'done');
  else idPump();
}

function idOutput(msg, port) {
  const r = idRun;
  const b = msg && msg._bench;
  if (!r || !b || r.finished) return;
  if (port === 1) {
    const users = msg.payload;
    r.resolved += users.length;
    if (r.kind === 'resolve') {
      const ids = msg.identity;
      for (let k = 0; k < users.length; k++) {
        const u = users[k];
        const id = ids[k];
        const key = Object.keys(u)[0];
        const got = key === 'mpid' ? id.mpid : id.identities[key];
        if (got !== u[key] || !id.mpid || id.distinctId !== id.identities.customer_id || id.distinctId !== `cust-${Number(id.mpid.slice(1))}`) {
          r.wrong += 1;
          if (r.wrongSamples.length < 3) r.wrongSamples.push({ input: u, identity: id });
        }
      }
    }
    idSettle(r, b.id, users.length);
  } else {
    const n = Array.isArray(msg.unresolved) ? msg.unresolved.length : 1;
    r.unresolved += n;
    if (r.unresolvedSamples.length < 3) r.unresolvedSamples.push(Array.isArray(msg.unresolved) ? msg.unresolved[0] : msg.unresolved);
    idSettle(r, b.id, n);
  }
}

function idError(msg) {
  const r = idRun;
  if (!r) return;
  r.errors += 1;
  if (r.errorSamples.length < 3) r.errorSamples.push(String(msg && msg.error && msg.error.message).slice(0, 300));
  const b = msg && msg._bench;
  if (b && r.open.has(b.id)) idSettle(r, b.id, r.open.get(b.id).left); // the whole message failed: count it done
}

function idFinish(r, why) {
  if (r.finished) return;
  r.finished = why;
  r.t1 = performance.now();
  r.cpu1 = process.cpuUsage(r.cpu0);
  clearTimeout(r.deadline);
}

function startIdRun(cfg) {
  if (!gens[cfg.kind]) throw new Error(`the ${cfg.kind} generator node has not registered`);
  const r = {
    kind: cfg.kind, n: cfg.n, perMsg: cfg.perMsg || 1000, window: cfg.window || 4, space: cfg.space || cfg.n, offset: cfg.offset || 0,
    next: 0, seq: 0, inflight: 0, open: new Map(), doneMsgs: 0, resolved: 0, unresolved: 0, wrong: 0, wrongSamples: [],
    unresolvedSamples: [], errors: 0, errorSamples: [], lat: [], finished: null, t0: performance.now(), cpu0: process.cpuUsage(),
  };
  r.deadline = setTimeout(() => idFinish(r, 'deadline'), cfg.deadlineMs || 600000);
  idRun = r;
  setImmediate(idPump);
}

function idStatus() {
  const r = idRun;
  if (!r) return { running: false };
  const end = r.finished ? r.t1 : performance.now();
  const cpu = r.finished ? r.cpu1 : process.cpuUsage(r.cpu0);
  const sorted = Float64Array.from(r.lat).sort();
  return {
    running: !r.finished, finished: r.finished, kind: r.kind, n: r.n, perMsg: r.perMsg, window: r.window, space: r.space,
    sent: r.next, doneMsgs: r.doneMsgs, resolved: r.resolved, unresolved: r.unresolved, wrong: r.wrong, wrongSamples: r.wrongSamples,
    unresolvedSamples: r.unresolvedSamples, errors: r.errors, errorSamples: r.errorSamples,
    wallSec: (end - r.t0) / 1000, cpuSec: (cpu.user + cpu.system) / 1e6,
    p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), maxMs: sorted.length ? sorted[sorted.length - 1] : 0,
    rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb(),
  };
}

// ---- mixpanel-cohort-in: what comes out of the node ------------------------------------------------------------------
// Members are i = 0 … n-1 (MPID `7` + 11 zeros + memberDigits(i), scattered); a recurring export replaces members with p % mod === rem by new members
// n + ⌊p / mod⌋. Output 1 messages are counted member by member in bitmaps (true and false apart), so duplicates,
// losses and unexpected members all show. Output 2 (unmatched) is only counted.
function cohortReset(cfg) {
  resetLoopDelay();
  const size = cfg.n + Math.ceil(cfg.n / cfg.mod) + 1;
  cohort = {
    n: cfg.n, mod: cfg.mod, rem: cfg.rem, attribute: cfg.attribute,
    seenTrue: new Uint8Array(size), seenFalse: new Uint8Array(size),
    msgs: 0, trueCount: 0, falseCount: 0, trueUnique: 0, falseUnique: 0, trueNew: 0, trueOld: 0, falseChanged: 0, falseOther: 0,
    badBatches: 0, badSamples: [], errors: 0, errorSamples: [], unmatchedMsgs: 0, unmatched: 0, firstOutAt: 0, lastOutAt: 0,
  };
}

function cohortOutput(msg, port) {
  const c = cohort;
  if (!c) return;
  const now = Date.now();
  if (!c.firstOutAt) c.firstOutAt = now;
  c.lastOutAt = now;
  if (port === 2) {
    c.unmatchedMsgs += 1;
    c.unmatched += (msg.payload && msg.payload.count) || 0;
    return;
  }
  c.msgs += 1;
  const value = msg.cohort && msg.cohort.change === 'add';
  const batches = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
  for (const b of batches) {
    const v = b && b.user_attributes ? b.user_attributes[c.attribute] : undefined;
    const i = b && typeof b.mpid === 'string' && b.mpid.length === 19 ? memberIndex(b.mpid.slice(12)) : NaN;
    if (v !== value || !(i >= 0 && i < c.seenTrue.length) || b.environment !== 'production') {
      c.badBatches += 1;
      if (c.badSamples.length < 3) c.badSamples.push(JSON.stringify(b).slice(0, 300));
      continue;
    }
    const seen = value ? c.seenTrue : c.seenFalse;
    if (value) c.trueCount += 1;
    else c.falseCount += 1;
    if (seen[i]) continue;
    seen[i] = 1;
    if (value) {
      c.trueUnique += 1;
      if (i >= c.n) c.trueNew += 1;
      else c.trueOld += 1;
    } else {
      c.falseUnique += 1;
      if (i < c.n && i % c.mod === c.rem) c.falseChanged += 1;
      else c.falseOther += 1;
    }
  }
}

function cohortStatus() {
  if (!cohort) return {};
  const { seenTrue, seenFalse, badSamples, ...rest } = cohort;
  return { ...rest, badSamples, ...loopDelayMs() };
}

function procStatus() {
  const cpu = process.cpuUsage();
  return { cpuSec: (cpu.user + cpu.system) / 1e6, rssMb: process.memoryUsage.rss() / 1048576, vmHwmMb: vmHwmMb() };
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
        if (req.url === '/idrun') {
          startIdRun(body);
          return reply(200, { ok: true });
        }
        if (req.url === '/idstatus') return reply(200, idStatus());
        if (req.url === '/cohort-reset') {
          cohortReset(body);
          return reply(200, { ok: true });
        }
        if (req.url === '/cohort-status') return reply(200, cohortStatus());
        if (req.url === '/proc') return reply(200, procStatus());
        return reply(404, {});
      } catch (err) {
        return reply(500, { error: String(err && err.message || err) });
      }
    });
  }).listen(port, '127.0.0.1');
}

module.exports = api;
