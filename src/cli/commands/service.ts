import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childProcess } from '../../platform/builtins.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { orchCommand, resolveHome } from '../../domain/home.js';
import { packageRoot } from '../../platform/package.js';
import {
  lingering,
  renderUnit,
  resolveUnitName,
  systemctlArgs,
  unitNameFromOption,
  unitOwner,
  unitPath,
} from '../../systemd/systemd.js';
import type { Out } from '../output.js';

export interface ServiceOptions {
  system?: boolean;
  dryRun?: boolean;
  /** The unit's name (default: one derived from the home, see systemd/systemd.ts). */
  name?: string;
}

function systemctlAvailable(): boolean {
  try {
    childProcess().execFileSync('systemctl', ['--version'], { stdio: 'ignore', timeout: 5000 });
    return fs.existsSync('/run/systemd/system');
  } catch {
    return false;
  }
}

function systemctl(system: boolean, ...args: string[]): string {
  const full = systemctlArgs(system, ...args);
  try {
    return childProcess().execFileSync('systemctl', full, {
      encoding: 'utf8',
      timeout: 20_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; status?: number };
    throw new UserError(
      `systemctl ${full.join(' ')} failed: ${(err.stderr || err.stdout || '').trim()}`,
      ExitCode.daemon,
    );
  }
}

function noSystemd(home: string): UserError {
  return new UserError(
    'systemd is not available on this machine (no systemctl, or PID 1 is not systemd)',
    ExitCode.daemon,
    `run "${orchCommand(home, 'daemon start')}" from your init system instead, or use --dry-run to see the unit`,
  );
}

/** The home's unit: its name, file and whether it is a system unit. */
function target(homeOpt: string | undefined, opts: ServiceOptions) {
  const home = resolveHome(homeOpt);
  const system = opts.system ?? false;
  let unit: string;
  if (opts.name !== undefined) {
    const named = unitNameFromOption(opts.name);
    if (!named.unit) throw new UserError(named.problem ?? `bad --name "${opts.name}"`);
    unit = named.unit;
  } else {
    unit = resolveUnitName(home.root, system);
  }
  return { home, system, unit, file: unitPath(system, unit) };
}

type Target = ReturnType<typeof target>;

/**
 * Whether the unit file is there, refusing one that is not this home's daemon: another home's
 * llama-orch unit, or a unit that is not llama-orch's at all. Checked before --dry-run prints
 * anything, so a dry run says what the real one would do.
 */
function existingUnit(t: Target, opts: ServiceOptions, action: 'overwrite' | 'remove'): boolean {
  let text: string;
  try {
    text = fs.readFileSync(t.file, 'utf8');
  } catch {
    return false;
  }
  const owner = unitOwner(text);
  if (owner.home === t.home.root) return true;
  const pick = 'pick another unit name with --name NAME';
  if (owner.home !== undefined) {
    const args = [
      'service uninstall',
      ...(t.system ? ['--system'] : []),
      ...(opts.name ? [`--name ${opts.name}`] : []),
    ];
    throw new UserError(
      `${t.file} runs the llama-orch daemon of another home (${owner.home}), not of ${t.home.root}: will not ${action} it`,
      ExitCode.daemon,
      action === 'overwrite' ? pick : `it is removed from its own home: "${orchCommand(owner.home, args.join(' '))}"`,
    );
  }
  throw new UserError(
    `${t.file} is not a llama-orch unit (${owner.execStart ? `ExecStart=${owner.execStart}` : 'no ExecStart'}): will not ${action} it`,
    ExitCode.daemon,
    action === 'overwrite'
      ? pick
      : 'it is not one llama-orch installed; remove it with systemctl yourself if it should go',
  );
}

export function serviceInstall(homeOpt: string | undefined, opts: ServiceOptions, out: Out): number {
  const t = target(homeOpt, opts);
  const { home, system, unit: name, file } = t;
  existingUnit(t, opts, 'overwrite');
  const user = os.userInfo().username;
  const unit = renderUnit({
    home: home.root,
    nodePath: fs.realpathSync(process.execPath),
    cliPath: path.join(packageRoot(), 'bin', 'llama-orch.cjs'),
    system,
    user,
  });
  // A user unit runs only while its user is logged in, unless lingering is on.
  const linger = system ? undefined : `loginctl enable-linger ${user}`;
  const cmds = [systemctlArgs(system, 'daemon-reload'), systemctlArgs(system, 'enable', '--now', name)];
  if (opts.dryRun) {
    out.log(`# would write ${file}:`);
    out.log(unit);
    for (const c of cmds) out.log(`# would run: systemctl ${c.join(' ')}`);
    if (linger) out.log(`# to start it at boot without a login session, run once: ${linger}`);
    return 0;
  }
  if (!systemctlAvailable()) throw noSystemd(home.root);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, unit, { mode: 0o644 });
  systemctl(system, 'daemon-reload');
  systemctl(system, 'enable', '--now', name);
  out.log(`installed ${file} and started ${name}`);
  if (linger && !lingering(user)) out.log(`to start it at boot without a login session, run once: ${linger}`);
  return 0;
}

export function serviceUninstall(homeOpt: string | undefined, opts: ServiceOptions, out: Out): number {
  const t = target(homeOpt, opts);
  const { home, system, unit: name, file } = t;
  const installed = existingUnit(t, opts, 'remove');
  if (opts.dryRun) {
    out.log(`# would run: systemctl ${systemctlArgs(system, 'disable', '--now', name).join(' ')}`);
    out.log(`# would remove ${file}`);
    return 0;
  }
  if (!systemctlAvailable()) throw noSystemd(home.root);
  if (!installed) {
    out.log(`${file} is not installed`);
    return 0;
  }
  systemctl(system, 'disable', '--now', name);
  fs.rmSync(file);
  systemctl(system, 'daemon-reload');
  out.log(`removed ${file}; the daemon is stopped, instances keep running`);
  return 0;
}

export function serviceStatus(homeOpt: string | undefined, opts: ServiceOptions, out: Out): number {
  const { home, system, unit: name } = target(homeOpt, opts);
  if (!systemctlAvailable()) throw noSystemd(home.root);
  try {
    out.log(
      childProcess().execFileSync('systemctl', systemctlArgs(system, 'status', '--no-pager', name), {
        encoding: 'utf8',
      }),
    );
    return 0;
  } catch (e) {
    out.log(String((e as { stdout?: string }).stdout ?? ''));
    return 1;
  }
}
