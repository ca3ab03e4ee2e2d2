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

export const CohortWebhookBody = z.looseObject({
  action: z.enum(COHORT_ACTIONS),
  parameters: z.looseObject({
    mixpanel_project_id: id.optional(),
    mixpanel_cohort_id: id,
    mixpanel_cohort_name: optionalText,
    mixpanel_cohort_description: optionalText,
    mixpanel_session_id: z.preprocess((v) => (v === null || v === '' ? undefined : v), id.optional()),
    page_info: PageInfo.optional(),
    members: z.array(CohortMember).max(MAX_MEMBERS_PER_PAGE),
  }),
});
export type CohortWebhookBody = z.infer<typeof CohortWebhookBody>;

/** Our reply; Mixpanel shows `error.message` in its UI and expects `action` to echo the request's. */
export type CohortWebhookReply =
  | { action: string; status: 'success' }
  | { action: string; status: 'failure'; error: { message: string; code: number } };
