import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnKeeperProcess } from '../../src/keeper/launch.js';
import { SupervisionService } from '../../src/daemon/supervision.js';
import { UserError } from '../../src/domain/errors.js';
import { homeAt, type Home } from '../../src/domain/home.js';
import { down } from '../../src/engine/down.js';
import type { SupervisorDeps } from '../../src/engine/supervisor.js';
import { up } from '../../src/engine/up.js';
import { reconcileRow } from '../../src/engine/reconcile.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { ChangeFeed } from '../../src/store/watch.js';
import { ScriptedProcesses, type ScriptedProc } from '../helpers/scripted-processes.js';
import { writeFakeModel } from '../helpers/home.js';
import { readGguf } from '../../src/models/gguf.js';
import { estimateMemory } from '../../src/models/estimate.js';
import { estimateInputFor } from '../../src/engine/memory-fit.js';
import { loadInstance } from '../../src/config/load.js';

// `up`, `down`, adoption and the daemon's keeper replacement, in this process: a real SQLite store,
// real config files, and the process side effects scripted (tests/helpers/scripted-processes.ts).
// The scripted keeper does what src/keeper does, through the same store intents.

const PORT = 18181;

interface Rig {
  home: Home;
  store: Store;
  procs: ScriptedProcesses;
  deps: SupervisorDeps;
  bin: string;
  /** The server the scripted keeper started for an instance, by name. */
  servers: Map<string, ScriptedProc>;
}

let open: Rig | undefined;
afterEach(() => {
  open?.deps.feed.close();
  open?.store.close();
  open = undefined;
});

function rig(names: string[] = ['a']): Rig {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'supervisor-'));
  const bin = path.join(root, 'llama-server');
  fs.writeFileSync(bin, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  fs.mkdirSync(path.join(root, 'models'));
  writeFakeModel(path.join(root, 'models', 'm.gguf'));
  names.forEach((name, i) => {
    fs.mkdirSync(path.join(root, 'instances', name), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'instances', name, 'config.json'),
      JSON.stringify({ model: { path: 'models/m.gguf' }, server: { port: PORT + i }, stop_timeout: 0.2 }),
    );
  });
  const home = homeAt(root);
  const store = new Store(openDatabase(home.dbPath).db);
  const procs = new ScriptedProcesses();
  const env = { LLAMA_SERVER: bin };
  const deps: SupervisorDeps = {
    home,
    store,
    feed: new ChangeFeed(store, { intervalMs: 5 }),
    procs,
    env,
    now: Date.now,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    spawnKeeper: (name, fd) => spawnKeeperProcess(procs, home, name, fd, env),
  };
  const servers = new Map<string, ScriptedProc>();
  procs.onSpawn = (keeper, args) => scriptedKeeper({ home, store, procs, deps, bin, servers }, keeper, args);
  open = { home, store, procs, deps, bin, servers };
  return open;
}

/** What a keeper does, as seen from the store: start (or re-attach) the server; on SIGTERM, stop it. */
/** `keeper NAME` wherever it stands in the argv (node flags and the entry come first). */
const keeperArgs = (args: string[]) => args.slice(args.indexOf('keeper'), args.indexOf('keeper') + 2);

function scriptedKeeper(r: Rig, keeper: ScriptedProc, args: string[]): void {
  const name = keeperArgs(args)[1] as string;
  const row = r.store.getRuntime(name);
  if (!row || row.keeper_pid !== keeper.pid) return;
  let server: ScriptedProc;
  if (row.pid !== null) {
    server = r.procs.table.get(row.pid) as ScriptedProc;
    r.store.recordAdoption(name, row.pid, `re-attached to running server pid ${row.pid}`);
  } else {
    const port = JSON.parse(r.store.getInstance(name)?.config_json ?? '{}').server.port as number;
    server = r.procs.add([r.bin, '--port', String(port)]);
    r.store.recordSpawn(name, {
      pid: server.pid,
      pgid: server.pid,
      starttime: server.starttime,
      port,
      cmdline: JSON.stringify([r.bin]),
      startedAt: Date.now(),
      attempt: 0,
    });
  }
  r.servers.set(name, server);
  keeper.onSignal = (sig) => {
    if (sig !== 'SIGTERM') return r.procs.exit(keeper.pid, null, sig);
    r.store.recordStopping(name, 'stop requested');
    r.procs.exit(server.pid, 0);
    r.store.recordExit(
      name,
      {
        pid: server.pid,
        code: 0,
        signal: null,
        at: Date.now(),
        cause: 'stop',
        stderrTail: [],
        message: 'stopped',
        meta: {},
      },
      'info',
    );
    r.store.recordStopped(name, 'stopped by request');
    r.store.releaseKeeper(name, keeper.pid);
    r.procs.exit(keeper.pid, 0);
  };
}

