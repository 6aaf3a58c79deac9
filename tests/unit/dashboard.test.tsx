import React from 'react';
import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { App, type DashboardActions } from '../../components/App.js';
import { InstanceTable, rowLine } from '../../components/InstanceTable.js';
import { Header } from '../../components/Header.js';
import { layoutColumns } from '../../src/format/columns.js';
import { matchKey } from '../../components/keymap.js';
import type { DashboardState } from '../../components/model.js';
import type { LogSource } from '../../src/logs/follow.js';
import type { InstanceSnapshot } from '../../src/app/snapshot.js';
import { snapshotFixture } from '../helpers/snapshot.js';

const NOW = Date.parse('2026-11-22T12:00:00Z');

/** The rows here: a CUDA instance on GPU 1, up two minutes, restarted twice. */
const inst = (name: string, over: Partial<InstanceSnapshot> = {}): InstanceSnapshot =>
  snapshotFixture(name, {
    health_latency_ms: 23.4,
    backend: 'cuda',
    gpus: [1],
    model: 'qwen-7b',
    model_path: '/m/q.gguf',
    started_at: '2026-11-22T11:58:00Z',
    uptime_s: 125,
    restarts: 2,
    ...over,
  });

/** Frames contain times and pids: normalise them before asserting. */
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '');
const norm = (s: string | undefined) => stripAnsi(s ?? '').replace(/\d{2}:\d{2}:\d{2}/g, 'HH:MM:SS');

/** A model over fixed state; `describe` stands for describe's text (the real model: components/model.ts). */
function fakeModel(
  instances: InstanceSnapshot[],
  describe: (name: string) => string[] = (n) => [`Name: ${n}`, 'State: running'],
) {
  let state: DashboardState = {
    now: NOW,
    host: 'rig',
    home: '/h',
    daemon: { running: false, pid: null, proxy: null },
    instances,
    events: [
      {
        id: 1,
        ts: NOW,
        instance_name: 'alpha',
        level: 'error',
        event_type: 'exit',
        message: 'server pid 1 killed by SIGKILL after 3 s',
        meta_json: null,
      },
    ],
    error: null,
    gpus: [],
    gpuError: null,
    cpuOnly: false,
  };
  const listeners = new Set<() => void>();
  return {
    subscribe: (fn: () => void) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    getSnapshot: () => state,
    showDetails(name: string | undefined) {
      state = { ...state, details: name === undefined ? null : { name, lines: describe(name) } };
      listeners.forEach((l) => l());
    },
    set(next: Partial<DashboardState>) {
      state = { ...state, ...next };
      listeners.forEach((l) => l());
    },
  };
}

function fakeLogs(lines: Record<string, string[]>): LogSource & { push: (name: string, l: string) => void } {
  const subs = new Map<string, (l: string[]) => void>();
  return {
    follow(name, stream, _n, onLines) {
      onLines((lines[`${name}:${stream}`] ?? []).slice());
      subs.set(name, onLines);
      return () => subs.delete(name);
    },
    push(name, l) {
      subs.get(name)?.([l]);
    },
  };
}

const tick = (ms = 150) => new Promise((r) => setTimeout(r, ms));

/** Waits (up to 5 s) until the last frame contains `text`; fails with that frame. */
async function shows(lastFrame: () => string | undefined, text: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(lastFrame() ?? '').includes(text) && Date.now() < deadline) await tick(25);
  expect(lastFrame()).toContain(text);
}

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

describe('keymap', () => {
  it('maps keys to commands', () => {
    expect(matchKey('', { upArrow: true })).toBe('up');
    expect(matchKey('j', {})).toBe('down');
    expect(matchKey('s', {})).toBe('start');
    expect(matchKey('X', {})).toBe('stopAll');
    expect(matchKey('l', {})).toBe('logs');
    expect(matchKey('/', {})).toBe('search');
    expect(matchKey('f', {})).toBe('filter');
    expect(matchKey('', { pageUp: true })).toBe('pageUp');
    expect(matchKey('d', { ctrl: true })).toBe('pageDown');
    expect(matchKey('', { end: true })).toBe('bottom');
    expect(matchKey('', { return: true })).toBe('fullLog');
    expect(matchKey('E', {})).toBe('allEvents');
    expect(matchKey('o', {})).toBe('sort');
    expect(matchKey('q', {})).toBe('quit');
    expect(matchKey('z', {})).toBeUndefined();
  });
});

