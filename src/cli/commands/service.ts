import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ExitCode, UserError } from '../../domain/errors.js';
import { resolveHome } from '../../domain/home.js';
import { packageRoot } from '../../platform/package.js';
import { UNIT_NAME, renderUnit, systemctlArgs, unitPath } from '../../service/systemd.js';
import type { Out } from '../output.js';

export interface ServiceOptions {
  system?: boolean;
  dryRun?: boolean;
}

function systemctlAvailable(): boolean {
  try {
    execFileSync('systemctl', ['--version'], { stdio: 'ignore', timeout: 5000 });
    return fs.existsSync('/run/systemd/system');
  } catch {
    return false;
  }
}

function systemctl(system: boolean, ...args: string[]): string {
  const full = systemctlArgs(system, ...args);
  try {
    return execFileSync('systemctl', full, { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; status?: number };
    throw new UserError(
      `systemctl ${full.join(' ')} failed: ${(err.stderr || err.stdout || '').trim()}`,
      ExitCode.daemon,
    );
  }
}

function noSystemd(): UserError {
  return new UserError(
    'systemd is not available on this machine (no systemctl, or PID 1 is not systemd)',
    ExitCode.daemon,
    'run "llama-orch daemon start" from your init system instead, or use --dry-run to see the unit',
  );
}

export function serviceInstall(homeOpt: string | undefined, opts: ServiceOptions, out: Out): number {
  const home = resolveHome(homeOpt);
  const system = opts.system ?? false;
  const unit = renderUnit({
    home: home.root,
    nodePath: fs.realpathSync(process.execPath),
    cliPath: path.join(packageRoot(), 'bin', 'llama-orch.cjs'),
    system,
    user: os.userInfo().username,
  });
  const file = unitPath(system);
  const cmds = [systemctlArgs(system, 'daemon-reload'), systemctlArgs(system, 'enable', '--now', UNIT_NAME)];
  if (opts.dryRun) {
    out.log(`# would write ${file}:`);
    out.log(unit);
    for (const c of cmds) out.log(`# would run: systemctl ${c.join(' ')}`);
    return 0;
  }
  if (!systemctlAvailable()) throw noSystemd();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, unit, { mode: 0o644 });
  systemctl(system, 'daemon-reload');
  systemctl(system, 'enable', '--now', UNIT_NAME);
  out.log(
    `installed ${file} and started ${UNIT_NAME}${system ? '' : ' (user unit; for boot without login: loginctl enable-linger)'}`,
  );
  return 0;
}

export function serviceUninstall(opts: ServiceOptions, out: Out): number {
  const system = opts.system ?? false;
  const file = unitPath(system);
  if (opts.dryRun) {
    out.log(`# would run: systemctl ${systemctlArgs(system, 'disable', '--now', UNIT_NAME).join(' ')}`);
    out.log(`# would remove ${file}`);
    return 0;
  }
  if (!systemctlAvailable()) throw noSystemd();
  if (!fs.existsSync(file)) {
    out.log(`${file} is not installed`);
    return 0;
  }
  systemctl(system, 'disable', '--now', UNIT_NAME);
  fs.rmSync(file);
  systemctl(system, 'daemon-reload');
  out.log(`removed ${file}; the daemon is stopped, instances keep running`);
  return 0;
}

export function serviceStatus(opts: ServiceOptions, out: Out): number {
  const system = opts.system ?? false;
  if (!systemctlAvailable()) throw noSystemd();
  try {
    out.log(execFileSync('systemctl', systemctlArgs(system, 'status', '--no-pager', UNIT_NAME), { encoding: 'utf8' }));
    return 0;
  } catch (e) {
    out.log(String((e as { stdout?: string }).stdout ?? ''));
    return 1;
  }
}
