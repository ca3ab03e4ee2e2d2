
import type { IdentityStore } from '../identity-store';

/** Placeholder until the identity work fills it in. */
export class MemoryIdentityStore implements IdentityStore {
  constructor() {}
}
