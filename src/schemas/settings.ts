import { z } from 'zod';
import { DEFAULT_IDENTITY_TARGETS, IDENTITY_NAMES } from '../identity/names';

/**
 * Node settings as flows store them. These schemas are the single source of the settings' types and defaults; the
 * editor's `defaults` mirror them (a test checks that they agree). Values are plain codes; labels live in i18n.
 */

/** Node-RED stores numbers typed in the editor as strings: accept both. */
const num = (def: number, min: number, max: number) =>
  z.preprocess((v) => (v === '' || v === undefined || v === null ? def : Number(v)), z.number().int().min(min).max(max));
const bool = (def: boolean) =>
  z.preprocess((v) => (v === undefined || v === '' ? def : v === true || v === 'true'), z.boolean());

export const REGIONS = ['us', 'eu', 'in', 'custom'] as const;
export const REGION_HOSTS: Record<Exclude<(typeof REGIONS)[number], 'custom'>, string> = {
  us: 'https://api.mixpanel.com',
  eu: 'https://api-eu.mixpanel.com',
  in: 'https://api-in.mixpanel.com',
};

/** Mixpanel's documented ingestion limit: "~30k events per second" per project, on a rolling one-minute window. */
export const DEFAULT_RATE_LIMIT = 30000;

export const MixpanelConfigSettings = z.object({
  name: z.string().default(''),
  // `${MIXPANEL_REGION}` substitutes to '' when the variable is unset: that means the default region.
  region: z.preprocess((v) => (v === '' ? undefined : v), z.enum(REGIONS).default('us')),
  apiHost: z.string().default(''),
  dryRun: bool(false),
  /** Updates per second this project may receive from this Node-RED; 0 = no limit until Mixpanel answers 429. */
  rateLimit: num(DEFAULT_RATE_LIMIT, 0, 10_000_000),
}).superRefine((s, ctx) => {
  if (s.region !== 'custom') return;
  if (!/^https?:\/\/[^\s/]+/.test(s.apiHost)) {
    ctx.addIssue({ code: 'custom', path: ['apiHost'], message: 'must be a base URL such as http://127.0.0.1:8080 when region is custom' });
  }
});
export type MixpanelConfigSettings = z.infer<typeof MixpanelConfigSettings>;

export const STORE_BACKENDS = ['sqlite', 'redis', 'memory'] as const;
export const StoreSettings = z.object({
  name: z.string().default(''),
  backend: z.enum(STORE_BACKENDS).default('sqlite'),
  /** SQLite file; empty means `<userDir>/mixpanel-sync.db`. */
  path: z.string().default(''),
  url: z.string().default('redis://127.0.0.1:6379'),
  keyPrefix: z.string().default('mpsync:'),
});
export type StoreSettings = z.infer<typeof StoreSettings>;

export const TARGET_MODES = ['each', 'first'] as const;
export const OUTPUT_WHEN = ['acked', 'queued'] as const;
export const AudienceOutSettings = z.object({
  name: z.string().default(''),
  useMixpanelPeople: bool(true),
  perAudienceAttribute: bool(false),
  identityTargets: z.preprocess(
    (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
    z.array(z.enum(IDENTITY_NAMES)).min(1, 'choose at least one identity').default([...DEFAULT_IDENTITY_TARGETS]),
  ),
  targetMode: z.enum(TARGET_MODES).default('each'),
  /** Complete each user's identities from the identity links `identity-resolve` learnt in the same store. */
  resolveIdentities: bool(false),
  /** Send `In <Audience>` false to every member when an audience subscription is removed (the hosted one never does). */
  cleanupOnRemove: bool(true),
  /** Output when Mixpanel acknowledged (default) or as soon as the change is safely stored. */
  outputWhen: z.enum(OUTPUT_WHEN).default('acked'),
  batchSize: num(2000, 1, 2000),
  flushMs: num(250, 0, 60000),
  concurrency: num(2, 1, 16),
  /** After this long without an acknowledgement (and at least 5 attempts) an update is given up as dead. */
  retryWindowSec: num(86400, 60, 30 * 86400),
});
export type AudienceOutSettings = z.infer<typeof AudienceOutSettings>;
