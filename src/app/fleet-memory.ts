import fs from 'node:fs';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import type { GpuInfo } from '../domain/gpu.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';

/**
 * What each other rig last answered, kept under state/fleet/RIG.json: the fleet view shows a rig that
 * does not answer now with its last-seen time and its last known rows. A cache: a home that cannot
 * be written (read-only, full) shows the fleet without it.
 */
export interface RigMemory {
  /** When the rig last answered (ms since the epoch). */
  seen_at: number;
  instances?: InstanceSnapshot[];
  gpus?: GpuInfo[];
}

function memoryFile(home: Home, rig: string): string {
  return path.join(home.stateDir, 'fleet', `${rig}.json`);
}

export function recallRig(home: Home, rig: string): RigMemory | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(memoryFile(home, rig), 'utf8')) as RigMemory;
    return typeof m.seen_at === 'number' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Records what a rig answered now (merged with what it answered before: ps and gpus ask apart). */
export function rememberRig(home: Home, rig: string, part: Omit<RigMemory, 'seen_at'>, now: number): void {
  const file = memoryFile(home, rig);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const next: RigMemory = { ...recallRig(home, rig), ...part, seen_at: now };
    fs.writeFileSync(tmp, JSON.stringify(next), { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // nothing was written
    }
  }
}
