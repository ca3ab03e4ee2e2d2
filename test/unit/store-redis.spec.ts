import { expect } from 'chai';
import { SyncError } from '../../src/errors';
import { openRedisStore } from '../../src/store/redis';
import type { SyncStore } from '../../src/store/types';
import { freePort } from '../helpers/red-process';
import { startRedisServer, type RedisServer } from '../helpers/redis';

/** Redis-only behaviour: outages fail fast with STORE_UNAVAILABLE, the client reconnects, URLs and passwords. */

async function expectUnavailable(promise: Promise<unknown>): Promise<SyncError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(SyncError);
    expect((err as SyncError).code).to.equal('STORE_UNAVAILABLE');
    expect((err as SyncError).message).to.match(/^store unavailable/);
    return err as SyncError;
  }
  throw new Error('expected the call to reject');
}

describe('redis store: connection behaviour', function () {
  this.timeout(30000);
  const stores: SyncStore[] = [];
  const servers: RedisServer[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const p of servers.splice(0)) await p.stop();
  });

  it('rejects with STORE_UNAVAILABLE within the timeout when nothing listens, without queueing', async () => {
    const port = await freePort();
    const store = openRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't:' });
    stores.push(store);
    const t0 = Date.now();
    await expectUnavailable(store.ping());
    await expectUnavailable(store.identities.resolve([{ email: 'a@example.com' }]));
    expect(Date.now() - t0).to.be.lessThan(2000);
  });

  it('fails fast while Redis is down and reconnects by itself when it is back', async () => {
    const port = await freePort();
    let server = await startRedisServer(port);
    servers.push(server);
    const store = openRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't:' });
    stores.push(store);
    await store.identities.learn([{ mpid: '1', email: 'a@example.com' }], 1);
    await server.stop();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await expectUnavailable(store.identities.resolve([{ email: 'a@example.com' }]));
    await expectUnavailable(store.audience.stats('s'));
    expect(Date.now() - t0).to.be.lessThan(2000);
    server = await startRedisServer(port);
    servers.push(server);
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        await store.ping();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error('did not reconnect');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // A fresh Redis (no persistence): the scripts are loaded again transparently.
    await store.identities.learn([{ mpid: '2', email: 'b@example.com' }], 2);
    const [m] = await store.identities.resolve([{ email: 'b@example.com' }]);
    expect(m!.profile.mpid).to.equal('2');
  });

  it('uses the password credential', async () => {
    const port = await freePort();
    servers.push(await startRedisServer(port, ['--requirepass', 's3cret']));
    const good = openRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't:', password: 's3cret' });
    const bad = openRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't:', password: 'wrong' });
    stores.push(good, bad);
    await good.ping();
    const err = await expectUnavailable(bad.ping());
    expect(err.message).to.not.contain('wrong');
  });

  it('accepts redis:// and rediss:// URLs only', () => {
    expect(() => openRedisStore({ url: 'http://127.0.0.1:6379', keyPrefix: 't:' })).to.throw(SyncError, /redis:\/\/ or rediss:\/\//);
    const tls = openRedisStore({ url: 'rediss://127.0.0.1:1', keyPrefix: 't:' });
    stores.push(tls);
    expect(tls.backend).to.equal('redis');
  });

  it('keeps key prefixes apart', async function () {
    const url = process.env.REDIS_URL;
    if (!url) this.skip(); // store-contract.spec.ts covers Redis without REDIS_URL
    const a = openRedisStore({ url: url!, keyPrefix: `iso:${process.pid}:a:` });
    const b = openRedisStore({ url: url!, keyPrefix: `iso:${process.pid}:b:` });
    stores.push(a, b);
    await a.identities.learn([{ mpid: '9', email: 'x@example.com' }], 1);
    expect((await b.identities.resolve([{ email: 'x@example.com' }]))[0]).to.equal(undefined);
    expect((await a.identities.resolve([{ email: 'x@example.com' }]))[0]!.profile.mpid).to.equal('9');
  });
});

describe('redis store: large arrays', function () {
  this.timeout(30000);
  it('resolves 12000 identities in one call (past Lua unpack limits)', async function () {
    const url = process.env.REDIS_URL;
    if (!url) this.skip();
    const store = openRedisStore({ url: url!, keyPrefix: `big:${process.pid}:${Date.now()}:` });
    try {
      const obs = Array.from({ length: 3000 }, (_, i) => ({ mpid: String(i + 1), customer_id: `c${i}`, email: `u${i}@x.io`, ios_idfv: `V${i}` }));
      await store.identities.learn(obs, 1);
      const res = await store.identities.resolve(obs.map((o) => ({ customer_id: o.customer_id, email: o.email, ios_idfv: o.ios_idfv, other: 'x' })));
      expect(res.every((m, i) => m?.profile.mpid === String(i + 1))).to.equal(true);
    } finally {
      await store.close();
    }
  });
});
