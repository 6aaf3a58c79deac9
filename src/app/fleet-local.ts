import type { ConfigLoader } from '../config/cached.js';
import { loadSettings } from '../config/settings.js';
import type { Context } from './context.js';
import { apiLatestEvents } from './events.js';
import type { FleetSources, LocalRig } from './fleet.js';
import { currentGpuSample } from './gpu-source.js';
import { rigSnapshot, snapshotAll } from './snapshot.js';

/** This rig as a member of the fleet: the reads of ps, gpus, --once and events, from its home. */
export function localRig(ctx: Context, loader: ConfigLoader, env: NodeJS.ProcessEnv): LocalRig {
  const sample = (timeoutMs?: number) => currentGpuSample(ctx.store, env, Date.now(), timeoutMs);
  return {
    async instances() {
      return snapshotAll(ctx.sources(loader, await sample()), Date.now());
    },
    async gpus() {
      const s = await sample(5000);
      if (s.error) return { gpus: [], error: s.error };
      return { gpus: rigSnapshot(ctx.sources(loader, s), Date.now()).gpus, error: null };
    },
    async rig() {
      return rigSnapshot(ctx.sources(loader, await sample()), Date.now());
    },
    events: (n) => Promise.resolve(apiLatestEvents(ctx, n)),
  };
}

/** What the fleet reads need, for a command run in this home. */
export function fleetSources(ctx: Context, loader: ConfigLoader, warn: (m: string) => void): FleetSources {
  const env = ctx.deps.env;
  return { home: ctx.home, settings: loadSettings(ctx.home), env, local: localRig(ctx, loader, env), warn };
}