describe('InstanceTable', () => {
  it('renders every column with state colours and the selection marker', () => {
    const { lastFrame, unmount } = render(
      <InstanceTable
        rows={[
          inst('alpha'),
          inst('beta', { state: 'backoff', health: null, pid: null, next_restart_in_s: 4, uptime_s: null }),
        ]}
        selected={0}
        width={100}
        now={NOW}
        maxRows={10}
        sort={{ key: 'name', reverse: false }}
      />,
    );
    cleanup = unmount;
    const raw = lastFrame() ?? '';
    expect(raw).toContain('\u001b[32mrunning');
    const f = norm(raw);
    expect(f).toContain('NAME');
    // 100 columns: BACKEND, SLOTS and REQ give way; GPU (device and VRAM) and TOK/S stay.
    expect(f).toMatch(/› alpha\s+running\s+ok 20ms\s+4242\s+18181\s+1\s+qwen-7b\s+2m05s\s+2\s+13$/m);
    expect(f.split('\n')[0]).toMatch(/NAME▼/);
    expect(f).toMatch(/ {2}beta\s+backoff 4s\s+-\s+-/);
  });

  it('140 columns: every column; requests waiting for a slot in yellow', () => {
    const rows = [inst('alpha', { requests_processing: 4, requests_deferred: 3, slots_busy: 4 }), inst('beta')];
    const cols = layoutColumns(rows, 140, 'stable');
    expect(cols.map((c) => c.title).slice(-6)).toEqual(['MODEL', 'UPTIME', 'RESTARTS', 'TOK/S', 'SLOTS', 'REQ']);
    expect(cols.map((c) => c.title)).toContain('BACKEND');
    const saturated = rowLine(rows[0] as InstanceSnapshot, cols, undefined);
    expect(saturated).toMatch(/alpha\s+running.*\s13\s+4\/4\s+/);
    expect(saturated).toContain('\u001b[33m4+3');
    expect(rowLine(rows[1] as InstanceSnapshot, cols, undefined)).toMatch(/beta\s+running.*\s13\s+1\/4\s+1$/);
  });

  it('with the daemon proxy: its address in the header and a PROXY column (in flight + waiting for a start)', () => {
    const rows = [
      inst('alpha', { proxy_in_flight: 1, proxy_queued: 2 }),
      inst('beta', { proxy_in_flight: 0, proxy_queued: 0 }),
    ];
    const cols = layoutColumns(rows, 160, 'stable');
    expect(cols.map((c) => c.title).slice(-2)).toEqual(['REQ', 'PROXY']);
    expect(rowLine(rows[0] as InstanceSnapshot, cols, undefined)).toMatch(/\s1\+2$/);
    expect(rowLine(rows[1] as InstanceSnapshot, cols, undefined)).toMatch(/\s0$/);
    // Without a proxy (null counts) the column is not there at all.
    expect(layoutColumns([inst('alpha')], 160, 'stable').map((c) => c.title)).not.toContain('PROXY');
    const model = fakeModel(rows);
    model.set({ daemon: { running: true, pid: 7, proxy: 'http://127.0.0.1:18180' } });
    const { lastFrame, unmount } = render(<Header state={model.getSnapshot()} />);
    cleanup = unmount;
    expect(norm(lastFrame())).toMatch(/daemon: running proxy 127\.0\.0\.1:18180/);
    // A long summary on a 100-column terminal: one line, the name and the daemon whole, the summary cut.
    const many = Array.from({ length: 12 }, (_, i) =>
      inst(`i${i}`, { state: (['running', 'stopped', 'failed', 'backoff'] as const)[i % 4], warnings: ['w'] }),
    );
    model.set({ instances: many });
    const narrow = render(<Header state={model.getSnapshot()} />);
    const frame = norm(narrow.lastFrame());
    narrow.unmount();
    expect(frame.split('\n')).toHaveLength(1);
    expect(frame).toMatch(/^llama-orch rig /);
    expect(frame).toMatch(/daemon: running proxy 127\.0\.0\.1:18180 \S+$/);
    // A long host name gives way too: still one line within the terminal, the daemon part whole.
    model.set({ host: 'ip-10-0-12-34.eu-west-1.compute.internal.example' });
    const long = render(<Header state={model.getSnapshot()} />);
    const longFrame = norm(long.lastFrame());
    long.unmount();
    expect(longFrame.split('\n')).toHaveLength(1);
    expect(longFrame.length).toBeLessThanOrEqual(100);
    expect(longFrame).toMatch(/^llama-orch ip-10/);
    expect(longFrame).toMatch(/ daemon: running proxy 127\.0\.0\.1:18180 \S+$/);
  });

  it('drops low-priority columns on a narrow terminal instead of wrapping', () => {
    const cols = layoutColumns(
      [inst('alpha', { health: 'unhealthy', health_detail: '/health timed out after 3 s 3/3' })],
      60,
    ).map((c) => c.title);
    expect(cols.slice(0, 3)).toEqual(['NAME', 'STATE', 'HEALTH']);
    expect(cols).not.toContain('BACKEND');
    const { lastFrame, unmount } = render(
      <InstanceTable rows={[inst('alpha')]} selected={0} width={60} now={NOW} maxRows={5} />,
    );
    cleanup = unmount;
    for (const line of norm(lastFrame()).split('\n')) expect(line.length).toBeLessThanOrEqual(60);
  });
});

