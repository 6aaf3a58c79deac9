import fs from 'node:fs';
import React from 'react';
import { render } from 'ink';
import { App } from './App.js';
import { DashboardModel } from './model.js';
import { openDashboard } from '../src/app/dashboard.js';

/**
 * The dashboard's entry: the session (src/app/dashboard.ts: the store, the engine's actions, the
 * log files, the GPU source) drawn by Ink on the terminal's alternate screen.
 */

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
  const session = openDashboard(homeOpt);
  const model = new DashboardModel(session.model);
  session.onChange(() => model.markDirty());
  model.start();
  const leaveScreen = useAlternateScreen(process.stdout);
  const app = <App model={model} logs={session.logs} actions={session.actions} confirmSingle={opts.confirm ?? true} />;
  const instance = render(app, {
    maxFps: 10,
    ...(process.env.LLAMA_ORCH_RENDER_LOG
      ? {
          onRender: (m: { renderTime: number }) =>
            fs.appendFileSync(process.env.LLAMA_ORCH_RENDER_LOG as string, `${Date.now()} ${m.renderTime}\n`),
        }
      : {}),
    // incrementalRendering smeared frames in tmux when pane contents changed size (seen with Ink 6.8,
    // kept off with Ink 8); full-frame rewrites throttled to 10 fps are flicker-free in practice.
    incrementalRendering: false,
    exitOnCtrlC: true,
  });
  try {
    await instance.waitUntilExit();
  } finally {
    leaveScreen();
  }
  await model.stop();
  await session.close();
  return 0;
}
