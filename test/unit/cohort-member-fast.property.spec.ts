import { expect } from 'chai';
import fc from 'fast-check';
import { sanitizeJson } from '../../src/cohort/safe-json';
import { CohortMember, CohortWebhookBody, fastCohortMember, parseCohortWebhookBody } from '../../src/schemas/cohort-webhook';

/**
 * fastCohortMember skips zod for members that look as Mixpanel sends them. The schema stays the one source of truth:
 * whatever the fast path accepts, the schema must accept too and return the same object (same keys, in the same
 * order, absent ones left out, null ones undefined); whatever it declines goes to the schema. Members here are as
 * cohort-in sees them: JSON, sanitised (null-prototype objects).
 */
const text = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom('', ' ', 'ann@example.com', 'x'.repeat(4096), 'x'.repeat(4097)),
);
const value = fc.oneof(text, fc.constant(null), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(),
  fc.constant({ nested: 1 }), fc.constant(['a']));
const distinctId = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('', 'x'.repeat(1024), 'x'.repeat(1025)), fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant(null), fc.boolean(), fc.constant({}));
const member = fc.record({
  mixpanel_distinct_id: distinctId,
  email: fc.oneof(text, value),
  first_name: fc.oneof(text, value),
  last_name: text,
  phone_number: fc.oneof(text, value),
  $mparticle_user_id: fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
  properties: fc.constant({ $mparticle_user_id: '42' }),
  zz_extra: value,
}, { requiredKeys: [] });
// As it arrives: keys in any order, then sanitised like every webhook body.
const shuffled = member.chain((m) => fc.shuffledSubarray(Object.keys(m), { minLength: Object.keys(m).length })
  .map((keys) => sanitizeJson(Object.fromEntries(keys.map((k) => [k, (m as Record<string, unknown>)[k]])))));

describe('cohort members without zod (property): the same as the schema, or declined', () => {
  it('a member the fast path accepts, the schema accepts, with the same result', () => {
    let accepted = 0;
    fc.assert(fc.property(shuffled, (raw) => {
      const fast = fastCohortMember(raw);
      if (fast === undefined) return;
      accepted += 1;
      const slow = CohortMember.safeParse(raw);
      expect(slow.success).to.equal(true);
      expect(fast).to.deep.equal(slow.data);
      expect(Object.keys(fast)).to.deep.equal(Object.keys(slow.data!));
    }), { numRuns: 2000 });
    expect(accepted, 'the generator reaches the fast path (~10 % of members)').to.be.greaterThan(100);
  });

  it('a whole body parses to the same value or the same first error either way', () => {
    const body = fc.record({
      action: fc.constantFrom('members', 'add_members', 'bogus'),
      parameters: fc.record({
        mixpanel_cohort_id: fc.oneof(fc.constant('5471208'), fc.constant('')),
        mixpanel_session_id: fc.constantFrom('s', null, ''),
        members: fc.array(shuffled, { maxLength: 5 }),
      }),
    });
    fc.assert(fc.property(body, (raw) => {
      const clean = sanitizeJson(raw);
      const fast = parseCohortWebhookBody(clean);
      const slow = CohortWebhookBody.safeParse(clean);
      expect(fast.success).to.equal(slow.success);
      if (slow.success) expect(fast.data).to.deep.equal(slow.data);
      else expect(fast.error!.issues[0]).to.deep.equal(slow.error.issues[0]);
    }), { numRuns: 1000 });
  });
});
