import type { Node, NodeAPI, NodeMessageInFlow } from 'node-red';
import { SyncError, formatPath, type Issue } from '../../src/errors';
import type { z } from 'zod';

/**
 * Small pieces every node wrapper shares. Nothing here knows about Mixpanel: it is the Node-RED side of the
 * contract (one error path through done(err), handlers that can never reject into the runtime, settings parsed by
 * the zod schema that defines them).
 */

export type Send = (msg: NodeMessageInFlow | Array<NodeMessageInFlow | NodeMessageInFlow[] | null>) => void;
export type Done = (err?: Error) => void;

/**
 * Registers an async input handler. A rejected promise from an `input` handler exits Node-RED, so every failure is
 * turned into exactly one `done(err)` (which a Catch node sees), and `done` is never called twice.
 */
export function onInput(
  node: Node,
  handler: (msg: NodeMessageInFlow, send: Send, done: Done) => Promise<void>,
): void {
  node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
    let finished = false;
    const once: Done = (err) => {
      if (finished) return;
      finished = true;
      done(err);
    };
    handler(msg, send, once).catch((err: unknown) => once(toError(err)));
  });
}

/** Close handlers must take `(removed, done)`: an async one-argument handler makes Node-RED wait 15 s. */
export function onClose(node: Node, handler: (removed: boolean) => Promise<void>): void {
  node.on('close', (removed: boolean, done: () => void) => {
    handler(removed).then(done, (err: unknown) => {
      node.warn(`close: ${toError(err).message}`);
      done();
    });
  });
}

/** A failure of the store as users read it: code STORE_UNAVAILABLE, message "store unavailable: …". */
export function storeError(err: unknown): Error {
  if (err instanceof SyncError) return err;
  return new SyncError('STORE_UNAVAILABLE', `store unavailable: ${toError(err).message}`, { cause: err });
}

export function toError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

/** Parses a node's settings with its schema; the error names every field that is wrong. */
export function parseSettings<T extends z.ZodTypeAny>(schema: T, def: unknown): z.infer<T> {
  const result = schema.safeParse(def);
  if (result.success) return result.data;
  const issues: Issue[] = result.error.issues.map((i) => ({ field: formatPath(i.path), message: i.message }));
  throw new SyncError('INVALID_SETTINGS', `invalid settings: ${issues.map((i) => `${i.field} ${i.message}`).join('; ')}`, { issues });
}

/** Status text stays short (the editor truncates it); `text` is an i18n key resolved with RED._. */
export type StatusState = { fill: 'red' | 'green' | 'yellow' | 'blue' | 'grey'; shape: 'dot' | 'ring'; text: string };

export function statusSetter(RED: NodeAPI, node: Node, prefix: string) {
  let last = '';
  return (fill: StatusState['fill'], shape: StatusState['shape'], key: string, vars?: Record<string, string | number>) => {
    const text = RED._(`${prefix}.status.${key}`, vars);
    const sig = `${fill}|${shape}|${text}`;
    if (sig === last) return; // status events are broadcast to every editor: do not repeat them
    last = sig;
    node.status({ fill, shape, text });
  };
}

/**
 * For a node whose settings or config cannot work: a red status, one error in the log, and every message answered
 * with the reason through done(err) (a Catch node sees it), so nothing is silently dropped.
 */
export function failMisconfigured(node: Node, setStatus: ReturnType<typeof statusSetter>, err: unknown): void {
  const reason = toError(err);
  setStatus('red', 'ring', 'misconfigured');
  node.error(reason.message);
  onInput(node, async () => {
    throw reason;
  });
}
