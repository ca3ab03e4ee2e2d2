import { z } from 'zod';

/**
 * The body Mixpanel's cohort-sync webhook POSTs (reference/mixpanel-api.md §6.2, §6.7). Loose on purpose: unknown
 * fields are kept (Mixpanel may add some, "Properties to Export" adds member properties), ids may be strings or
 * numbers (their JSON type is not documented). Only what we need to act on is required; everything else passes.
 */

/** Mixpanel sends 1000 members per page; anything far beyond that is not Mixpanel and is refused. */
export const MAX_MEMBERS_PER_PAGE = 10000;
/** 10 M users per cohort / 1000 per page, with room. */
export const MAX_PAGES = 100000;

const id = z.union([z.string().trim().min(1).max(256), z.number().int().nonnegative()])
  .transform((v) => String(v));

/** `null` reads as absent: a profile without an e-mail may come as `"email": null`. */
const optionalText = z.preprocess((v) => (v === null ? undefined : v), z.string().max(4096).optional());

export const CohortMember = z.looseObject({
  mixpanel_distinct_id: z.union([z.string().min(1).max(1024), z.number()]).transform((v) => String(v)),
  email: optionalText,
  first_name: optionalText,
  last_name: optionalText,
  phone_number: optionalText,
});
export type CohortMember = z.infer<typeof CohortMember>;

export const COHORT_ACTIONS = ['members', 'add_members', 'remove_members'] as const;
export type CohortAction = (typeof COHORT_ACTIONS)[number];

const pageNumber = z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  z.number().int().min(1).max(MAX_PAGES));

export const PageInfo = z.looseObject({
  total_pages: pageNumber,
  page_count: pageNumber,
}).refine((p) => p.page_count <= p.total_pages, { message: 'page_count must not exceed total_pages', path: ['page_count'] });

const parameters = {
  mixpanel_project_id: id.optional(),
  mixpanel_cohort_id: id,
  mixpanel_cohort_name: optionalText,
  mixpanel_cohort_description: optionalText,
  mixpanel_session_id: z.preprocess((v) => (v === null || v === '' ? undefined : v), id.optional()),
  page_info: PageInfo.optional(),
  members: z.array(CohortMember).max(MAX_MEMBERS_PER_PAGE),
};

export const CohortWebhookBody = z.looseObject({
  action: z.enum(COHORT_ACTIONS),
  parameters: z.looseObject(parameters),
});
export type CohortWebhookBody = z.infer<typeof CohortWebhookBody>;

/** The body with its members left unchecked: for `parseCohortWebhookBody`, which checks them on its own. */
const CohortWebhookEnvelope = z.looseObject({
  action: z.enum(COHORT_ACTIONS),
  parameters: z.looseObject({ ...parameters, members: z.array(z.unknown()).max(MAX_MEMBERS_PER_PAGE) }),
});

const MEMBER_TEXT = ['email', 'first_name', 'last_name', 'phone_number'] as const;

/**
 * CohortMember without zod for the members that look as Mixpanel sends them: a 1000-member page's body is checked in
 * ~1.0 µs a member instead of ~2.7, a tenth of a recurring export's whole cost once its members are no longer rewritten. Returns undefined as soon as
 * anything is unusual, and the schema then decides (and words the error). So it must accept nothing the schema
 * rejects and return what the schema returns: the schema's keys first (absent ones left out, null ones undefined),
 * then every other key as it came (test/unit/cohort-member-fast.property.spec.ts compares the two).
 */
export function fastCohortMember(raw: unknown): CohortMember | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const m = raw as Record<string, unknown>;
  const id = m.mixpanel_distinct_id;
  let distinctId: string;
  if (typeof id === 'string') {
    if (id.length < 1 || id.length > 1024) return undefined;
    distinctId = id;
  } else if (typeof id === 'number' && Number.isFinite(id)) distinctId = String(id);
  else return undefined;
  const out: Record<string, unknown> = { mixpanel_distinct_id: distinctId };
  for (const key of MEMBER_TEXT) {
    if (!Object.prototype.hasOwnProperty.call(m, key)) continue;
    const v = m[key];
    if (v === null || v === undefined) out[key] = undefined;
    else if (typeof v === 'string' && v.length <= 4096) out[key] = v;
    else return undefined;
  }
  for (const key of Object.keys(m)) if (!Object.prototype.hasOwnProperty.call(out, key)) out[key] = m[key];
  return out as CohortMember;
}

/** CohortWebhookBody.safeParse, with the usual members checked by fastCohortMember: the same result, sooner. */
export function parseCohortWebhookBody(raw: unknown): ReturnType<typeof CohortWebhookBody.safeParse> {
  const members = (raw as { parameters?: { members?: unknown } } | null)?.parameters?.members;
  if (Array.isArray(members) && members.length <= MAX_MEMBERS_PER_PAGE) {
    const fast = members.map(fastCohortMember);
    if (fast.every((f) => f !== undefined)) {
      const envelope = CohortWebhookEnvelope.safeParse(raw);
      if (envelope.success) {
        envelope.data.parameters.members = fast;
        return envelope as ReturnType<typeof CohortWebhookBody.safeParse>;
      }
    }
  }
  return CohortWebhookBody.safeParse(raw);
}

/** Our reply; Mixpanel shows `error.message` in its UI and expects `action` to echo the request's. */
export type CohortWebhookReply =
  | { action: string; status: 'success' }
  | { action: string; status: 'failure'; error: { message: string; code: number } };
