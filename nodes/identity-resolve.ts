import type { NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { SyncError } from '../src/errors';
import { processIdentities } from '../src/identity/process';
import { IdentityResolveSettings } from '../src/schemas/identity';
import type { StoreHandle } from '../src/store/open';
import { onClose, onInput, parseSettings, statusSetter, storeError, failMisconfigured } from './lib/node-kit';
import { acquireNodeStore } from './lib/store-access';

interface IdentityResolveDef extends NodeDef {
  store?: string;
}

/** The same container as the input, holding only the users at `indexes` (an array, or a Firehose request). */
function subset(payload: unknown, indexes: number[]): unknown {
  if (Array.isArray(payload)) return indexes.map((i) => payload[i]);
  const req = payload as { user_profiles: unknown[] };
  return { ...req, user_profiles: indexes.map((i) => req.user_profiles[i]) };
}

/** How often the status counters may change (status events go to every open editor). */
const STATUS_EVERY_MS = 1000;

export = function (RED: NodeAPI) {
  function IdentityResolve(this: import('node-red').Node, def: IdentityResolveDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const setStatus = statusSetter(RED, node, 'identity-resolve');

    let settings: IdentityResolveSettings;
    let handle: StoreHandle;
    try {
      settings = parseSettings(IdentityResolveSettings, def);
      handle = acquireNodeStore(RED, node, def.store);
    } catch (err) {
      failMisconfigured(node, setStatus, err);
      return;
    }
    const store = handle.store;
    let resolvedCount = 0;
    let unresolvedCount = 0;
    let lastStatus = 0;
    setStatus('grey', 'ring', `mode-${settings.mode}`);

    onInput(node, async (msg, send, done) => {
      const payload = (msg as { payload?: unknown }).payload;
      let outcome;
      try {
        outcome = await processIdentities(store.identities, settings, payload, Date.now());
      } catch (err) {
        if (err instanceof SyncError && err.code !== 'STORE_UNAVAILABLE') throw err;
        setStatus('red', 'ring', 'store-down');
        throw storeError(err);
      }
      resolvedCount += outcome.resolved.length;
      unresolvedCount += outcome.unresolved.length;
      let out1: NodeMessageInFlow | null = null;
      let out2: NodeMessageInFlow | null = null;
      if (!outcome.many) {
        const [r] = outcome.resolved;
        const [u] = outcome.unresolved;
        if (r) out1 = (r.identity ? { ...msg, identity: r.identity } : msg) as NodeMessageInFlow;
        if (u) out2 = { ...msg, unresolved: u } as NodeMessageInFlow;
      } else {
        if (outcome.resolved.length) {
          const idx = outcome.resolved.map((r) => r.index);
          out1 = { ...msg, payload: subset(payload, idx) } as NodeMessageInFlow;
          if (settings.mode !== 'learn') (out1 as unknown as { identity: unknown }).identity = outcome.resolved.map((r) => r.identity);
        }
        if (outcome.unresolved.length) {
          out2 = { ...msg, payload: subset(payload, outcome.unresolved.map((u) => u.index)), unresolved: outcome.unresolved } as NodeMessageInFlow;
        }
      }
      if (out1 || out2) send([out1, out2]);
      const now = Date.now();
      if (now - lastStatus >= STATUS_EVERY_MS) {
        lastStatus = now;
        setStatus(unresolvedCount ? 'yellow' : 'green', 'dot', 'counts', { resolved: resolvedCount, unresolved: unresolvedCount });
      }
      done();
    });

    onClose(node, async () => {
      await handle.release();
    });
  }

  RED.nodes.registerType('identity-resolve', IdentityResolve);
};
