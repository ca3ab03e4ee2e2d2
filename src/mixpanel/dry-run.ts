import type { EngagePost } from './engage-client';

/**
 * Dry run: requests are built and checked exactly as for Mixpanel, then answered locally instead of being sent.
 * The check is the contract of /engage (JSON array of 1–2000 updates, each with $token, $distinct_id and $set), so a
 * flow that works in dry run produces requests Mixpanel accepts.
 */
export const dryRunPost: EngagePost = async (body) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { kind: 'rejected', status: 400, reason: 'dry run: the request body is not JSON' };
  }
  if (!Array.isArray(parsed) || parsed.length < 1 || parsed.length > 2000) {
    return { kind: 'rejected', status: 400, reason: 'dry run: the body must be an array of 1 to 2000 updates' };
  }
  for (const u of parsed as Array<Record<string, unknown>>) {
    if (!u || typeof u.$token !== 'string' || typeof u.$distinct_id !== 'string' || !u.$distinct_id || typeof u.$set !== 'object') {
      return { kind: 'rejected', status: 400, reason: 'dry run: an update lacks $token, $distinct_id or $set' };
    }
  }
  return { kind: 'ok' };
};
