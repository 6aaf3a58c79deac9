import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cli, freePort, isAlive, makeHome, psJson, waitFor, type TestHome } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

const SESSION = `llama-orch-e2e-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', SESSION);
const rowOf = (name: string) =>
  screen()
    .split('\n')
    .find((l) => new RegExp(`^[ ›] ${name} `).test(l)) ?? '';

let home: TestHome | undefined;
afterEach(async () => {
  try {
    tmux('kill-session', '-t', SESSION);
  } catch {
    // already gone
  }
  await home?.cleanup();
  home = undefined;
});

describe('the dashboard in a real terminal (tmux 140x35) with two real llama-servers', () => {
  it('shows live rows, and s/x/r/q act on the selected instance; quitting leaves servers running', async () => {
    home = makeHome();
    const [pa, pb] = [freePort(), freePort()];
    home.addInstance('alpha', realConfig(pa));
    home.addInstance('bravo', realConfig(pb));
    expect((await cli(home.root, ['up', '--all', '--wait', '30'])).code).toBe(0);

    tmux('new-session', '-d', '-s', SESSION, '-x', '140', '-y', '35', `node ${CLI} --home ${home.root}`);
    const first = await waitFor(
      () => {
        const r = rowOf('alpha');
        return /running\s+ok/.test(r) && /running\s+ok/.test(rowOf('bravo')) ? r : undefined;
      },
      15_000,
      'both rows ok',
    );
    const ps = await psJson(home.root);
    const alpha = ps.find((r) => r.name === 'alpha') as Record<string, unknown>;
    expect(first).toMatch(
      new RegExp(`alpha\\s+running\\s+ok(?: \\d+m?s)?\\s+${String(alpha.pid)}\\s+${pa}\\s+cpu\\s+-\\s+tiny\\s+\\d+s`),
    );
    expect(screen()).toMatch(
      /NAME▼?\s+STATE\s+HEALTH\s+PID\s+PORT\s+BACKEND\s+GPU\s+MODEL\s+UPTIME\s+RESTARTS\s+TOK\/S\s+SLOTS\s+REQ/,
    );

    // Uptime ticks without a key press.
    const up1 = /(\d+)s\s+\d+\s+\S+\s+\S+\s+\S+\s*$/.exec(rowOf('alpha'))?.[1];
    await waitFor(
      () => {
        const up2 = /(\d+)s\s+\d+\s+\S+\s+\S+\s+\S+\s*$/.exec(rowOf('alpha'))?.[1];
        return up2 !== undefined && up2 !== up1 ? true : undefined;
      },
      5000,
      'uptime tick',
    );

    // The log pane follows what the server writes now.
    await fetch(`http://127.0.0.1:${pa}/completion`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'hi', n_predict: 2 }),
    });
    await waitFor(
      () => (screen().includes('print_timing') || screen().includes('release:') ? true : undefined),
      5000,
      'new log lines in the pane',
    );

    // x stops the selected (first) instance, on screen and in ps, once confirmed.
    tmux('send-keys', '-t', SESSION, 'x');
    await waitFor(
      () =>
        new RegExp(`stop alpha \\(running, pid ${String(alpha.pid)}, port ${pa}, model tiny`).test(screen())
          ? true
          : undefined,
      5000,
      'the question before stopping',
    );
    expect(isAlive(alpha.pid as number)).toBe(true);
    tmux('send-keys', '-t', SESSION, 'y');
    await waitFor(() => (/alpha\s+stopped/.test(rowOf('alpha')) ? true : undefined), 15_000, 'alpha stopped on screen');
    expect((await psJson(home.root)).find((r) => r.name === 'alpha')?.state).toBe('stopped');
    expect(isAlive(alpha.pid as number)).toBe(false);

    // s starts it again.
    tmux('send-keys', '-t', SESSION, 's');
    await waitFor(
      () => (/alpha\s+running\s+ok/.test(rowOf('alpha')) ? true : undefined),
      15_000,
      'alpha running again',
    );
    const afterStart = (await psJson(home.root)).find((r) => r.name === 'alpha') as Record<string, unknown>;

    // r restarts it once confirmed: a new pid.
    tmux('send-keys', '-t', SESSION, 'r');
    await waitFor(() => (/restart alpha \(running/.test(screen()) ? true : undefined), 5000, 'the question');
    tmux('send-keys', '-t', SESSION, 'y');
    const restarted = await waitFor(
      async () => {
        const r = (await psJson((home as TestHome).root)).find((x) => x.name === 'alpha') as Record<string, unknown>;
        return r.health === 'ok' && r.pid !== afterStart.pid ? r : undefined;
      },
      15_000,
      'new pid after r',
    );
    await waitFor(() => (rowOf('alpha').includes(String(restarted.pid)) ? true : undefined), 5000, 'new pid on screen');

    // kill -9 from another shell: backoff (or the restart) shows, then running again, no key pressed.
    const bravo = (await psJson(home.root)).find((r) => r.name === 'bravo') as Record<string, unknown>;
    process.kill(bravo.pid as number, 'SIGKILL');
    await waitFor(
      () =>
        /bravo\s+running\s+ok/.test(rowOf('bravo')) && !rowOf('bravo').includes(String(bravo.pid)) ? true : undefined,
      15_000,
      'bravo back',
    );
    const events = (await cli(home.root, ['events', 'bravo'])).stdout;
    expect(events).toMatch(/killed by SIGKILL/);
    expect(events).toMatch(/running -> backoff/);

    // q quits; both servers keep running.
    tmux('send-keys', '-t', SESSION, 'q');
    await waitFor(
      () => {
        try {
          return tmux('list-panes', '-t', SESSION, '-F', '#{pane_dead} #{pane_current_command}').includes('node')
            ? undefined
            : true;
        } catch {
          return true;
        }
      },
      5000,
      'dashboard exited',
    );
    // (Under load the restarted bravo may still be settling: wait for ok rather than read it once.)
    const final = await waitFor(
      async () => {
        const rows = await psJson(home.root);
        return rows.every((r) => r.state === 'running' && r.health === 'ok') ? rows : undefined;
      },
      10_000,
      'both running ok after quitting',
    );
    expect(final.map((r) => [r.name, r.state, r.health])).toEqual([
      ['alpha', 'running', 'ok'],
      ['bravo', 'running', 'ok'],
    ]);
  });
});
