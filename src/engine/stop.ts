import type { Processes } from '../platform/processes.js';

export interface StopTarget {
  pid: number;
  pgid: number;
}

export interface StopResult {
  /** True when SIGTERM was not enough and the group got SIGKILL. */
  killed: boolean;
  /** Processes still alive at the end (should be empty). */
  leftovers: number[];
  elapsedMs: number;
}

export interface StopDeps {
  procs: Processes;
  sleep: (ms: number) => Promise<void>;
  now: () => number;
}

function alive(procs: Processes, target: StopTarget, extra: number[]): number[] {
  const members = procs.groupMembers(target.pgid);
  const rest = extra.filter((p) => !members.includes(p) && procs.isLive(p));
  return [...members, ...rest];
}

/**
 * Stops a server's whole process group with a deadline: SIGTERM to -pgid (and to descendants that
 * left the group), wait up to graceMs, then SIGKILL, then verify that nothing of it is left.
 * The caller must have checked the pid's identity first.
 */
export async function stopGroup(target: StopTarget, graceMs: number, deps: StopDeps): Promise<StopResult> {
  const { procs } = deps;
  const started = deps.now();
  const strays = procs.descendants(target.pid);
  // One SIGTERM per process: llama-server treats a second one as "terminate immediately".
  const members = new Set(procs.groupMembers(target.pgid));
  if (!procs.signalGroup(target.pgid, 'SIGTERM')) procs.signal(target.pid, 'SIGTERM');
  for (const p of strays) if (!members.has(p)) procs.signal(p, 'SIGTERM');
  const deadline = started + graceMs;
  while (deps.now() < deadline) {
    if (alive(procs, target, strays).length === 0)
      return { killed: false, leftovers: [], elapsedMs: deps.now() - started };
    await deps.sleep(Math.min(25, Math.max(1, deadline - deps.now())));
  }
  const remaining = alive(procs, target, [...strays, ...procs.descendants(target.pid)]);
  procs.signalGroup(target.pgid, 'SIGKILL');
  for (const p of remaining) procs.signal(p, 'SIGKILL');
  const killDeadline = deps.now() + 2000;
  let left = alive(procs, target, remaining);
  while (left.length > 0 && deps.now() < killDeadline) {
    await deps.sleep(10);
    left = alive(procs, target, remaining);
  }
  return { killed: true, leftovers: left, elapsedMs: deps.now() - started };
}
