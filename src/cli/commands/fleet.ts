import type { ConfigLoader } from '../../config/cached.js';
import type { Context } from '../../app/context.js';
import { fleetConfigured, fleetEvents, fleetGpus, fleetInstances, fleetOnce } from '../../app/fleet.js';
import { fleetSources } from '../../app/fleet-local.js';
import { fleetEventLine, fleetGpuText, fleetOnceText, fleetPsTable, rigNote } from '../../format/fleet.js';
import type { RigStatus } from '../../domain/fleet.js';
import type { LogStream } from '../../domain/status.js';
import { terminalSafe } from '../../domain/sanitize.js';
import {
  findRig,
  isLocalRig,
  remoteAction,
  remoteLog,
  remoteNames,
  type RemoteAction,
} from '../../app/fleet-remote.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { logsCommand } from './inspect.js';
import type { Out } from '../output.js';

/**
 * `ps --fleet`, `--once --fleet`, `gpus --fleet` and `events --fleet` (README, "Several rigs"): this
 * rig and every rig llama-orch.json names, asked at once, each within 2 s. A rig that does not answer
 * shows as it last answered, with a note on stderr; the exit code stays 0, as the view is whole.
 */

function sources(ctx: Context, loader: ConfigLoader, out: Out) {
  const src = fleetSources(ctx, loader, (m) => out.error(`warning: ${m}`));
  if (!fleetConfigured(src.settings)) {
    out.error('note: no other rig is configured (fleet.peers or fleet.discover in llama-orch.json): this rig alone');
  }
  return src;
}

/** With --json, each rig that is not ok is said once on stderr (stdout stays one document). */
function warnRigs(rigs: RigStatus[], out: Out, json: boolean, what?: string): void {
  if (!json) return;
  for (const r of rigs) {
    const note = rigNote(r, Date.now(), what);
    if (note) out.error(`warning: ${note}`);
  }
}

export async function psFleetCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const { rigs, rows } = await fleetInstances(sources(ctx, loader, out));
  out.log(json ? JSON.stringify(rows, null, 2) : fleetPsTable(rows, rigs, Date.now()));
  warnRigs(rigs, out, json);
  return 0;
}

export async function onceFleetCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const fleet = await fleetOnce(sources(ctx, loader, out));
  out.log(json ? JSON.stringify(fleet, null, 2) : fleetOnceText(fleet.rigs, Date.now(), process.stdout.columns || 120));
  warnRigs(fleet.rigs, out, json);
  return 0;
}

export async function gpusFleetCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const r = await fleetGpus(sources(ctx, loader, out));
  if (json) {
    out.log(JSON.stringify(r.gpus, null, 2));
    for (const [rig, error] of Object.entries(r.gpu_errors)) out.error(`warning: rig ${rig}: GPUs not read: ${error}`);
  } else {
    out.log(fleetGpuText(r.gpus, r.rigs, r.gpu_errors, Date.now(), process.stdout.columns || 120));
  }
  warnRigs(r.rigs, out, json, 'GPUs');
  return 0;
}

export async function eventsFleetCommand(
  ctx: Context,
  loader: ConfigLoader,
  n: number,
  json: boolean,
  out: Out,
): Promise<number> {
  const { rigs, events } = await fleetEvents(sources(ctx, loader, out), n);
  if (json) out.log(JSON.stringify(events, null, 2));
  else out.log(events.length ? events.map(fleetEventLine).join('\n') : 'no events');
  for (const r of rigs) {
    if (r.state !== 'ok')
      out.error(`warning: rig ${r.rig}: ${r.state}${r.error ? ` (${r.error})` : ''}: its events are not shown`);
  }
  return 0;
}

