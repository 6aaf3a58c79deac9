import { cachedLoader } from '../config/cached.js';
import { loadConfigFile } from '../config/load.js';
import { currentGpuSample } from './gpu-source.js';
import { rigSnapshot, snapshotAll } from './snapshot.js';
import { down } from '../engine/down.js';
import { restart } from '../engine/restart.js';
import { recordedLiveNames, selectNames } from '../engine/selection.js';
import type { SupervisorDeps, UpResult } from '../engine/supervisor.js';
import { up } from '../engine/up.js';
import { waitHealthy } from '../engine/wait-healthy.js';
import type { ApiSources } from '../proxy/api.js';
import { describeData, describeJson, requireKnown } from './describe.js';
import fs from 'node:fs';
import { instanceConfigPath, instanceLogDir } from '../domain/home.js';
import { apiEvents, apiLatestEvents } from './events.js';
import { JOINED, healthyJson, joinable, upJson } from './lifecycle.js';
import type { Context } from './context.js';

/**
 * The REST API's reads and actions (src/proxy/api.ts): the functions behind `ps --json`, `describe
 * --json`, `gpus --json`, `events --json`, `up`, `down` and `restart`, run in the daemon.
 */
export function apiSources(ctx: Context): ApiSources {
  const loader = cachedLoader(ctx.store, loadConfigFile);
  const gpu = () => currentGpuSample(ctx.store, ctx.deps.env, Date.now());
  /** The engine's deps with the warnings collected for the answer instead of printed. */
  const collecting = (): { deps: SupervisorDeps; warnings: string[] } => {
    const warnings: string[] = [];
    return { deps: { ...ctx.deps, warn: (m) => warnings.push(m) }, warnings };
  };
  // The fields of `up --json` / `restart --json` / `down --json` (one element of their arrays).
  const started = async (r: UpResult, deps: SupervisorDeps, waitS: number | undefined, warnings: string[]) => {
    const result: Record<string, unknown> = { name: r.name, ...upJson(r), health: r.health };
    if (waitS !== undefined && waitS > 0 && r.status !== 'failed') {
      Object.assign(result, healthyJson(await waitHealthy(deps, r.name, waitS * 1000)));
    }
    return { ...result, warnings };
  };
  return {
    async instances() {
      return snapshotAll(ctx.sources(loader, await gpu()), Date.now());
    },
    async describe(name) {
      return describeJson(describeData(ctx, name, await gpu()));
    },
    async gpus() {
      const sample = await gpu();
      if (sample.error) return { gpus: [], error: sample.error };
      return { gpus: rigSnapshot(ctx.sources(loader, sample), Date.now()).gpus, error: null };
    },
    events: (since, limit, instance) => apiEvents(ctx, since, limit, instance),
    latestEvents: (n, instance) => apiLatestEvents(ctx, n, instance),
    logDir(name) {
      // An instance whose config was removed while it ran still has its logs: known by its row.
      if (!fs.existsSync(instanceConfigPath(ctx.home, name)) && !ctx.store.getRuntime(name)) requireKnown(ctx, name);
      return Promise.resolve(instanceLogDir(ctx.home, name));
    },
    async start(name, waitS) {
      const { deps, warnings } = collecting();
      let r: UpResult;
      try {
        r = await up(deps, name, { reason: 'api' });
      } catch (e) {
        // As `up --wait`: with a wait, an instance already starting or running is joined, not a 409.
        const row = waitS !== undefined && waitS > 0 ? joinable(e, ctx.store.getRuntime(name)) : null;
        if (!row) throw e;
        const healthy = healthyJson(await waitHealthy(deps, name, waitS! * 1000));
        return { name, ok: true, ...JOINED, ...healthy, warnings };
      }
      return started(r, deps, waitS, warnings);
    },
    async stop(name) {
      // As `down NAME`: an unknown name is 404, one whose config was removed while it runs is stopped.
      selectNames(ctx.home, [name], false, recordedLiveNames(ctx.store));
      const { deps, warnings } = collecting();
      const r = await down(deps, name);
      return { name, ok: true, was_running: r.wasRunning, message: r.message, warnings };
    },
    async restart(name, waitS) {
      const { deps, warnings } = collecting();
      return started(await restart(deps, name), deps, waitS, warnings);
    },
  };
}
