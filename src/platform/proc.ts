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

/**
 * What /proc says of a pid. Only the pid's own absence (ENOENT, ESRCH) means it is gone; any other
 * failure to read (EMFILE, ENFILE, ENOMEM, EAGAIN: the reader is short of resources, not the process
 * of life) is 'unknown', which no caller may take for "dead" (#26: a daemon out of file descriptors
 * once recorded every instance as stopped).
 */
export type ProcReading<T> = T | 'gone' | 'unknown';

function readingFault(e: unknown): 'gone' | 'unknown' {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH' ? 'gone' : 'unknown';
}

export function readStatChecked(pid: number): ProcReading<ProcStat> {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    return readingFault(e);
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

/** The pid's stat, or undefined when it cannot be read (gone, or unknown: see readStatChecked). */
export function readStat(pid: number): ProcStat | undefined {
  const r = readStatChecked(pid);
  return typeof r === 'string' ? undefined : r;
}

function readCmdlineChecked(pid: number): ProcReading<string[]> {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s, i, a) => !(s === '' && i === a.length - 1));
  } catch (e) {
    return readingFault(e);
  }
}

export function readCmdline(pid: number): string[] | undefined {
  const r = readCmdlineChecked(pid);
  return typeof r === 'string' ? undefined : r;
}

const dead = (st: ProcStat) => st.state === 'Z' || st.state === 'X';

/**
 * Not known to be gone: alive and not a zombie (a zombie has exited; only its parent's wait is
 * missing), or unreadable for want of resources, which is not death.
 */
export function isLive(pid: number): boolean {
  const st = readStatChecked(pid);
  return st === 'unknown' || (st !== 'gone' && !dead(st));
}

export interface Identity {
  pid: number;
  starttime: number;
  /**
   * The session the process must be in. We start servers and keepers in a session of their own
   * (setsid), so their session id is their own pid and outlives any exec: a wrapper script that
   * execs llama-server, or runs it as a child, stays in it.
   */
  session?: number;
  /** A substring the cmdline must contain (e.g. "keeper NAME"); only for our own processes, which never exec. */
  cmdlineIncludes?: string[];
}

/** 'yes': that very process; 'no': gone, a zombie, or its pid reused; 'unknown': /proc could not be read. */
export type Verdict = 'yes' | 'no' | 'unknown';

const verifiedCmdlines = new Map<string, boolean>();

/**
 * Whether the pid is still the process recorded: alive, not a zombie, with the recorded start time
 * (pid and start time name one process for the life of the boot, across exec), in the recorded
 * session, with the expected cmdline. A reused pid belongs to a stranger and must never be signalled.
 */
export function identify(id: Identity): Verdict {
  const st = readStatChecked(id.pid);
  if (st === 'unknown') return 'unknown';
  if (st === 'gone' || dead(st) || st.starttime !== id.starttime) return 'no';
  if (id.session !== undefined && st.sid !== id.session) return 'no';
  if (id.cmdlineIncludes && id.cmdlineIncludes.length > 0) {
    // The cmdline verdict of one process can be remembered: only an exec() changes it, and the
    // processes checked this way (our keepers) do not exec.
    const key = `${id.pid}:${id.starttime}:${id.cmdlineIncludes.join('\0')}`;
    const known = verifiedCmdlines.get(key);
    if (known !== undefined) return known ? 'yes' : 'no';
    const cmd = readCmdlineChecked(id.pid);
    if (cmd === 'unknown') return 'unknown';
    const ok = cmd !== 'gone' && id.cmdlineIncludes.every((part) => cmd.join(' ').includes(part));
    if (verifiedCmdlines.size > 4096) verifiedCmdlines.clear();
    verifiedCmdlines.set(key, ok);
    return ok ? 'yes' : 'no';
  }
  return 'yes';
}

/** identify() is 'yes': proven to be that process (what signalling it requires). */
export function matchesIdentity(id: Identity): boolean {
  return identify(id) === 'yes';
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
