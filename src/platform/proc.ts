import fs from 'node:fs';

/** Linux /proc access. Kept small so other platforms can provide the same functions. */

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** Field 22: start time in clock ticks since boot; with the pid it identifies a process. */
  starttime: number;
}

export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: split at the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return {
    pid,
    comm,
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    pgid: Number(rest[2]),
    sid: Number(rest[3]),
    starttime: Number(rest[19]),
  };
}

export function readCmdline(pid: number): string[] | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s, i, a) => !(s === '' && i === a.length - 1));
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie has exited; only its parent's wait is missing). */
export function isLive(pid: number): boolean {
  const st = readStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

export interface Identity {
  pid: number;
  starttime: number;
  /** A substring the cmdline must contain (e.g. the binary path or "keeper NAME"). */
  cmdlineIncludes?: string[];
}

/**
 * True only if the pid is alive, not a zombie, has the recorded start time and the expected
 * cmdline: a reused pid belongs to a stranger and must never be signalled.
 */
const verifiedCmdlines = new Map<string, boolean>();

export function matchesIdentity(id: Identity): boolean {
  const st = readStat(id.pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  if (st.starttime !== id.starttime) return false;
  if (id.cmdlineIncludes && id.cmdlineIncludes.length > 0) {
    // pid + start time name one process for the life of the boot, so its cmdline verdict can be
    // remembered (an exec() in place is the only change, and our processes do not exec again).
    const key = `${id.pid}:${id.starttime}:${id.cmdlineIncludes.join('\0')}`;
    const known = verifiedCmdlines.get(key);
    if (known !== undefined) return known;
    const cmd = readCmdline(id.pid)?.join(' ') ?? '';
    const ok = id.cmdlineIncludes.every((part) => cmd.includes(part));
    if (verifiedCmdlines.size > 4096) verifiedCmdlines.clear();
    verifiedCmdlines.set(key, ok);
    return ok;
  }
  return true;
}

export function listPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const pid of listPids()) {
    const st = readStat(pid);
    if (st && st.pgid === pgid && st.state !== 'Z' && st.state !== 'X') out.push(pid);
  }
  return out;
}

/** All live descendants of pid (children that left the group included). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const p of listPids()) {
    const st = readStat(p);
    if (!st || st.state === 'Z') continue;
    const list = children.get(st.ppid) ?? [];
    list.push(p);
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * The pid of a process in each pid namespace it belongs to, outermost first (`NSpid` in
 * /proc/PID/status): a server in a container is known to a host-side nvidia-smi by the first.
 */
export function readNsPids(pid: number): number[] {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const line = /^NSpid:\s*(.*)$/m.exec(status)?.[1];
    return line ? line.trim().split(/\s+/).map(Number).filter(Number.isInteger) : [];
  } catch {
    return [];
  }
}
