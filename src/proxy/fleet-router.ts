import { Pool } from 'undici';
import { requestJson } from '../platform/http-json.js';
import { labelSafe } from '../domain/sanitize.js';

/**
 * The fleet endpoint's knowledge of the other rigs (README, "Several rigs": one endpoint): which
 * models each serves and how busy they are, read from their daemons every couple of seconds, and the
 * connections to them. A rig that stops answering is left out for a back-off period; a refused
 * connection takes it out at once (server.ts retries such a request elsewhere, its body unsent).
 */

/** The request header that marks a request one rig forwarded to another: it is never forwarded again. */
export const HOP_HEADER = 'x-llama-orch-hop';
/** The answer header naming the rig that served a request the fleet endpoint routed. */
export const RIG_HEADER = 'x-llama-orch-rig';

export interface RemoteRig {
  name: string;
  url: URL;
  apiKey?: string;
  ca?: string;
  /** Why it is not asked (its key variable unset, a key that would go in clear). */
  refused?: string;
}

/** One model on another rig, as its /v1/models and /api/instances say. */
export interface RemoteModel {
  rig: string;
  id: string;
  aliases: string[];
  instance: string;
  state: string;
  health: string | null;
  on_demand: boolean;
  /** Its proxy's requests in flight plus queued, at the last reading. */
  load: number;
}

interface RigState {
  rig: RemoteRig;
  up: boolean;
  /** Not asked again before this time (ms) after it failed. */
  downUntil: number;
  error: string | null;
  models: RemoteModel[];
}

export interface FleetRouterDeps {
  localName: string;
  /** The other rigs now (the peers, and what DNS lists). */
  rigs: () => Promise<RemoteRig[]>;
  log: (msg: string) => void;
  now?: () => number;
  deadlineMs?: number;
  /** How long a rig that failed is left out. */
  backoffMs?: number;
  upstreamTimeoutMs: number;
}

export class FleetRouter {
  private readonly rigs = new Map<string, RigState>();
  private readonly pools = new Map<string, Pool>();
  /** Requests this endpoint has in flight to each rig (its own count, ahead of the rig's next reading). */
  private readonly ours = new Map<string, number>();
  /** Routed requests by rig and answer status, for /metrics. */
  private readonly routed = new Map<string, number>();

  constructor(private readonly deps: FleetRouterDeps) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Reads every rig once (all at once, each within the deadline). */
  async refresh(): Promise<void> {
    const rigs = await this.deps.rigs();
    const names = new Set(rigs.map((r) => r.name));
    for (const name of [...this.rigs.keys()]) if (!names.has(name)) this.forgetRig(name);
    await Promise.all(rigs.map((rig) => this.read(rig)));
  }

  private async read(rig: RemoteRig): Promise<void> {
    const prev = this.rigs.get(rig.name);
    const st: RigState = prev ?? { rig, up: false, downUntil: 0, error: null, models: [] };
    st.rig = rig;
    this.rigs.set(rig.name, st);
    if (rig.refused) {
      this.setDown(st, rig.refused, 0);
      return;
    }
    const ask = (path: string) =>
      requestJson({
        url: new URL(path, rig.url),
        apiKey: rig.apiKey,
        ca: rig.ca,
        timeoutMs: this.deps.deadlineMs ?? 2000,
        headers: { [HOP_HEADER]: this.deps.localName },
      });
    try {
      const [models, instances] = await Promise.all([ask('/v1/models'), ask('/api/instances')]);
      if (models.status !== 200 || instances.status !== 200) {
        throw new Error(`HTTP ${models.status !== 200 ? models.status : instances.status}`);
      }
      const load = new Map<string, number>();
      for (const i of (instances.body ?? []) as Array<Record<string, unknown>>) {
        load.set(String(i.name), Number(i.proxy_in_flight ?? 0) + Number(i.proxy_queued ?? 0));
      }
      const data = ((models.body as { data?: Array<Record<string, unknown>> } | undefined)?.data ?? []).filter(
        (m) => typeof m.id === 'string' && typeof m.instance === 'string',
      );
      st.models = data.map((m) => ({
        rig: rig.name,
        id: m.id as string,
        aliases: Array.isArray(m.aliases) ? (m.aliases as string[]) : [],
        instance: m.instance as string,
        state: typeof m.state === 'string' ? m.state : 'unknown',
        health: typeof m.health === 'string' ? m.health : null,
        on_demand: m.on_demand !== false,
        load: load.get(m.instance as string) ?? 0,
      }));
      if (!st.up) this.deps.log(`fleet: rig ${rig.name} (${rig.url.origin}) answers: ${st.models.length} models`);
      st.up = true;
      st.error = null;
    } catch (e) {
      this.setDown(st, e instanceof Error ? e.message : String(e), this.deps.backoffMs ?? 5000);
    }
  }

