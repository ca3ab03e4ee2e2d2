import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { authConfigProblem, type AuthSecrets } from '../src/cohort/auth';
import type { MparticleBatch, OutMessage } from '../src/cohort/messages';
import { authenticate, checkContentType, failure, handleWebhook, processWebhook, tooLarge, type WebhookResult } from '../src/cohort/protocol';
import { readBody } from '../src/cohort/read-body';
import { CohortInSettings } from '../src/cohort/settings';
import type { IdentityMap } from '../src/identity/types';
import type { StoreHandle } from '../src/store/open';
import { onClose, onInput, parseSettings, statusSetter, toError, failMisconfigured } from './lib/node-kit';
import { acquireNodeStore } from './lib/store-access';

/** Incomplete `members` exports (and page keys kept for replay detection) are forgotten after this long. */
const SESSION_TTL_MS = 24 * 3600 * 1000;
const EXPIRE_EVERY_MS = 3600 * 1000;

type Credentials = AuthSecrets;
interface CohortInDef extends NodeDef {
  store?: string;
}

type Req = IncomingMessage & { params?: Record<string, string>; path?: string; _body?: boolean; body?: unknown };
type Res = ServerResponse;
type Handler = (req: Req, res: Res, next: (err?: unknown) => void) => void;
interface ExpressLayer { route?: { path: string; methods: Record<string, boolean>; stack: Array<{ handle: unknown }> } }
interface ExpressApp {
  post(path: string, ...handlers: unknown[]): void;
  _router?: { stack: ExpressLayer[] };
  router?: { stack: ExpressLayer[] };
}
interface HttpSettings {
  httpNodeRoot?: string | false;
  httpNodeMiddleware?: Handler | Handler[];
  httpNodeCors?: { origin?: string | boolean | string[]; methods?: string | string[] };
}

/** Removes only our own route (the layer holding our handler), newest first so splicing skips nothing. */
function removeRoute(app: ExpressApp, path: string, handler: unknown): void {
  const stack = app._router?.stack ?? app.router?.stack ?? [];
  for (let i = stack.length - 1; i >= 0; i--) {
    const route = stack[i].route;
    if (route && route.path === path && route.methods.post && route.stack.some((l) => l.handle === handler)) stack.splice(i, 1);
  }
}

/**
 * The `httpNodeCors` headers core `http in` adds. Node-RED's `cors` package is not ours to require, and a webhook is
 * server-to-server, so the common forms (a fixed origin, `*`/true, a list) are enough.
 */
function corsHandler(cfg: HttpSettings['httpNodeCors']): Handler {
  return (req, res, next) => {
    if (cfg) {
      const origin = req.headers.origin;
      const allowed = cfg.origin;
      let value: string | undefined;
      if (allowed === undefined || allowed === true || allowed === '*') value = '*';
      else if (typeof allowed === 'string') value = allowed;
      else if (Array.isArray(allowed) && typeof origin === 'string' && allowed.includes(origin)) value = origin;
      if (value) res.setHeader('Access-Control-Allow-Origin', value);
      if (value && value !== '*') res.setHeader('Vary', 'Origin');
    }
    next();
  };
}

