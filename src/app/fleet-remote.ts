import { ExitCode, UserError } from '../domain/errors.js';
import type { LogStream } from '../domain/status.js';
import { RequestFailed, requestJson } from '../platform/http-json.js';
import { exitCodeOfApiCode } from '../proxy/errors.js';
import { StatusError, streamJsonLines } from '../platform/http-lines.js';
import { fleetTargets, localRigName, type FleetSources, type RigTarget } from './fleet.js';

/**
 * One instance on another rig, through that rig's REST API (README, "Several rigs"): its log, read or
 * followed across rotation (`logs NAME --rig RIG`). Failures are the operator's errors, naming the rig.
 */

/** The rig named `rig` among the fleet's (an unknown name is exit 2, listing the known ones). */
export async function findRig(src: FleetSources, rig: string): Promise<RigTarget> {
  const targets = await fleetTargets(src);
  const t = targets.find((x) => x.name.toLowerCase() === rig.toLowerCase());
  if (!t) {
    throw new UserError(
      `no rig "${rig}" in the fleet (known: ${targets.map((x) => x.name).join(', ')})`,
      ExitCode.notFound,
      'rigs are this one (rig.name) and those of fleet.peers and fleet.discover in llama-orch.json',
    );
  }
  return t;
}

/** True when `rig` names this rig (its rig.name or host name). */
export function isLocalRig(src: FleetSources, rig: string): boolean {
  return rig.toLowerCase() === localRigName(src.settings).toLowerCase();
}

function rigError(t: RigTarget, e: unknown, what: string): UserError {
  const where = `rig ${t.name}${t.url ? ` (${t.url.origin})` : ''}`;
  if (e instanceof StatusError) {
    if (e.status === 404) return new UserError(`${where}: ${e.message}`, ExitCode.notFound);
    if (e.status === 401 || e.status === 403) {
      return new UserError(
        `${where} refused ${t.apiKey ? 'our key' : 'us without a key'}: ${e.message}`,
        ExitCode.general,
        "set the variable its api_key_env names (fleet.peers in llama-orch.json) to that daemon's key",
      );
    }
    return new UserError(`${where}: ${what}: ${e.message}`, ExitCode.general);
  }
  const why = e instanceof RequestFailed || e instanceof Error ? e.message : String(e);
  return new UserError(
    `${where} is unreachable: ${why}`,
    ExitCode.general,
    'is its daemon running (daemon status there)?',
  );
}

export interface RemoteLogOptions {
  stream: LogStream;
  lines: number;
  follow: boolean;
  signal?: AbortSignal;
}

/** The log of `name` on the rig `t`: the last lines, then (follow) each new one until `signal` aborts. */
export async function remoteLog(
  t: RigTarget,
  name: string,
  opts: RemoteLogOptions,
  onLine: (line: { name: string; stream: LogStream; line: string }) => void,
): Promise<void> {
  if (!t.url) throw new Error('remoteLog is for other rigs');
  if (t.refused) throw new UserError(`rig ${t.name} is not asked: ${t.refused}`, ExitCode.general);
  const url = new URL(`/api/instances/${encodeURIComponent(name)}/logs`, t.url);
  url.searchParams.set('stream', opts.stream);
  url.searchParams.set('n', String(opts.lines));
  if (opts.follow) url.searchParams.set('follow', '1');
  try {
    await streamJsonLines(
      { url, apiKey: t.apiKey, ca: t.ca, headersTimeoutMs: 5000, idleMs: 45_000, signal: opts.signal },
      (v) => {
        const l = v as { name?: unknown; stream?: unknown; line?: unknown };
        if (typeof l.line === 'string') onLine({ name, stream: opts.stream, line: l.line });
      },
    );
  } catch (e) {
    throw rigError(t, e, `the log of ${name}`);
  }
}

export type RemoteAction = 'start' | 'stop' | 'restart';

/** One action's answer: the REST API's object (the `up --json` fields), or the error it answered. */
export type RemoteResult =
  { ok: true; body: Record<string, unknown> } | { ok: false; message: string; hint: string | null; exitCode: number };

/**
 * `up|restart|down NAME --rig RIG`: POST /api/instances/NAME/start|stop|restart on that rig, with
 * `?wait=` as `--wait`. An error of the instance (unknown, already running, does not fit) is a result
 * with its exit code; a rig that cannot be asked is thrown.
 */
export async function remoteAction(
  t: RigTarget,
  action: RemoteAction,
  name: string,
  waitS?: number,
): Promise<RemoteResult> {
  if (!t.url) throw new Error('remoteAction is for other rigs');
  if (t.refused) throw new UserError(`rig ${t.name} is not asked: ${t.refused}`, ExitCode.general);
  const url = new URL(`/api/instances/${encodeURIComponent(name)}/${action}`, t.url);
  if (waitS !== undefined) url.searchParams.set('wait', String(waitS));
  let r;
  try {
    // A stop waits for the server's stop_timeout, a start for its preflight: a minute, plus the wait.
    r = await requestJson({ url, method: 'POST', apiKey: t.apiKey, ca: t.ca, timeoutMs: 60_000 + (waitS ?? 0) * 1000 });
  } catch (e) {
    throw rigError(t, e, `${action} ${name}`);
  }
  if (r.status === 200 && r.body && typeof r.body === 'object')
    return { ok: true, body: r.body as Record<string, unknown> };
  if (r.status === 401 || r.status === 403) throw rigError(t, new StatusError(r.status, String(r.status)), action);
  const err = (r.body as { error?: { message?: string; hint?: string; code?: string } } | undefined)?.error;
  return {
    ok: false,
    message: err?.message ?? `HTTP ${r.status}`,
    hint: err?.hint ?? null,
    exitCode: err ? exitCodeOfApiCode(err.code) : ExitCode.general,
  };
}

/** The names of every instance on the rig (`--all --rig RIG`). */
export async function remoteNames(t: RigTarget): Promise<string[]> {
  if (!t.url) throw new Error('remoteNames is for other rigs');
  if (t.refused) throw new UserError(`rig ${t.name} is not asked: ${t.refused}`, ExitCode.general);
  let r;
  try {
    r = await requestJson({ url: new URL('/api/instances', t.url), apiKey: t.apiKey, ca: t.ca, timeoutMs: 10_000 });
  } catch (e) {
    throw rigError(t, e, 'its instances');
  }
  if (r.status !== 200 || !Array.isArray(r.body)) {
    throw rigError(t, new StatusError(r.status, `HTTP ${r.status}`), 'its instances');
  }
  return (r.body as Array<{ name: string }>).map((i) => i.name);
}