/** `logs NAME --rig RIG [-f]`: an instance's log on another rig, followed through its daemon. */
export async function logsRigCommand(
  ctx: Context,
  loader: ConfigLoader,
  rig: string,
  name: string,
  opts: { lines: number; follow: boolean; stream: LogStream; json: boolean },
  out: Out,
): Promise<number> {
  const src = fleetSources(ctx, loader, (m) => out.error(`warning: ${m}`));
  if (isLocalRig(src, rig)) return logsCommand(ctx, name, opts, out);
  const target = await findRig(src, rig);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (opts.follow) out.error(`following ${name}'s ${opts.stream} on rig ${target.name} (Ctrl-C to stop)`);
  try {
    await remoteLog(target, name, { ...opts, signal: stop.signal }, (l) =>
      out.log(opts.json ? JSON.stringify({ rig: target.name, ...l }) : terminalSafe(l.line, true)),
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

/**
 * `up|restart|down NAME... --rig RIG` (or `--all --rig RIG`): each instance through that rig's REST API,
 * printed as the local commands print (`--json`: their objects, each with `rig`); the exit code of the
 * first failure. `--rig` naming this rig is refused: the local command does it without a daemon.
 */
export async function lifecycleRigCommand(
  ctx: Context,
  loader: ConfigLoader,
  rig: string,
  action: RemoteAction,
  names: string[],
  opts: { all?: boolean; json?: boolean; wait?: string | boolean; force?: boolean },
  out: Out,
): Promise<number> {
  const src = fleetSources(ctx, loader, (m) => out.error(`warning: ${m}`));
  const verb = { start: 'up', stop: 'down', restart: 'restart' }[action];
  if (isLocalRig(src, rig)) {
    throw new UserError(`--rig ${rig} is this rig: run "${verb}" without --rig`, ExitCode.general);
  }
  if (opts.force) throw new UserError(`--force is not sent to another rig: run "${verb} --force" on ${rig}`);
  if (names.length > 0 && opts.all) throw new UserError('name instances or pass --all, not both');
  if (names.length === 0 && !opts.all) throw new UserError(`${verb} --rig ${rig}: name instances or pass --all`);
  const target = await findRig(src, rig);
  const list = opts.all ? await remoteNames(target) : names;
  const waitS =
    opts.wait === undefined || opts.wait === false ? undefined : opts.wait === true ? 600 : Number(opts.wait);
  if (waitS !== undefined && (!Number.isInteger(waitS) || waitS < 0 || waitS > 86_400)) {
    throw new UserError(`--wait expects whole seconds from 0 to 86400, got "${String(opts.wait)}"`);
  }
  let code = 0;
  const json: unknown[] = [];
  for (const name of list) {
    const r = await remoteAction(target, action, name, action === 'stop' ? undefined : waitS);
    if (r.ok) {
      json.push({ rig: target.name, ...r.body });
      if (!opts.json) {
        out.log(terminalSafe(actionLine(target.name, name, r.body)));
        const warnings = Array.isArray(r.body.warnings) ? (r.body.warnings as unknown[]) : [];
        for (const w of warnings) out.error(terminalSafe(`warning: ${target.name}/${name}: ${String(w)}`));
      }
      if (r.body.ok === false && action === 'start' && code === 0) code = ExitCode.general;
    } else {
      json.push({ rig: target.name, name, ok: false, error: r.message, hint: r.hint, exit_code: r.exitCode });
      if (!opts.json) {
        out.error(terminalSafe(`error: rig ${target.name}: ${r.message}`));
        if (r.hint) out.error(terminalSafe(`  hint: ${r.hint}`));
      }
      if (code === 0) code = r.exitCode;
    }
  }
  if (opts.json) out.log(JSON.stringify(json, null, 2));
  return code;
}

function actionLine(rig: string, name: string, b: Record<string, unknown>): string {
  const who = `${rig}/${name}`;
  const text = (v: unknown, fallback: string) =>
    typeof v === 'string' || typeof v === 'number' ? String(v) : fallback;
  if ('was_running' in b) return `${who}: ${b.was_running ? text(b.message, 'stopped') : 'was not running'}`;
  if (b.ok === false) return `${who}: failed: ${text(b.error, 'the server did not start')}`;
  const pid = typeof b.pid === 'number' ? ` (pid ${b.pid})` : '';
  const health = typeof b.health === 'string' ? `, health ${b.health}` : '';
  const joined = b.joined ? ', joined' : b.adopted ? ', adopted' : '';
  return `${who}: ${text(b.status, 'started')}${pid}${joined}${health}`;
}
