import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface UnitInput {
  home: string;
  nodePath: string;
  cliPath: string;
  system: boolean;
  user: string;
}

/** The one unit name before units were named after their home; still found for a home that uses it. */
export const LEGACY_UNIT_NAME = 'llama-orch.service';

/**
 * A unit name systemd accepts (its characters, at most 255 with ".service") that a shell needs no
 * quotes for; no "@" (that is a template's) and no leading "-", which systemctl would read as an option.
 */
const UNIT_NAME_RE = /^[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,199}$/;

/**
 * `--name NAME` as a unit name ("NAME.service"), or undefined with the reason it is not one.
 */
export function unitNameFromOption(name: string): { unit?: string; problem?: string } {
  const base = name.endsWith('.service') ? name.slice(0, -'.service'.length) : name;
  if (base.startsWith('-')) {
    return {
      problem: `--name "${name}" is not a unit name: it must not start with "-" (systemctl reads that as an option)`,
    };
  }
  if (!UNIT_NAME_RE.test(base)) {
    return { problem: `--name "${name}" is not a unit name: use letters, digits, "_", ".", ":" and "-" (up to 200)` };
  }
  return { unit: `${base}.service` };
}

/**
 * The unit of a home: `llama-orch-<directory name>-<hash of the path>.service`, so each home can be
 * a service of its own and `systemctl` lists which one is which (`llama-orch-rig-1a2b3c4d`).
 */
export function unitNameForHome(home: string): string {
  const root = path.resolve(home);
  const slug =
    path
      .basename(root)
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40) || 'root';
  const hash = createHash('sha256').update(root).digest('hex').slice(0, 8);
  return `llama-orch-${slug}-${hash}.service`;
}

export function unitPath(system: boolean, unit: string, homedir = os.homedir()): string {
  return system ? path.join('/etc/systemd/system', unit) : path.join(homedir, '.config', 'systemd', 'user', unit);
}

const quote = (s: string) => (/[\s"\\]/.test(s) ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s);

function execStart(u: Pick<UnitInput, 'nodePath' | 'cliPath' | 'home'>): string {
  return [u.nodePath, u.cliPath, 'daemon', 'run', '--home', u.home].map(quote).join(' ');
}

/** The words of an ExecStart= command line as systemd splits them: blanks, "double quotes", \\ escapes. */
function execWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|((?:[^\s"\\]|\\.)+)/g;
  for (const m of line.matchAll(re)) words.push((m[1] ?? m[2] ?? '').replace(/\\(.)/g, '$1'));
  return words;
}

/** Who a unit file is for: the home whose daemon it runs, when it is a llama-orch unit at all. */
export interface UnitOwner {
  /** The home of `llama-orch daemon run --home HOME`; undefined when the unit runs something else. */
  home?: string;
  /** Its ExecStart line, to say what it runs instead. */
  execStart?: string;
}

/**
 * Reads a unit file: ours when its ExecStart runs `llama-orch` (bin/llama-orch.cjs, through node or
 * not) as `daemon run --home HOME` and nothing after it, as renderUnit writes it.
 */
export function unitOwner(text: string): UnitOwner {
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('ExecStart='));
  if (!line) return {};
  const execStart = line.slice('ExecStart='.length);
  const words = execWords(execStart);
  const at = words.length - 4;
  const tail = words.slice(at, at + 3).join(' ');
  const cli = words.slice(0, Math.max(at, 0)).some((w) => /^llama-orch(\.cjs)?$/.test(path.basename(w)));
  const home = words[words.length - 1];
  if (at < 1 || tail !== 'daemon run --home' || !cli || !home || !path.isAbsolute(home)) return { execStart };
  return { home: path.resolve(home), execStart };
}

/** The home a unit file runs the daemon for (its ExecStart's --home), if it is one of ours. */
export function unitHome(text: string): string | undefined {
  return unitOwner(text).home;
}

/**
 * The unit name of a home without `--name`: the legacy `llama-orch.service` when it is installed for
 * this very home (before units were named per home), else the home's own name.
 */
export function resolveUnitName(home: string, system: boolean, homedir = os.homedir()): string {
  try {
    const legacy = fs.readFileSync(unitPath(system, LEGACY_UNIT_NAME, homedir), 'utf8');
    if (unitHome(legacy) === path.resolve(home)) return LEGACY_UNIT_NAME;
  } catch {
    // none installed
  }
  return unitNameForHome(home);
}

/**
 * The unit for the daemon. KillMode=process: stopping or restarting the service signals the daemon
 * only; keepers and servers it started live on (they are setsid'd, but share the service's cgroup).
 * Only a system unit orders itself after network-online.target: the user manager has no such unit
 * (it would wait for nothing, and `systemd-analyze verify` warns).
 */
export function renderUnit(u: UnitInput): string {
  const lines = [
    '[Unit]',
    `Description=llama-orch daemon (autostart and supervision of llama-server instances in ${u.home})`,
    ...(u.system ? ['After=network-online.target', 'Wants=network-online.target'] : []),
    '',
    '[Service]',
    'Type=simple',
    ...(u.system ? [`User=${u.user}`] : []),
    `WorkingDirectory=${quote(u.home)}`,
    `Environment=LLAMA_ORCH_HOME=${quote(u.home)}`,
    `ExecStart=${execStart(u)}`,
    'Restart=on-failure',
    'RestartSec=5',
    'KillMode=process',
    'TimeoutStopSec=10',
    '',
    '[Install]',
    `WantedBy=${u.system ? 'multi-user.target' : 'default.target'}`,
    '',
  ];
  return lines.join('\n');
}

export function systemctlArgs(system: boolean, ...args: string[]): string[] {
  return system ? args : ['--user', ...args];
}

/** Whether the user's manager runs without a login session (`loginctl enable-linger`). */
export function lingering(user: string): boolean {
  return fs.existsSync(path.join('/var/lib/systemd/linger', user));
}
