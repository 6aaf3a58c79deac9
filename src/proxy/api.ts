import type { GpuInfo } from '../domain/gpu.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';
import { ProxyError } from './errors.js';

/**
 * What the management API reads and does (README, "REST API"): the same functions as `ps --json`,
 * `describe --json`, `gpus --json`, `events --json`, `up`, `down` and `restart`, built by the CLI's
 * composition root (src/app/api.ts) and injected.
 */
export interface ApiSources {
  instances(): Promise<InstanceSnapshot[]>;
  describe(name: string): Promise<unknown>;
  gpus(): Promise<{ gpus: GpuInfo[]; error: string | null }>;
  /** Events with an id above `since`, oldest first, at most `limit`. */
  events(since: number, limit: number, instance?: string): unknown[];
  /** Where an instance's logs are (its logs/NAME folder); an unknown name is the 404 error. */
  logDir(name: string): Promise<string>;
  /** The newest `n` events, oldest first (`?n=N`; the fleet's `events --fleet`). */
  latestEvents(n: number, instance?: string): unknown[];
  /** `up NAME`; with `waitS`, also waits for health like `up --wait`. */
  start(name: string, waitS?: number): Promise<unknown>;
  stop(name: string): Promise<unknown>;
  restart(name: string, waitS?: number): Promise<unknown>;
}

export interface ApiAnswer {
  status: number;
  body: unknown;
}

const NAME = '([a-z0-9][a-z0-9_-]{0,62})';
const INSTANCE = new RegExp(`^/api/instances/${NAME}$`);
const ACTION = new RegExp(`^/api/instances/${NAME}/(start|stop|restart)$`);

function intParam(url: URL, key: string, fallback: number, max: number): number {
  const raw = url.searchParams.get(key);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new ProxyError(400, `query parameter ${key} must be a whole number from 0 to ${max} (got "${raw}")`);
  }
  return n;
}

/** Answers one /api request, or throws a ProxyError (a UserError from the engine maps by its exit code). */
export async function answerApi(
  method: string,
  url: URL,
  api: ApiSources,
  live: (rows: InstanceSnapshot[]) => unknown[],
): Promise<ApiAnswer> {
  const path = url.pathname.replace(/\/+$/, '');
  const get = method === 'GET' || method === 'HEAD';
  if (path === '/api/instances') {
    if (!get) throw new ProxyError(405, `${method} ${path}: use GET`);
    return { status: 200, body: live(await api.instances()) };
  }
  let m = INSTANCE.exec(path);
  if (m) {
    if (!get) throw new ProxyError(405, `${method} ${path}: use GET`);
    return { status: 200, body: await api.describe(m[1] as string) };
  }
  m = ACTION.exec(path);
  if (m) {
    if (method !== 'POST') throw new ProxyError(405, `${method} ${path}: use POST`);
    const name = m[1] as string;
    const wait = url.searchParams.has('wait') ? intParam(url, 'wait', 0, 86_400) : undefined;
    const action = m[2];
    const body =
      action === 'start'
        ? await api.start(name, wait)
        : action === 'stop'
          ? await api.stop(name)
          : await api.restart(name, wait);
    return { status: 200, body };
  }
  if (path === '/api/events') {
    if (!get) throw new ProxyError(405, `${method} ${path}: use GET`);
    const instance = url.searchParams.get('instance') ?? undefined;
    if (url.searchParams.has('n')) {
      if (url.searchParams.has('since'))
        throw new ProxyError(400, 'query parameters n and since go apart: n is the newest n events');
      return { status: 200, body: api.latestEvents(intParam(url, 'n', 30, 10_000), instance) };
    }
    const since = intParam(url, 'since', 0, Number.MAX_SAFE_INTEGER);
    const limit = intParam(url, 'limit', 500, 10_000);
    return { status: 200, body: api.events(since, limit, instance) };
  }
  if (path === '/api/gpus') {
    if (!get) throw new ProxyError(405, `${method} ${path}: use GET`);
    const r = await api.gpus();
    if (r.error) throw new ProxyError(503, `cannot read the GPUs: ${r.error}`, 'server_error', 'gpu_unavailable');
    return { status: 200, body: r.gpus };
  }
  throw new ProxyError(
    404,
    `no such API path: ${path} (known: /api/instances, /api/instances/NAME, /api/instances/NAME/start|stop|restart, /api/instances/NAME/logs, /api/events, /api/gpus)`,
    'invalid_request_error',
    'not_found',
  );
}
