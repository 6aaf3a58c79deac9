import { Command, Option } from 'commander';
import { ExitCode, UserError } from '../domain/errors.js';
import { stdOut } from './output.js';
import { packageVersion } from '../platform/package.js';
import { resolveHome } from '../domain/home.js';
import { CACHE_TYPE_BYTES } from '../models/estimate.js';
// Static, not lazy: nearly every command opens a context, and ps / --once are the hot paths
// (scripts poll them), so they load with this file instead of as extra modules.
import { openContext, type Context } from '../app/context.js';
import { onceCommand, psCommand } from './commands/snapshot.js';
import { prepareLoader } from '../config/prepare.js';
import { isStoreFault, storeFaultError } from '../store/faults.js';

/** Commands set this; only this file calls process.exit. */
let exitCode: number = ExitCode.ok;

async function withContext<T>(home: string | undefined, fn: (ctx: Context) => Promise<T> | T): Promise<T> {
  const ctx = openContext(home);
  try {
    return await fn(ctx);
  } catch (e) {
    // A locked, full, read-only or damaged database is the environment's fault: say so, no stack.
    if (isStoreFault(e)) throw storeFaultError(e, ctx.home.dbPath);
    throw e;
  } finally {
    try {
      ctx.close();
    } catch {
      // closing a connection to a vanished or broken file: nothing left to do
    }
  }
}

function homeOf(cmd: Command): string | undefined {
  return cmd.optsWithGlobals<{ home?: string }>().home;
}

function parseCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`expected a whole number, got "${v}"`);
  return n;
}

/** A whole number from 1 to 1,000,000 for the named option (digits only: no 0x10, 1e3 or -1). */
function positive(option: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < 1 || n > 1_000_000)
      throw new UserError(`${option} expects a whole number from 1 to 1000000, got "${v}"`);
    return n;
  };
}

