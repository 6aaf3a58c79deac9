import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cli, freePort, makeHome, psJson, waitFor, type TestHome } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

// One instance, four readers, one answer (docs/ARCHITECTURE.md, "Layers"): `ps --json`, the REST
// API's /api/instances, `describe --json`, GET /api/instances/NAME and the dashboard's details pane
// all come from the application layer (src/app), and say the same about a real llama-server.

const SESSION = `llama-orch-one-view-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-J', '-t', SESSION);

type Row = Record<string, unknown>;
/** What does not move between two reads a second apart (uptime, latency and rates do). */
const STABLE = [
  'name',
  'state',
  'health',
  'pid',
  'keeper_pid',
  'host',
  'port',
  'backend',
  'gpus',
  'model_path',
  'started_at',
  'restarts',
  'last_error',
  'config_error',
  'vram_bytes',
  'on_gpus',
  'warnings',
];
const stable = (r: Row) => Object.fromEntries(STABLE.map((k) => [k, r[k]]));

let home: TestHome | undefined;
let daemonHome: string | undefined;
afterEach(async () => {
  try {
    tmux('kill-session', '-t', SESSION);
  } catch {
    // not started, or gone
  }
  if (daemonHome) await cli(daemonHome, ['daemon', 'stop']);
  daemonHome = undefined;
  await home?.cleanup();
  home = undefined;
});

describe('one instance through every reader', () => {
  it('ps --json, /api/instances, describe --json, /api/instances/NAME and the dashboard agree', async () => {
    home = makeHome();
    const port = freePort();
    home.addInstance('v1', realConfig(port));
    expect((await cli(home.root, ['up', 'v1', '--wait', '30'])).code).toBe(0);
    const listen = freePort();
    const started = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${listen}`, '--no-autostart']);
    expect(started.code, started.stderr).toBe(0);
    daemonHome = home.root;
    const base = `http://127.0.0.1:${listen}`;

    const ps = (await psJson(home.root)).find((r) => r.name === 'v1') as Row;
    const apiList = ((await (await fetch(`${base}/api/instances`)).json()) as Row[]).find(
      (r) => r.name === 'v1',
    ) as Row;
    const described = JSON.parse((await cli(home.root, ['describe', 'v1', '--json'])).stdout) as Row;
    const apiOne = (await (await fetch(`${base}/api/instances/v1`)).json()) as Row;

    expect(ps.state).toBe('running');
    expect(ps.health).toBe('ok');
    expect(ps.port).toBe(port);
    // The same fields, and the same values where they cannot move in between.
    expect(Object.keys(apiList).sort()).toEqual(Object.keys(ps).sort());
    expect(stable(apiList)).toEqual(stable(ps));
    expect(Object.keys(apiOne).sort()).toEqual(Object.keys(described).sort());
    expect(stable(described)).toEqual(stable(ps));
    expect(stable(apiOne)).toEqual(stable(ps));
    // describe is the row and more: every field of ps --json is in it.
    for (const k of Object.keys(ps)) expect(described, k).toHaveProperty(k);
    for (const k of ['command', 'config_path', 'log_dir', 'recent_events', 'serving_history', 'load'])
      expect(apiOne, k).toHaveProperty(k);
    expect(apiOne.command).toEqual(described.command);
    expect(apiOne.config_path).toBe(described.config_path);

    // The dashboard's details pane (d) shows describe's text: its lines that do not tick are there as
    // `describe v1` prints them.
    const text = (await cli(home.root, ['describe', 'v1'])).stdout.split('\n');
    const lines = ['Name:', 'Config:', 'Server pid:', 'Keeper pid:', 'Listen:', 'Backend:', 'Model:', 'Started:'].map(
      (k) => text.find((l) => l.startsWith(k)) as string,
    );
    expect(lines.every(Boolean), text.join('\n')).toBe(true);
    tmux('new-session', '-d', '-s', SESSION, '-x', '200', '-y', '50', `node ${CLI} --home ${home.root}`);
    await waitFor(() => (/v1\s+running\s+ok/.test(screen()) ? true : undefined), 15_000, 'v1 running in the table');
    tmux('send-keys', '-t', SESSION, 'd');
    const pane = await waitFor(
      () => {
        const s = screen();
        return lines.every((l) => s.includes(l.trimEnd())) ? s : undefined;
      },
      10_000,
      "the details pane with describe's lines",
    );
    expect(pane).toMatch(new RegExp(`Server pid:\\s+${String(ps.pid)}\\b`));
    expect(pane).toMatch(new RegExp(`Listen:\\s+127\\.0\\.0\\.1:${port}\\b`));
  });
});
