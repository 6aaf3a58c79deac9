import type { EventRow } from '../store/store.js';
import { requireKnown } from './describe.js';
import type { Context } from './context.js';

/** The newest `n` events, of one instance (an unknown name is the exit-2 error) or of all. */
export function recentEvents(ctx: Context, name: string | undefined, n: number): EventRow[] {
  if (name) requireKnown(ctx, name);
  return ctx.store.listEvents(name, n);
}

/** `events --json`: each row as stored, times as ISO 8601 and `meta` parsed. */
export function eventsJson(events: EventRow[]) {
  return events.map((e) => ({
    ...e,
    ts: new Date(e.ts).toISOString(),
    meta: e.meta_json ? (JSON.parse(e.meta_json) as unknown) : null,
    meta_json: undefined,
  }));
}

/** GET /api/events: the events after `since` (oldest first), in the REST API's shape. */
export function apiEvents(ctx: Context, since: number, limit: number, instance?: string) {
  return ctx.store.eventsAfter(since, limit, instance).map(apiEvent);
}

/** GET /api/events?n=N: the newest `n` events (oldest first), in the REST API's shape. */
export function apiLatestEvents(ctx: Context, n: number, instance?: string) {
  return ctx.store.listEvents(instance, n).map(apiEvent);
}

function apiEvent(e: EventRow) {
  return {
    id: e.id,
    ts: new Date(e.ts).toISOString(),
    instance: e.instance_name,
    level: e.level,
    type: e.event_type,
    message: e.message,
    meta: e.meta_json ? (JSON.parse(e.meta_json) as unknown) : null,
  };
}