export function buildProgram(): Command {
  const program = new Command('llama-orch')
    .description('Supervise local llama.cpp llama-server instances: dashboard and CLI')
    .version(packageVersion(), '-V, --version')
    .option('--home <dir>', 'orchestrator home holding instances/, state/, logs/ (default: $LLAMA_ORCH_HOME or cwd)')
    .option('--once', 'print a status snapshot and exit')
    .option('--json', 'with --once: print the snapshot as JSON')
    .option('-y, --yes', 'dashboard: x and r act at once, without asking, on a running instance')
    .showHelpAfterError()
    // Off by default for a program with an action of its own (the dashboard): `help up` works too.
    .helpCommand(true)
    .enablePositionalOptions()
    .action(async (opts: { once?: boolean; json?: boolean; yes?: boolean }, cmd: Command) => {
      const interactive = process.stdout.isTTY && process.stdin.isTTY;
      if (opts.once || opts.json || !interactive) {
        exitCode = await withContext(homeOf(cmd), async (ctx) =>
          onceCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
        );
        return;
      }
      // Ink renders only the final frame when CI/CONTINUOUS_INTEGRATION is set (read once, when it
      // loads). Here stdin and stdout are a terminal: someone is watching, so load it live.
      const saved = { CI: process.env.CI, CONTINUOUS_INTEGRATION: process.env.CONTINUOUS_INTEGRATION };
      delete process.env.CI;
      delete process.env.CONTINUOUS_INTEGRATION;
      const { runDashboard } = await import('../../components/dashboard.js');
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
      exitCode = await runDashboard(homeOf(cmd), { confirm: !opts.yes });
    });

  program
    .command('ps')
    .description('list instances with state, health, pid and port')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      exitCode = await withContext(homeOf(cmd), async (ctx) =>
        psCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
      );
    });

  const lifecycle = [
    ['up', 'start instances (each under its own detached keeper)'],
    ['restart', 'stop, then start instances'],
  ] as const;
  for (const [name, desc] of lifecycle) {
    program
      .command(`${name} [names...]`)
      .description(desc)
      .option('--all', 'every configured instance')
      .option('--wait [seconds]', 'wait until /health is ok (default up to 600 s), showing progress')
      .option('--json', 'one JSON object per instance, in an array (README)')
      .option('--force', 'start even when the memory-fit preflight says it does not fit (exit 8 otherwise)')
      .action(
        async (
          names: string[],
          opts: { all?: boolean; wait?: boolean | string; json?: boolean; force?: boolean },
          cmd: Command,
        ) => {
          const m = await import('./commands/lifecycle.js');
          const fn = name === 'up' ? m.upCommand : m.restartCommand;
          exitCode = await withContext(homeOf(cmd), (ctx) => fn(ctx, names, opts, stdOut));
        },
      );
  }

  program
    .command('down [names...]')
    .description('stop instances (TERM, then KILL after stop_timeout; nothing of the group is left)')
    .option('--all', 'every configured instance')
    .option('--json', 'one JSON object per instance, in an array (README)')
    .action(async (names: string[], opts: { all?: boolean; json?: boolean }, cmd: Command) => {
      const { downCommand } = await import('./commands/lifecycle.js');
      exitCode = await withContext(homeOf(cmd), (ctx) => downCommand(ctx, names, opts, stdOut));
    });

  program
    .command('logs <name>')
    .description("print an instance's log (across rotated files); -f follows through rotation")
    .option('-n, --lines <n>', 'number of lines', parseCount, 50)
    .option('-f, --follow', 'keep printing new lines')
    .addOption(new Option('--stderr', 'the stderr log (default)').conflicts('stdout'))
    .addOption(new Option('--stdout', 'the stdout log'))
    .option('--json', 'JSON lines: {"name", "stream", "line"}')
    .action(
      async (
        name: string,
        opts: { lines: number; follow?: boolean; stdout?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const { logsCommand } = await import('./commands/inspect.js');
        exitCode = await withContext(homeOf(cmd), (ctx) =>
          logsCommand(
            ctx,
            name,
            {
              lines: opts.lines,
              follow: opts.follow ?? false,
              stream: opts.stdout ? 'stdout' : 'stderr',
              json: opts.json ?? false,
            },
            stdOut,
          ),
        );
      },
    );

  program
    .command('describe <name>')
    .description('effective command (secrets masked), runtime, last exit, stderr tail, events, health')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const { describeCommand } = await import('./commands/inspect.js');
      exitCode = await withContext(homeOf(cmd), (ctx) => describeCommand(ctx, name, opts.json ?? false, stdOut));
    });

  program
    .command('health [names...]')
    .description('health of instances; exits 1 when any of them is not healthy')
    .option('--all', 'every instance (the default without names)')
    .option('--json', 'machine-readable output')
    .action(async (names: string[], opts: { all?: boolean; json?: boolean }, cmd: Command) => {
      const { healthCommand } = await import('./commands/inspect.js');
      exitCode = await withContext(homeOf(cmd), (ctx) =>
        healthCommand(ctx, names, opts.all ?? false, opts.json ?? false, stdOut),
      );
    });

  program
    .command('events [name]')
    .description('recent lifecycle and health events')
    .option('-n, --lines <n>', 'number of events', parseCount, 30)
    .option('--json', 'machine-readable output')
    .action(async (name: string | undefined, opts: { lines: number; json?: boolean }, cmd: Command) => {
      const { eventsCommand } = await import('./commands/inspect.js');
      exitCode = await withContext(homeOf(cmd), (ctx) =>
        eventsCommand(ctx, name, opts.lines, opts.json ?? false, stdOut),
      );
    });

  program
    .command('bench <name>')
    .description("load test through the instance's OpenAI endpoint: time to first token, tokens/s, errors")
    .option('--requests <n>', 'requests to send', positive('--requests'), 20)
    .option('--concurrency <c>', 'requests in flight at once', positive('--concurrency'), 1)
    .option(
      '--prompt-tokens <p>',
      "prompt length in tokens (sized with the server's tokenizer)",
      positive('--prompt-tokens'),
      64,
    )
    .option('--max-tokens <g>', 'tokens to generate per request', positive('--max-tokens'), 128)
    .option('--json', 'one object (README, "bench")')
    .action(
      async (
        name: string,
        opts: { requests: number; concurrency: number; promptTokens: number; maxTokens: number; json?: boolean },
        cmd: Command,
      ) => {
        const { benchCommand } = await import('./commands/bench.js');
        exitCode = await withContext(homeOf(cmd), (ctx) =>
          benchCommand(ctx, name, { ...opts, json: opts.json ?? false }, stdOut),
        );
      },
    );

  program
    .command('gpus')
    .description("each GPU's load, memory, temperature, power and the instances (and other processes) on it")
    .option('--json', 'one object per GPU, in an array (README); [] on a CPU-only rig')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { gpusCommand } = await import('./commands/gpus.js');
      exitCode = await withContext(homeOf(cmd), async (ctx) =>
        gpusCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
      );
    });

  const models = program
    .command('models')
    .description('GGUF models: list what is on disk, read a header and its memory estimate, download, remove');
  models
    .command('list')
    .description("every GGUF under the home's models/, the instances' models, the Hugging Face and llama.cpp caches")
    .option('--json', 'one object per model, in an array (README)')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { modelsList } = await import('./commands/models.js');
      exitCode = await withContext(homeOf(cmd), (ctx) => modelsList(ctx, opts.json ?? false, stdOut));
    });
  models
    .command('info <model>')
    .description('a model (path, file name, or instance) : its GGUF header and memory estimate')
    .option(
      '--ctx <n>',
      "context size (-c) to estimate for [the instance's, else the trained context]",
      positive('--ctx'),
    )
    .option('--parallel <n>', 'slots (-np) [auto: 4, sharing one cache]', positive('--parallel'))
    .option('--ngl <n>', 'layers on the GPUs (-ngl) [all when --gpus]', parseCount)
    .option('--gpus <n>', "GPUs to split across [the instance's; 0 for a model]", parseCount)
    .option('--cache-type <type>', 'KV cache type, K and V (f16, q8_0, q4_0, ...) [f16]')
    .option('--cache-type-k <type>', 'K cache type')
    .option('--cache-type-v <type>', 'V cache type')
    .option('--flash-attn <on|off>', "flash attention [on, as llama-server's auto on CPU/CUDA/Metal/Vulkan]")
    .option('--json', 'the header and the estimate as one object (README)')
    .action(async (spec: string, opts: import('./commands/models.js').InfoArgs, cmd: Command) => {
      if (opts.flashAttn !== undefined && opts.flashAttn !== 'on' && opts.flashAttn !== 'off') {
        throw new UserError(`--flash-attn expects on or off, got "${String(opts.flashAttn)}"`);
      }
      for (const t of [opts.cacheType, opts.cacheTypeK, opts.cacheTypeV]) {
        if (t !== undefined && !(t.toLowerCase() in CACHE_TYPE_BYTES)) {
          throw new UserError(`unknown KV cache type "${t}": use one of ${Object.keys(CACHE_TYPE_BYTES).join(', ')}`);
        }
      }
      const { modelsInfo } = await import('./commands/models.js');
      exitCode = await withContext(homeOf(cmd), (ctx) =>
        modelsInfo(ctx, spec, { ...opts, json: opts.json ?? false }, stdOut),
      );
    });
  models
    .command('pull <ref>')
    .description('download REPO[:QUANT], REPO/FILE.gguf or a URL: progress, resume, sha256 check')
    .option('--to <dir>', "where to put it [the home's models/]")
    .option('--sha256 <hex>', "expected sha256 (else the hub's LFS hash is checked)")
    .option('--json', '{"path", "files"} when done')
    .action(async (ref: string, opts: { to?: string; sha256?: string; json?: boolean }, cmd: Command) => {
      const { modelsPull } = await import('./commands/models.js');
      exitCode = await modelsPull(resolveHome(homeOf(cmd)), ref, { ...opts, json: opts.json ?? false }, stdOut);
    });
  models
    .command('rm <model>')
    .description('remove a model (all its shards); refuses one a running instance uses')
    .option('-y, --yes', 'do not ask')
    .action(async (spec: string, opts: { yes?: boolean }, cmd: Command) => {
      const { modelsRm } = await import('./commands/models.js');
      exitCode = await withContext(homeOf(cmd), (ctx) => modelsRm(ctx, spec, opts.yes ?? false, stdOut));
    });

  const config = program.command('config').description('check instance configuration');
  config
    .command('validate <path>')
    .description('validate one config.json (exit 0 valid, 1 invalid)')
    .action(async (file: string) => {
      const { configValidate } = await import('./commands/config.js');
      exitCode = configValidate(file, stdOut);
    });
  config
    .command('lint')
    .description('check every instance: schema, ports, model files, binary, GPU ids')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { configLint } = await import('./commands/config.js');
      exitCode = await configLint(homeOf(cmd), stdOut, opts.json ?? false);
    });
  config
    .command('schema')
    .description('write instances/config.schema.json and instances/llama-orch.schema.json (JSON Schema for editors)')
    .action(async (_opts: unknown, cmd: Command) => {
      const { configSchema } = await import('./commands/config.js');
      exitCode = configSchema(homeOf(cmd), stdOut);
    });

  const daemon = program
    .command('daemon')
    .description('boot-time autostart, desired-state reconciliation, and the proxy (/v1, /api, /metrics)');
  const runOpts = (c: Command) =>
    c
      .option('--interval <seconds>', 'reconcile loop interval', parseFloat, 5)
      .option('--stagger <seconds>', 'delay between autostarts', parseFloat, 2)
      .option('--no-autostart', 'do not start instances marked autostart')
      .option(
        '--listen <host:port>',
        "the proxy's address (default: proxy.listen in llama-orch.json, else 127.0.0.1:8080)",
      )
      .option('--no-proxy', 'serve no proxy, REST API or /metrics');
  type RunOpts = { interval: number; stagger: number; autostart: boolean; listen?: string; proxy: boolean };
  const daemonCommands = [
    ['run', 'run the daemon in the foreground'],
    ['start', 'start the daemon in the background'],
    ['stop', 'stop the daemon (instances keep running)'],
    ['status', 'exit 0 when the daemon runs, 1 when not'],
  ] as const;
  for (const [sub, desc] of daemonCommands) {
    const c = daemon.command(sub).description(desc);
    if (sub === 'run' || sub === 'start') runOpts(c);
    if (sub === 'status') c.option('--json', '{"running", "pid", "home", "pid_file", "log", "proxy"}');
    c.action(async (opts: RunOpts & { json?: boolean }, cmd: Command) => {
      const m = await import('./commands/daemon.js');
      exitCode = await withContext(homeOf(cmd), (ctx) => {
        switch (sub) {
          case 'run':
            return m.daemonRun(ctx, opts, stdOut);
          case 'start':
            return m.daemonStart(ctx, opts, stdOut);
          case 'stop':
            return m.daemonStop(ctx, stdOut);
          case 'status':
            return m.daemonStatusCommand(ctx, stdOut, opts.json ?? false);
        }
      });
    });
  }

  const service = program.command('service').description('systemd unit for the daemon');
  type SvcOpts = import('./commands/service.js').ServiceOptions;
  const svc = (c: Command) =>
    c
      .option('--system', 'a system unit (default: a user unit)')
      .option('--name <unit>', 'the unit name (default: llama-orch-<home dir>-<hash>.service, one per home)')
      .option('--dry-run', 'print what would be done');
  const services = [
    ['install', 'install and start the unit'],
    ['uninstall', 'stop and remove the unit'],
    ['status', 'systemctl status of the unit'],
  ] as const;
  for (const [sub, desc] of services) {
    svc(service.command(sub).description(desc)).action(async (opts: SvcOpts, cmd: Command) => {
      const m = await import('./commands/service.js');
      const fn = { install: m.serviceInstall, uninstall: m.serviceUninstall, status: m.serviceStatus }[sub];
      exitCode = fn(homeOf(cmd), opts, stdOut);
    });
  }

  program
    .command('init <name>')
    .description('write instances/NAME/config.json from a profile (never overwrites)')
    .requiredOption('--profile <profile>', 'cpu, cuda, vulkan, rocm or metal')
    .requiredOption('--model <path>', 'GGUF model file, or hf:REPO[:QUANT] to pull it first')
    .requiredOption('--port <n>', 'listen port')
    .option('--gpu <ids>', 'GPU indices or UUIDs, comma separated')
    .option('--ctx <n>', 'context size')
    .option('--json', '{"name", "file", "profile", "schema_written", "warnings", "start_command"}')
    .action(async (name: string, opts: import('./commands/init.js').InitOptions, cmd: Command) => {
      const { initCommand } = await import('./commands/init.js');
      exitCode = await initCommand(homeOf(cmd), name, opts, stdOut);
    });

  program
    .command('keeper <name>', { hidden: true })
    .description('internal: the per-instance supervisor process')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { keeperMain } = await import('../keeper/main.js');
      const { resolveHome } = await import('../domain/home.js');
      exitCode = await keeperMain([name, '--home', resolveHome(homeOf(cmd)).root]);
    });

  // Program options are positional (so `ps --json` is ps's); --home is accepted after any command too.
  const addHome = (c: Command) => {
    if (!['config', 'daemon', 'service'].includes(c.name()))
      c.option('--home <dir>', 'orchestrator home (default: $LLAMA_ORCH_HOME or cwd)');
    c.commands.forEach(addHome);
  };
  program.commands.forEach(addHome);
  return program;
}

/**
 * The word naming a command (or a group's subcommand) that no command has. Commander would take it
 * for an argument of the dashboard's action ("too many arguments") and answer `X --help` with the
 * main help and exit 0; both are this error instead (README, "Exit codes").
 */
async function unknownCommand(program: Command, args: string[]): Promise<UserError | undefined> {
  let cmd = program;
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
    const { closestKey } = await import('../config/load.js');
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

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    const unknown = await unknownCommand(program, argv.slice(2));
    if (unknown) throw unknown;
    await program.parseAsync(argv);
    return exitCode;
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
      return e.exitCode;
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