describe('App', () => {
  const actions = (log: string[]): DashboardActions => ({
    run: (a, n) => {
      log.push(`${a}:${n}`);
      return a === 'start'
        ? Promise.reject(new Error('port 18181 held by pid 4242 (python3)'))
        : Promise.resolve(`${n} ${a}ped`);
    },
  });

  it('shows the log tail of the selected instance and follows new lines', async () => {
    const logs = fakeLogs({
      'alpha:stderr': ['loading model', 'listening on http://127.0.0.1:18181'],
      'alpha:stdout': ['out line'],
    });
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha'), inst('beta')])} logs={logs} actions={actions([])} />,
    );
    cleanup = unmount;
    // The log tail arrives in batches (every 100 ms): waited for, not assumed after one tick.
    await shows(lastFrame, 'logs · alpha · stderr');
    await shows(lastFrame, 'listening on http://127.0.0.1:18181');
    logs.push('alpha', 'slot 0: new request');
    await shows(lastFrame, 'slot 0: new request');
    stdin.write('l');
    await shows(lastFrame, 'logs · alpha · stdout');
    await shows(lastFrame, 'out line');
  });

  it('dispatches actions for the selected row and shows errors inline', async () => {
    const log: string[] = [];
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha'), inst('beta')])} logs={fakeLogs({})} actions={actions(log)} />,
    );
    cleanup = unmount;
    await tick();
    stdin.write('j');
    await tick();
    stdin.write('x');
    await tick();
    // A running instance: asked first, with what is about to be affected.
    expect(norm(lastFrame())).toContain('stop beta (running, pid 4242, port 18181, model qwen-7b, up 2m05s)? (y/N)');
    stdin.write('n');
    await tick();
    expect(log).toEqual([]);
    expect(lastFrame()).toContain('stop: cancelled');
    stdin.write('x');
    await tick();
    stdin.write('y');
    await tick();
    expect(log).toEqual(['stop:beta']);
    expect(lastFrame()).toContain('beta stopped');
    stdin.write('s');
    await tick();
    expect(lastFrame()).toContain('error: port 18181 held by pid 4242 (python3)');
  });

  it('asks before acting on all instances', async () => {
    const log: string[] = [];
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha'), inst('beta')])} logs={fakeLogs({})} actions={actions(log)} />,
    );
    cleanup = unmount;
    await tick();
    stdin.write('X');
    await tick();
    expect(lastFrame()).toContain('stop all 2 shown: alpha, beta; 2 running (y/N)');
    stdin.write('n');
    await tick();
    expect(log).toEqual([]);
    stdin.write('X');
    await tick();
    stdin.write('y');
    await tick();
    expect(log).toEqual(['stop:alpha', 'stop:beta']);
    // One summary line for the batch; every result kept under `a`.
    expect(lastFrame()).toContain('stop all: 2 of 2 done (a: results)');
    stdin.write('a');
    await tick();
    expect(lastFrame()).toContain('results of the last actions');
    expect(norm(lastFrame())).toMatch(/HH:MM:SS alpha stopped[\s\S]*HH:MM:SS beta stopped/);
  });

  it('a multi-line error is one line (the frame keeps its height); a filter matching nothing says so', async () => {
    const acts: DashboardActions = {
      run: () =>
        Promise.reject(new Error('invalid config for "alpha":\n  $.server.extra_args[0]: unknown flag\n  $.port: x')),
    };
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha', { state: 'stopped' })])} logs={fakeLogs({})} actions={acts} />,
    );
    cleanup = unmount;
    await tick();
    const height = (lastFrame() ?? '').split('\n').length;
    stdin.write('s');
    await tick();
    expect(lastFrame()).toContain(
      'error: invalid config for "alpha": · $.server.extra_args[0]: unknown flag · $.port: x',
    );
    expect((lastFrame() ?? '').split('\n').length).toBe(height);
    stdin.write('f');
    await tick();
    stdin.write('zzz');
    await tick();
    stdin.write('\r');
    await tick();
    expect(lastFrame()).toContain('no instance name contains "zzz"');
  });

  it('a long question keeps its answer keys on screen', async () => {
    const long = 'an-instance-with-a-very-long-name-that-fills-the-line';
    const { lastFrame, stdin, unmount } = render(
      <App
        model={fakeModel([inst(long, { model: 'a-model-name-that-is-long-too.gguf' })])}
        logs={fakeLogs({})}
        actions={actions([])}
      />,
    );
    cleanup = unmount;
    await tick();
    stdin.write('x');
    await tick();
    const line = stripAnsi(lastFrame() ?? '')
      .split('\n')
      .find((l) => l.startsWith(`stop ${long}`));
    expect(line).toMatch(/… \(y\/N\)$/);
  });

  it('with --yes, x and r act at once', async () => {
    const log: string[] = [];
    const { stdin, unmount } = render(
      <App model={fakeModel([inst('alpha')])} logs={fakeLogs({})} actions={actions(log)} confirmSingle={false} />,
    );
    cleanup = unmount;
    await tick();
    stdin.write('r');
    await tick();
    expect(log).toEqual(['restart:alpha']);
  });

  it('filters by name, shows help, events and details', async () => {
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha'), inst('beta'), inst('gamma')])} logs={fakeLogs({})} actions={actions([])} />,
    );
    cleanup = unmount;
    await tick();
    stdin.write('f');
    await tick();
    stdin.write('be');
    await tick();
    stdin.write('\r');
    await tick();
    const f = lastFrame() ?? '';
    expect(f).toContain('beta');
    expect(f).not.toContain('alpha');
    expect(f).not.toContain('gamma');
    stdin.write('?');
    await tick();
    expect(lastFrame()).toContain('keys');
    expect(lastFrame()).toContain('quit (instances keep running)');
    stdin.write('s');
    await tick();
    // Help covers the screen: s acted on nothing hidden.
    expect(lastFrame()).not.toContain('start beta');
    stdin.write('?');
    await tick();
    stdin.write('d');
    await tick();
    expect(lastFrame()).toContain('Name: beta');
  });

  it('scrolls the details pane to its last line at 24 rows (PgDn, End), and back (Home)', async () => {
    const long = Array.from({ length: 60 }, (_, i) => `line ${i + 1}`);
    const acts: DashboardActions = { run: () => Promise.resolve('') };
    const model = fakeModel([inst('alpha', { state: 'failed' })], () => [...long, 'Stderr tail: boom']);
    const { lastFrame, stdin, unmount } = render(<App model={model} logs={fakeLogs({})} actions={acts} />);
    cleanup = unmount;
    await tick();
    stdin.write('d');
    await tick();
    expect(lastFrame()).toContain('line 1\n');
    expect(lastFrame()).not.toContain('Stderr tail: boom');
    expect(lastFrame()).toMatch(/details · alpha · 1-\d+ of 61/);
    stdin.write('\u001b[6~'); // PgDn
    await tick();
    expect(lastFrame()).not.toContain('line 1\n');
    stdin.write('\u001b[F'); // End
    await tick();
    expect(lastFrame()).toContain('Stderr tail: boom');
    stdin.write('\u001b[H'); // Home
    await tick();
    expect(lastFrame()).toContain('line 1\n');
  });

  it('searches the log pane (/ then n, N), shows the full-screen log (L, Esc), closes the pane (c)', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => (i === 42 ? 'slot 3: needle found here' : `log line ${i}`));
    const logs = fakeLogs({ 'alpha:stderr': lines });
    const { lastFrame, stdin, unmount } = render(
      <App model={fakeModel([inst('alpha'), inst('beta')])} logs={logs} actions={actions([])} />,
    );
    cleanup = unmount;
    await tick();
    expect(lastFrame()).toContain('log line 299');
    expect(lastFrame()).toContain('(following)');
    stdin.write('/');
    await tick();
    stdin.write('needle');
    await tick();
    stdin.write('\r');
    await tick();
    expect(stripAnsi(lastFrame() ?? '')).toContain('slot 3: needle found here');
    expect(lastFrame()).not.toContain('log line 299');
    expect(lastFrame()).toContain('/needle');
    stdin.write('/');
    await tick();
    stdin.write('no-such-text');
    await tick();
    stdin.write('\r');
    await tick();
    expect(lastFrame()).toContain('no match for "no-such-text" in logs');
    // Full screen: no table, more lines.
    stdin.write('L');
    await tick();
    const full = lastFrame() ?? '';
    expect(full).toContain('logs · alpha · stderr (Esc: back)');
    expect(full).not.toContain('NAME');
    // The title is the line under the header, then the log lines (none drawn over another).
    expect(stripAnsi(full).split('\n')[1]).toMatch(/^logs · alpha · stderr \(Esc: back\) · \d+-\d+ of 300 · \/needle/);
    expect(stripAnsi(full).split('\n')[2]).toMatch(/^(log line \d+|slot 3: needle found here)$/);
    stdin.write('\u001b');
    await tick();
    expect(lastFrame()).toContain('NAME');
    stdin.write('c');
    await tick();
    expect(lastFrame()).not.toContain('logs · alpha');
    expect(lastFrame()).toContain('? help · q quit');
  });

  it('E shows the events of every instance, e those of the selected one; o sorts', async () => {
    const model = fakeModel([inst('alpha', { uptime_s: 5 }), inst('beta', { uptime_s: 500 })]);
    model.set({
      events: [
        {
          id: 1,
          ts: NOW,
          instance_name: 'alpha',
          level: 'info',
          event_type: 'spawn',
          message: 'alpha started',
          meta_json: null,
        },
        {
          id: 2,
          ts: NOW,
          instance_name: 'beta',
          level: 'warn',
          event_type: 'exit',
          message: 'beta exited',
          meta_json: null,
        },
      ],
    });
    const { lastFrame, stdin, unmount } = render(<App model={model} logs={fakeLogs({})} actions={actions([])} />);
    cleanup = unmount;
    await tick();
    stdin.write('e');
    await tick();
    expect(lastFrame()).toContain('events · alpha');
    expect(lastFrame()).toContain('alpha started');
    expect(lastFrame()).not.toContain('beta exited');
    stdin.write('E');
    await tick();
    expect(lastFrame()).toContain('events · all instances');
    expect(lastFrame()).toContain('beta exited');
    const order = () =>
      norm(lastFrame())
        .split('\n')
        .filter((l) => /^[ ›] (alpha|beta) /.test(l))
        .map((l) => l.slice(2, 7).trim());
    expect(order()).toEqual(['alpha', 'beta']);
    stdin.write('o'); // state: both running
    await tick();
    stdin.write('o'); // port
    await tick();
    stdin.write('o'); // uptime: longest first
    await tick();
    expect(order()).toEqual(['beta', 'alpha']);
    expect(lastFrame()).toContain('UPTIME▼');
    expect(lastFrame()).toContain('[sort uptime]');
  });

  it('reflects model updates without a key press', async () => {
    const model = fakeModel([inst('alpha')]);
    const { lastFrame, unmount } = render(<App model={model} logs={fakeLogs({})} actions={actions([])} />);
    cleanup = unmount;
    await tick();
    model.set({ instances: [inst('alpha', { state: 'backoff', pid: null, health: null, next_restart_in_s: 2 })] });
    await tick();
    expect(norm(lastFrame())).toMatch(/alpha\s+backoff 2s/);
  });
});
