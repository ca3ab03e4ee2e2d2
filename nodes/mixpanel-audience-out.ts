import type { NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { SyncError, issuesToMessage, type ErrorCode, type Issue } from '../src/errors';
import { forwardAudienceMessages, inputWeight, mparticleResponse, type ForwardOutcome } from '../src/audience/forwarder';
import { GroupCommit } from '../src/audience/group-commit';
import { AudienceSender, toEngageUpdate, type SenderState } from '../src/audience/sender';
import { DeliveryTracker, type DeliveryResult } from '../src/audience/tracker';
import { MIXPANEL_BACKOFF, type BackoffPolicy } from '../src/mixpanel/backoff';
import { dryRunPost } from '../src/mixpanel/dry-run';
import { createEngagePost, engageUrl } from '../src/mixpanel/engage-client';
import { AudienceOutSettings } from '../src/schemas/settings';
import type { StoreHandle } from '../src/store/open';
import type { MixpanelConfigNode } from './lib/config-types';
import { onClose, onInput, parseSettings, statusSetter, storeError, failMisconfigured } from './lib/node-kit';
import { acquireNodeStore } from './lib/store-access';

/**
 * The status is refreshed at most this often, from the store's counters (`stats` with `quick`): counting the outbox
 * rows instead blocked the event loop ~150 ms every second under a 1M-update backlog.
 */
const STATUS_EVERY_MS = 1000;

/**
 * How many profile updates may wait for Mixpanel's acknowledgement in memory. Past this (a long outage with a
 * backlog), messages are answered as soon as they are stored (`result.queued`), so memory stays bounded while the
 * backlog itself waits on disk.
 */
const MAX_TRACKED = 100000;

/**
 * Users per group commit at most (a bigger message goes alone). A group is stored in one turn of the event loop, in
 * slices of SLICE_USERS users (see the forwarder), and its messages are answered when all of it is stored: sixteen
 * 1000-user messages in one group were no faster, but kept ~100 MB of short-lived objects alive at once and held
 * every answer back until the last.
 */
const GROUP_USERS = 1000;

/** Advanced tuning from settings.js (`mixpanelSync: {backoff, authRetryMs}`); tests use it to shrink the clock. */
interface Tuning {
  backoff?: Partial<BackoffPolicy>;
  authRetryMs?: number;
  requestTimeoutMs?: number;
  /** Overrides the node's retryWindowSec (milliseconds; tests use it to reach the give-up path quickly). */
  retryWindowMs?: number;
  minAttempts?: number;
}

interface AudienceOutDef extends NodeDef {
  mixpanel?: string;
  store?: string;
}

function inputError(issues: Issue[]): SyncError {
  const code: ErrorCode = issues.every((i) => i.code === 'NO_IDENTITY') ? 'NO_IDENTITY' : 'INVALID_INPUT';
  return new SyncError(code, issuesToMessage('invalid input', issues), { issues });
}

export = function (RED: NodeAPI) {
  function MixpanelAudienceOut(this: import('node-red').Node, def: AudienceOutDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const setStatus = statusSetter(RED, node, 'mixpanel-audience-out');

    let settings: AudienceOutSettings;
    let cfg: MixpanelConfigNode | null;
    let handle: StoreHandle;
    try {
      settings = parseSettings(AudienceOutSettings, def);
      cfg = def.mixpanel ? (RED.nodes.getNode(def.mixpanel) as MixpanelConfigNode | null) : null;
      if (!cfg) throw new SyncError('INVALID_SETTINGS', RED._('mixpanel-audience-out.errors.no-config'));
      handle = acquireNodeStore(RED, node, def.store);
    } catch (err) {
      failMisconfigured(node, setStatus, err);
      return;
    }
    const config = cfg;
    const store = handle.store;
    const scope = node.id;
    const dryRun = config.settings.dryRun;
    const tuning = ((RED.settings as unknown as { mixpanelSync?: Tuning }).mixpanelSync) ?? {};
    const engage = dryRun ? { post: dryRunPost, close() {} } : createEngagePost(config.apiHost, { timeoutMs: tuning.requestTimeoutMs });
    const tracker = new DeliveryTracker();

    let phase: SenderState = { phase: 'idle' };
    let statusTimer: NodeJS.Timeout | undefined;
    const refreshStatus = () => {
      if (statusTimer) return;
      statusTimer = setTimeout(() => {
        statusTimer = undefined;
        store.audience.stats(scope, { quick: true }).then((s) => {
          if (!settings.useMixpanelPeople) return setStatus('yellow', 'ring', 'people-off');
          switch (phase.phase) {
            case 'paused': return setStatus('red', 'ring', 'paused-auth', { pending: s.pending });
            case 'store-error': return setStatus('red', 'ring', 'store-down');
            case 'retrying': return setStatus('yellow', 'ring', 'retrying', { pending: s.pending });
            case 'sending': return setStatus('blue', 'dot', 'sending', { pending: s.pending });
            default:
              if (s.pending > 0) return setStatus('blue', 'ring', 'queued', { pending: s.pending });
              return setStatus(dryRun ? 'grey' : 'green', 'dot', dryRun ? 'dry-run' : 'sent', { acked: s.acked, dead: s.dead });
          }
        }, () => setStatus('red', 'ring', 'store-down'));
      }, STATUS_EVERY_MS);
    };

    const sender = new AudienceSender({
      store: store.audience,
      scope,
      token: dryRun ? () => config.token() || 'dry-run-token' : () => config.token(),
      post: engage.post,
      batchSize: settings.batchSize,
      flushMs: settings.flushMs,
      concurrency: settings.concurrency,
      retryWindowMs: tuning.retryWindowMs ?? settings.retryWindowSec * 1000,
      minAttempts: tuning.minAttempts,
      backoff: { ...MIXPANEL_BACKOFF, ...tuning.backoff },
      authRetryMs: tuning.authRetryMs ?? 5 * 60000,
      pacer: config.pacer,
      events: {
        acked: (items) => {
          tracker.acked(items);
          refreshStatus();
        },
        dead: (items, reason, code) => {
          tracker.dead(items, reason, code);
          refreshStatus();
        },
        state: (s) => {
          const wasPaused = phase.phase === 'paused';
          phase = s;
          if (s.phase === 'paused' && !wasPaused) {
            // Reported once to Catch: nothing is lost (updates wait in the store), but someone must fix the token.
            const err = new SyncError('MIXPANEL_AUTH', RED._('mixpanel-audience-out.errors.paused-auth', { reason: s.reason ?? '' }));
            node.error(err, { payload: { paused: true, reason: s.reason }, error: { message: err.message, code: err.code } } as unknown as NodeMessageInFlow);
          }
          refreshStatus();
        },
      },
    });

    if (!settings.useMixpanelPeople) node.warn(RED._('mixpanel-audience-out.warn.people-off'));
    if (!dryRun && !config.token()) setStatus('red', 'ring', 'no-token');
    else refreshStatus();
    void sender.start(); // updates left by a crash or an earlier deploy go out first

    // Messages arriving together go to the store together: for one-user messages the commit was most of the cost.
    // Profile sets are kept in the outcome only for a dry run's output.
    const intake = new GroupCommit<unknown, ForwardOutcome>((payloads) =>
      forwardAudienceMessages({ store: store.audience, identities: store.identities, scope, settings, now: Date.now, keepProfileSets: dryRun }, payloads),
    { maxItems: 1000, maxWeight: GROUP_USERS, weight: inputWeight });

    onInput(node, async (msg, send, done) => {
      if (msg.topic === 'stats') {
        send({ ...msg, payload: await store.audience.stats(scope).catch((e) => { throw storeError(e); }) });
        done();
        return;
      }
      if (!settings.useMixpanelPeople) {
        send({ ...msg, payload: { skipped: RED._('mixpanel-audience-out.warn.people-off') } });
        done();
        return;
      }
      let outcome: ForwardOutcome;
      try {
        outcome = await intake.submit(msg.payload);
      } catch (err) {
        refreshStatus();
        throw storeError(err);
      }
      if (outcome.kind === 'invalid') {
        const err = inputError(outcome.issues);
        // From an `http in` node: still answer the request, so the caller is not left hanging.
        if ((msg as { res?: unknown }).res) send({ ...msg, statusCode: 400, payload: { error: err.message, issues: err.issues } } as NodeMessageInFlow);
        done(err);
        return;
      }
      if (outcome.queued.length) {
        sender.kick();
        refreshStatus();
      }
      const waitForAck = settings.outputWhen === 'acked' && tracker.tracked + outcome.queued.length <= MAX_TRACKED;
      const delivery: DeliveryResult = waitForAck
        ? await tracker.track(outcome.queued)
        : { sent: [], failed: [] };
      const result = {
        sent: delivery.sent.map((s) => s.distinctId),
        failed: delivery.failed,
        rejected: outcome.issues,
        ...(waitForAck ? {} : { queued: outcome.queued.map((q) => q.distinctId) }),
      };
      const out: Record<string, unknown> = { ...msg, result };
      out.payload = outcome.request ? mparticleResponse(outcome.request, Date.now(), sender.isPaused) : result;
      if (dryRun) {
        out.dryRun = { url: engageUrl(config.apiHost), updates: outcome.profileSets.map((p) => toEngageUpdate('<token>', p)) };
      }
      send(out as NodeMessageInFlow);
      if (outcome.issues.length || delivery.failed.length) {
        const issues: Issue[] = [
          ...outcome.issues,
          ...delivery.failed.map((f) => ({ field: `$distinct_id ${f.distinctId}`, message: f.reason, code: f.code })),
        ];
        const code: ErrorCode = outcome.issues.length ? inputError(outcome.issues).code : delivery.failed[0].code;
        done(new SyncError(code, issuesToMessage(outcome.issues.length ? 'some users were rejected' : 'Mixpanel did not accept some updates', issues), { issues }));
      } else done();
    });

    onClose(node, async () => {
      if (statusTimer) clearTimeout(statusTimer);
      await sender.close();
      engage.close();
      await handle.release();
      node.status({});
    });
  }

  RED.nodes.registerType('mixpanel-audience-out', MixpanelAudienceOut as never);
};
