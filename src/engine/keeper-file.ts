import fs from 'node:fs';
import path from 'node:path';
import { instancePipeDir, type Home } from '../domain/home.js';

/**
 * The keeper's file, state/pipes/NAME/keeper.json (docs/ARCHITECTURE.md, "Faults"): who the keeper
 * and its server are, written when that changes, and touched every few seconds as a heartbeat. It
 * does not depend on SQLite, so `down` can find the processes when the database is locked, full or
 * gone, and a keeper that stops making progress (SIGSTOP, a hang) shows as such.
 */
export interface KeeperFile {
  keeper_pid: number;
  keeper_starttime: number | null;
  pid: number | null;
  pgid: number | null;
  starttime: number | null;
  port: number | null;
  /** The server's argv[0], for its identity check. */
  binary: string | null;
}

export const HEARTBEAT_MS = 5000;
/** A heartbeat older than this means the keeper stopped making progress. */
export const STALLED_AFTER_MS = 20_000;

export function keeperFilePath(home: Home, name: string): string {
  return path.join(instancePipeDir(home, name), 'keeper.json');
}

export function readKeeperFile(
  home: Home,
  name: string,
): { file: KeeperFile; ageMs: number; mtimeMs: number } | undefined {
  const p = keeperFilePath(home, name);
  try {
    const st = fs.statSync(p);
    const file = JSON.parse(fs.readFileSync(p, 'utf8')) as KeeperFile;
    return { file, ageMs: Date.now() - st.mtimeMs, mtimeMs: st.mtimeMs };
  } catch {
    return undefined;
  }
}

/**
 * How long since keeper `keeperPid`'s last heartbeat, ms; undefined when the file is missing or
 * names another keeper (a new keeper writes its own within milliseconds of starting: until then the
 * file is its predecessor's, whose age says nothing about it).
 */
export function heartbeatAgeMs(home: Home, name: string, now: number, keeperPid: number): number | undefined {
  const found = readKeeperFile(home, name);
  if (!found || found.file.keeper_pid !== keeperPid) return undefined;
  return now - found.mtimeMs;
}

/**
 * Writes the file when its content changed (atomically: a temporary file renamed over it), else
 * only touches it: a touch needs no free space, so a full disk does not make the keeper look stalled.
 */
export function writeKeeperFile(home: Home, name: string, content: KeeperFile, previous: string | undefined): string {
  const p = keeperFilePath(home, name);
  const text = JSON.stringify(content);
  const now = new Date();
  if (text !== previous) {
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
    const tmp = `${p}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, p);
  } else {
    fs.utimesSync(p, now, now);
  }
  return text;
}

export function removeKeeperFile(home: Home, name: string, keeperPid: number): void {
  const found = readKeeperFile(home, name);
  if (found?.file.keeper_pid === keeperPid) fs.rmSync(keeperFilePath(home, name), { force: true });
}