async function rejection(p: Promise<unknown>): Promise<UserError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error('expected a UserError');
}

const eventTypes = (r: Rig, name: string) => r.store.listEvents(name, 50).map((e) => e.event_type);

describe('up', () => {
  it('starts one keeper, which owns the instance; a second up is refused (exit 3) and starts nothing', async () => {
    const r = rig();
    const res = await up(r.deps, 'a');
    expect(r.procs.spawned).toHaveLength(1);
    expect(keeperArgs(r.procs.spawned[0]?.args ?? [])).toEqual(['keeper', 'a']);
    expect(res).toMatchObject({ adopted: false, keeperPid: r.procs.spawned[0]?.pid, pid: r.servers.get('a')?.pid });
    expect(r.store.getRuntime('a')).toMatchObject({ status: 'starting', keeper_pid: res.keeperPid, port: PORT });
    expect(r.store.getInstance('a')?.desired_state).toBe('running');

    const again = await rejection(up(r.deps, 'a'));
    expect(again.exitCode).toBe(3);
    expect(again.message).toMatch(/already running \(keeper pid \d+, server pid \d+, starting\)/);
    expect(r.procs.spawned).toHaveLength(1);
  });

  it('an instance that runs counts against the GPU: the second of two that do not fit together is refused (exit 8)', async () => {
    const r = rig(['a', 'b']);
    writeFakeModel(path.join(r.home.root, 'models', 'm2.gguf'));
    const cfg = (model: string, port: number) =>
      JSON.stringify({
        model: { path: model, n_gpu_layers: 99, context_size: 4096 },
        server: { port },
        gpu: { backend: 'cuda', devices: [0] },
        stop_timeout: 0.2,
      });
    fs.writeFileSync(path.join(r.home.root, 'instances', 'a', 'config.json'), cfg('models/m.gguf', PORT));
    fs.writeFileSync(path.join(r.home.root, 'instances', 'b', 'config.json'), cfg('models/m2.gguf', PORT + 1));
    const info = await readGguf(path.join(r.home.root, 'models', 'm.gguf'));
    const est = estimateMemory(info, estimateInputFor(loadInstance(r.home, 'a').config, 1, info));
    const one = est.devices.find((d) => d.device === 0)?.total ?? 0;
    // One GPU with room for one and a half; the reading takes a moment, as nvidia-smi does.
    r.deps.gpuInventory = () => ({ ok: true, vendor: 'nvidia', tool: 'nvidia-smi', indices: [0], uuids: [] });
    r.deps.hostMemory = () => ({ total: 64 * 1024 ** 3, available: 64 * 1024 ** 3 });
    r.deps.gpuSample = async () => {
      await new Promise((res) => setTimeout(res, 50));
      return {
        at: Date.now(),
        vendor: 'nvidia',
        gpus: [
          {
            index: 0,
            uuid: 'GPU-00000000-aaaa',
            name: 'GPU',
            utilization_pct: 0,
            memory_used_bytes: 0,
            memory_total_bytes: Math.floor(one * 1.5),
            temperature_c: 30,
            power_w: null,
            power_limit_w: null,
          },
        ],
        processes: null,
        processes_at: null,
        error: null,
        interval_ms: 0,
      };
    };
    // (The home-wide lock serialises processes; in one process the ups run in turn, as here.)
    await up(r.deps, 'a');
    const err = await rejection(up(r.deps, 'b'));
    expect(err.exitCode).toBe(8);
    expect(err.message).toMatch(
      /^b does not fit: gpu 0: needs \d+ MiB .*; with the running a \d+ that is \d+ of \d+ MiB$/,
    );
    expect(r.procs.spawned).toHaveLength(1);
  });

  it('refuses a port held by a foreign process, naming it (exit 4), and starts nothing', async () => {
    const r = rig();
    r.procs.ports.set(PORT, { inode: 1, pid: 777, command: 'python3 -m http.server 18181' });
    const err = await rejection(up(r.deps, 'a'));
    expect(err.exitCode).toBe(4);
    expect(err.message).toContain('port 18181 is held by pid 777 (python3 -m http.server 18181)');
    expect(r.procs.spawned).toHaveLength(0);
    expect(r.store.getRuntime('a')?.status).toBe('stopped');
  });

  it('re-attaches a server whose keeper died: a new keeper, the same server, no new server started', async () => {
    const r = rig();
    const first = await up(r.deps, 'a');
    const server = r.servers.get('a') as ScriptedProc;
    r.procs.exit(first.keeperPid, null, 'SIGKILL'); // kill -9 of the keeper

    const res = await up(r.deps, 'a');
    expect(res).toMatchObject({ adopted: true, pid: server.pid });
    expect(res.keeperPid).not.toBe(first.keeperPid);
    expect(r.procs.spawned.map((s) => keeperArgs(s.args)[0])).toEqual(['keeper', 'keeper']);
    expect(r.procs.isLive(server.pid)).toBe(true);
    expect(r.procs.signalsTo(server.pid)).toEqual([]);
    expect(r.store.getRuntime('a')).toMatchObject({ status: 'starting', pid: server.pid, keeper_pid: res.keeperPid });
    expect(eventTypes(r, 'a')).toEqual(['state', 'spawn', 'keeper-lost', 'adopt']);
  });

  it('a keeper that dies at once is a failure with its last log line, not a success with a pending pid', async () => {
    const r = rig();
    r.procs.onSpawn = (keeper) => {
      fs.writeFileSync(path.join(r.home.logsDir, 'a', 'keeper.log'), 'keeper a: cannot open the state database\n');
      r.procs.exit(keeper.pid, 1);
    };
    const err = await rejection(up(r.deps, 'a'));
    expect(err.exitCode).toBe(1);
    expect(err.message).toMatch(/^a: its keeper \(pid \d+\) exited at once: keeper a: cannot open the state database$/);
    expect(err.hint).toContain('keeper.log');
  });

  it('stops an orphan that was being stopped, then starts afresh', async () => {
    const r = rig();
    const first = await up(r.deps, 'a');
    const old = r.servers.get('a') as ScriptedProc;
    r.store.recordStopping('a', 'stop requested');
    r.procs.exit(first.keeperPid, null, 'SIGKILL');

    const res = await up(r.deps, 'a');
    expect(res.adopted).toBe(false);
    expect(r.procs.signalsTo(old.pid)).toEqual(['-SIGTERM']);
    expect(r.procs.isLive(old.pid)).toBe(false);
    expect(res.pid).toBe(r.servers.get('a')?.pid);
    expect(res.pid).not.toBe(old.pid);
  });
});

