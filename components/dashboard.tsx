import fs from 'node:fs';
import React from 'react';
import { render } from 'ink';
import { App, type ActionName, type DashboardActions } from './App.js';
import { DashboardModel } from './model.js';
import { describeData } from '../src/app/describe.js';
import { describeLines } from '../src/format/describe.js';
import { openContext } from '../src/app/context.js';
import { cachedLoader } from '../src/config/cached.js';
import { loadConfigFile } from '../src/config/load.js';
import { watchInstanceConfigs } from '../src/config/watch.js';
import { UserError } from '../src/domain/errors.js';
import { reconcileAll } from '../src/engine/reconcile.js';
import { down } from '../src/engine/down.js';
import { restart } from '../src/engine/restart.js';
import { up } from '../src/engine/up.js';
import { fileLogSource } from '../src/logs/follow.js';
import { ChangeFeed } from '../src/store/watch.js';
import { LiveGpuSource } from '../src/app/gpu-source.js';

/** Composition root of the dashboard: real store, real engine functions, real log files. */
/**
 * The terminal's alternate screen (like less, htop, k9s): quitting restores the shell as it was.
 * Left on any exit path, a crash included.
 */
function useAlternateScreen(out: NodeJS.WriteStream): () => void {
  if (!out.isTTY) return () => undefined;
  let on = true;
  const leave = () => {
    if (!on) return;
    on = false;
    out.write('\u001b[?1049l');
  };
  out.write('\u001b[?1049h\u001b[H');
  process.once('exit', leave);
  return leave;
}

export interface DashboardOptions {
  /** Ask before x and r act on a running instance (default true; `llama-orch --yes` turns it off). */
  confirm?: boolean;
}

export async function runDashboard(homeOpt: string | undefined, opts: DashboardOptions = {}): Promise<number> {
  const ctx = openContext(homeOpt);
  // Its own feed at the dashboard's pace (the context's feed is for short waits).
  // Once a second: keepers write a probe result every few seconds, and each look that finds a new
  // data_version reads the status digest (at 250 ms that cost 0.6% of a core with 16 instances,
  // bench/dashboard-idle.mjs); changes are shown within a second, as before.
  const feed = new ChangeFeed(ctx.store, { intervalMs: 1000 });
  const gpu = new LiveGpuSource(ctx.store, process.env);
  // The sampler may report before the model exists (its first sample can come synchronously).
  let onGpuSample = () => undefined as void;
  const model = new DashboardModel({
    sources: ctx.sources(cachedLoader(ctx.store, loadConfigFile)),
    gpu: () => gpu.latest(() => onGpuSample()),
    feed,
    watchConfigs: (onChange) => watchInstanceConfigs(ctx.home, onChange),
    reconcile: () => reconcileAll(ctx.store, ctx.deps.procs),
  });
  onGpuSample = () => model.markDirty();
  model.start();
  // Warnings of up/restart (an unchecked extra_args, a metal backend on Linux) go to the message line
  // and the results under `a`, never to stderr: that would write over the frame Ink draws.
  const warnings: string[] = [];
  const deps = { ...ctx.deps, warn: (m: string) => warnings.push(m) };
  const withWarnings = (result: string) => {
    const w = warnings.splice(0);
    return w.length ? `${result} (warning: ${w.join('; ')})` : result;
  };
  const actions: DashboardActions = {
    async run(action: ActionName, name: string) {
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
        model.markDirty();
      }
    },
    describe: (name) => {
      try {
        return describeLines(
          describeData(
            ctx,
            name,
            gpu.latest(() => model.markDirty()),
          ),
        );
      } catch (e) {
        return [`cannot describe ${name}: ${e instanceof Error ? e.message : String(e)}`];
      }
    },
  };
  const leaveScreen = useAlternateScreen(process.stdout);
  const app = (
    <App model={model} logs={fileLogSource(ctx.home)} actions={actions} confirmSingle={opts.confirm ?? true} />
  );
  const instance = render(app, {
    maxFps: 10,
    ...(process.env.LLAMA_ORCH_RENDER_LOG
      ? {
          onRender: (m: { renderTime: number }) =>
            fs.appendFileSync(process.env.LLAMA_ORCH_RENDER_LOG as string, `${Date.now()} ${m.renderTime}\n`),
        }
      : {}),
    // Ink 6.8 incrementalRendering smeared frames in tmux when pane contents changed size; full-frame
    // rewrites throttled to 10 fps are flicker-free in practice.
    incrementalRendering: false,
    exitOnCtrlC: true,
  });
  try {
    await instance.waitUntilExit();
  } finally {
    leaveScreen();
  }
  await model.stop();
  await gpu.stop();
  feed.close();
  ctx.close();
  return 0;
}
