/** Cohort membership and page staging for `mixpanel-cohort-in` (filled in by the cohort work). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface CohortStore {}
