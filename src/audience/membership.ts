import type { AudienceRef, ProfileProps, UserMembership } from '../store/audience-store';
import type { UserChange } from './parse-input';

/**
 * SegmentMembership exactly as mParticle writes it: every audience ID in single quotes, comma-separated, no spaces,
 * in the order the user joined (the seed's member of 11036 then 11034 reads `'11036','11034'`), `""` for none.
 */
export function segmentMembership(audiences: AudienceRef[]): string {
  return audiences.map((a) => `'${a.id}'`).join(',');
}

export function perAudienceProperty(name: string): string {
  return `In ${name}`;
}

export interface AppliedChange {
  membership: UserMembership;
  props: ProfileProps;
}

/**
 * Applies one user's change to their stored membership and returns the new membership plus the profile properties
 * to `$set`: always the whole SegmentMembership, and with `perAudience` an `In <name>` true/false per audience touched.
 */
export function applyUserChange(
  current: UserMembership | undefined,
  change: Pick<UserChange, 'changes' | 'snapshot'>,
  targets: string[],
  perAudience: boolean,
): AppliedChange {
  const audiences = [...(current?.audiences ?? [])];
  const index = new Map(audiences.map((a, i) => [a.id, i]));
  const touched = new Map<string, { name: string; member: boolean }>();
  const nameOf = (id: string, given?: string) => given || (index.has(id) ? audiences[index.get(id)!].name : '') || id;

  const add = (id: string, given?: string) => {
    const name = nameOf(id, given);
    if (index.has(id)) audiences[index.get(id)!] = { id, name }; // keeps its place; a rename updates the name
    else {
      index.set(id, audiences.length);
      audiences.push({ id, name });
    }
    touched.set(id, { name, member: true });
  };
  const remove = (id: string, given?: string) => {
    const name = nameOf(id, given);
    touched.set(id, { name, member: false });
    const at = index.get(id);
    if (at === undefined) return;
    audiences.splice(at, 1);
    index.clear();
    audiences.forEach((a, i) => index.set(a.id, i));
  };

  if (change.snapshot) {
    const wanted = new Set(change.snapshot.map((m) => m.id));
    for (const a of [...audiences]) if (!wanted.has(a.id)) remove(a.id);
    for (const m of change.snapshot) add(m.id, m.name);
  } else {
    for (const c of change.changes ?? []) (c.action === 'add' ? add : remove)(c.id, c.name);
  }

  const props: ProfileProps = { SegmentMembership: segmentMembership(audiences) };
  if (perAudience) for (const t of touched.values()) props[perAudienceProperty(t.name)] = t.member;

  const knownTargets = new Set(current?.targets ?? []);
  for (const t of targets) knownTargets.add(t);
  return { membership: { audiences, targets: [...knownTargets] }, props };
}