describe('down', () => {
  it('sends the keeper one SIGTERM; the keeper stops the server and releases the instance', async () => {
    const r = rig();
    const { keeperPid, pid } = await up(r.deps, 'a');
    const res = await down(r.deps, 'a');
    expect(res).toEqual({ name: 'a', wasRunning: true, message: `a stopped (server pid ${pid})` });
    expect(r.procs.signalsTo(keeperPid)).toEqual(['SIGTERM']);
    expect(r.store.getRuntime('a')).toMatchObject({ status: 'stopped', pid: null, keeper_pid: null });
    expect(r.store.getInstance('a')?.desired_state).toBe('stopped');
  });

  it('stops an orphaned server itself (its whole group) and records the exit', async () => {
    const r = rig();
    const { keeperPid } = await up(r.deps, 'a');
    const server = r.servers.get('a') as ScriptedProc;
    r.procs.exit(keeperPid, null, 'SIGKILL');

    const res = await down(r.deps, 'a');
    expect(res.message).toBe(`a: orphaned server pid ${server.pid} stopped (its keeper had died)`);
    expect(r.procs.signalsTo(server.pid)).toEqual(['-SIGTERM']);
    expect(r.store.getRuntime('a')).toMatchObject({ status: 'stopped', pid: null });
    expect(eventTypes(r, 'a').slice(-5)).toEqual(['keeper-lost', 'orphan-stop', 'state', 'state', 'exit']);
  });

  it('never signals a pid that now belongs to another process', async () => {
    const r = rig();
    await up(r.deps, 'a');
    const server = r.servers.get('a') as ScriptedProc;
    const keeperPid = r.store.getRuntime('a')?.keeper_pid as number;
    // Both die; their pids are handed to strangers with other start times.
    r.procs.exit(server.pid);
    r.procs.exit(keeperPid);
    r.procs.table.set(server.pid, { ...r.procs.add(['sleep', '30']), pid: server.pid, starttime: 99_999 });
    r.procs.table.set(keeperPid, { ...r.procs.add(['bash']), pid: keeperPid, starttime: 99_998 });

    const res = await down(r.deps, 'a');
    expect(res.wasRunning).toBe(false);
    expect(r.procs.signals).toEqual([]);
    expect(r.store.getRuntime('a')).toMatchObject({ status: 'stopped', pid: null, keeper_pid: null });
  });
});

