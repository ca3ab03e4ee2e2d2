/**
 * One error type for everything a user can act on. `code` is stable (flows and Catch nodes may branch on it);
 * `field` names the offending input path when there is one. Node-RED copies `err.code` to `msg.error.code`.
 */
export type ErrorCode =
  | 'INVALID_INPUT'
  | 'NO_IDENTITY'
  | 'INVALID_SETTINGS'
  | 'MIXPANEL_REJECTED'
  | 'MIXPANEL_AUTH'
  | 'MIXPANEL_RATE_LIMITED'
  | 'MIXPANEL_UNAVAILABLE'
  | 'PEOPLE_DISABLED'
  | 'STORE_UNAVAILABLE'
  | 'WEBHOOK_AUTH'
  | 'WEBHOOK_INVALID'
  | 'WEBHOOK_TOO_LARGE'
  | 'UNRESOLVED_IDENTITY'
  | 'CLOSED';

export interface Issue {
  /** Dotted path into the input, e.g. `user_profiles[2].mpid`. */
  field: string;
  message: string;
  /** Set when the issue has its own code (e.g. NO_IDENTITY); otherwise the error's code applies. */
  code?: ErrorCode;
}

export class SyncError extends Error {
  readonly code: ErrorCode;
  readonly issues: Issue[];
  readonly status?: number;

  constructor(code: ErrorCode, message: string, opts: { issues?: Issue[]; status?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SyncError';
    this.code = code;
    this.issues = opts.issues ?? [];
    if (opts.status !== undefined) this.status = opts.status;
  }
}

/** Formats a path such as ['user_profiles', 2, 'mpid'] the way users read it: `user_profiles[2].mpid`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

export function issuesToMessage(prefix: string, issues: Issue[]): string {
  const shown = issues.slice(0, 3).map((i) => `${i.field}: ${i.message}`);
  const more = issues.length > 3 ? ` (+${issues.length - 3} more)` : '';
  return `${prefix}: ${shown.join('; ')}${more}`;
}
