import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createEngagePost } from '../../src/mixpanel/engage-client';
import { FakeMixpanel } from '../helpers/fake-mixpanel';

/** A raw server for what FakeMixpanel does not script: counts connections, can cut a reply off half way. */
async function rawServer(handler: http.RequestListener): Promise<{ url: string; connections: () => number; stop: () => Promise<void> }> {
  const server = http.createServer(handler);
  let connections = 0;
  server.on('connection', () => { connections += 1; });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const BODY = JSON.stringify([{ $token: 't', $distinct_id: 'u1', $set: { SegmentMembership: "'1'" } }]);

describe('engage client (node:http)', function () {
  this.timeout(10000);
  let mp: FakeMixpanel;
  let client: ReturnType<typeof createEngagePost> | undefined;

  beforeEach(async () => {
    mp = new FakeMixpanel();
    await mp.start();
  });
  afterEach(async () => {
    client?.close();
    client = undefined;
    await mp.stop();
  });

  it('POSTs the body as JSON to /engage?verbose=1&ip=0 and reads the verbose reply', async () => {
    client = createEngagePost(mp.url);
    expect(await client.post(BODY)).to.deep.equal({ kind: 'ok' });
    expect(mp.requests).to.have.length(1);
    expect(mp.requests[0].query.get('verbose')).to.equal('1');
    expect(mp.requests[0].query.get('ip')).to.equal('0');
    expect(mp.requests[0].contentType).to.equal('application/json');
    expect(mp.requests[0].body).to.equal(BODY);
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: "'1'" });
  });

  it('sends a body with non-ASCII text whole (Content-Length counts bytes, not characters)', async () => {
    client = createEngagePost(mp.url);
    const body = JSON.stringify([{ $token: 't', $distinct_id: 'ü-😀', $set: { 'In Ibiza Träume': true } }]);
    expect(await client.post(body)).to.deep.equal({ kind: 'ok' });
    expect(mp.requests[0].body).to.equal(body);
    expect(mp.profiles.get('ü-😀')).to.deep.equal({ 'In Ibiza Träume': true });
  });

  it('classifies status 0, 401, 413 and 429 with Retry-After as Mixpanel means them', async () => {
    client = createEngagePost(mp.url);
    mp.script = [
      { status: 200, body: '{"error":"bad $set","status":0}' },
      { status: 401, body: '{"error":"Invalid token","status":0}' },
      { status: 413, body: '' },
      { status: 429, body: '{"error":"rate limited","status":0}', headers: { 'Retry-After': '7' } },
    ];
    const t0 = Date.now();
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await client.post(BODY));
    expect(outcomes.map((o) => o.kind)).to.deep.equal(['rejected', 'auth', 'too-large', 'retry']);
    expect(outcomes[0]).to.have.property('reason').that.includes('bad $set');
    const retry = outcomes[3] as { retryAfterMs?: number; status?: number };
    expect(retry.status).to.equal(429);
    expect(retry.retryAfterMs).to.be.within(6000, 7000 + (Date.now() - t0));
  });

  it('reuses one kept-alive connection for requests one after another', async () => {
    const srv = await rawServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('{"error":null,"status":1}'));
    });
    try {
      client = createEngagePost(srv.url);
      for (let i = 0; i < 5; i++) expect(await client.post(BODY)).to.deep.equal({ kind: 'ok' });
      expect(srv.connections()).to.equal(1);
    } finally {
      client.close();
      await srv.stop();
    }
  });

  it('gives up on a request with no reply after the timeout, as a retry', async () => {
    mp.script = ['hang'];
    client = createEngagePost(mp.url, { timeoutMs: 300 });
    const t0 = Date.now();
    const outcome = await client.post(BODY);
    expect(outcome.kind).to.equal('retry');
    expect((outcome as { reason: string }).reason).to.match(/network error: ETIMEDOUT/);
    expect(Date.now() - t0).to.be.within(250, 3000);
    // The client still works afterwards (a new connection).
    expect(await client.post(BODY)).to.deep.equal({ kind: 'ok' });
  });

  it('times out a reply that starts but never ends', async () => {
    const srv = await rawServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"status":'); // and nothing more
    });
    try {
      client = createEngagePost(srv.url, { timeoutMs: 300 });
      const outcome = await client.post(BODY);
      expect(outcome.kind).to.equal('retry');
      expect((outcome as { reason: string }).reason).to.match(/^network error: /);
    } finally {
      client.close();
      await srv.stop();
    }
  });

  it('turns a refused connection and a dropped one into retries, never a rejection', async () => {
    const srv = await rawServer((req) => req.socket.destroy());
    const { url } = srv;
    try {
      client = createEngagePost(url);
      const dropped = await client.post(BODY);
      expect(dropped.kind).to.equal('retry');
      expect((dropped as { reason: string }).reason).to.match(/^network error: ECONNRESET/);
    } finally {
      client.close();
      await srv.stop();
    }
    client = createEngagePost(url); // nothing listens there now
    const refused = await client.post(BODY);
    expect(refused.kind).to.equal('retry');
    expect((refused as { reason: string }).reason).to.match(/^network error: ECONNREFUSED/);
  });

  it('retries, instead of throwing, when the host is no URL at all', async () => {
    client = createEngagePost('http://[::1');
    const outcome = await client.post(BODY);
    expect(outcome.kind).to.equal('retry');
    expect((outcome as { reason: string }).reason).to.include('invalid API host');
  });
});
