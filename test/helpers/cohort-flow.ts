/**
 * The flow the cohort-in node tests share: a store, the node on `/mixpanel/cohorts` with both outputs and its
 * errors (through a Catch node) collected by helper nodes `out1`, `out2` and `caught`.
 */
export function cohortFlow(opts: Record<string, unknown> = {}, store: Record<string, unknown> = { backend: 'memory' }) {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'st', type: 'mixpanel-sync-store', ...store },
    { id: 'in', type: 'mixpanel-cohort-in', z: 'tab', store: 'st', path: '/mixpanel/cohorts', wires: [['out1'], ['out2']], ...opts },
    { id: 'out1', type: 'helper', z: 'tab' },
    { id: 'out2', type: 'helper', z: 'tab' },
    { id: 'c', type: 'catch', z: 'tab', scope: ['in'], uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
}