describe('a /proc that cannot be read is not death (#26)', () => {
  // What a reader out of file descriptors sees: every read of /proc fails with EMFILE. The processes
  // are alive all along.
  it('reconciliation records nothing: no keeper-lost, no stop, the row as it was', async () => {
    const r = rig();
    const { keeperPid, pid } = await up(r.deps, 'a');
    const before = eventTypes(r, 'a');
    const row = r.store.getRuntime('a');
    r.procs.unreadable = true;
    const seen = reconcileRow(r.store, r.procs, 'a');
    expect(seen).toMatchObject({ keeper: true, fix: null });
    expect(r.store.getRuntime('a')).toEqual(row);
    expect(row).toMatchObject({ keeper_pid: keeperPid, pid });
    expect(eventTypes(r, 'a')).toEqual(before);
  });

  it('the daemon starts no second keeper for an instance whose keeper it cannot see', async () => {
    const r = rig();
    await up(r.deps, 'a');
    const spawnedBefore = r.procs.spawned.length;
    r.procs.unreadable = true;
    const service = new SupervisionService(
      { ...r.deps, wait: () => Promise.resolve(), log: () => undefined, isAutostart: () => false },
      { intervalMs: 10, staggerMs: 0, autostart: false },
    );
    await service.reconcileOnce();
    expect(r.procs.spawned.length).toBe(spawnedBefore);
    expect(eventTypes(r, 'a')).not.toContain('keeper-lost');
  });

  it('up and down refuse to act on a guess: nothing started, nothing signalled, and they say why', async () => {
    const r = rig();
    const { keeperPid } = await up(r.deps, 'a');
    r.procs.exit(keeperPid, null, 'SIGKILL'); // the server is an orphan now
    r.procs.unreadable = true;
    const spawnedBefore = r.procs.spawned.length;
    const signalsBefore = r.procs.signals.length;
    const upErr = await rejection(up(r.deps, 'a'));
    expect(upErr.message).toMatch(
      /^a: cannot tell whether keeper pid \d+ is still running: reading \/proc failed .*nothing was started$/,
    );
    const downErr = await rejection(down(r.deps, 'a'));
    expect(downErr.message).toMatch(/nothing was signalled$/);
    expect(r.procs.spawned.length).toBe(spawnedBefore);
    expect(r.procs.signals.length).toBe(signalsBefore);

    r.procs.unreadable = false; // the pressure ends: the orphan is found and stopped as usual
    const res = await down(r.deps, 'a');
    expect(res.message).toMatch(/orphaned server pid \d+ stopped/);
  });
});

