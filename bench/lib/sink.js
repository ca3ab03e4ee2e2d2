'use strict';
// A local Mixpanel-compatible `/engage` sink, run as its own process (so its CPU is not charged to the sender).
// It parses every body (JSON array POST, form `data=` raw or base64, GET `?data=<base64>`), checks each record's
// shape, counts requests, records and unique `$distinct_id`s (`cust-<i>` in a bitmap, so duplicates and losses show),
// and answers like Mixpanel: 200 `{"status":1,"error":null}` with verbose=1, `1` otherwise; `{status:0,error}` for a
// malformed batch. Rate-limited mode: a token bucket of RATE records/s (capacity RATE); a request whose records do not
// fit gets 429 `{"status":0,"error":"rate limit exceeded"}` without Retry-After (as peer-bench.md did).
// Control (JSON over HTTP on a second port, loopback): GET /stats, POST /reset?bits=N, POST /mode?rate=N|0,
// POST /down, POST /up.
const http = require('node:http');

const MAX_RECORDS_PER_REQUEST = 2000;

let bits = new Uint8Array(1 << 20);
let c;
function resetCounters() {
  c = {
    requests: 0, okRequests: 0, records: 0, unique: 0, duplicates: 0, otherIds: 0, rejectedRequests: 0, rejectedRecords: 0,
    requests429: 0, records429: 0, bytes: 0, maxBatch: 0, methods: {}, errors: [], firstAt: 0, lastOkAt: 0,
  };
}
resetCounters();
let rate = 0; // records/s; 0 = unlimited
let tokens = 0;
let lastRefill = 0;

function refill(now) {
  tokens = Math.min(rate, tokens + ((now - lastRefill) / 1000) * rate);
  lastRefill = now;
}

function markId(id) {
  const m = /^cust-(\d+)$/.exec(id);
  if (!m) {
    c.otherIds += 1;
    return;
  }
  const i = Number(m[1]);
  if (i >= bits.length) {
    const grown = new Uint8Array(Math.max(bits.length * 2, i + 1));
    grown.set(bits);
    bits = grown;
  }
  if (bits[i]) c.duplicates += 1;
  else {
    bits[i] = 1;
    c.unique += 1;
  }
}

/** The records in one request, or an error string. */
function decode(req, url, body) {
  let text;
  if (req.method === 'GET') {
    const data = url.searchParams.get('data');
    if (!data) return 'missing data';
    text = Buffer.from(data, 'base64').toString('utf8');
  } else {
    const ct = String(req.headers['content-type'] || '');
    if (ct.startsWith('application/x-www-form-urlencoded')) {
      const data = new URLSearchParams(body).get('data') || '';
      text = /^\s*[[{]/.test(data) ? data : Buffer.from(data, 'base64').toString('utf8');
    } else if (ct.startsWith('application/json')) text = body;
    else return `unsupported Content-Type ${ct}`;
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'body is not JSON';
  }
  const records = Array.isArray(parsed) ? parsed : [parsed];
  if (records.length === 0) return 'empty batch';
  if (records.length > MAX_RECORDS_PER_REQUEST) return `too many records (${records.length} > 2000)`;
  for (const r of records) {
    if (!r || typeof r !== 'object') return 'record is not an object';
    if (typeof r.$token !== 'string' || !r.$token) return '$token, missing or empty';
    if (typeof r.$distinct_id !== 'string' || !r.$distinct_id) return '$distinct_id, missing or empty';
    const op = r.$set || r.$set_once || r.$add || r.$union || r.$append || r.$remove || r.$unset;
    if (!op || typeof op !== 'object') return 'no operation';
  }
  return records;
}

function reply(res, status, verbose, ok, error) {
  const body = verbose ? JSON.stringify({ status: ok ? 1 : 0, error: ok ? null : error }) : ok ? '1' : '0';
  res.writeHead(status, { 'Content-Type': verbose ? 'application/json' : 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function handle(req, res) {
  const chunks = [];
  req.on('data', (b) => chunks.push(b));
  req.on('end', () => {
    const now = Date.now();
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url || '/', 'http://sink');
    const verbose = url.searchParams.get('verbose') === '1';
    c.requests += 1;
    c.bytes += body.length + (req.method === 'GET' ? (req.url || '').length : 0);
    c.methods[req.method] = (c.methods[req.method] || 0) + 1;
    if (!c.firstAt) c.firstAt = now;
    if (url.pathname !== '/engage') {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"error":"not found","status":0}');
      return;
    }
    const records = decode(req, url, body);
    if (typeof records === 'string') {
      c.rejectedRequests += 1;
      if (c.errors.length < 5) c.errors.push(records);
      reply(res, 200, verbose, false, `Engage API error: ${records}`);
      return;
    }
    if (rate > 0) {
      refill(now);
      if (records.length > tokens) {
        c.requests429 += 1;
        c.records429 += records.length;
        const b = '{"status":0,"error":"rate limit exceeded"}';
        res.writeHead(429, { 'Content-Type': 'application/json', 'Content-Length': b.length });
        res.end(b);
        return;
      }
      tokens -= records.length;
    }
    c.okRequests += 1;
    c.records += records.length;
    if (records.length > c.maxBatch) c.maxBatch = records.length;
    for (const r of records) markId(r.$distinct_id);
    c.lastOkAt = now;
    reply(res, 200, verbose, true);
  });
}

const engagePort = Number(process.env.SINK_PORT || 0);
let engage = http.createServer({ keepAliveTimeout: 30000 }, handle);
let boundPort = 0;

function listen(port) {
  return new Promise((resolve, reject) => {
    engage.once('error', reject);
    engage.listen(port, '127.0.0.1', () => {
      engage.off('error', reject);
      boundPort = engage.address().port;
      resolve();
    });
  });
}

const control = http.createServer((req, res) => {
  const url = new URL(req.url || '/', 'http://ctl');
  const send = (o) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(o));
  };
  (async () => {
    switch (url.pathname) {
      case '/stats': {
        const cpu = process.cpuUsage();
        return send({ ...c, rate, up: engage.listening, cpuSec: (cpu.user + cpu.system) / 1e6, rssMb: process.memoryUsage().rss / 1048576 });
      }
      case '/reset':
        bits = new Uint8Array(Number(url.searchParams.get('bits') || 1 << 20));
        resetCounters();
        return send({ ok: true });
      case '/mode':
        rate = Number(url.searchParams.get('rate') || 0);
        tokens = rate;
        lastRefill = Date.now();
        return send({ ok: true, rate });
      case '/down':
        if (engage.listening) {
          const s = engage;
          s.closeAllConnections();
          await new Promise((r) => s.close(() => r()));
          engage = http.createServer({ keepAliveTimeout: 30000 }, handle);
        }
        return send({ ok: true });
      case '/up':
        if (!engage.listening) await listen(boundPort);
        return send({ ok: true });
      default:
        res.writeHead(404);
        res.end();
    }
  })().catch((err) => {
    res.writeHead(500);
    res.end(String(err));
  });
});

(async () => {
  await listen(engagePort);
  await new Promise((r) => control.listen(0, '127.0.0.1', r));
  process.send({ engagePort: boundPort, controlPort: control.address().port });
})();
process.on('disconnect', () => process.exit(0));
