import { planLearn, resolveWith, type IdentityView } from '../../identity/plan';
import type { IdentityMap, IdentityMatch, IdentityProfile, ProfileRecord } from '../../identity/types';
import type { IdentityStore } from '../identity-store';

/** The identity graph in two maps; every call runs synchronously inside one tick, so it is atomic by construction. */
export class MemoryIdentityStore implements IdentityStore {
  private readonly links = new Map<string, string>();
  private readonly profiles = new Map<string, ProfileRecord>();
  private readonly view: IdentityView = {
    link: (id) => this.links.get(id),
    profile: (key) => this.profiles.get(key),
  };

  constructor() {}

  async learn(observations: IdentityMap[], now: number): Promise<Array<IdentityProfile | undefined>> {
    const { changes, profiles } = planLearn(this.view, observations, now);
    for (const [id, key] of changes.links) {
      if (key === null) this.links.delete(id);
      else this.links.set(id, key);
    }
    for (const [key, p] of changes.profiles) {
      if (p === null) this.profiles.delete(key);
      else this.profiles.set(key, structuredClone(p));
    }
    return profiles;
  }

  async resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>> {
    return resolveWith(this.view, lookups);
  }

  async profileCount(): Promise<number> {
    return this.profiles.size;
  }
}
