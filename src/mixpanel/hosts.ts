import { REGION_HOSTS, type MixpanelConfigSettings } from '../schemas/settings';

/** The ingestion base URL for a region; `custom` uses the configured host (a proxy, or a local test server). */
export function resolveApiHost(region: MixpanelConfigSettings['region'], apiHost: string): string {
  if (region === 'custom') return apiHost.replace(/\/+$/, '');
  return REGION_HOSTS[region];
}
