import type { OutboxItem, ProfileProps } from './audience-store';

/**
 * An outbox item read back from a store that keeps the props as JSON. The sender only needs that JSON (it goes into
 * the request as it is), so the props are parsed the first time something else asks for them (a dead letter, a test).
 */
export class StoredOutboxItem implements OutboxItem {
  private parsed: ProfileProps | undefined;

  constructor(
    readonly distinctId: string,
    readonly propsJson: string,
    readonly version: number,
    readonly count: number,
    readonly attempts: number,
    readonly queuedAt: number,
  ) {}

  get props(): ProfileProps {
    return (this.parsed ??= JSON.parse(this.propsJson) as ProfileProps);
  }
}