  private setDown(st: RigState, why: string, backoffMs: number): void {
    if (st.up || st.error !== why) this.deps.log(`fleet: rig ${st.rig.name} (${st.rig.url.origin}) left out: ${why}`);
    st.up = false;
    st.error = why;
    st.downUntil = this.now() + backoffMs;
  }

  /** A rig refused a connection or failed before answering: out until its back-off ends. */
  markDown(rig: string, why: string): void {
    const st = this.rigs.get(rig);
    if (st) this.setDown(st, why, this.deps.backoffMs ?? 5000);
  }

  private usable(st: RigState): boolean {
    return st.up && this.now() >= st.downUntil;
  }

  private forgetRig(name: string): void {
    this.rigs.delete(name);
    const p = this.pools.get(name);
    this.pools.delete(name);
    void p?.destroy().catch(() => undefined);
  }

  /** The rigs where `model` runs and is healthy, least busy first (their load plus ours). */
  running(model: string, except: ReadonlySet<string> = new Set()): RemoteModel[] {
    return this.matching(model, except)
      .filter((m) => m.state === 'running' && m.health === 'ok')
      .sort((a, b) => this.loadOf(a) - this.loadOf(b));
  }

  /** The rigs where `model` is configured and may be started on demand. */
  startable(model: string, except: ReadonlySet<string> = new Set()): RemoteModel[] {
    return this.matching(model, except).filter((m) => m.on_demand);
  }

  loadOf(m: RemoteModel): number {
    return m.load + (this.ours.get(m.rig) ?? 0);
  }

  private matching(model: string, except: ReadonlySet<string>): RemoteModel[] {
    const out: RemoteModel[] = [];
    for (const st of this.rigs.values()) {
      if (!this.usable(st) || except.has(st.rig.name)) continue;
      for (const m of st.models) if (m.id === model || m.aliases.includes(model)) out.push(m);
    }
    return out;
  }

  /** Why each rig cannot serve `model` (for the 503 that names them). */
  refusals(model: string): string[] {
    const out: string[] = [];
    for (const st of this.rigs.values()) {
      if (!this.usable(st)) out.push(`${st.rig.name}: unreachable (${st.error ?? 'backing off'})`);
      else if (!st.models.some((m) => m.id === model || m.aliases.includes(model)))
        out.push(`${st.rig.name}: not configured there`);
      else out.push(`${st.rig.name}: not running and not startable on demand`);
    }
    return out;
  }

  /** Every model the other rigs serve (for /v1/models). */
  models(): RemoteModel[] {
    return [...this.rigs.values()].filter((st) => this.usable(st)).flatMap((st) => st.models);
  }

  target(rig: string): RemoteRig | undefined {
    return this.rigs.get(rig)?.rig;
  }

  pool(rig: RemoteRig): Pool {
    let p = this.pools.get(rig.name);
    if (!p) {
      p = new Pool(rig.url.origin, {
        connections: 256,
        keepAliveTimeout: 4000,
        headersTimeout: this.deps.upstreamTimeoutMs,
        bodyTimeout: this.deps.upstreamTimeoutMs,
        ...(rig.ca ? { connect: { ca: rig.ca } } : {}),
      });
      this.pools.set(rig.name, p);
    }
    return p;
  }

  /** Counts a request to `rig` while it runs; returns the function that ends it with its status. */
  begin(rig: string): (status: number) => void {
    this.ours.set(rig, (this.ours.get(rig) ?? 0) + 1);
    return (status) => {
      this.ours.set(rig, Math.max(0, (this.ours.get(rig) ?? 1) - 1));
      const key = `${rig}\u0000${status}`;
      this.routed.set(key, (this.routed.get(key) ?? 0) + 1);
    };
  }

  /** /metrics lines: each rig's reachability and the requests routed to it by status. */
  exposition(): string {
    const lines = [
      '# HELP llama_orch_fleet_rig_up Whether another rig of the fleet answers (1) or is left out (0).',
      '# TYPE llama_orch_fleet_rig_up gauge',
    ];
    for (const st of this.rigs.values())
      lines.push(`llama_orch_fleet_rig_up{rig="${labelSafe(st.rig.name)}"} ${this.usable(st) ? 1 : 0}`);
    lines.push(
      '# HELP llama_orch_fleet_requests_total Requests this endpoint routed to another rig, by rig and status.',
      '# TYPE llama_orch_fleet_requests_total counter',
    );
    for (const [key, n] of this.routed) {
      const [rig, code] = key.split('\u0000');
      lines.push(`llama_orch_fleet_requests_total{rig="${labelSafe(rig ?? '')}",code="${code ?? ''}"} ${n}`);
    }
    return lines.join('\n') + '\n';
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)));
  }
}