describe('a server started through a wrapper script (#26)', () => {
  it('is known by its pid, start time and session, whatever its command line became (exec)', async () => {
    const r = rig();
    const { keeperPid } = await up(r.deps, 'a');
    const server = r.servers.get('a') as ScriptedProc;
    // `exec llama-server "$@"` in the wrapper: the recorded argv[0] (the wrapper) is gone from the cmdline.
    server.cmdline = ['llama-server', '--port', String(PORT)];
    r.procs.exit(keeperPid, null, 'SIGKILL');
    expect(reconcileRow(r.store, r.procs, 'a')).toMatchObject({ orphan: true, server: true });
    const res = await down(r.deps, 'a');
    expect(res.message).toBe(`a: orphaned server pid ${server.pid} stopped (its keeper had died)`);
    expect(r.procs.signalsTo(server.pid)).toEqual(['-SIGTERM']);
  });

  it("a process in the server's session holding the port is the server's own (a wrapper that does not exec)", async () => {
    const r = rig();
    await up(r.deps, 'a');
    const server = r.servers.get('a') as ScriptedProc;
    const child = r.procs.add(['llama-server', '--port', String(PORT)], { pgid: server.pid });
    r.procs.ports.set(PORT, { inode: 1, pid: child.pid, command: 'llama-server --port 18181' });
    const { checkPorts } = await import('../../src/engine/preflight.js');
    const inst = loadInstance(r.home, 'a');
    expect(() => checkPorts(r.deps, inst, r.store.getRuntime('a') ?? undefined)).not.toThrow();
    // A stranger in another session is still named.
    const stranger = r.procs.add(['nc', '-l', String(PORT)]);
    r.procs.ports.set(PORT, { inode: 1, pid: stranger.pid, command: 'nc -l' });
    expect(() => checkPorts(r.deps, inst, r.store.getRuntime('a') ?? undefined)).toThrow(
      /is held by pid \d+ \(nc -l\)/,
    );
  });
});

describe('the daemon replacing a keeper', () => {
  it('starts a new keeper for an instance that should run, keeps its counters, and re-attaches its server', async () => {
    const r = rig(['a', 'b']);
    await up(r.deps, 'a');
    await up(r.deps, 'b');
    await down(r.deps, 'b'); // the operator stopped b: it stays stopped
    const server = r.servers.get('a') as ScriptedProc;
    r.store.recordBackoff('a', { attempt: 2, note: '2/5', delayMs: 10, at: Date.now() });
    r.store.recordStarting('a', 2);
    r.store.recordSpawn('a', {
      pid: server.pid,
      pgid: server.pid,
      starttime: server.starttime,
      port: PORT,
      cmdline: JSON.stringify([r.bin]),
      startedAt: Date.now(),
      attempt: 2,
    });
    r.procs.exit(r.store.getRuntime('a')?.keeper_pid as number, null, 'SIGKILL');
    const spawnedBefore = r.procs.spawned.length;

    const logs: string[] = [];
    const service = new SupervisionService(
      { ...r.deps, wait: () => Promise.resolve(), log: (m) => logs.push(m), isAutostart: () => false },
      { intervalMs: 10, staggerMs: 0, autostart: false },
    );
    await service.reconcileOnce();
    // up() with waitForPid false returns at once: let the scripted keeper run.
    await new Promise((res) => setImmediate(res));

    expect(r.procs.spawned.slice(spawnedBefore).map((s) => keeperArgs(s.args))).toEqual([['keeper', 'a']]);
    expect(r.store.getRuntime('a')).toMatchObject({ pid: server.pid, restart_attempts: 2 });
    expect(r.store.getRuntime('b')).toMatchObject({ status: 'stopped', keeper_pid: null });
    expect(eventTypes(r, 'a').slice(-3)).toEqual(['keeper-lost', 'daemon-restart', 'adopt']);
    expect(logs).toEqual([
      expect.stringMatching(/^daemon-restart: a keeper pid \d+ \(re-attached to server pid \d+\)$/),
    ]);
  });
});
