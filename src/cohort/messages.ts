import type { CohortAction } from '../schemas/cohort-webhook';
import type { CohortMemberRef } from '../store/cohort-store';
import type { DeviceInfo, Resolution, UserIdentities } from './identity';
import type { MparticleEnvironment } from './settings';

/** What a message says about the page it comes from (`msg.cohort`). */
export interface CohortInfo {
  id: string;
  name: string;
  projectId?: string;
  action: CohortAction;
  sessionId?: string;
  page: number;
  totalPages: number;
  /** What the batches of this message set: `add` → true, `remove` → false. */
  change: 'add' | 'remove';
  /** For `members`: this page completed the export (its removals are in the `remove` messages of this page). */
  complete: boolean;
}

/** An mParticle Events API batch (reference/mparticle-side.md §3.2); `mpid` stays a decimal string. */
export interface MparticleBatch {
  environment: MparticleEnvironment;
  mpid?: string;
  user_identities: UserIdentities;
  /** Only for a profile the identity store knows by device IDs alone (no MPID, no user identity). */
  device_info?: DeviceInfo;
  user_attributes: Record<string, boolean>;
}

export interface UnmatchedMember {
  mixpanel_distinct_id: string;
  email?: string;
  value: boolean;
}

export interface OutMessage {
  payload: unknown;
  cohort: CohortInfo;
}

/** Removals at the end of a large export can be the whole previous cohort: they go out in page-sized messages. */
export const MESSAGE_CHUNK = 1000;

export interface BuildOptions {
  environment: MparticleEnvironment;
  attribute: string;
  splitMembers: boolean;
}

/**
 * Turns resolved members into output messages: output 1 gets one message per chunk (payload = array of batches),
 * or one per member with `splitMembers` (payload = one batch); output 2 gets one message per chunk with the count
 * and the unmatched members.
 */
export function buildMessages(
  refs: CohortMemberRef[],
  resolutions: Resolution[],
  value: boolean,
  info: CohortInfo,
  opts: BuildOptions,
): { updates: OutMessage[]; unmatched: OutMessage[] } {
  const batches: MparticleBatch[] = [];
  const missing: UnmatchedMember[] = [];
  refs.forEach((ref, i) => {
    const r = resolutions[i];
    if (r.matched) {
      // A computed key defines an own property even for a cohort named "__proto__".
      const attrs = { [opts.attribute]: value };
      const b: MparticleBatch = {
        environment: opts.environment,
        ...(r.mpid ? { mpid: r.mpid } : {}),
        user_identities: r.userIdentities,
        ...(r.deviceInfo ? { device_info: r.deviceInfo } : {}),
        user_attributes: attrs,
      };
      batches.push(b);
    } else {
      const m: UnmatchedMember = { mixpanel_distinct_id: ref.distinctId, value };
      if (ref.email) m.email = ref.email;
      missing.push(m);
    }
  });
  const updates: OutMessage[] = [];
  if (opts.splitMembers) {
    for (const b of batches) updates.push({ payload: b, cohort: { ...info } });
  } else {
    for (let i = 0; i < batches.length; i += MESSAGE_CHUNK) updates.push({ payload: batches.slice(i, i + MESSAGE_CHUNK), cohort: { ...info } });
  }
  const unmatched: OutMessage[] = [];
  for (let i = 0; i < missing.length; i += MESSAGE_CHUNK) {
    const members = missing.slice(i, i + MESSAGE_CHUNK);
    unmatched.push({ payload: { count: members.length, members }, cohort: { ...info } });
  }
  return { updates, unmatched };
}
