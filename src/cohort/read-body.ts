import type { IncomingMessage } from 'node:http';

/**
 * Reads a webhook request body with a byte cap, without buffering past it.
 *
 * Node-RED gotcha (reference/feasibility.md G6): when httpAdminRoot equals httpNodeRoot, the admin app's JSON body
 * parser has already consumed the stream before our route runs, and waiting for 'data'/'end' would hang forever.
 * Express body parsers mark that with `req._body = true`: then the parsed `req.body` is used instead.
 */
export type BodyRead =
  | { kind: 'raw'; text: string }
  | { kind: 'parsed'; value: unknown }
  | { kind: 'too-large' }
  | { kind: 'aborted' };

type ParsedRequest = IncomingMessage & { _body?: boolean; body?: unknown };

export function readBody(req: IncomingMessage, maxBytes: number): Promise<BodyRead> {
  const r = req as ParsedRequest;
  if (r._body) return Promise.resolve({ kind: 'parsed', value: r.body });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    // Refuse before reading; the rest of the stream is drained so the reply can still reach the client.
    req.resume();
    return Promise.resolve({ kind: 'too-large' });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (v: BodyRead) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onError);
      resolve(v);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        chunks.length = 0;
        req.resume(); // keep draining (chunked uploads with no Content-Length): memory stays flat
        finish({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish({ kind: 'raw', text: Buffer.concat(chunks, size).toString('utf8') });
    const onError = () => finish({ kind: 'aborted' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onError);
  });
}
