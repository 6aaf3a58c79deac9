import { EventEmitter } from 'node:events';
import type {
  Identity,
  PortHolder,
  Processes,
  ProcStat,
  SpawnOptions,
  Spawned,
  Verdict,
} from '../../src/platform/processes.js';

/** One process in the scripted table. */
export interface ScriptedProc {
  pid: number;
  starttime: number;
  pgid: number;
  cmdline: string[];
  alive: boolean;
  /** What the process does when signalled; the default dies on any signal. */
  onSignal?: (signal: NodeJS.Signals) => void;
  child: EventEmitter & Spawned;
}

/**
 * The side-effects seam (src/platform/processes.ts) as an in-memory process table: spawning adds a
 * process, signals are recorded and (by default) end it, identity checks read the table. Tests
 * script how a process reacts (`onSpawn`, `onSignal`) to describe a keeper, a wedged keeper, a
 * stranger holding a reused pid.
 */
export class ScriptedProcesses implements Processes {
  readonly table = new Map<number, ScriptedProc>();
  readonly signals: Array<{ pid: number; signal: NodeJS.Signals; group: boolean }> = [];
  readonly spawned: Array<{ file: string; args: string[]; pid: number }> = [];
  readonly fifos: string[] = [];
  readonly ports = new Map<number, PortHolder>();
  /** Called after a spawn (on the next turn of the event loop, as a real process starts later). */
  onSpawn?: (proc: ScriptedProc, args: string[]) => void;
  /** While true, /proc cannot be read (as when the reader is out of file descriptors): identity is 'unknown'. */
  unreadable = false;
  private nextPid = 40_000;
  private clock = 1000;

  /** A process that is already running (a server, a stranger). */
  add(cmdline: string[], opts: { pgid?: number; onSignal?: (s: NodeJS.Signals) => void } = {}): ScriptedProc {
    const pid = this.nextPid++;
    const child = Object.assign(new EventEmitter(), { pid, unref: () => undefined }) as EventEmitter & Spawned;
    const proc: ScriptedProc = {
      pid,
      starttime: this.clock++,
      pgid: opts.pgid ?? pid,
      cmdline,
      alive: true,
      child,
      ...(opts.onSignal ? { onSignal: opts.onSignal } : {}),
    };
    this.table.set(pid, proc);
    return proc;
  }

  /** The process ends (as after kill -9, or on its own). */
  exit(pid: number, code: number | null = null, signal: NodeJS.Signals | null = null): void {
    const p = this.table.get(pid);
    if (!p || !p.alive) return;
    p.alive = false;
    p.child.emit('exit', code, signal);
  }

  spawnDetached(file: string, args: string[], _opts: SpawnOptions): Spawned {
    const proc = this.add([file, ...args]);
    this.spawned.push({ file, args, pid: proc.pid });
    setImmediate(() => this.onSpawn?.(proc, args));
    return proc.child;
  }

  signal(pid: number, signal: NodeJS.Signals): boolean {
    const p = this.table.get(pid);
    this.signals.push({ pid, signal, group: false });
    if (!p?.alive) return false;
    if (p.onSignal) p.onSignal(signal);
    else this.exit(pid, null, signal);
    return true;
  }

  signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
    const members = this.groupMembers(pgid);
    this.signals.push({ pid: pgid, signal, group: true });
    for (const pid of members) {
      const p = this.table.get(pid) as ScriptedProc;
      if (p.onSignal) p.onSignal(signal);
      else this.exit(pid, null, signal);
    }
    return members.length > 0;
  }

  stat(pid: number): ProcStat | undefined {
    const p = this.table.get(pid);
    if (!p?.alive) return undefined;
    return { pid, comm: p.cmdline[0] ?? '', state: 'S', ppid: 1, pgid: p.pgid, sid: p.pgid, starttime: p.starttime };
  }

  cmdline(pid: number): string[] | undefined {
    const p = this.table.get(pid);
    return p?.alive ? p.cmdline : undefined;
  }

  identify(id: Identity): Verdict {
    if (this.unreadable) return 'unknown';
    const p = this.table.get(id.pid);
    if (!p?.alive || p.starttime !== id.starttime) return 'no';
    if (id.session !== undefined && p.pgid !== id.session) return 'no';
    const cmd = p.cmdline.join(' ');
    return (id.cmdlineIncludes ?? []).every((part) => cmd.includes(part)) ? 'yes' : 'no';
  }

  isLive(pid: number): boolean {
    return this.unreadable || this.table.get(pid)?.alive === true;
  }

  groupMembers(pgid: number): number[] {
    return [...this.table.values()].filter((p) => p.alive && p.pgid === pgid).map((p) => p.pid);
  }

  descendants(): number[] {
    return [];
  }

  fdTarget(): string | undefined {
    return undefined;
  }

  portHolder(port: number): PortHolder | undefined {
    return this.ports.get(port);
  }

  mkfifo(file: string): void {
    this.fifos.push(file);
  }

  /** Signals sent to one pid (or group), in order. */
  signalsTo(pid: number): string[] {
    return this.signals.filter((s) => s.pid === pid).map((s) => (s.group ? `-${s.signal}` : s.signal));
  }
}
