#!/usr/bin/env node
// `npm run bench` (full) / `npm run bench -- --quick` (under 3 minutes): this package inside a real node-red process
// against a local Mixpanel-compatible sink, next to mixpanel-import, the official `mixpanel` client and a bare
// keep-alive POST loop (the ceiling), all sending the same profile updates to the same sink in one run.
//   --quick          smaller counts
//   --json FILE      also write the figures as JSON (always written to bench/results/)
//   --only a,b       run only these parts (audienceOut,audienceOutSingle,mixpanelImport,mixpanelNode,ceiling,ceilingClient,
//                    rateLimited,burst,cohortIn,identityResolve)
//   --cpu-prof       run node-red with --cpu-prof (profiles in bench/results/prof/)
//   --mem-trace      sample node-red's memory every 250 ms (bench/results/mem/<part>-<time>.jsonl, phases in the log;
//                    node-red's own output goes next to it as .log)
//   --red-arg X      extra node option for node-red, repeatable (diagnostics: --red-arg --trace-gc)
//   --window N       messages in flight for audienceOut; --cohort-window N: pages in flight for cohortIn (4)
//   --docs           write docs/benchmarks.md (default for a full run)
// Loopback only; every loop is bounded in count and time. Peer tools live in bench/node_modules (bench/package.json),
// installed on first run; they are never dependencies of the package.
'use strict';
const { execFileSync, fork, spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const BENCH = __dirname;
const ROOT = path.resolve(BENCH, '..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const RESULTS = path.join(BENCH, 'results');

// ---- arguments -----------------------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f) => {
  const i = argv.indexOf(f);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = flag('--quick');
const JSON_OUT = opt('--json');
const ONLY = opt('--only') ? new Set(opt('--only').split(',')) : null;
const CPU_PROF = flag('--cpu-prof');
const MEM_TRACE = flag('--mem-trace');
const RED_ARGS = argv.flatMap((a, i) => (a === '--red-arg' && argv[i + 1] ? [argv[i + 1]] : []));
const WRITE_DOCS = flag('--docs') || (!QUICK && !ONLY);
const want = (k) => !ONLY || ONLY.has(k);

const SIZES = QUICK
  ? { audienceOut: 150000, single: 15000, importN: 150000, official: 5000, ceiling: 300000, rateLimited: 120000, burst: 200000, cohortPages: 200, idLearn: 50000, idResolve: 200000 }
  : { audienceOut: 500000, single: 50000, importN: 500000, official: 20000, ceiling: 1000000, rateLimited: 300000, burst: 1000000, cohortPages: 1000, idLearn: 200000, idResolve: 500000 };
const COHORT_PAGE = 1000; // members per page of a Mixpanel `members` export
const COHORT_WINDOW = Number(opt('--cohort-window') || 4); // pages in flight (Mixpanel's sync posts a few at a time)
const COHORT_CHANGE_MOD = 50; // the recurring export replaces every 50th member (2 %)
const ID_WINDOW = 4; // identity-resolve messages (arrays of PER_MSG) in flight
const PER_MSG = 1000; // users per batch-shaped message (an mParticle Firehose audience_membership_change_request)
const RATE_LIMIT = 30000;

const log = (...a) => console.error('[bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 0) => (typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(d)) : x);

// ---- helpers ---------------------------------------------------------------------------------------------------------
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function request(port, p, body, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, path: p, method: data === undefined ? 'GET' : 'POST', agent: false, timeout: timeoutMs, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks = [];
      res.on('data', (b) => chunks.push(b));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          const o = JSON.parse(text);
          if (res.statusCode !== 200) reject(new Error(o.error || `HTTP ${res.statusCode}`));
          else resolve(o);
        } catch {
          reject(new Error(`bad control reply: ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`control request ${p} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

function vmHwmMb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

function ensureBenchDeps() {
  if (fs.existsSync(path.join(BENCH, 'node_modules', 'mixpanel-import', 'package.json')) && fs.existsSync(path.join(BENCH, 'node_modules', 'mixpanel', 'package.json'))) return;
  log('installing the peer tools into bench/node_modules (first run; npm ci from bench/package-lock.json)…');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: BENCH, stdio: ['ignore', 'ignore', 'inherit'] });
}

// ---- the sink ----------------------------------------------------------------------------------------------------------
async function startSink() {
  const child = fork(path.join(BENCH, 'lib', 'sink.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ports = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`sink exited with ${code}`)));
  });
  const ctl = (p) => request(ports.controlPort, p, undefined);
  return {
    url: `http://127.0.0.1:${ports.engagePort}`,
    stats: () => ctl('/stats'),
    reset: (n) => ctl(`/reset?bits=${n}`),
    rate: (r) => ctl(`/mode?rate=${r}`),
    down: () => ctl('/down'),
    up: () => ctl('/up'),
    stop: () => child.kill('SIGTERM'),
    pid: child.pid,
  };
}

// ---- node-red with the packed package ---------------------------------------------------------------------------
let packed;
function pack() {
  if (packed) return packed;
  const out = path.join(ROOT, '.tmp', 'bench-pack');
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', out], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop();
  packed = path.join(out, name);
  return packed;
}

function audienceFlow(sinkUrl, node, project = {}) {
  const tab = 'benchtab000001';
  return [
    { id: tab, type: 'tab', label: 'bench' },
    { id: 'benchmpcfg0001', type: 'mixpanel-config', name: 'sink', region: 'custom', apiHost: sinkUrl, dryRun: false, ...project },
    {
      id: 'benchgen000001', type: 'function', z: tab, name: 'generator', func: 'return null;', outputs: 1, timeout: 0, noerr: 0,
      initialize: "global.get('bench').register(node);", finalize: '', libs: [], wires: [['benchaud000001']],
    },
    {
      id: 'benchaud000001', type: 'mixpanel-audience-out', z: tab, name: '', mixpanel: 'benchmpcfg0001', store: '',
      useMixpanelPeople: true, perAudienceAttribute: true, identityTargets: ['customer_id', 'android_uuid', 'ios_advertising_id', 'ios_idfv'],
      targetMode: 'each', cleanupOnRemove: true, outputWhen: 'acked', batchSize: 2000, flushMs: 250, concurrency: 2, retryWindowSec: 86400,
      ...node, wires: [['benchcol000001']],
    },
    { id: 'benchcol000001', type: 'function', z: tab, name: 'collector', func: "global.get('bench').out(msg);\nreturn null;", outputs: 0, timeout: 0, noerr: 0, initialize: '', finalize: '', libs: [], wires: [] },
    { id: 'benchcat000001', type: 'catch', z: tab, name: '', scope: ['benchaud000001'], uncaught: false, wires: [['benchcer000001']] },
    { id: 'benchcer000001', type: 'function', z: tab, name: 'errors', func: "global.get('bench').err(msg);\nreturn null;", outputs: 0, timeout: 0, noerr: 0, initialize: '', finalize: '', libs: [], wires: [] },
  ];
}

async function startRed(label, flows, credentials, tuning = {}) {
  const userDir = path.join(ROOT, '.tmp', `bench-${label}-${process.pid}`);
  fs.rmSync(userDir, { recursive: true, force: true });
  const modules = path.join(userDir, 'node_modules', PKG.name);
  fs.mkdirSync(modules, { recursive: true });
  execFileSync('tar', ['-xzf', pack(), '-C', modules, '--strip-components=1']);
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'bench', private: true, dependencies: { [PKG.name]: PKG.version } }));
  const port = await freePort();
  const ctlPort = await freePort();
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows));
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials));
  fs.writeFileSync(path.join(userDir, 'settings.js'), `module.exports = {
    uiHost: '127.0.0.1', uiPort: ${port}, flowFile: 'flows.json', credentialSecret: false,
    telemetry: { enabled: false }, diagnostics: { enabled: false },
    editorTheme: { tours: false, projects: { enabled: false }, palette: { catalogues: [] } },
    functionGlobalContext: { bench: require(${JSON.stringify(path.join(BENCH, 'lib', 'red-driver.js'))}) },
    mixpanelSync: ${JSON.stringify(tuning)},
    logging: { console: { level: 'info', metrics: false, audit: false } },
  };`);
  const nodeArgs = [];
  if (CPU_PROF) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS, 'prof')}`, `--cpu-prof-name=node-red-${label}-${Date.now()}.cpuprofile`);
  nodeArgs.push(...RED_ARGS);
  const env = { ...process.env, BENCH_CTL_PORT: String(ctlPort) };
  let redLog;
  if (MEM_TRACE) {
    fs.mkdirSync(path.join(RESULTS, 'mem'), { recursive: true });
    const base = path.join(RESULTS, 'mem', `${label}-${Date.now()}`);
    env.BENCH_MEM_TRACE = `${base}.jsonl`;
    redLog = fs.createWriteStream(`${base}.log`);
    nodeArgs.push('-r', path.join(BENCH, 'tools', 'mem-trace.js'));
    log(`memory trace: ${env.BENCH_MEM_TRACE}`);
  }
  const proc = spawn(process.execPath, [...nodeArgs, require.resolve('node-red/red.js', { paths: [ROOT] }), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (redLog) {
    proc.stdout.pipe(redLog);
    proc.stderr.pipe(redLog);
  }
  const out = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node-red did not start:\n${out.join('')}`)), 30000);
    // Flows running and the HTTP server listening: red.js listens only after the runtime has started.
    let flows = false;
    let listening = false;
    proc.stdout.on('data', (b) => {
      const text = b.toString();
      out.push(text);
      if (out.length > 200) out.splice(0, 100);
      flows ||= /Started flows/.test(text);
      listening ||= /Server now running/.test(text);
      if (flows && listening) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.stderr.on('data', (b) => out.push(b.toString()));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node-red exited with ${code}:\n${out.join('')}`));
    });
  });
  const ctl = (p, body) => request(ctlPort, p, body);
  for (let i = 0; i < 100 && !(await ctl('/status')).registered; i++) await sleep(50);
  return {
    pid: proc.pid,
    port,
    out,
    ctl,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
}

/** Starts a run in node-red and polls until every message came out (or the deadline). */
async function driveRed(red, cfg, deadlineMs) {
  await red.ctl('/run', { ...cfg, deadlineMs });
  const until = Date.now() + deadlineMs + 5000;
  for (;;) {
    await sleep(200);
    const s = await red.ctl('/status');
    if (!s.running || Date.now() > until) return s;
  }
}

async function waitFor(cond, ms, step = 200) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > until) return undefined;
    await sleep(step);
  }
}

function runPeer(tool, sinkUrl, n, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(BENCH, 'lib', 'peers.js'), tool, sinkUrl, String(n), JSON.stringify(opts)], { cwd: BENCH, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => {
      stdout += b;
      if (stdout.length > 1e6) stdout = stdout.slice(-1e5);
    });
    child.stderr.on('data', (b) => {
      stderr += b;
      if (stderr.length > 1e5) stderr = stderr.slice(-2e4);
    });
    child.once('exit', () => {
      const line = stdout.trim().split('\n').pop();
      try {
        const r = JSON.parse(line);
        if (r.error) reject(new Error(`${tool}: ${r.error}\n${stderr.slice(-2000)}`));
        else resolve(r);
      } catch {
        reject(new Error(`${tool} printed no result:\n${stdout.slice(-1000)}\n${stderr.slice(-2000)}`));
      }
    });
  });
}

// ---- the parts -----------------------------------------------------------------------------------------------------------
const results = {};
const details = {};

async function benchAudienceOut(sink, key, { n, perMsg, shape, window }) {
  await sink.reset(n + 1);
  // The sink has no limit here and this part measures what the node can do, so the project's rate limit (Mixpanel's
  // 30k/s by default) is off, as it is for mixpanel-import. rateLimited and burst keep the default.
  const red = await startRed(key, audienceFlow(sink.url, {}, { rateLimit: 0 }), { benchmpcfg0001: { token: 't' } });
  try {
    const before = await red.ctl('/status');
    const s0 = await sink.stats();
    const s = await driveRed(red, { n, perMsg, shape, window }, QUICK ? 60000 : 180000);
    const k = await sink.stats();
    const peak = vmHwmMb(red.pid);
    const d = {
      n, perMsg, shape, window, finished: s.finished, acked: s.acked, failed: s.failed, rejected: s.rejected, errors: s.errors, errorSamples: s.errorSamples,
      wallSec: s.wallSec, cpuSec: s.cpuSec, sinkRequests: k.requests - s0.requests, sinkRecords: k.records, sinkUnique: k.unique,
      sinkDuplicates: k.duplicates, sinkRejected: k.rejectedRequests, sinkMaxBatch: k.maxBatch, sinkCpuSec: k.cpuSec - s0.cpuSec,
      p50Ms: s.p50Ms, p99Ms: s.p99Ms, maxMs: s.maxMs, sampledPeakRssMb: s.peakRssMb, peakRssMb: peak, rssBeforeRunMb: before.rssMb,
    };
    details[key] = d;
    return {
      updatesPerSec: round(s.outUpdates / s.wallSec),
      requestsPer1000: round((d.sinkRequests / Math.max(1, k.unique)) * 1000, 3),
      p50Ms: round(s.p50Ms, 1), p99Ms: round(s.p99Ms, 1), peakRssMb: round(peak, 1),
      cpuSecPer100k: round(s.cpuSec / (n / 100000), 3),
      delivered: k.unique, lost: n - k.unique,
      loopMaxMs: round(s.loopMaxMs, 1), loopP99Ms: round(s.loopP99Ms, 1),
    };
  } finally {
    await red.stop();
  }
}

async function benchPeer(sink, key, tool, n, opts) {
  await sink.reset(n + 1);
  const s0 = await sink.stats();
  const r = await runPeer(tool, sink.url, n, opts);
  const k = await sink.stats();
  details[key] = { ...r, sinkRequests: k.requests - s0.requests, sinkUnique: k.unique, sinkDuplicates: k.duplicates, sinkRejected: k.rejectedRequests, sinkCpuSec: k.cpuSec - s0.cpuSec };
  return {
    updatesPerSec: round(k.unique / r.wallSec),
    requestsPer1000: round(((k.requests - s0.requests) / Math.max(1, k.unique)) * 1000, 3),
    peakRssMb: round(r.peakRssMb, 1),
    cpuSecPer100k: round(r.cpuSec / (n / 100000), 3),
    delivered: k.unique, lost: n - k.unique,
  };
}

async function benchRateLimited(sink, RATE_LIMIT = 30000, n = SIZES.rateLimited, key = 'rateLimited') {
  // This package, production defaults (backoff 2 s doubling to 60 s + 1–5 s jitter), batch-shaped messages.
  await sink.reset(n + 1);
  await sink.rate(RATE_LIMIT);
  const red = await startRed(key, audienceFlow(sink.url, {}), { benchmpcfg0001: { token: 't' } });
  let ours;
  try {
    const s0 = await sink.stats();
    const s = await driveRed(red, { n, perMsg: PER_MSG, shape: 'firehose', window: 16 }, QUICK ? 60000 : 150000);
    const k = await sink.stats();
    const node = await red.ctl('/stats').catch(() => undefined);
    ours = { s, k, s0, node };
  } finally {
    await red.stop();
  }
  // mixpanel-import, defaults, on the same limit.
  await sink.reset(n + 1);
  await sink.rate(RATE_LIMIT);
  const i0 = await sink.stats();
  const imp = await runPeer('import', sink.url, n, {});
  const ik = await sink.stats();
  await sink.rate(0);
  const { s, k, s0, node } = ours;
  details[key] = {
    n, ours: { finished: s.finished, wallSec: s.wallSec, acked: s.acked, failed: s.failed, errors: s.errors, sinkUnique: k.unique, sinkRequests: k.requests - s0.requests, requests429: k.requests429, records429: k.records429, nodeStats: node, p50Ms: s.p50Ms, p99Ms: s.p99Ms },
    mixpanelImport: { ...imp, sinkUnique: ik.unique, sinkRequests: ik.requests - i0.requests, requests429: ik.requests429, duplicates: ik.duplicates },
  };
  const pending = node ? node.pending : undefined;
  return {
    allowedPerSec: RATE_LIMIT,
    achievedPerSec: round(k.unique / s.wallSec),
    requests429: k.requests429,
    lost: n - k.unique - (pending || 0) - (node ? 0 : 0),
    pendingAtEnd: pending,
    mixpanelImportAchievedPerSec: round(ik.unique / imp.wallSec),
    mixpanelImport429: ik.requests429,
    mixpanelImportLost: n - ik.unique,
  };
}

async function benchBurst(sink) {
  const n = SIZES.burst;
  await sink.reset(n + 1);
  await sink.down();
  // outputWhen 'stored' (queued): answered as soon as the change is on disk; the backlog waits in SQLite. The retry
  // backoff is capped at 5 s here (settings.js mixpanelSync.backoff) so the drain starts promptly once the sink is up.
  const red = await startRed('burst', audienceFlow(sink.url, { outputWhen: 'queued' }), { benchmpcfg0001: { token: 't' } }, { backoff: { baseMs: 1000, maxMs: 5000, jitterMinMs: 0, jitterMaxMs: 500 } });
  try {
    const tq0 = Date.now();
    const s = await driveRed(red, { n, perMsg: PER_MSG, shape: 'firehose', window: 16 }, QUICK ? 60000 : 180000);
    const queuedSec = (Date.now() - tq0) / 1000;
    const mid = await red.ctl('/stats');
    await sink.up();
    const td0 = Date.now();
    if (MEM_TRACE) log(`burst phases (epoch ms): enqueue ${tq0}, drain ${td0}`);
    await waitFor(async () => (await sink.stats()).unique >= n, QUICK ? 60000 : 180000, 250);
    const drainSec = (Date.now() - td0) / 1000;
    if (MEM_TRACE) log(`burst drained (epoch ms): ${Date.now()}`);
    const node = await waitFor(async () => {
      const st = await red.ctl('/stats');
      return st.pending === 0 ? st : undefined;
    }, 20000, 250) || await red.ctl('/stats');
    const k = await sink.stats();
    const peak = vmHwmMb(red.pid);
    details.burst = { n, enqueueSec: queuedSec, enqueuePerSec: n / queuedSec, pendingWhileDown: mid.pending, drainSec, drainPerSec: k.unique / drainSec, sinkUnique: k.unique, sinkDuplicates: k.duplicates, sinkRequests: k.requests, nodeStats: node, driver: s };
    return { updates: n, peakRssMb: round(peak, 1), lost: n - k.unique, enqueuePerSec: round(n / queuedSec), drainPerSec: round(k.unique / drainSec), pendingAtEnd: node.pending };
  } finally {
    await red.stop();
  }
}

// ---- mixpanel-cohort-in: a Mixpanel `members` export POSTed to the node's own route ------------------------------------
const COHORT = { projectId: '2195193', cohortId: '5471208', name: 'Bench cohort', user: 'mixpanel', password: 'bench-secret' };
const { memberDigits } = require('./lib/records');
// As lib/red-driver.js decodes it: a decimal string in signed-64-bit range, the member's digits scattered.
const cohortMpid = (i) => `7${'0'.repeat(11)}${memberDigits(i)}`;

function cohortFlow() {
  const tab = 'benchtab000002';
  const fn = (id, name, func, initialize = '') => ({ id, type: 'function', z: tab, name, func, outputs: 0, timeout: 0, noerr: 0, initialize, finalize: '', libs: [], wires: [] });
  return [
    { id: tab, type: 'tab', label: 'bench cohort' },
    fn('benchreg000002', 'register', 'return null;', "global.get('bench').register(node);"),
    {
      id: 'benchcoh000001', type: 'mixpanel-cohort-in', z: tab, name: '', path: '/bench/cohorts', auth: 'basic', protection: 'update-only',
      attributePrefix: '', splitMembers: false, environment: 'production', store: '', maxBodyMb: 5,
      wires: [['benchcoo000001'], ['benchcoo000002']],
    },
    fn('benchcoo000001', 'output 1', "global.get('bench').cohortOut(msg, 1);\nreturn null;"),
    fn('benchcoo000002', 'output 2', "global.get('bench').cohortOut(msg, 2);\nreturn null;"),
    { id: 'benchcat000002', type: 'catch', z: tab, name: '', scope: ['benchcoh000001'], uncaught: false, wires: [['benchcer000002']] },
    fn('benchcer000002', 'errors', "global.get('bench').cohortErr(msg);\nreturn null;"),
  ];
}

/** Member at position p of an export: the first export has i = p; the recurring one replaces every 50th member. */
function cohortMemberId(p, n, recurring) {
  return recurring && p % COHORT_CHANGE_MOD === 7 ? n + Math.floor(p / COHORT_CHANGE_MOD) : p;
}

/** One page as Mixpanel sends it (the default member fields + `$mparticle_user_id` from "Properties to Export"). */
function cohortPageBody(session, page, totalPages, n, recurring) {
  const members = [];
  for (let p = (page - 1) * COHORT_PAGE, end = Math.min(n, page * COHORT_PAGE); p < end; p++) {
    const i = cohortMemberId(p, n, recurring);
    const d = memberDigits(i);
    members.push(`{"email":"user${d}@example.com","mixpanel_distinct_id":"mp-${d}","first_name":"First${i}","last_name":"Last","phone_number":"","$mparticle_user_id":"${cohortMpid(i)}"}`);
  }
  return `{"action":"members","parameters":{"mixpanel_project_id":"${COHORT.projectId}","mixpanel_cohort_id":"${COHORT.cohortId}",`
    + `"mixpanel_cohort_name":"${COHORT.name}","mixpanel_cohort_description":"bench","mixpanel_session_id":"${session}",`
    + `"page_info":{"total_pages":${totalPages},"page_count":${page}},"members":[${members.join(',')}]}}`;
}

/**
 * POSTs pages 1…totalPages in order, `window` in flight on keep-alive connections (as Mixpanel's sync does). Round
 * trip per page = request written → reply read (the body is built before the clock starts).
 */
async function postCohortExport(port, session, totalPages, n, recurring, window, deadlineMs) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: window });
  const auth = `Basic ${Buffer.from(`${COHORT.user}:${COHORT.password}`).toString('base64')}`;
  const lat = new Array(totalPages).fill(0);
  const ended = new Array(totalPages).fill(0);
  const failures = [];
  let next = 1;
  let bytes = 0;
  const until = Date.now() + deadlineMs;
  const t0 = Date.now();
  const post = (page) => new Promise((resolve) => {
    const body = cohortPageBody(session, page, totalPages, n, recurring);
    bytes += Buffer.byteLength(body);
    const t = performance.now();
    const req = http.request({
      host: '127.0.0.1', port, path: '/bench/cohorts', method: 'POST', agent, timeout: 30000,
      headers: { 'content-type': 'application/json', authorization: auth, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (b) => chunks.push(b));
      res.on('end', () => {
        lat[page - 1] = performance.now() - t;
        ended[page - 1] = performance.now();
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200 || !/"status":"success"/.test(text)) failures.push({ page, status: res.statusCode, body: text.slice(0, 200) });
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => {
      lat[page - 1] = performance.now() - t;
      failures.push({ page, error: err.message });
      resolve();
    });
    req.end(body);
  });
  const worker = async () => {
    while (next <= totalPages && Date.now() < until) await post(next++);
  };
  await Promise.all(Array.from({ length: window }, worker));
  const t1 = Date.now();
  agent.destroy();
  const sorted = Float64Array.from(lat).sort();
  // The page that completed the export is the one answered last (its reply waits for the sweep and the removals);
  // with several pages in flight that is not always the last one posted.
  const completing = ended.reduce((best, at, k) => (at > ended[best] ? k : best), 0);
  const q = (x) => sorted[Math.min(sorted.length - 1, Math.floor(x * sorted.length))];
  return {
    pagesSent: next - 1, t0, t1, wallSec: (t1 - t0) / 1000, failures: failures.length, failureSamples: failures.slice(0, 3),
    p50PageMs: q(0.5), p99PageMs: q(0.99), maxPageMs: sorted[sorted.length - 1], completingPageMs: lat[completing], mbSent: bytes / 1048576,
    slowestPages: lat.map((ms, k) => ({ page: k + 1, ms: round(ms, 1) })).sort((a, b) => b.ms - a.ms).slice(0, 8),
  };
}

async function benchCohortIn() {
  const pages = SIZES.cohortPages;
  const n = pages * COHORT_PAGE;
  const changed = Math.ceil((n - 7) / COHORT_CHANGE_MOD);
  const red = await startRed('cohortIn', cohortFlow(), { benchcoh000001: { username: COHORT.user, password: COHORT.password } });
  try {
    const deadline = QUICK ? 60000 : 240000;
    const exportOnce = async (session, recurring, expect) => {
      await red.ctl('/cohort-reset', { n, mod: COHORT_CHANGE_MOD, rem: 7, attribute: COHORT.name });
      const p0 = await red.ctl('/proc');
      const h = await postCohortExport(red.port, session, pages, n, recurring, COHORT_WINDOW, deadline);
      // Messages leave the node before its reply is written; wait (bounded) for the counts to be complete anyway.
      const c = await waitFor(async () => {
        const x = await red.ctl('/cohort-status');
        return x.trueUnique >= expect.true && x.falseUnique >= expect.false ? x : undefined;
      }, 10000, 100) || await red.ctl('/cohort-status');
      const p1 = await red.ctl('/proc');
      const endMs = Math.max(h.t1, c.lastOutAt || 0);
      const wallSec = (endMs - h.t0) / 1000;
      const expectedTrue = recurring ? c.trueNew : c.trueOld;
      const expectedFalse = recurring ? c.falseChanged : 0;
      const lost = (expect.true - expectedTrue) + (expect.false - expectedFalse);
      const unexpected = (recurring ? c.trueOld : c.trueNew) + (recurring ? c.falseOther : c.falseUnique) + c.badBatches;
      const duplicates = (c.trueCount - c.trueUnique) + (c.falseCount - c.falseUnique);
      return {
        session, recurring, members: n, pages, window: COHORT_WINDOW, wallSec, membersPerSec: n / wallSec, http: h,
        expectedTrue: expect.true, expectedFalse: expect.false, outTrue: c.trueCount, outFalse: c.falseCount, outMsgs: c.msgs,
        unmatched: c.unmatched, lost, unexpected, duplicates, errors: c.errors, errorSamples: c.errorSamples, badSamples: c.badSamples,
        cpuSec: p1.cpuSec - p0.cpuSec, outputLagMs: c.lastOutAt ? c.lastOutAt - h.t1 : undefined,
        loopMaxMs: c.loopMaxMs, loopP99Ms: c.loopP99Ms,
      };
    };
    const first = await exportOnce('bench-export-1', false, { true: n, false: 0 });
    log(`cohortIn first export: ${round(first.membersPerSec)} members/s, p99 page ${round(first.http.p99PageMs, 1)} ms`);
    await sleep(500);
    const second = await exportOnce('bench-export-2', true, { true: changed, false: changed });
    const peak = vmHwmMb(red.pid);
    details.cohortIn = { first, second, peakRssMb: peak };
    const bad = (x) => x.lost + x.unexpected + x.duplicates + x.http.failures + x.errors + x.unmatched;
    return {
      membersPerSec: round(second.membersPerSec),
      p99PageMs: round(second.http.p99PageMs, 1),
      completingPageMs: round(second.http.completingPageMs, 1),
      firstExportMembersPerSec: round(first.membersPerSec),
      firstExportP99PageMs: round(first.http.p99PageMs, 1),
      firstExportCompletingPageMs: round(first.http.completingPageMs, 1),
      // The longest time the event loop was held up (every other flow waited that long), and its 99th percentile.
      loopMaxMs: round(second.loopMaxMs, 1), loopP99Ms: round(second.loopP99Ms, 1),
      firstExportLoopMaxMs: round(first.loopMaxMs, 1), firstExportLoopP99Ms: round(first.loopP99Ms, 1),
      members: n, changed,
      outTrue: second.outTrue, outFalse: second.outFalse, expectedTrue: changed, expectedFalse: changed,
      firstExportOutTrue: first.outTrue, firstExportLost: first.lost,
      lost: second.lost + first.lost,
      wrong: bad(first) + bad(second) - first.lost - second.lost,
      cpuSecPer100k: round(second.cpuSec / (n / 100000), 3),
      peakRssMb: round(peak, 1),
    };
  } finally {
    await red.stop();
  }
}

// ---- identity-resolve: learn, then resolve arrays of 1000 ------------------------------------------------------------------
async function startRedis() {
  let bin = 'redis-server';
  try {
    execFileSync(bin, ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('redis-server is not installed (apt-get install redis-server)');
  }
  const port = await freePort();
  const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: 'ignore' });
  const ping = () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500);
    s.once('connect', () => s.end('PING\r\n'));
    let got = '';
    s.on('data', (b) => { got += b; });
    s.once('close', () => resolve(got.startsWith('+PONG')));
    s.once('error', () => resolve(false));
    s.once('timeout', () => s.destroy());
  });
  const ok = await waitFor(ping, 10000, 100);
  if (!ok) {
    proc.kill('SIGKILL');
    throw new Error(`redis-server did not answer on ${port}`);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

function identityFlow(redisUrl) {
  const tab = 'benchtab000003';
  const store = redisUrl ? 'benchsto000001' : '';
  const fn = (id, name, func, initialize, wires = []) => ({ id, type: 'function', z: tab, name, func, outputs: wires.length, timeout: 0, noerr: 0, initialize, finalize: '', libs: [], wires });
  const ir = (id, mode) => ({ id, type: 'identity-resolve', z: tab, name: '', mode, distinctIdFrom: 'customer_id', store, wires: [['benchido000001'], ['benchido000002']] });
  return [
    { id: tab, type: 'tab', label: 'bench identity' },
    ...(redisUrl ? [{ id: store, type: 'mixpanel-sync-store', name: 'redis', backend: 'redis', path: '', url: redisUrl, keyPrefix: 'bench:' }] : []),
    fn('benchidg000001', 'learn generator', 'return null;', "global.get('bench').register(node, 'learn');", [['benchidr000001']]),
    fn('benchidg000002', 'resolve generator', 'return null;', "global.get('bench').register(node, 'resolve');", [['benchidr000002']]),
    ir('benchidr000001', 'learn'),
    ir('benchidr000002', 'resolve'),
    fn('benchido000001', 'output 1', "global.get('bench').idOut(msg, 1);\nreturn null;", ''),
    fn('benchido000002', 'output 2', "global.get('bench').idOut(msg, 2);\nreturn null;", ''),
    { id: 'benchcat000003', type: 'catch', z: tab, name: '', scope: ['benchidr000001', 'benchidr000002'], uncaught: false, wires: [['benchide000001']] },
    fn('benchide000001', 'errors', "global.get('bench').idErr(msg);\nreturn null;", ''),
  ];
}

async function driveId(red, cfg, deadlineMs) {
  await red.ctl('/idrun', { ...cfg, deadlineMs });
  const until = Date.now() + deadlineMs + 5000;
  for (;;) {
    await sleep(100);
    const s = await red.ctl('/idstatus');
    if (!s.running || Date.now() > until) return s;
  }
}

async function identityOnce(label, redisUrl) {
  const red = await startRed(`identityResolve-${label}`, identityFlow(redisUrl), {});
  try {
    const deadline = QUICK ? 60000 : 180000;
    const learn = await driveId(red, { kind: 'learn', n: SIZES.idLearn, perMsg: PER_MSG, window: ID_WINDOW }, deadline);
    await sleep(300);
    const resolve = await driveId(red, { kind: 'resolve', n: SIZES.idResolve, space: SIZES.idLearn, perMsg: PER_MSG, window: ID_WINDOW }, deadline);
    const peak = vmHwmMb(red.pid);
    return { learn, resolve, peakRssMb: peak };
  } finally {
    await red.stop();
  }
}

async function benchIdentityResolve() {
  const sqlite = await identityOnce('sqlite');
  log(`identityResolve sqlite: learn ${round(sqlite.learn.resolved / sqlite.learn.wallSec)}/s, resolve ${round(sqlite.resolve.resolved / sqlite.resolve.wallSec)}/s`);
  await sleep(500);
  let redis;
  let redisError;
  const server = await startRedis().catch((err) => {
    redisError = err.message;
    return undefined;
  });
  if (server) {
    try {
      redis = await identityOnce('redis', server.url);
    } finally {
      await server.stop();
    }
  }
  details.identityResolve = { learnProfiles: SIZES.idLearn, lookups: SIZES.idResolve, perMsg: PER_MSG, window: ID_WINDOW, sqlite, redis, redisError };
  const perSec = (x) => (x ? x.resolved / x.wallSec : undefined);
  const lost = (x) => (x ? x.n - x.resolved : 0);
  const wrong = (x) => (x ? x.wrong + x.unresolved + x.errors : 0);
  return {
    sqlitePerSec: round(perSec(sqlite.resolve)),
    redisPerSec: redis ? round(perSec(redis.resolve)) : `n/a (${redisError})`,
    sqliteLearnPerSec: round(perSec(sqlite.learn)),
    redisLearnPerSec: redis ? round(perSec(redis.learn)) : undefined,
    sqliteP99MsgMs: round(sqlite.resolve.p99Ms, 1),
    redisP99MsgMs: redis ? round(redis.resolve.p99Ms, 1) : undefined,
    learned: SIZES.idLearn, lookups: SIZES.idResolve,
    lost: lost(sqlite.learn) + lost(sqlite.resolve) + lost(redis && redis.learn) + lost(redis && redis.resolve),
    wrong: wrong(sqlite.learn) + wrong(sqlite.resolve) + wrong(redis && redis.learn) + wrong(redis && redis.resolve),
    sqliteCpuSecPer100k: round(sqlite.resolve.cpuSec / (SIZES.idResolve / 100000), 3),
    redisCpuSecPer100k: redis ? round(redis.resolve.cpuSec / (SIZES.idResolve / 100000), 3) : undefined,
  };
}

/** A node counts as built once its source is committed (others may be mid-way in the working tree) and compiled. */
function builtNode(type) {
  let tracked = '';
  try {
    tracked = execFileSync('git', ['ls-files', `nodes/${type}.ts`], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  return tracked !== '' && fs.existsSync(path.join(ROOT, 'dist', 'nodes', `${type}.js`));
}

// ---- report ----------------------------------------------------------------------------------------------------------------
const fmt = (x, d = 0) => (x === undefined || x === null ? '–' : typeof x === 'number' ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : String(x));

function floors(r) {
  const f = [];
  const add = (name, ok, got) => f.push({ name, ok, got });
  const a = r.audienceOut;
  const mi = r.mixpanelImport;
  if (a && typeof a === 'object') {
    add('audienceOut.updatesPerSec ≥ 30,000', a.updatesPerSec >= 30000, fmt(a.updatesPerSec));
    if (mi && typeof mi === 'object') add('audienceOut.updatesPerSec ≥ mixpanelImport.updatesPerSec', a.updatesPerSec >= mi.updatesPerSec, `${fmt(a.updatesPerSec)} vs ${fmt(mi.updatesPerSec)}`);
    add('audienceOut.requestsPer1000 ≤ 0.55', a.requestsPer1000 <= 0.55, fmt(a.requestsPer1000, 3));
  }
  const rl = r.rateLimited;
  if (rl && typeof rl === 'object') {
    add('rateLimited.achievedPerSec ≥ 90 % of allowed', rl.achievedPerSec >= 0.9 * rl.allowedPerSec, `${fmt(rl.achievedPerSec)} of ${fmt(rl.allowedPerSec)} (${fmt((100 * rl.achievedPerSec) / rl.allowedPerSec, 1)} %)`);
    add('rateLimited.lost = 0', rl.lost === 0, fmt(rl.lost));
    add('rateLimited.requests429 < mixpanelImport429', rl.requests429 < rl.mixpanelImport429, `${fmt(rl.requests429)} vs ${fmt(rl.mixpanelImport429)}`);
  }
  const b = r.burst;
  if (b && typeof b === 'object') {
    add('burst.peakRssMb ≤ 300', b.peakRssMb <= 300, fmt(b.peakRssMb, 1));
    add('burst.lost = 0', b.lost === 0, fmt(b.lost));
  }
  const c = r.cohortIn;
  if (c && typeof c === 'object') {
    add('cohortIn.membersPerSec ≥ 50,000', c.membersPerSec >= 50000, fmt(c.membersPerSec));
    add('cohortIn.p99PageMs ≤ 250', c.p99PageMs <= 250, fmt(c.p99PageMs, 1));
    add('cohortIn.lost = 0', c.lost === 0 && c.wrong === 0, `${fmt(c.lost)}${c.wrong ? ` (${fmt(c.wrong)} wrong/duplicate/failed)` : ''}`);
  }
  const id = r.identityResolve;
  if (id && typeof id === 'object') {
    add('identityResolve.sqlitePerSec ≥ 100,000', id.sqlitePerSec >= 100000, fmt(id.sqlitePerSec));
    add('identityResolve.redisPerSec ≥ 50,000', typeof id.redisPerSec === 'number' && id.redisPerSec >= 50000, fmt(id.redisPerSec));
    add('identityResolve.lost = 0', id.lost === 0 && id.wrong === 0, `${fmt(id.lost)}${id.wrong ? ` (${fmt(id.wrong)} wrong/unresolved/errors)` : ''}`);
  }
  return f;
}

function table(r, meta) {
  const lines = [];
  const row = (cells) => lines.push(`| ${cells.join(' | ')} |`);
  lines.push(`Mode: ${meta.mode}; ${meta.cpus} CPUs (${meta.cpuModel}); Node ${process.version}; node-red ${meta.nodeRed}; mixpanel-import ${meta.mixpanelImport}; mixpanel ${meta.mixpanel}; load average before: ${meta.load}. Local sink on 127.0.0.1 (own process).`);
  lines.push('');
  if (['audienceOut', 'audienceOutSingle', 'mixpanelImport', 'mixpanelNode', 'ceiling', 'ceilingClient'].some((k) => r[k])) {
    row(['sender', 'N', 'updates/s', 'requests / 1000', 'p50 ms', 'p99 ms', 'peak RSS MB', 'CPU s / 100k', 'event loop held, max / p99 ms', 'delivered']);
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  }
  const line = (name, x, n) => {
    if (!x) return;
    if (typeof x !== 'object') return row([name, '', x, '', '', '', '', '', '', '']);
    row([name, fmt(n), fmt(x.updatesPerSec), fmt(x.requestsPer1000, 2), fmt(x.p50Ms, 0), fmt(x.p99Ms, 0), fmt(x.peakRssMb, 0), fmt(x.cpuSecPer100k, 2), x.loopMaxMs === undefined ? '–' : `${fmt(x.loopMaxMs, 0)} / ${fmt(x.loopP99Ms, 0)}`, x.delivered === undefined ? '–' : `${fmt(x.delivered)}${x.lost ? ` (**${fmt(x.lost)} lost**)` : ''}`]);
  };
  line(`mixpanel-audience-out in node-red, ${PER_MSG} users/msg (Firehose), SQLite`, r.audienceOut, SIZES.audienceOut);
  line('mixpanel-audience-out, 1 user/msg (plain form)', r.audienceOutSingle, SIZES.single);
  line('mixpanel-import 3.1.43, defaults', r.mixpanelImport, SIZES.importN);
  line('mixpanel 0.24.0 people.set, 64 in flight', r.mixpanelNode, SIZES.official);
  line('ceiling: undici keep-alive POST loop, 2000/batch, 8 conc', r.ceiling, SIZES.ceiling);
  line('ceiling: same loop through this package\'s own client (node:http)', r.ceilingClient, SIZES.ceiling);
  lines.push('');
  const rl = r.rateLimited;
  if (rl) {
    if (typeof rl !== 'object') lines.push(`Rate-limited sink (${fmt(RATE_LIMIT)} updates/s): ${rl}`);
    else {
      lines.push(`Rate-limited sink (token bucket ${fmt(RATE_LIMIT)} updates/s, 429 without Retry-After), N = ${fmt(SIZES.rateLimited)}:`);
      lines.push('');
      row(['sender', 'achieved updates/s', '% of allowed', '429s', 'lost']);
      row(['---', '---:', '---:', '---:', '---:']);
      row(['mixpanel-audience-out (default backoff)', fmt(rl.achievedPerSec), fmt((100 * rl.achievedPerSec) / rl.allowedPerSec, 1), fmt(rl.requests429), `${fmt(rl.lost)}${rl.pendingAtEnd ? ` (${fmt(rl.pendingAtEnd)} still queued)` : ''}`]);
      row(['mixpanel-import, defaults', fmt(rl.mixpanelImportAchievedPerSec), fmt((100 * rl.mixpanelImportAchievedPerSec) / rl.allowedPerSec, 1), fmt(rl.mixpanelImport429), fmt(rl.mixpanelImportLost)]);
    }
    lines.push('');
  }
  const r10 = r.rateLimited10k;
  if (r10 && typeof r10 === 'object') {
    lines.push(`Rate-limited sink at ${fmt(r10.allowedPerSec)} updates/s (below this package's own speed), N = ${fmt(QUICK ? 60000 : 100000)}:`);
    lines.push('');
    row(['sender', 'achieved updates/s', '% of allowed', '429s', 'lost']);
    row(['---', '---:', '---:', '---:', '---:']);
    row(['mixpanel-audience-out (default backoff)', fmt(r10.achievedPerSec), fmt((100 * r10.achievedPerSec) / r10.allowedPerSec, 1), fmt(r10.requests429), `${fmt(r10.lost)}${r10.pendingAtEnd ? ` (${fmt(r10.pendingAtEnd)} still queued)` : ''}`]);
    row(['mixpanel-import, defaults', fmt(r10.mixpanelImportAchievedPerSec), fmt((100 * r10.mixpanelImportAchievedPerSec) / r10.allowedPerSec, 1), fmt(r10.mixpanelImport429), fmt(r10.mixpanelImportLost)]);
    lines.push('');
  } else if (r10) lines.push(`Rate-limited at 10k/s: ${r10}`, '');
  const b = r.burst;
  if (b) {
    lines.push(typeof b !== 'object' ? `Burst: ${b}` : `Burst: ${fmt(b.updates)} updates queued while the sink was down (stored at ${fmt(b.enqueuePerSec)}/s), then drained at ${fmt(b.drainPerSec)}/s: peak RSS ${fmt(b.peakRssMb, 0)} MB, lost ${fmt(b.lost)}.`);
  }
  const c = r.cohortIn;
  const pages = SIZES.cohortPages;
  if (c) {
    if (b) lines.push('');
    if (typeof c !== 'object') lines.push(`Cohort in (${fmt(pages)} pages × ${fmt(COHORT_PAGE)} members): ${c}`);
    else {
      lines.push(`mixpanel-cohort-in in node-red: a \`members\` export of ${fmt(pages)} pages × ${fmt(COHORT_PAGE)} members (\`$mparticle_user_id\` on each), POSTed with Basic auth, ${COHORT_WINDOW} pages in flight, default SQLite store:`);
      lines.push('');
      row(['export', 'members/s', 'p99 page ms', 'completing page ms', 'event loop held, max / p99 ms', 'output 1 true', 'output 1 false', 'lost']);
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
      row(['first (all members new)', fmt(c.firstExportMembersPerSec), fmt(c.firstExportP99PageMs, 1), fmt(c.firstExportCompletingPageMs, 1), `${fmt(c.firstExportLoopMaxMs, 0)} / ${fmt(c.firstExportLoopP99Ms, 0)}`, `${fmt(c.firstExportOutTrue)} of ${fmt(c.members)}`, '0 of 0', fmt(c.firstExportLost)]);
      row([`recurring (${fmt(c.changed)} members replaced, 2 %)`, fmt(c.membersPerSec), fmt(c.p99PageMs, 1), fmt(c.completingPageMs, 1), `${fmt(c.loopMaxMs, 0)} / ${fmt(c.loopP99Ms, 0)}`, `${fmt(c.outTrue)} of ${fmt(c.expectedTrue)}`, `${fmt(c.outFalse)} of ${fmt(c.expectedFalse)}`, `${fmt(c.lost - c.firstExportLost)}${c.wrong ? ` (**${fmt(c.wrong)} wrong**)` : ''}`]);
    }
    lines.push('');
  }
  const id = r.identityResolve;
  if (id) {
    if (!c && b) lines.push('');
    if (typeof id !== 'object') lines.push(`Identity resolve (arrays of ${PER_MSG}): ${id}`);
    else {
      lines.push(`identity-resolve in node-red: learn ${fmt(id.learned)} profiles (mpid, customer_id, email, ios_idfv), then resolve ${fmt(id.lookups)} identities (one each: customer_id, email, ios_idfv or mpid), arrays of ${PER_MSG}, ${ID_WINDOW} messages in flight:`);
      lines.push('');
      row(['store', 'lookups/s', 'learn profiles/s', 'p99 ms / 1000', 'CPU s / 100k lookups']);
      row(['---', '---:', '---:', '---:', '---:']);
      row(['SQLite (default)', fmt(id.sqlitePerSec), fmt(id.sqliteLearnPerSec), fmt(id.sqliteP99MsgMs, 1), fmt(id.sqliteCpuSecPer100k, 2)]);
      row(['Redis (local redis-server)', fmt(id.redisPerSec), fmt(id.redisLearnPerSec), fmt(id.redisP99MsgMs, 1), fmt(id.redisCpuSecPer100k, 2)]);
    }
    lines.push('');
  }
  lines.push('');
  lines.push('Floors:');
  lines.push('');
  for (const f of floors(r)) lines.push(`- ${f.ok ? 'PASS' : '**MISS**'} ${f.name}: ${f.got}`);
  return lines.join('\n').replace(/\n{3,}/g, '\n\n'); // parts left out (--only) leave no double blank lines
}

// ---- main ------------------------------------------------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  ensureBenchDeps();
  fs.mkdirSync(RESULTS, { recursive: true });
  const version = (p, from) => {
    try {
      return JSON.parse(fs.readFileSync(require.resolve(`${p}/package.json`, { paths: [from] }), 'utf8')).version;
    } catch {
      return '?';
    }
  };
  const meta = {
    mode: QUICK ? 'quick' : 'full', date: new Date().toISOString(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model?.trim(),
    node: process.version, nodeRed: version('node-red', ROOT), mixpanelImport: version('mixpanel-import', BENCH), mixpanel: version('mixpanel', BENCH),
    load: os.loadavg()[0].toFixed(2), sizes: SIZES, perMsg: PER_MSG,
  };
  const sink = await startSink();
  const watchdog = setTimeout(() => {
    log('watchdog: the whole run exceeded its time bound');
    sink.stop();
    process.exit(3);
  }, QUICK ? 300000 : 1200000);
  watchdog.unref();
  const part = async (key, fn) => {
    if (!want(key)) return;
    const t = Date.now();
    log(`${key}…`);
    try {
      results[key] = await fn();
    } catch (err) {
      results[key] = `failed: ${String(err && err.message || err).split('\n')[0]}`;
      log(`${key} failed:`, err);
    }
    log(`${key} done in ${((Date.now() - t) / 1000).toFixed(1)} s:`, JSON.stringify(results[key]));
    await sleep(1000); // let the machine settle between parts
  };
  try {
    pack();
    await part('ceiling', () => benchPeer(sink, 'ceiling', 'ceiling', SIZES.ceiling, {}));
    await part('ceilingClient', () => benchPeer(sink, 'ceilingClient', 'ceiling-client', SIZES.ceiling, {}));
    await part('audienceOut', () => benchAudienceOut(sink, 'audienceOut', { n: SIZES.audienceOut, perMsg: PER_MSG, shape: 'firehose', window: Number(opt('--window') || 16) }));
    await part('audienceOutSingle', async () => {
      const x = await benchAudienceOut(sink, 'audienceOutSingle', { n: SIZES.single, perMsg: 1, shape: 'plain', window: 4000 });
      return x;
    });
    await part('mixpanelImport', () => benchPeer(sink, 'mixpanelImport', 'import', SIZES.importN, {}));
    await part('mixpanelNode', async () => {
      const x = await benchPeer(sink, 'mixpanelNode', 'official', SIZES.official, { window: 64 });
      return x;
    });
    await part('rateLimited', () => benchRateLimited(sink));
    // The same at a limit below this package's own speed, so its 429 handling (not its throughput) decides.
    await part('rateLimited10k', () => benchRateLimited(sink, 10000, QUICK ? 60000 : 100000, 'rateLimited10k'));
    await part('burst', () => benchBurst(sink));
    if (builtNode('mixpanel-cohort-in')) await part('cohortIn', () => benchCohortIn());
    else if (want('cohortIn')) results.cohortIn = 'n/a (not built yet)';
    if (builtNode('identity-resolve')) await part('identityResolve', () => benchIdentityResolve());
    else if (want('identityResolve')) results.identityResolve = 'n/a (not built yet)';
  } finally {
    sink.stop();
  }
  meta.totalSec = (Date.now() - started) / 1000;
  const text = table(results, meta);
  console.log(`\n${text}\n`);
  console.log(`(${meta.mode} run took ${meta.totalSec.toFixed(0)} s)`);
  const json = { ...results, meta, floors: floors(results), details };
  const stamp = meta.date.replace(/[:.]/g, '-');
  fs.writeFileSync(path.join(RESULTS, `${stamp}-${meta.mode}.json`), JSON.stringify(json, null, 2));
  fs.writeFileSync(path.join(RESULTS, `latest-${meta.mode}.json`), JSON.stringify(json, null, 2));
  if (JSON_OUT) fs.writeFileSync(path.resolve(JSON_OUT), JSON.stringify(json, null, 2));
  if (WRITE_DOCS) {
    fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'docs', 'benchmarks.md'), `# Benchmarks\n\nMeasured by \`npm run bench\` (${meta.mode} run, ${meta.date.slice(0, 10)}, ${meta.totalSec.toFixed(0)} s). See bench/README.md for what each figure means.\n\n${text}\n`);
  }
  process.exit(0);
}

main().catch((err) => {
  log(err);
  process.exit(1);
});
