import { Command, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { ExitCode, UserError } from '../domain/errors.js';
import { fileFaultError } from '../domain/file-faults.js';
import { packageVersion } from '../platform/package.js';
import { prepareLoader } from '../config/prepare.js';
// Static, not lazy: --once is a hot path (scripts poll it).
import { onceCommand } from './commands/snapshot.js';
import { stdOut } from './output.js';
import { addAdminCommands, addKeeperCommand } from './program/admin.js';
import { addInitCommand, addInstanceCommands } from './program/instances.js';
import { addModelCommands } from './program/models.js';
import { exitCodeSet, homeOf, setExit, withContext } from './program/support.js';
import { unknownCommand } from './program/unknown.js';

/**
 * The CLI adapter: parses the command line and calls the application. It defines the program
 * without running it (src/entry.ts runs it), so tests drive it in-process.
 */

/** Opens the dashboard on this terminal (components/dashboard.tsx, handed in by src/entry.ts). */
export type OpenDashboard = (home: string | undefined, opts: { confirm: boolean }) => Promise<number>;

export function buildProgram(openDashboard: OpenDashboard): Command {
  const program = new Command('llama-orch')
    .description('Supervise local llama.cpp llama-server instances: dashboard and CLI')
    .version(packageVersion(), '-V, --version')
    .option('--home <dir>', 'orchestrator home holding instances/, state/, logs/ (default: $LLAMA_ORCH_HOME or cwd)')
    .option('--once', 'print a status snapshot and exit')
    .option('--json', 'with --once: print the snapshot as JSON')
    .option('--fleet', 'with --once: every rig of the fleet (llama-orch.json fleet.peers, fleet.discover)')
    .option('-y, --yes', 'dashboard: x and r act at once, without asking, on a running instance')
    .showHelpAfterError()
    // Off by default for a program with an action of its own (the dashboard): `help up` works too.
    .helpCommand(true)
    .enablePositionalOptions()
    .action(async (opts, cmd) => {
      const interactive = process.stdout.isTTY && process.stdin.isTTY;
      if (opts.fleet) {
        if (!opts.once && interactive) {
          throw new UserError(
            '--fleet goes with --once: the dashboard does not show other rigs yet',
            ExitCode.general,
            'run "llama-orch --once --fleet" (or ps --fleet) for the fleet view',
          );
        }
        const { onceFleetCommand } = await import('./commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            onceFleetCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
          ),
        );
        return;
      }
      if (opts.once || opts.json || !interactive) {
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            onceCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
          ),
        );
        return;
      }
      setExit(await openDashboard(homeOf(cmd), { confirm: !opts.yes }));
    });
  addInstanceCommands(program);
  addModelCommands(program);
  addAdminCommands(program);
  addInitCommand(program);
  addKeeperCommand(program);

  // Program options are positional (so `ps --json` is ps's); --home is accepted after any command too.
  const addHome = (c: CommandUnknownOpts) => {
    if (!['config', 'daemon', 'service'].includes(c.name()))
      c.option('--home <dir>', 'orchestrator home (default: $LLAMA_ORCH_HOME or cwd)');
    c.commands.forEach(addHome);
  };
  program.commands.forEach(addHome);
  return program;
}

export async function main(argv: string[], openDashboard: OpenDashboard): Promise<number> {
  const program = buildProgram(openDashboard);
  program.exitOverride();
  try {
    const unknown = await unknownCommand(program, argv.slice(2));
    if (unknown) throw unknown;
    await program.parseAsync(argv);
    return exitCodeSet();
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
      return e.exitCode;
    }
    // A file system refusing a path (a read-only home, permissions, a full disk): said, no stack.
    const fault = fileFaultError(e);
    if (fault) {
      process.stderr.write(`error: ${fault.message}\n`);
      if (fault.hint) process.stderr.write(`  hint: ${fault.hint}\n`);
      return fault.exitCode;
    }
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      return ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' ? 0 : (ce.exitCode ?? 1);
    }
    process.stderr.write(
      `llama-orch: internal error (a bug; please report it with this output):\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    return ExitCode.general;
  }
}
