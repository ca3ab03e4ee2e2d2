'use strict';
// Preloaded into node-red by `bench/run.js --mem-trace` (node -r): samples this process's memory every 250 ms into
// the JSONL file named by BENCH_MEM_TRACE (one JSON sample per line), so a peak RSS can be split into V8 heap,
// external/array buffers and the native rest (SQLite page cache, malloc arenas, code).
const fs = require('node:fs');
const v8 = require('node:v8');

const file = process.env.BENCH_MEM_TRACE;
if (file) {
  const fd = fs.openSync(file, 'w');
  const t0 = Date.now();
  const mb = (x) => Math.round((x / 1048576) * 10) / 10;
  const status = () => {
    const s = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (k) => Number((new RegExp(`${k}:\\s+(\\d+) kB`).exec(s) || [])[1] || 0) / 1024;
    return { hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
  };
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    const spaces = {};
    const committed = {};
    for (const sp of v8.getHeapSpaceStatistics()) {
      const name = sp.space_name.replace(/_space$/, '');
      spaces[name] = mb(sp.space_used_size);
      committed[name] = mb(sp.physical_space_size);
    }
    const st = status();
    fs.writeSync(fd, `${JSON.stringify({
      at: Date.now(), t: (Date.now() - t0) / 1000, rss: mb(m.rss), hwm: st.hwm, anon: st.anon, file: st.file,
      heapUsed: mb(m.heapUsed), heapTotal: mb(m.heapTotal), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers),
      native: mb(m.rss - m.heapTotal - m.external), spaces, committed,
    })}\n`);
  }, 250);
  timer.unref();
}

// BENCH_ALLOC_SAMPLE=<seconds>: also sample allocations for that long (V8's sampling heap profiler, keeping the
// objects a major GC collected but not those the young generation collected: what was promoted and then became
// garbage, which is what lifts the peak between major GCs). Top allocation sites go to <trace>.alloc.txt.
// With BENCH_ALLOC_LIVE=1, only what is still alive when sampling stops: what the live heap is made of.
const allocSec = Number(process.env.BENCH_ALLOC_SAMPLE || 0);
if (file && allocSec > 0) {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: !process.env.BENCH_ALLOC_LIVE }, (err) => {
    if (err) fs.writeFileSync(`${file}.alloc.txt`, `startSampling failed: ${err.message}\n`);
  });
  setTimeout(() => {
    session.post('HeapProfiler.stopSampling', (err, res) => {
      if (err) return fs.writeFileSync(`${file}.alloc.txt`, `stopSampling failed: ${err.message}\n`);
      const self = new Map();
      const walk = (n, stack) => {
        const f = n.callFrame;
        const here = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\//, '')}:${f.lineNumber + 1}`;
        const size = n.selfSize;
        if (size) {
          const key = `${here}  <  ${stack.slice(-2).reverse().join('  <  ')}`;
          self.set(key, (self.get(key) || 0) + size);
        }
        for (const c of n.children) walk(c, stack.concat(here));
      };
      walk(res.profile.head, []);
      const total = [...self.values()].reduce((a, b) => a + b, 0);
      const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 60);
      fs.writeFileSync(`${file}.alloc.txt`, `sampled ${allocSec} s, ${(total / 1048576).toFixed(1)} MB surviving a scavenge\n`
        + rows.map(([k, v]) => `${(v / 1048576).toFixed(1).padStart(7)} MB ${(100 * v / total).toFixed(1).padStart(5)} %  ${k}`).join('\n') + '\n');
    });
  }, allocSec * 1000).unref();
}

// BENCH_HEAP_SNAPSHOT_AT=<seconds>[,<seconds>…]: write a heap snapshot (after a full GC: live objects only) at those
// times after start, next to the trace (<trace>.<seconds>s.heapsnapshot); bench/tools/heap-summary.js reads one.
for (const at of String(process.env.BENCH_HEAP_SNAPSHOT_AT || '').split(',').filter(Boolean).map(Number)) {
  if (!file) break;
  setTimeout(() => require('node:v8').writeHeapSnapshot(`${file}.${at}s.heapsnapshot`), at * 1000).unref();
}
