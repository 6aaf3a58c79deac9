import { cachedLoader } from '../config/cached.js';
import { loadConfigFile } from '../config/load.js';
import { watchInstanceConfigs } from '../config/watch.js';
import { UserError } from '../domain/errors.js';
import type { GpuSample } from '../domain/gpu.js';
import { reconcileAll } from '../engine/reconcile.js';
import { down } from '../engine/down.js';
import { restart } from '../engine/restart.js';
import { up } from '../engine/up.js';
import { fileLogSource, type LogSource } from '../logs/follow.js';
import { toolsTurnedOff } from '../platform/gpu/tool.js';
import type { EventRow } from '../store/store.js';
import { ChangeFeed } from '../store/watch.js';
import { openContext } from './context.js';
import { describeData, type InstanceDetails } from './describe.js';
import { LiveGpuSource } from './gpu-source.js';
import type { SnapshotSources } from './snapshot.js';

/**
 * The dashboard's session: the composition behind the terminal dashboard (components/ renders it
 * and never touches the store, processes, files or watchers). It opens the context, the dashboard's
 * own change feed, the config watcher, reconciliation, the GPU source, the log files, describe for
 * the details pane, and the up/down/restart actions with their warnings collected.
 */

export type { EventRow, LogSource };

/** What the dashboard's model (components/model.ts) reads, and what tells it to read again. */
export interface DashboardSources {
  /** What a snapshot reads (home, store, /proc, configs). */
  sources: SnapshotSources;
  /** Tells the model that instance state or events changed (store/watch.ts). */
  feed: ChangeFeed;
  /** Config files under instances/ changed (config/watch.ts); returns the stop function. */
  watchConfigs?: (onChange: () => void) => () => Promise<void>;
  /** The explicit reconciliation step, run before each read (engine/reconcile.ts). */
  reconcile?: () => void;
  /** The latest GPU sample (the daemon's while fresh, else the dashboard's own sampler's). */
  gpu?: () => GpuSample | undefined;
  /** One instance in full, for the details pane (app/describe.ts); throws for an unknown name. */
  describe?: (name: string, gpu: GpuSample | undefined) => InstanceDetails;
  /** GPU reading turned off by the environment, in words (platform/gpu/tool.ts); null: not off. */
  gpuToolsOff?: string | null;
}

export type ActionName = 'start' | 'stop' | 'restart';

export interface DashboardActions {
  /** Runs the same engine function as the CLI; resolves to a one-line result, rejects with a readable error. */
  run: (action: ActionName, name: string) => Promise<string>;
}

export interface DashboardSession {
  model: DashboardSources;
  logs: LogSource;
  actions: DashboardActions;
  /** Who to tell that the model should read again (after an action, on a new kind of GPU reading). */
  onChange: (fn: () => void) => void;
  /** Stops the GPU sampler and the feed and closes the store (after the model stopped). */
  close: () => Promise<void>;
}

export function openDashboard(homeOpt: string | undefined, env: NodeJS.ProcessEnv = process.env): DashboardSession {
  const ctx = openContext(homeOpt);
  // Its own feed at the dashboard's pace (the context's feed is for short waits).
  // Once a second: keepers write a probe result every few seconds, and each look that finds a new
  // data_version reads the status digest (at 250 ms that cost 0.6% of a core with 16 instances,
  // bench/dashboard-idle.mjs); changes are shown within a second, as before.
  const feed = new ChangeFeed(ctx.store, { intervalMs: 1000 });
  const gpu = new LiveGpuSource(ctx.store, env);
  // The sampler may report before the model listens (its first sample can come synchronously).
  let changed = () => undefined as void;
  const model: DashboardSources = {
    sources: ctx.sources(cachedLoader(ctx.store, loadConfigFile)),
    gpu: () => gpu.latest(() => changed()),
    feed,
    watchConfigs: (onChange) => watchInstanceConfigs(ctx.home, onChange),
    reconcile: () => reconcileAll(ctx.store, ctx.deps.procs),
    describe: (name, sample) => describeData(ctx, name, sample),
    gpuToolsOff: toolsTurnedOff(env),
  };
  // Warnings of up/restart (an unchecked extra_args, a metal backend on Linux) go to the message line
  // and the results under `a`, never to stderr: that would write over the frame Ink draws.
  const warnings: string[] = [];
  const deps = { ...ctx.deps, warn: (m: string) => warnings.push(m) };
  const withWarnings = (result: string) => {
    const w = warnings.splice(0);
    return w.length ? `${result} (warning: ${w.join('; ')})` : result;
  };
  const actions: DashboardActions = {
    async run(action, name) {
      try {
        if (action === 'start') {
          const r = await up(deps, name);
          if (r.status === 'failed') return `error: ${name} failed: ${r.error ?? 'see details'}`;
          return withWarnings(
            r.adopted
              ? `${name}: re-attached to running server pid ${r.pid ?? '-'} (no reload)`
              : `${name} started (pid ${r.pid ?? 'pending'})`,
          );
        }
        if (action === 'stop') return (await down(deps, name)).message;
        const r = await restart(deps, name);
        return withWarnings(`${name} restarted (pid ${r.pid ?? 'pending'})`);
      } catch (e) {
        warnings.length = 0;
        if (e instanceof UserError) throw new Error(e.message + (e.hint ? ` — ${e.hint}` : ''));
        throw e;
      } finally {
        changed();
      }
    },
  };
  return {
    model,
    logs: fileLogSource(ctx.home),
    actions,
    onChange: (fn) => {
      changed = fn;
    },
    close: async () => {
      await gpu.stop();
      feed.close();
      ctx.close();
    },
  };
}
