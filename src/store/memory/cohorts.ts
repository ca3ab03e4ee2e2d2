
import type { CohortStore } from '../cohort-store';

/** Placeholder until the cohort work fills it in. */
export class MemoryCohortStore implements CohortStore {
  constructor() {}
}
