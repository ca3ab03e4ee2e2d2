import { z } from 'zod';

/**
 * Settings of `mixpanel-cohort-in` as flows store them (plain codes; labels live in i18n). The editor's `defaults`
 * mirror this schema; test/unit/cohort-editor-defaults.spec.ts checks that they agree.
 */

/** Node-RED stores numbers typed in the editor as strings: accept both (same rule as src/schemas/settings.ts). */
const num = (def: number, min: number, max: number) =>
  z.preprocess((v) => (v === '' || v === undefined || v === null ? def : Number(v)), z.number().min(min).max(max));
const bool = (def: boolean) =>
  z.preprocess((v) => (v === undefined || v === '' ? def : v === true || v === 'true'), z.boolean());

export const COHORT_AUTH = ['basic', 'token', 'none'] as const;
export type CohortAuth = (typeof COHORT_AUTH)[number];
export const PROTECTION_LEVELS = ['update-only', 'create-and-update'] as const;
export type ProtectionLevel = (typeof PROTECTION_LEVELS)[number];
export const ENVIRONMENTS = ['production', 'development'] as const;
export type MparticleEnvironment = (typeof ENVIRONMENTS)[number];

export const CohortInSettings = z.object({
  name: z.string().default(''),
  /**
   * Route under httpNodeRoot; empty = no route of its own (requests come from an `http in` node on the input).
   * Express route syntax (`:param`, `*`) is not wanted here: plain segments only.
   */
  path: z.string().trim().default('/mixpanel/cohorts')
    .refine((p) => p === '' || p.startsWith('/'), 'must start with /')
    .refine((p) => p === '' || /^\/[A-Za-z0-9._~\-/]*$/.test(p), 'may only contain letters, digits, / . _ ~ -'),
  auth: z.enum(COHORT_AUTH).default('basic'),
  protection: z.enum(PROTECTION_LEVELS).default('update-only'),
  attributePrefix: z.string().max(200).default(''),
  splitMembers: bool(false),
  environment: z.enum(ENVIRONMENTS).default('production'),
  /** A `mixpanel-sync-store` config node id; empty = the default SQLite store in the user directory. */
  store: z.string().default(''),
  /** Request body cap in MB (Mixpanel pages of 1000 members are well under 1 MB). */
  maxBodyMb: num(5, 0.01, 100),
});
export type CohortInSettings = z.infer<typeof CohortInSettings>;
