import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A real DNS server for the fleet's discovery tests: Debian's dnsmasq (the dnsmasq-base package, the
 * binary without a system service), installed here where it is missing and apt can install it.
 * Returns its path, or why it cannot be had (the test is then skipped saying so).
 */
export function ensureDnsmasq(): { bin: string } | { why: string } {
  const found = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((p) => fs.existsSync(p));
  if (found) return { bin: found };
  if (process.getuid?.() !== 0) return { why: 'dnsmasq is not installed and installing it needs root' };
  const apt = (args: string[]) =>
    execFileSync('apt-get', args, {
      stdio: 'ignore',
      timeout: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  try {
    try {
      apt(['install', '-y', '--no-install-recommends', 'dnsmasq-base']);
    } catch {
      apt(['update']);
      apt(['install', '-y', '--no-install-recommends', 'dnsmasq-base']);
    }
  } catch (e) {
    return { why: `dnsmasq is not installed and apt-get could not install dnsmasq-base: ${(e as Error).message}` };
  }
  const installed = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((p) => fs.existsSync(p));
  return installed ? { bin: installed } : { why: 'apt-get installed dnsmasq-base, but no dnsmasq binary appeared' };
}

export interface Dns {
  server: string;
  /** Sets the A records of `name` and makes dnsmasq read them again (SIGHUP). */
  records: (name: string, addresses: string[]) => Promise<void>;
  stop: () => void;
}

/** dnsmasq answering from a hosts file of its own on 127.0.0.1:PORT, nothing forwarded upstream. */
export async function startDns(bin: string, dir: string, port: number): Promise<Dns> {
  const hosts = path.join(dir, 'hosts');
  fs.writeFileSync(hosts, '');
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(hosts, 0o644);
  const child: ChildProcess = spawn(
    bin,
    [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hosts}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--port=${port}`,
      '--pid-file=',
      '--local-ttl=0',
      '--no-negcache',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  // Up once it answers on its port (before that, a query gets ECONNREFUSED or times out: retry).
  const { Resolver } = await import('node:dns/promises');
  const probe = new Resolver({ timeout: 200, tries: 1 });
  probe.setServers([`127.0.0.1:${port}`]);
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr}`);
    try {
      await probe.resolve4('nothing.invalid');
      break;
    } catch (e) {
      // Any DNS answer (no such name, refused: it forwards nowhere) means it is up.
      if (['ENOTFOUND', 'ENODATA', 'EREFUSED', 'ESERVFAIL'].includes(String((e as NodeJS.ErrnoException).code))) break;
      if (i > 50) throw new Error(`dnsmasq does not answer on 127.0.0.1:${port}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    server: `127.0.0.1:${port}`,
    async records(name, addresses) {
      fs.writeFileSync(hosts, addresses.map((a) => `${a} ${name}\n`).join(''));
      child.kill('SIGHUP');
      // dnsmasq reads the file again on the signal; wait until it answers with the new set.
      const want = [...addresses].sort().join(',');
      for (let i = 0; i < 50; i++) {
        const got = await probe.resolve4(name).catch(() => [] as string[]);
        if ([...got].sort().join(',') === want) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`dnsmasq did not take the new records of ${name}`);
    },
    stop: () => child.kill('SIGTERM'),
  };
}
