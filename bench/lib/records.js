'use strict';
// The one profile update every tool sends: exactly what mixpanel-audience-out writes for a user who joins audiences
// 11036 and 11034 with "One attribute per audience" on (about 170 bytes as JSON).
const PROPS = { SegmentMembership: "'11036','11034'", 'In Aspiring Athenians': true, 'In Ibiza Dreamers': true };
const AUDIENCES = [{ id: 11036, name: 'Aspiring Athenians' }, { id: 11034, name: 'Ibiza Dreamers' }];

/**
 * User i's number, scattered: a bijection of [0, 2^21) (multiply by an odd constant, then xorshift). Real MPIDs are
 * random 64-bit numbers and real customer IDs come in no particular order, so consecutive users must not be
 * neighbours in the store's keys: with `cust-<i>` in order, every 1000-user message wrote to a handful of B-tree pages
 * and the benchmark measured a best case no user sees.
 */
const SPACE = 1 << 21;
function scatter(i) {
  if (i >= SPACE) throw new Error(`user ${i} is beyond the scattered range`);
  let x = Math.imul(i, 0x9e3779b1) & (SPACE - 1);
  x ^= x >>> 11;
  return x;
}

function record(i, token = 't') {
  return { $token: token, $distinct_id: `cust-${scatter(i)}`, $ip: '0', $ignore_time: true, $set: { ...PROPS } };
}

/** The same change as node input: mParticle Firehose profile (batch shape) and the plain form (low-code shape). */
function firehoseProfile(i) {
  return {
    mpid: String(1000000000000 + scatter(i)),
    user_identities: [{ type: 'customer', value: `cust-${scatter(i)}` }],
    audiences: AUDIENCES.map((a) => ({ audience_id: a.id, audience_name: a.name, action: 'add' })),
  };
}
function firehoseRequest(from, count) {
  const user_profiles = new Array(count);
  for (let k = 0; k < count; k++) user_profiles[k] = firehoseProfile(from + k);
  return { type: 'audience_membership_change_request', id: `bench-${from}`, timestamp_ms: Date.now(), firehose_version: '2.1.0', user_profiles };
}
function plainChange(i) {
  return { user: { customer_id: `cust-${scatter(i)}` }, audiences: AUDIENCES.map((a) => ({ id: a.id, name: a.name, action: 'add' })) };
}

/**
 * A cohort member's number as it appears in its IDs, and back: the 7 decimal digits of i reversed (its own inverse),
 * so the members of one page land all over the store's keys, as real MPIDs and distinct IDs do.
 */
const reversed7 = (x) => String(x).padStart(7, '0').split('').reverse().join('');
function memberDigits(i) {
  if (i >= 1e7) throw new Error(`member ${i} is beyond the scattered range`);
  return reversed7(i);
}
function memberIndex(digits) {
  return /^\d{7}$/.test(digits) ? Number(reversed7(digits)) : NaN;
}

module.exports = { PROPS, AUDIENCES, scatter, record, firehoseRequest, plainChange, memberDigits, memberIndex };
