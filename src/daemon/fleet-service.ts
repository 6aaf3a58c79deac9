import type { Context } from '../app/context.js';
import { fleetConfigured, fleetTargets, localRigName } from '../app/fleet.js';
import { loadSettings } from '../config/settings.js';
import { FleetRouter, type RemoteRig } from '../proxy/fleet-router.js';
import type { Service } from './service.js';

/** How often the fleet endpoint reads the other rigs (their models, their load). */
const READ_EVERY_MS = 2000;

/**
 * The fleet endpoint of this daemon (README, "Several rigs"), when llama-orch.json names other rigs:
 * the router the proxy asks, and the service that keeps its reading of the rigs current. The rigs
 * DNS lists are looked up again every fleet.discover.interval seconds, the peers once.
 */
export function fleetRouting(
  ctx: Context,
  log: (msg: string) => void,
  upstreamTimeoutMs: number,
): { router: FleetRouter; localName: string } | undefined {
  const settings = loadSettings(ctx.home);
  if (!fleetConfigured(settings)) return undefined;
  const localName = localRigName(settings);
  const src = { home: ctx.home, settings, env: ctx.deps.env, warn: (m: string) => log(`fleet: ${m}`) };
  const ttlMs = settings.fleet.discover ? settings.fleet.discover.interval * 1000 : Number.POSITIVE_INFINITY;
  let cached: { at: number; rigs: RemoteRig[] } | undefined;
  const rigs = async (): Promise<RemoteRig[]> => {
    if (cached && Date.now() - cached.at < ttlMs) return cached.rigs;
    const targets = await fleetTargets(src);
    const list = targets.flatMap((t) =>
      t.url ? [{ name: t.name, url: t.url, apiKey: t.apiKey, ca: t.ca, refused: t.refused }] : [],
    );
    cached = { at: Date.now(), rigs: list };
    return list;
  };
  return { router: new FleetRouter({ localName, rigs, log, upstreamTimeoutMs }), localName };
}

export class FleetService implements Service {
  readonly name = 'fleet';

  constructor(
    private readonly router: FleetRouter,
    private readonly wait: (ms: number, signal: AbortSignal) => Promise<void>,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.router.refresh();
      await this.wait(READ_EVERY_MS, signal);
    }
  }
}
