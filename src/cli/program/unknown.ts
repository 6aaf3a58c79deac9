import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { ExitCode, UserError } from '../../domain/errors.js';

/**
 * The word naming a command (or a group's subcommand) that no command has. Commander would take it
 * for an argument of the dashboard's action ("too many arguments") and answer `X --help` with the
 * main help and exit 0; both are this error instead (README, "Exit codes").
 */
export async function unknownCommand(program: CommandUnknownOpts, args: string[]): Promise<UserError | undefined> {
  let cmd: CommandUnknownOpts = program;
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') return undefined;
    if (arg.startsWith('-')) {
      // `--home=DIR`: the value is in the same word (commander reads every `--long=value`).
      const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
      const flag = eq > 0 ? arg.slice(0, eq) : arg;
      const opt = cmd.options.find((o) => o.long === flag || o.short === flag);
      if (!opt && !['-h', '--help'].includes(arg)) return undefined; // commander says which option
      if (opt && eq < 0 && (opt.required || opt.optional)) i++;
      continue;
    }
    if (cmd.commands.length === 0) return undefined; // the command's own arguments
    if (arg === 'help') continue; // `help X` asks for X's help: X must exist too
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub) {
      cmd = sub;
      words.push(arg);
      continue;
    }
    const { closestKey } = await import('../../config/load.js');
    const visible = cmd
      .createHelp()
      .visibleCommands(cmd)
      .map((c) => c.name())
      .filter((n) => n !== 'help');
    // A group's subcommand ("lint" is `config lint`), a misspelt command, a misspelt subcommand
    // ("sttaus" is `daemon status` or `service status`).
    const nested = cmd.commands.flatMap((g) => g.commands.map((c) => ({ group: g.name(), name: c.name() })));
    const inGroups = (name: string | undefined) =>
      nested
        .filter((n) => n.name === name)
        .map((n) => `${n.group} ${n.name}`)
        .join("' or '");
    const near =
      inGroups(arg) ||
      closestKey(arg, visible) ||
      inGroups(
        closestKey(
          arg,
          nested.map((n) => n.name),
        ),
      );
    const group = ['llama-orch', ...words].join(' ');
    return new UserError(
      `unknown command '${arg}'${words.length ? ` for '${group}'` : ''}${near ? ` (did you mean '${near}'?)` : ''}`,
      ExitCode.general,
      `"${group} --help" lists the commands: ${visible.join(', ')}`,
    );
  }
  return undefined;
}
