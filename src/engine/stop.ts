import { descendants, groupMembers, isLive, signalGroup, signalPid } from '../platform/proc.js';

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
  sleep: (ms: number) => Promise<void>;
  now: () => number;
}

function alive(target: StopTarget, extra: number[]): number[] {
  const members = groupMembers(target.pgid);
  const rest = extra.filter((p) => !members.includes(p) && isLive(p));
  return [...members, ...rest];
}

/**
 * Stops a server's whole process group with a deadline: SIGTERM to -pgid (and to descendants that
 * left the group), wait up to graceMs, then SIGKILL, then verify that nothing of it is left.
 * The caller must have checked the pid's identity first.
 */
export async function stopGroup(target: StopTarget, graceMs: number, deps: StopDeps): Promise<StopResult> {
  const started = deps.now();
  const strays = descendants(target.pid);
  // One SIGTERM per process: llama-server treats a second one as "terminate immediately".
  const members = new Set(groupMembers(target.pgid));
  if (!signalGroup(target.pgid, 'SIGTERM')) signalPid(target.pid, 'SIGTERM');
  for (const p of strays) if (!members.has(p)) signalPid(p, 'SIGTERM');
  const deadline = started + graceMs;
  while (deps.now() < deadline) {
    if (alive(target, strays).length === 0) return { killed: false, leftovers: [], elapsedMs: deps.now() - started };
    await deps.sleep(Math.min(25, Math.max(1, deadline - deps.now())));
  }
  const remaining = alive(target, [...strays, ...descendants(target.pid)]);
  signalGroup(target.pgid, 'SIGKILL');
  for (const p of remaining) signalPid(p, 'SIGKILL');
  const killDeadline = deps.now() + 2000;
  let left = alive(target, remaining);
  while (left.length > 0 && deps.now() < killDeadline) {
    await deps.sleep(10);
    left = alive(target, remaining);
  }
  return { killed: true, leftovers: left, elapsedMs: deps.now() - started };
}
