import os from 'node:os';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import type { GpuInfo } from '../domain/gpu.js';
import type { InstanceSnapshot, RigSnapshot } from '../domain/snapshot.js';
import type { FleetEvent, FleetGpu, FleetInstance, FleetRig, RigState, RigStatus } from '../domain/fleet.js';
import type { Settings } from '../config/settings.js';
import { loopbackUrl } from '../config/fleet-settings.js';
import { readFailure, readRegularText } from '../platform/regular-file.js';
import { RequestFailed, requestJson } from '../platform/http-json.js';
import { discoverRigs } from '../platform/dns-rigs.js';
import { recallRig, rememberRig } from './fleet-memory.js';

/**
 * The fleet as a source behind the application (README, "Several rigs"): this rig read from its home,
 * every other rig through its daemon's REST API, all at once, each within a deadline. A rig that does
 * not answer in time shows as it last answered (app/fleet-memory.ts), never holding up the others.
 */

/** How long any one rig may take to answer (the issue's 2 s; a SIGSTOPped daemon accepts and is silent). */
export const FLEET_DEADLINE_MS = 2000;

export interface RigTarget {
  name: string;
  /** The daemon's base URL; undefined for this rig. */
  url?: URL;
  apiKey?: string;
  /** PEM text of the CA for an https daemon. */
  ca?: string;
  /** Why this rig is not asked (a key variable unset, a key that would cross the network in clear). */
  refused?: string;
}

/** What the fleet reads of this rig, from its home (the same functions as ps, gpus, --once, events). */
export interface LocalRig {
  instances(): Promise<InstanceSnapshot[]>;
  gpus(): Promise<{ gpus: GpuInfo[]; error: string | null }>;
  rig(): Promise<RigSnapshot>;
  events(n: number): Promise<Omit<FleetEvent, 'rig'>[]>;
}

export interface FleetSources {
  home: Home;
  settings: Settings;
  env: NodeJS.ProcessEnv;
  local: LocalRig;
  warn: (message: string) => void;
  now?: () => number;
  deadlineMs?: number;
}

/** This rig's name in the fleet: rig.name, else the host name. */
export function localRigName(settings: Settings): string {
  return settings.rig.name ?? os.hostname();
}

/** True when llama-orch.json configures other rigs. */
export function fleetConfigured(settings: Settings): boolean {
  return settings.fleet.peers.length > 0 || settings.fleet.discover !== undefined;
}

/** What naming the rigs needs (the daemon has no LocalRig). */
export type TargetSources = Pick<FleetSources, 'home' | 'settings' | 'env' | 'warn'>;

function remoteTarget(
  src: TargetSources,
  name: string,
  url: URL,
  keyEnv: string | undefined,
  caFile: string | undefined,
): RigTarget {
  const t: RigTarget = { name, url };
  if (keyEnv) {
    const key = src.env[keyEnv];
    if (!key) return { ...t, refused: `its key variable ${keyEnv} is not set in this environment` };
    if (url.protocol === 'http:' && !loopbackUrl(url)) {
      if (!src.settings.fleet.allow_plain_http_keys) {
        return {
          ...t,
          refused: `its key would go over plain http to ${url.host}: use https://, or set fleet.allow_plain_http_keys`,
        };
      }
      src.warn(`rig ${name}: its key goes over plain http to ${url.host} (fleet.allow_plain_http_keys is set)`);
    }
    t.apiKey = key;
  }
  if (caFile && url.protocol === 'https:') {
    const file = path.resolve(src.home.root, caFile);
    try {
      t.ca = readRegularText(file);
    } catch (e) {
      return { ...t, refused: `cannot read its CA file ${file}: ${readFailure(e)}` };
    }
  }
  return t;
}

