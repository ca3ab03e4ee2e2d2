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