function send(res: Res, result: WebhookResult): void {
  if (res.headersSent) return;
  const body = JSON.stringify(result.reply);
  res.statusCode = result.status;
  for (const [k, v] of Object.entries(result.headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

function lastSegment(path: string | undefined): string | undefined {
  if (!path) return undefined;
  const seg = path.split('?')[0].split('/').filter(Boolean).pop();
  return seg ? decodeURIComponent(seg) : undefined;
}

export = function (RED: NodeAPI) {
  function MixpanelCohortIn(this: Node<Credentials>, def: CohortInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const setStatus = statusSetter(RED, node, 'mixpanel-cohort-in');

    let settings: CohortInSettings;
    try {
      settings = parseSettings(CohortInSettings, def);
    } catch (err) {
      failMisconfigured(node, setStatus, err);
      return;
    }
    const secrets: AuthSecrets = {
      username: node.credentials?.username || undefined,
      password: node.credentials?.password || undefined,
      token: node.credentials?.token || undefined,
    };
    const authProblem = authConfigProblem(settings.auth, secrets);

    let handle: StoreHandle | undefined;
    let storeProblem: Error | undefined;
    try {
      handle = acquireNodeStore(RED, node, settings.store || def.store);
    } catch (err) {
      // Requests are still answered, with 503: Mixpanel retries instead of pausing the sync.
      storeProblem = toError(err);
      node.error(RED._('mixpanel-cohort-in.errors.store', { reason: storeProblem.message }));
    }

    let unauthorized = 0;
    let closing = false;

    const idleStatus = () => {
      if (authProblem) setStatus('red', 'ring', authProblem);
      else if (storeProblem) setStatus('red', 'ring', 'store-down');
      else if (settings.auth === 'none') setStatus('yellow', 'ring', 'no-auth');
      else setStatus('green', 'dot', 'listening');
    };

    /** Status after a request: short, and true for the last thing that happened. */
    const reportStatus = (result: WebhookResult) => {
      if (result.outcome === 'unauthorized') {
        unauthorized += 1;
        setStatus('red', 'ring', 'unauthorized', { count: unauthorized });
      } else if (result.outcome === 'store-down') setStatus('red', 'ring', 'store-down');
      else if (result.outcome === 'invalid') setStatus('yellow', 'ring', 'invalid');
      else if (result.outcome === 'too-large') setStatus('yellow', 'ring', 'too-large');
      else if (result.cohort) {
        const c = result.cohort;
        const key = result.outcome === 'duplicate' ? 'duplicate' : c.action === 'members' ? 'members-page' : 'diff-page';
        setStatus(settings.auth === 'none' ? 'yellow' : 'green', 'dot', key, {
          page: c.page, total: c.totalPages, action: c.action,
          added: result.counts?.added ?? 0, removed: result.counts?.removed ?? 0,
        });
      }
    };

    /** One error path: 400/413/503 reach Catch nodes with a stable code (401s only count in the status). */
    const reportError = (result: WebhookResult, msg?: NodeMessageInFlow) => {
      if (!result.error || result.outcome === 'unauthorized') return;
      const m = msg ?? ({ payload: result.reply, statusCode: result.status, cohort: result.cohort } as unknown as NodeMessageInFlow);
      node.error(result.error, m);
    };

    // Identities come from the same store's identity graph (what identity-resolve learns): one resolve per page.
    const ctx = () => {
      const store = handle!.store;
      return { settings, secrets, store: store.cohorts, lookup: (l: IdentityMap[]) => store.identities.resolve(l) };
    };
    const unavailable = (why: string) => failure('unknown', 503, 'STORE_UNAVAILABLE', why);

    const emit = (result: WebhookResult) => {
      // One send per message, in the same order as one send of them all. Node-RED deep-copies every message of a
      // send() after its first: ~7 ms per 1000-member message, 150 ms for the 20 removal messages of a completing
      // page in the benchmark. Each message here is built on objects of its own, so there is nothing to copy.
      for (const m of result.updates) node.send([m as unknown as NodeMessageInFlow, null] as never);
      for (const m of result.unmatched) node.send([null, m as unknown as NodeMessageInFlow] as never);
    };

    // ---- endpoint mode: our own route on RED.httpNode ----------------------------------------------------------
    const http = RED.settings as unknown as HttpSettings;
    const app = RED.httpNode as unknown as ExpressApp;
    const basePath = settings.path.length > 1 ? settings.path.replace(/\/+$/, '') : settings.path;
    const routePath = settings.auth === 'token' ? `${basePath === '/' ? '' : basePath}/:token` : basePath;
    const maxBytes = Math.floor(settings.maxBodyMb * 1024 * 1024);

    const serve = async (req: Req, res: Res) => {
      const wreq = { headers: req.headers, pathToken: req.params?.token };
      const denied = authenticate(wreq, settings, secrets);
      if (denied) {
        req.resume();
        send(res, denied);
        reportStatus(denied);
        return;
      }
      if (!handle || closing) {
        req.resume();
        const r = unavailable(closing ? 'the receiver is restarting, please retry' : 'store unavailable, please retry');
        send(res, r);
        reportStatus(r);
        return;
      }
      const wrongType = checkContentType(req.headers);
      if (wrongType) {
        req.resume(); // not read, only drained so the reply reaches the client
        send(res, wrongType);
        reportStatus(wrongType);
        reportError(wrongType);
        return;
      }
      const read = await readBody(req, maxBytes);
      if (read.kind === 'aborted') return;
      if (read.kind === 'too-large') {
        const r = tooLarge(maxBytes);
        res.setHeader('Connection', 'close');
        send(res, r);
        reportStatus(r);
        reportError(r);
        return;
      }
      const body = read.kind === 'raw' ? { rawBody: read.text } : { parsedBody: read.value };
      const result = await handleWebhook({ ...wreq, ...body }, ctx());
      emit(result);
      send(res, result);
      reportStatus(result);
      reportError(result);
    };
    const handler: Handler = (req, res) => {
      serve(req, res).catch((err: unknown) => {
        // Never let a rejection reach Express (it would hang the request) or the runtime.
        const r = failure('unknown', 503, 'STORE_UNAVAILABLE', 'internal error, please retry', err);
        send(res, r);
        reportStatus(r);
        node.error(toError(err));
      });
    };
    const errorHandler = (err: unknown, _req: Req, res: Res, _next: unknown) => {
      node.warn(toError(err).message);
      send(res, failure('unknown', 500, 'STORE_UNAVAILABLE', 'internal error'));
    };

    let routed = false;
    if (!settings.path) {
      setStatus('grey', 'ring', 'input-only');
    } else if (http.httpNodeRoot === false) {
      node.warn(RED._('mixpanel-cohort-in.errors.http-disabled'));
      setStatus('grey', 'ring', 'http-disabled');
    } else if (authProblem) {
      // Refuse to open an endpoint that anybody could post to by accident. A warning, not an error: a freshly
      // imported example has no credentials yet (flows never carry them), and that is a setup step, not a fault.
      node.warn(RED._(`mixpanel-cohort-in.errors.${authProblem}`));
      idleStatus();
    } else {
      const middleware: Handler | Handler[] =
        typeof http.httpNodeMiddleware === 'function' || Array.isArray(http.httpNodeMiddleware)
          ? http.httpNodeMiddleware : (_req, _res, next) => next();
      app.post(routePath, middleware, corsHandler(http.httpNodeCors), handler, errorHandler);
      routed = true;
      if (settings.auth === 'none') node.warn(RED._('mixpanel-cohort-in.warn.no-auth'));
      idleStatus();
    }

    // ---- input mode: requests from an `http in` node ------------------------------------------------------------
    onInput(node, async (msg, sendMsg, done) => {
      const m = msg as NodeMessageInFlow & { req?: Req; statusCode?: number; headers?: Record<string, string>; updates?: MparticleBatch[]; cohort?: unknown };
      const req = m.req;
      const payload = m.payload as unknown;
      const wreq = {
        headers: req?.headers ?? {},
        pathToken: req?.params?.token ?? lastSegment(req?.path ?? req?.url),
        ...(typeof payload === 'string' ? { rawBody: payload } : Buffer.isBuffer(payload) ? { rawBody: payload.toString('utf8') } : { parsedBody: payload }),
      };
      const result = authenticate(wreq, settings, secrets)
        ?? (!handle ? unavailable('store unavailable, please retry') : await processWebhook(wreq, ctx()));
      m.statusCode = result.status;
      m.payload = result.reply;
      m.headers = { ...result.headers };
      if (result.cohort) m.cohort = result.cohort;
      // The reply message carries every batch of the page on msg.updates (flattened even with splitMembers).
      m.updates = result.updates.flatMap((u: OutMessage) => (Array.isArray(u.payload) ? u.payload : [u.payload])) as MparticleBatch[];
      sendMsg([m, result.unmatched as unknown as NodeMessageInFlow[]]);
      reportStatus(result);
      if (result.error && result.outcome !== 'unauthorized') done(result.error);
      else done();
    });

    // ---- housekeeping ----------------------------------------------------------------------------------------------
    const expire = () => {
      if (!handle) return;
      handle.store.cohorts.expire(Date.now() - SESSION_TTL_MS).catch((err: unknown) => {
        node.warn(RED._('mixpanel-cohort-in.errors.expire', { reason: toError(err).message }));
      });
    };
    expire();
    const timer = setInterval(expire, EXPIRE_EVERY_MS);
    timer.unref();

    onClose(node, async () => {
      closing = true;
      clearInterval(timer);
      if (routed) removeRoute(app, routePath, handler);
      await handle?.release();
    });
  }

  RED.nodes.registerType('mixpanel-cohort-in', MixpanelCohortIn as never, {
    credentials: {
      username: { type: 'text' },
      password: { type: 'password' },
      token: { type: 'password' },
    },
  });
};
