import { describe, expect, it } from 'vitest';
import { cli, homePerTest } from '../helpers/home.js';

// A mistyped command is an error with the closest command, exit 1 (README, "Exit codes"), also
// when --help follows it; it never prints the main help and exits 0.

const homes = homePerTest();
const COMMANDS = 'ps, up, restart, down, logs, describe, health, events, config, daemon, service, init';

describe('unknown commands', () => {
  it("'X' and 'X --help' are the same error, exit 1, with the list of commands", async () => {
    const home = homes.make();
    for (const args of [['frobnicate'], ['frobnicate', '--help']]) {
      const r = await cli(home.root, args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `error: unknown command 'frobnicate'\n  hint: "llama-orch --help" lists the commands: ${COMMANDS}`,
      );
    }
  });

  it('names the closest command: a misspelling, or the group a subcommand belongs to', async () => {
    const home = homes.make();
    const said = async (...args: string[]) => {
      const r = await cli(home.root, args);
      expect(r.code, args.join(' ')).toBe(1);
      return r.stderr.split('\n')[0];
    };
    expect(await said('udp')).toBe("error: unknown command 'udp' (did you mean 'up'?)");
    expect(await said('lint', '--help')).toBe("error: unknown command 'lint' (did you mean 'config lint'?)");
    expect(await said('sttaus')).toBe(
      "error: unknown command 'sttaus' (did you mean 'daemon status' or 'service status'?)",
    );
    expect(await said('daemon', 'sttaus', '--help')).toBe(
      "error: unknown command 'sttaus' for 'llama-orch daemon' (did you mean 'status'?)",
    );
    expect(await said('help', 'restat')).toBe("error: unknown command 'restat' (did you mean 'restart'?)");
  });

  it('help for a real command still works, exit 0', async () => {
    const home = homes.make();
    for (const args of [
      ['help', 'up'],
      ['up', '--help'],
      ['daemon', 'status', '--help'],
    ]) {
      const r = await cli(home.root, args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: llama-orch (up|daemon status) /);
    }
    const main = await cli(home.root, ['--help']);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain('Usage: llama-orch [options] [command]');
  });
});
