import { SyncError, issuesToMessage, type Issue } from '../errors';
import { normalizeIdentityName, type IdentityName } from './names';
import type { IdentityMap } from './types';
import { normalizeIdentityValue } from './values';

/** More identities than this in one message is a mistake (or an attack), not a batch. */
export const MAX_ITEMS = 100000;

export interface ParsedIdentities {
  /** True when the payload was an array (or a Firehose request with `user_profiles`): results are per item. */
  many: boolean;
  items: IdentityMap[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function join(at: string, field: string): string {
  return at ? `${at}.${field}` : field;
}

function add(out: IdentityMap, issues: Issue[], field: string, name: IdentityName, raw: unknown): void {
  const r = normalizeIdentityValue(name, raw);
  if ('error' in r) issues.push({ field, message: r.error });
  else if ('value' in r) out[name] = r.value;
}

/** Mixpanel's `$device_id` is an anonymous distinct ID: profiles of such users live at `$device:<id>`. */
function deviceDistinctId(raw: unknown): unknown {
  if (typeof raw !== 'string' || raw.trim() === '') return raw;
  const v = raw.trim();
  return v.startsWith('$device:') ? v : `$device:${v}`;
}

/** A flat object: every key that is an identity name (any spelling) is taken; other keys are ignored. */
function parseFlat(obj: Record<string, unknown>, at: string, out: IdentityMap, issues: Issue[]): void {
  for (const key of Object.keys(obj)) {
    const lower = key.trim().toLowerCase();
    if (lower === '$device_id') {
      add(out, issues, join(at, key), 'distinct_id', deviceDistinctId(obj[key]));
      continue;
    }
    const name = normalizeIdentityName(key);
    if (name) add(out, issues, join(at, key), name, obj[key]);
  }
}

/**
 * An identity list entry: Firehose `{type, encoding, value}`, outbound JSON `{identity_type, identity}`. A hashed
 * value keeps its encoding as a prefix (`sha256:…`) so it never links with a raw value that happens to look alike.
 */
function parseEntry(entry: unknown, field: string, out: IdentityMap, issues: Issue[]): void {
  if (!isObject(entry)) {
    issues.push({ field, message: 'must be an object {type, value}' });
    return;
  }
  const type = entry.type ?? entry.identity_type;
  const value = entry.value ?? entry.identity;
  if (typeof type !== 'string' && typeof type !== 'number') {
    issues.push({ field: `${field}.type`, message: 'must name an identity type' });
    return;
  }
  const name = normalizeIdentityName(type);
  if (!name) return; // partner identities and types we do not know are not ours to link
  const encoding = typeof entry.encoding === 'string' ? entry.encoding.toLowerCase() : 'raw';
  const before = out[name];
  add(out, issues, `${field}.value`, name, value);
  if (encoding !== 'raw' && out[name] !== undefined && out[name] !== before && name !== 'mpid') {
    out[name] = `${encoding}:${out[name]}`;
  }
}

function parseIdentityList(v: unknown, field: string, out: IdentityMap, issues: Issue[]): void {
  if (Array.isArray(v)) v.forEach((e, i) => parseEntry(e, `${field}[${i}]`, out, issues));
  else if (isObject(v)) parseFlat(v, field, out, issues);
  else if (v !== undefined && v !== null) issues.push({ field, message: 'must be an object or an array of {type, value}' });
}

const MPARTICLE_KEYS = ['user_identities', 'device_identities', 'device_info'];

/** One user: a flat identity object, an mParticle-style `{mpid, user_identities, device_identities|device_info}`,
 *  or the plain audience form `{user: {...}}`. */
function parseItem(raw: unknown, at: string, issues: Issue[]): IdentityMap {
  const out: IdentityMap = {};
  if (!isObject(raw)) {
    issues.push({ field: at || '(root)', message: 'must be an object of identities, e.g. {"customer_id": "abc"}' });
    return out;
  }
  if (MPARTICLE_KEYS.some((k) => k in raw)) {
    if ('mpid' in raw) add(out, issues, join(at, 'mpid'), 'mpid', raw.mpid);
    for (const k of MPARTICLE_KEYS) parseIdentityList(raw[k], join(at, k), out, issues);
    return out;
  }
  if (isObject(raw.user)) {
    parseFlat(raw.user, join(at, 'user'), out, issues);
    return out;
  }
  parseFlat(raw, at, out, issues);
  return out;
}

/**
 * Parses `msg.payload` of `identity-resolve`: one user, an array of users, or a Firehose request (`user_profiles`).
 * Throws one INVALID_INPUT SyncError naming every bad field; a user without any identity is not an error here (it
 * is reported per item as `no-identity`).
 */
export function parseIdentityInput(payload: unknown): ParsedIdentities {
  const issues: Issue[] = [];
  let many = false;
  let items: IdentityMap[];
  if (Array.isArray(payload) || (isObject(payload) && Array.isArray(payload.user_profiles))) {
    many = true;
    const list = (Array.isArray(payload) ? payload : (payload as { user_profiles: unknown[] }).user_profiles);
    const base = Array.isArray(payload) ? '' : 'user_profiles';
    if (list.length > MAX_ITEMS) {
      throw new SyncError('INVALID_INPUT', `invalid input: payload: at most ${MAX_ITEMS} users per message`, {
        issues: [{ field: base || 'payload', message: `at most ${MAX_ITEMS} users per message` }],
      });
    }
    items = list.map((u, i) => parseItem(u, base ? `${base}[${i}]` : `[${i}]`, issues));
  } else {
    items = [parseItem(payload, '', issues)];
  }
  if (issues.length) {
    const named = issues.map((i) => ({ ...i, field: i.field.startsWith('[') || i.field === '(root)' ? `payload${i.field === '(root)' ? '' : i.field}` : `payload.${i.field}` }));
    throw new SyncError('INVALID_INPUT', issuesToMessage('invalid input', named), { issues: named });
  }
  return { many, items };
}
