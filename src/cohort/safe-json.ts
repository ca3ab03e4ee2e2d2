/**
 * Untrusted JSON from the internet, made safe before anything else touches it:
 * - `__proto__`, `constructor` and `prototype` keys are dropped and every object is copied into a null-prototype
 *   object, so no later spread, merge or zod copy can reach `Object.prototype`;
 * - nesting is bounded (the webhook body is 4 levels deep; a 100k-deep array would blow the stack of any recursive
 *   consumer), and so is the number of values (the byte cap bounds it too, but a parsed body handed to us by
 *   Node-RED's own body parser did not pass our cap).
 */
export interface JsonLimits {
  maxDepth: number;
  maxValues: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { maxDepth: 32, maxValues: 2_000_000 };

export class UnsafeJsonError extends Error {}

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

/** Parses JSON text; throws SyntaxError for malformed text and UnsafeJsonError past the limits. */
export function parseJsonSafely(text: string, limits: JsonLimits = DEFAULT_JSON_LIMITS): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8 reports very deep nesting as a RangeError (stack): that is hostile input, not our failure.
    if (err instanceof RangeError) throw new UnsafeJsonError('the JSON body is nested too deeply');
    throw err;
  }
  return sanitizeJson(parsed, limits);
}

/** Deep-copies a parsed JSON value into null-prototype objects without forbidden keys, within the limits. */
export function sanitizeJson(value: unknown, limits: JsonLimits = DEFAULT_JSON_LIMITS): unknown {
  let count = 0;
  const walk = (v: unknown, depth: number): unknown => {
    if (++count > limits.maxValues) throw new UnsafeJsonError(`the JSON body has more than ${limits.maxValues} values`);
    if (v === null || typeof v !== 'object') return v;
    if (depth >= limits.maxDepth) throw new UnsafeJsonError(`the JSON body is nested deeper than ${limits.maxDepth} levels`);
    if (Array.isArray(v)) {
      const out = new Array<unknown>(v.length);
      for (let i = 0; i < v.length; i++) out[i] = walk(v[i], depth + 1);
      return out;
    }
    const out = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(v)) {
      if (FORBIDDEN.has(key)) continue;
      out[key] = walk((v as Record<string, unknown>)[key], depth + 1);
    }
    return out;
  };
  return walk(value, 0);
}