/** Every rig of the fleet: this one first, then the peers in the file's order, then those DNS lists. */
export async function fleetTargets(src: TargetSources): Promise<RigTarget[]> {
  const { fleet } = src.settings;
  const targets: RigTarget[] = [{ name: localRigName(src.settings) }];
  for (const p of fleet.peers) targets.push(remoteTarget(src, p.name, new URL(p.url), p.api_key_env, p.ca_file));
  const d = fleet.discover;
  if (d) {
    const known = new Set(targets.flatMap((t) => (t.url ? [t.url.origin] : [])));
    try {
      for (const address of await discoverRigs(d.dns, d.server)) {
        const url = new URL(`${d.scheme}://${address.includes(':') ? `[${address}]` : address}:${d.port}/`);
        if (known.has(url.origin)) continue;
        known.add(url.origin);
        targets.push(remoteTarget(src, address, url, d.api_key_env, d.ca_file));
      }
    } catch (e) {
      src.warn(`fleet.discover: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return targets;
}

interface Asked {
  state: RigState;
  error: string | null;
  body?: unknown;
}

/** One GET of a rig's REST API, as a state: `ok` with the body, or why not. */
async function ask(src: FleetSources, t: RigTarget, apiPath: string): Promise<Asked> {
  if (t.refused) return { state: 'refused', error: t.refused };
  try {
    const r = await requestJson({
      url: new URL(apiPath, t.url),
      apiKey: t.apiKey,
      ca: t.ca,
      timeoutMs: src.deadlineMs ?? FLEET_DEADLINE_MS,
    });
    if (r.status === 200 && r.body !== undefined) return { state: 'ok', error: null, body: r.body };
    const said = (r.body as { error?: { message?: string } } | undefined)?.error?.message;
    if (r.status === 401 || r.status === 403) {
      return {
        state: 'unauthorized',
        error: `it refused ${t.apiKey ? 'our key' : 'us without a key'}: ${said ?? r.status}`,
      };
    }
    return { state: 'error', error: `HTTP ${r.status}${said ? `: ${said}` : ''}`, body: r.body };
  } catch (e) {
    const why = e instanceof RequestFailed ? e.message : String(e);
    return { state: e instanceof RequestFailed && e.kind === 'tls' ? 'error' : 'unreachable', error: why };
  }
}

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());

function statusOf(t: RigTarget, a: Asked, seenMs: number | null): RigStatus {
  return { rig: t.name, url: t.url ? t.url.origin : null, state: a.state, error: a.error, seen_at: iso(seenMs) };
}

/** `ps --fleet`: every rig's instances, a rig that did not answer as it last did. */
export async function fleetInstances(src: FleetSources): Promise<{ rigs: RigStatus[]; rows: FleetInstance[] }> {
  const now = src.now ?? Date.now;
  const parts = await Promise.all(
    (await fleetTargets(src)).map(async (t) => {
      if (!t.url) {
        const rows = await src.local.instances();
        return { status: statusOf(t, { state: 'ok', error: null }, now()), rows };
      }
      const a = await ask(src, t, '/api/instances');
      if (a.state === 'ok' && Array.isArray(a.body)) {
        const rows = a.body as InstanceSnapshot[];
        const at = now();
        rememberRig(src.home, t.name, { instances: rows }, at);
        return { status: statusOf(t, a, at), rows };
      }
      const last = recallRig(src.home, t.name);
      return { status: statusOf(t, a, last?.seen_at ?? null), rows: last?.instances ?? [] };
    }),
  );
  const rows = parts.flatMap(({ status, rows }) =>
    rows.map((r) => ({ rig: status.rig, ...r, rig_state: status.state, rig_seen_at: status.seen_at })),
  );
  return { rigs: parts.map((p) => p.status), rows };
}

/** `gpus --fleet`: every rig's GPUs; a rig whose tool failed has its reason in `gpu_errors`. */
export async function fleetGpus(
  src: FleetSources,
): Promise<{ rigs: RigStatus[]; gpus: FleetGpu[]; gpu_errors: Record<string, string> }> {
  const now = src.now ?? Date.now;
  const gpuErrors: Record<string, string> = {};
  const parts = await Promise.all(
    (await fleetTargets(src)).map(async (t) => {
      if (!t.url) {
        const r = await src.local.gpus();
        if (r.error) gpuErrors[t.name] = r.error;
        return { status: statusOf(t, { state: 'ok', error: null }, now()), gpus: r.gpus };
      }
      const a = await ask(src, t, '/api/gpus');
      if (a.state === 'ok' && Array.isArray(a.body)) {
        const at = now();
        rememberRig(src.home, t.name, { gpus: a.body as GpuInfo[] }, at);
        return { status: statusOf(t, a, at), gpus: a.body as GpuInfo[] };
      }
      // A daemon that answers but cannot read its GPUs (503 gpu_unavailable) is a reachable rig.
      if (a.state === 'error' && /^HTTP 503/.test(a.error ?? '')) {
        gpuErrors[t.name] = (a.error ?? '').replace(/^HTTP 503: /, '');
        return { status: statusOf(t, { state: 'ok', error: null }, now()), gpus: [] };
      }
      const last = recallRig(src.home, t.name);
      return { status: statusOf(t, a, last?.seen_at ?? null), gpus: last?.gpus ?? [] };
    }),
  );
  const gpus = parts.flatMap(({ status, gpus }) =>
    gpus.map((g) => ({ rig: status.rig, ...g, rig_state: status.state, rig_seen_at: status.seen_at })),
  );
  return { rigs: parts.map((p) => p.status), gpus, gpu_errors: gpuErrors };
}

/** `--once --fleet`: each rig whole (its instances and GPUs), the rigs in the fleet's order. */
export async function fleetOnce(src: FleetSources): Promise<{ generated_at: string; rigs: FleetRig[] }> {
  const now = src.now ?? Date.now;
  const rigs = await Promise.all(
    (await fleetTargets(src)).map(async (t): Promise<FleetRig> => {
      if (!t.url) {
        const r = await src.local.rig();
        const status = statusOf(t, { state: 'ok', error: null }, now());
        return { ...status, daemon: r.daemon, instances: r.instances, gpus: r.gpus, gpu_error: r.gpu_error };
      }
      const [inst, gpus] = await Promise.all([ask(src, t, '/api/instances'), ask(src, t, '/api/gpus')]);
      const gpuError = gpus.state === 'error' && /^HTTP 503/.test(gpus.error ?? '') ? gpus.error : null;
      if (inst.state === 'ok' && Array.isArray(inst.body)) {
        const list = gpus.state === 'ok' && Array.isArray(gpus.body) ? (gpus.body as GpuInfo[]) : [];
        const at = now();
        rememberRig(
          src.home,
          t.name,
          { instances: inst.body as InstanceSnapshot[], ...(gpus.state === 'ok' ? { gpus: list } : {}) },
          at,
        );
        return {
          ...statusOf(t, inst, at),
          daemon: null,
          instances: inst.body as InstanceSnapshot[],
          gpus: list,
          gpu_error: gpuError ? gpuError.replace(/^HTTP 503: /, '') : gpus.state === 'ok' ? null : gpus.error,
        };
      }
      const last = recallRig(src.home, t.name);
      return {
        ...statusOf(t, inst, last?.seen_at ?? null),
        daemon: null,
        instances: last?.instances ?? [],
        gpus: last?.gpus ?? [],
        gpu_error: null,
      };
    }),
  );
  return { generated_at: new Date(now()).toISOString(), rigs };
}

/** `events --fleet`: the newest `n` events of the whole fleet, oldest first, each with its rig. */
export async function fleetEvents(src: FleetSources, n: number): Promise<{ rigs: RigStatus[]; events: FleetEvent[] }> {
  const now = src.now ?? Date.now;
  const parts = await Promise.all(
    (await fleetTargets(src)).map(async (t) => {
      if (!t.url) {
        const events = await src.local.events(n);
        return { status: statusOf(t, { state: 'ok', error: null }, now()), events };
      }
      const a = await ask(src, t, `/api/events?n=${n}`);
      if (a.state === 'ok' && Array.isArray(a.body)) {
        return { status: statusOf(t, a, now()), events: a.body as Omit<FleetEvent, 'rig'>[] };
      }
      return { status: statusOf(t, a, recallRig(src.home, t.name)?.seen_at ?? null), events: [] };
    }),
  );
  const events = parts
    .flatMap(({ status, events }) => events.map((e) => ({ rig: status.rig, ...e })))
    .sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0))
    .slice(-n);
  return { rigs: parts.map((p) => p.status), events };
}
