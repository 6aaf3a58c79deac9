import type { ConfigLoader } from '../../config/cached.js';
import type { Context } from '../../app/context.js';
import { fleetConfigured, fleetEvents, fleetGpus, fleetInstances, fleetOnce } from '../../app/fleet.js';
import { fleetSources } from '../../app/fleet-local.js';
import { fleetEventLine, fleetGpuText, fleetOnceText, fleetPsTable, rigNote } from '../../format/fleet.js';
import type { RigStatus } from '../../domain/fleet.js';
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
