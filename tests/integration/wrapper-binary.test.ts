import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAKE_SERVER, cli, fakeConfig, freePort, homePerTest, isAlive, psJson, waitFor } from '../helpers/home.js';

// #26, "process identity with wrapper binaries": server.binary set to a script, as operators write to
// set LD_LIBRARY_PATH or pin CPUs. One that execs the server (argv[0] changes) and one that runs it as
// a child (the pid we know is the shell's). Real processes, real signals, a real port.

const homes = homePerTest();

const WRAPPERS = {
  exec: `#!/bin/sh\nexport WRAPPED=1\nexec "${FAKE_SERVER}" "$@"\n`,
  child: `#!/bin/bash\nexport WRAPPED=1\n"${FAKE_SERVER}" "$@"\n`,
};

/** Whether something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('a server started through a wrapper script', () => {
  for (const [kind, script] of Object.entries(WRAPPERS)) {
    it(`(${kind === 'exec' ? 'exec' : 'not exec: the server is its child'}) is found, health-checked, restarted, stopped and adopted like any other`, async () => {
      const home = homes.make();
      const wrapper = path.join(home.root, 'llama-wrapper.sh');
      fs.writeFileSync(wrapper, script, { mode: 0o755 });
      const port = freePort();
      home.addInstance('w', fakeConfig(port, {}, { server: { binary: wrapper } }));

      const up = await cli(home.root, ['up', 'w', '--wait', '15']);
      expect(up.code, up.stderr).toBe(0);
      const row = (await psJson(home.root))[0] as Record<string, unknown>;
      expect(row).toMatchObject({ state: 'running', health: 'ok' });
      expect(row.pid).toEqual(expect.any(Number));
      expect(row.uptime_s).toEqual(expect.any(Number));
      expect((await cli(home.root, ['health', 'w'])).code).toBe(0);

      // restart: its own server holds the port, which is no collision.
      const restart = await cli(home.root, ['restart', 'w', '--wait', '15']);
      expect(restart.code, restart.stderr).toBe(0);
      const after = (await psJson(home.root))[0] as Record<string, unknown>;
      expect(after).toMatchObject({ state: 'running', health: 'ok' });
      expect(after.pid).not.toBe(row.pid);

      // The keeper is killed: the server runs on unsupervised, and is seen as such.
      process.kill(after.keeper_pid as number, 'SIGKILL');
      await waitFor(() => (isAlive(after.keeper_pid as number) ? undefined : true), 5000, 'the keeper gone');
      const orphan = (await psJson(home.root))[0] as Record<string, unknown>;
      expect(orphan).toMatchObject({ state: 'orphaned', pid: after.pid });
      // up adopts it (no second server, no port collision).
      const again = await cli(home.root, ['up', 'w', '--wait', '15']);
      expect(again.code, again.stderr).toBe(0);
      expect((await psJson(home.root))[0]).toMatchObject({ state: 'running', pid: after.pid });

      // The pid we know is killed (for a wrapper that does not exec: the shell, not llama-server). What
      // it left in its group goes with it, and the keeper's next server gets the port.
      const children = fs
        .readdirSync('/proc')
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]?.split(' ')[2] === String(after.pid);
          } catch {
            return false;
          }
        })
        .map(Number)
        .filter((p) => p !== after.pid);
      process.kill(after.pid as number, 'SIGKILL');
      const next = (await waitFor(
        async () => {
          const r = (await psJson(home.root))[0] as Record<string, unknown>;
          return r.state === 'running' && r.health === 'ok' && r.pid !== after.pid ? r : undefined;
        },
        15_000,
        'a new healthy server',
      )) as Record<string, unknown>;
      for (const c of children) expect(isAlive(c), `pid ${c} left by the wrapper`).toBe(false);
      const events = JSON.parse((await cli(home.root, ['events', 'w', '-n', '100', '--json'])).stdout) as Array<{
        event_type: string;
        message: string;
      }>;
      expect(events.filter((e) => e.event_type === 'exit' && /EADDRINUSE|couldn't bind/.test(e.message))).toEqual([]);
      if (kind === 'child') expect(events.some((e) => e.event_type === 'strays')).toBe(true);

      // down stops it: the port is free afterwards, nothing left running.
      const down = await cli(home.root, ['down', 'w']);
      expect(down.code, down.stderr).toBe(0);
      expect(isAlive(next.pid as number)).toBe(false);
      expect(await listening(port)).toBe(false);
    }, 60_000);
  }
});
