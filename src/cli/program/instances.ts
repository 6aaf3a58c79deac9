import { Option, type Command } from '@commander-js/extra-typings';
import { stdOut } from '../output.js';
import { UserError } from '../../domain/errors.js';
// Static, not lazy: ps is a hot path (scripts poll it); it loads with the program.
import { psCommand } from '../commands/snapshot.js';
import { prepareLoader } from '../../config/prepare.js';
import { homeOf, parseCount, positive, setExit, withContext } from './support.js';

/** The commands on instances: ps, up, restart, down, logs, describe, health, events, bench, gpus. */
export function addInstanceCommands(program: Command): void {
  program
    .command('ps')
    .description('list instances with state, health, pid and port')
    .option('--json', 'machine-readable output')
    .option('--fleet', 'every rig of the fleet (llama-orch.json fleet.peers, fleet.discover), with a RIG column')
    .action(async (opts, cmd) => {
      if (opts.fleet) {
        const { psFleetCommand } = await import('../commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            psFleetCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
          ),
        );
        return;
      }
      setExit(
        await withContext(homeOf(cmd), async (ctx) =>
          psCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
        ),
      );
    });

  const starts = [
    ['up', 'start instances (each under its own detached keeper)'],
    ['restart', 'stop, then start instances'],
  ] as const;
  for (const [name, desc] of starts) {
    program
      .command(`${name} [names...]`)
      .description(desc)
      .option('--all', 'every configured instance')
      .option('--wait [seconds]', 'wait until /health is ok (default up to 600 s), showing progress')
      .option('--json', 'one JSON object per instance, in an array (README)')
      .option('--force', 'start even when the memory-fit preflight says it does not fit (exit 8 otherwise)')
      .option('--rig <rig>', "instances on that rig of the fleet, through its daemon's REST API")
      .action(async (names: string[], opts, cmd) => {
        if (opts.rig) {
          const rig = opts.rig;
          const { lifecycleRigCommand } = await import('../commands/fleet.js');
          const action = name === 'up' ? 'start' : 'restart';
          setExit(
            await withContext(homeOf(cmd), async (ctx) =>
              lifecycleRigCommand(ctx, await prepareLoader(ctx.home, ctx.store), rig, action, names, opts, stdOut),
            ),
          );
          return;
        }
        const m = await import('../commands/lifecycle.js');
        const fn = name === 'up' ? m.upCommand : m.restartCommand;
        setExit(await withContext(homeOf(cmd), (ctx) => fn(ctx, names, opts, stdOut)));
      });
  }

  program
    .command('down [names...]')
    .description('stop instances (TERM, then KILL after stop_timeout; nothing of the group is left)')
    .option('--all', 'every configured instance')
    .option('--json', 'one JSON object per instance, in an array (README)')
    .option('--rig <rig>', "instances on that rig of the fleet, through its daemon's REST API")
    .action(async (names, opts, cmd) => {
      if (opts.rig) {
        const rig = opts.rig;
        const { lifecycleRigCommand } = await import('../commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            lifecycleRigCommand(ctx, await prepareLoader(ctx.home, ctx.store), rig, 'stop', names, opts, stdOut),
          ),
        );
        return;
      }
      const { downCommand } = await import('../commands/lifecycle.js');
      setExit(await withContext(homeOf(cmd), (ctx) => downCommand(ctx, names, opts, stdOut)));
    });

  program
    .command('logs <name>')
    .description("print an instance's log (across rotated files); -f follows through rotation")
    .option('-n, --lines <n>', 'number of lines', parseCount, 50)
    .option('-f, --follow', 'keep printing new lines')
    .addOption(new Option('--stderr', 'the stderr log (default)').conflicts('stdout'))
    .addOption(new Option('--stdout', 'the stdout log'))
    .option('--json', 'JSON lines: {"name", "stream", "line"}')
    .option('--rig <rig>', 'the instance on that rig of the fleet, through its daemon')
    .action(async (name, opts, cmd) => {
      const stream = opts.stdout ? 'stdout' : 'stderr';
      const args = { lines: opts.lines, follow: opts.follow ?? false, stream, json: opts.json ?? false } as const;
      if (opts.rig) {
        const rig = opts.rig;
        const { logsRigCommand } = await import('../commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            logsRigCommand(ctx, await prepareLoader(ctx.home, ctx.store), rig, name, args, stdOut),
          ),
        );
        return;
      }
      const { logsCommand } = await import('../commands/inspect.js');
      setExit(await withContext(homeOf(cmd), (ctx) => logsCommand(ctx, name, args, stdOut)));
    });

  program
    .command('describe <name>')
    .description('effective command (secrets masked), runtime, last exit, stderr tail, events, health')
    .option('--json', 'machine-readable output')
    .action(async (name, opts, cmd) => {
      const { describeCommand } = await import('../commands/inspect.js');
      setExit(await withContext(homeOf(cmd), (ctx) => describeCommand(ctx, name, opts.json ?? false, stdOut)));
    });

  program
    .command('health [names...]')
    .description('health of instances; exits 1 when any of them is not healthy')
    .option('--all', 'every instance (the default without names)')
    .option('--json', 'machine-readable output')
    .action(async (names, opts, cmd) => {
      const { healthCommand } = await import('../commands/inspect.js');
      setExit(
        await withContext(homeOf(cmd), (ctx) =>
          healthCommand(ctx, names, opts.all ?? false, opts.json ?? false, stdOut),
        ),
      );
    });

  program
    .command('events [name]')
    .description('recent lifecycle and health events')
    .option('-n, --lines <n>', 'number of events', parseCount, 30)
    .option('--json', 'machine-readable output')
    .option('--fleet', 'the newest events of every rig of the fleet, each with its rig')
    .action(async (name, opts, cmd) => {
      if (opts.fleet) {
        if (name) throw new UserError('events --fleet shows every instance of every rig: leave out the name');
        const { eventsFleetCommand } = await import('../commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            eventsFleetCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.lines, opts.json ?? false, stdOut),
          ),
        );
        return;
      }
      const { eventsCommand } = await import('../commands/inspect.js');
      setExit(
        await withContext(homeOf(cmd), (ctx) => eventsCommand(ctx, name, opts.lines, opts.json ?? false, stdOut)),
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
    .action(async (name, opts, cmd) => {
      const { benchCommand } = await import('../commands/bench.js');
      setExit(
        await withContext(homeOf(cmd), (ctx) => benchCommand(ctx, name, { ...opts, json: opts.json ?? false }, stdOut)),
      );
    });

  program
    .command('gpus')
    .description("each GPU's load, memory, temperature, power and the instances (and other processes) on it")
    .option('--json', 'one object per GPU, in an array (README); [] on a CPU-only rig')
    .option('--fleet', 'the GPUs of every rig of the fleet, each with its rig')
    .action(async (opts, cmd) => {
      if (opts.fleet) {
        const { gpusFleetCommand } = await import('../commands/fleet.js');
        setExit(
          await withContext(homeOf(cmd), async (ctx) =>
            gpusFleetCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
          ),
        );
        return;
      }
      const { gpusCommand } = await import('../commands/gpus.js');
      setExit(
        await withContext(homeOf(cmd), async (ctx) =>
          gpusCommand(ctx, await prepareLoader(ctx.home, ctx.store), opts.json ?? false, stdOut),
        ),
      );
    });
}

/** `init NAME`: a new instance from a profile. */
export function addInitCommand(program: Command): void {
  program
    .command('init <name>')
    .description('write instances/NAME/config.json from a profile (never overwrites)')
    .requiredOption('--profile <profile>', 'cpu, cuda, vulkan, rocm or metal')
    .requiredOption('--model <path>', 'GGUF model file, or hf:REPO[:QUANT] to pull it first')
    .requiredOption('--port <n>', 'listen port')
    .option('--gpu <ids>', 'GPU indices or UUIDs, comma separated')
    .option('--ctx <n>', 'context size')
    .option('--json', '{"name", "file", "profile", "schema_written", "warnings", "start_command"}')
    .action(async (name, opts, cmd) => {
      const { initCommand } = await import('../commands/init.js');
      setExit(await initCommand(homeOf(cmd), name, opts, stdOut));
    });
}
