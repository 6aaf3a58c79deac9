import type { Command } from '@commander-js/extra-typings';
import { stdOut } from '../output.js';
import { homeOf, setExit, withContext } from './support.js';

/** The rig's own machinery: `config`, `daemon` and `service`. */
export function addAdminCommands(program: Command): void {
  addConfig(program);
  addDaemon(program);
  addService(program);
}

/** The hidden `keeper NAME`: the process `up` starts for each instance. */
export function addKeeperCommand(program: Command): void {
  program
    .command('keeper <name>', { hidden: true })
    .description('internal: the per-instance supervisor process')
    .action(async (name, _opts, cmd) => {
      const { keeperMain } = await import('../../keeper/main.js');
      const { resolveHome } = await import('../../domain/home.js');
      setExit(await keeperMain([name, '--home', resolveHome(homeOf(cmd)).root]));
    });
}

function addConfig(program: Command): void {
  const config = program.command('config').description('check instance configuration');
  config
    .command('validate <path>')
    .description('validate one config.json (exit 0 valid, 1 invalid)')
    .action(async (file) => {
      const { configValidate } = await import('../commands/config.js');
      setExit(configValidate(file, stdOut));
    });
  config
    .command('lint')
    .description('check every instance: schema, ports, model files, binary, GPU ids')
    .option('--json', 'machine-readable output')
    .action(async (opts, cmd) => {
      const { configLint } = await import('../commands/config.js');
      setExit(await configLint(homeOf(cmd), stdOut, opts.json ?? false));
    });
  config
    .command('schema')
    .description('write instances/config.schema.json and instances/llama-orch.schema.json (JSON Schema for editors)')
    .action(async (_opts, cmd) => {
      const { configSchema } = await import('../commands/config.js');
      setExit(configSchema(homeOf(cmd), stdOut));
    });
}

/** `daemon run` and `daemon start` take the same options. */
function daemonRunOptions(c: Command) {
  return c
    .option('--interval <seconds>', 'reconcile loop interval', parseFloat, 5)
    .option('--stagger <seconds>', 'delay between autostarts', parseFloat, 2)
    .option('--no-autostart', 'do not start instances marked autostart')
    .option(
      '--listen <host:port>',
      "the proxy's address (default: proxy.listen in llama-orch.json, else 127.0.0.1:8080)",
    )
    .option('--no-proxy', 'serve no proxy, REST API or /metrics');
}

function addDaemon(program: Command): void {
  const daemon = program
    .command('daemon')
    .description('boot-time autostart, desired-state reconciliation, and the proxy (/v1, /api, /metrics)');
  daemonRunOptions(daemon.command('run').description('run the daemon in the foreground')).action(async (opts, cmd) => {
    const { daemonRun } = await import('../commands/daemon.js');
    setExit(await withContext(homeOf(cmd), (ctx) => daemonRun(ctx, opts, stdOut)));
  });
  daemonRunOptions(daemon.command('start').description('start the daemon in the background')).action(
    async (opts, cmd) => {
      const { daemonStart } = await import('../commands/daemon.js');
      setExit(await withContext(homeOf(cmd), (ctx) => daemonStart(ctx, opts, stdOut)));
    },
  );
  daemon
    .command('stop')
    .description('stop the daemon (instances keep running)')
    .action(async (_opts, cmd) => {
      const { daemonStop } = await import('../commands/daemon.js');
      setExit(await withContext(homeOf(cmd), (ctx) => daemonStop(ctx, stdOut)));
    });
  daemon
    .command('status')
    .description('exit 0 when the daemon runs, 1 when not')
    .option('--json', '{"running", "pid", "home", "pid_file", "log", "proxy"}')
    .action(async (opts, cmd) => {
      const { daemonStatusCommand } = await import('../commands/daemon.js');
      setExit(await withContext(homeOf(cmd), (ctx) => daemonStatusCommand(ctx, stdOut, opts.json ?? false)));
    });
}

/** `service install`, `uninstall` and `status` take the same options. */
function serviceOptions(c: Command) {
  return c
    .option('--system', 'a system unit (default: a user unit)')
    .option('--name <unit>', 'the unit name (default: llama-orch-<home dir>-<hash>.service, one per home)')
    .option('--dry-run', 'print what would be done');
}

function addService(program: Command): void {
  const service = program.command('service').description('systemd unit for the daemon');
  const subs = [
    ['install', 'install and start the unit'],
    ['uninstall', 'stop and remove the unit'],
    ['status', 'systemctl status of the unit'],
  ] as const;
  for (const [sub, desc] of subs) {
    serviceOptions(service.command(sub).description(desc)).action(async (opts, cmd) => {
      const m = await import('../commands/service.js');
      const fn = { install: m.serviceInstall, uninstall: m.serviceUninstall, status: m.serviceStatus }[sub];
      setExit(fn(homeOf(cmd), opts, stdOut));
    });
  }
}
