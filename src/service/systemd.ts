import os from 'node:os';
import path from 'node:path';

export interface UnitInput {
  home: string;
  nodePath: string;
  cliPath: string;
  system: boolean;
  user: string;
}

export const UNIT_NAME = 'llama-orch.service';

export function unitPath(system: boolean, homedir = os.homedir()): string {
  return system
    ? path.join('/etc/systemd/system', UNIT_NAME)
    : path.join(homedir, '.config', 'systemd', 'user', UNIT_NAME);
}

const quote = (s: string) => (/[\s"\\]/.test(s) ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s);

/**
 * The unit for the daemon. KillMode=process: stopping or restarting the service signals the daemon
 * only; keepers and servers it started live on (they are setsid'd, but share the service's cgroup).
 */
export function renderUnit(u: UnitInput): string {
  const lines = [
    '[Unit]',
    `Description=llama-orch daemon (autostart and supervision of llama-server instances in ${u.home})`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    ...(u.system ? [`User=${u.user}`] : []),
    `WorkingDirectory=${quote(u.home)}`,
    `Environment=LLAMA_ORCH_HOME=${quote(u.home)}`,
    `ExecStart=${[u.nodePath, u.cliPath, 'daemon', 'run', '--home', u.home].map(quote).join(' ')}`,
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
