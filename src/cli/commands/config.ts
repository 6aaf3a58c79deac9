import fs from 'node:fs';
import path from 'node:path';
import { formatProblem, loadConfigFile } from '../../config/load.js';
import { lintHome, type LintReport } from '../../config/lint.js';
import { ExitCode } from '../../domain/errors.js';
import { fitAdvice } from '../../engine/memory-advice.js';
import {
  fitReportFor,
  runningFitInstances,
  type FitInstance,
  type FitReport,
  type FitSources,
} from '../../engine/memory-fit.js';
import { realProcesses } from '../../platform/processes.js';
import { unitFor } from '../../domain/units.js';
import { openContext, type Context } from '../../app/context.js';
import { writeInstanceJsonSchema, writeSettingsJsonSchema } from '../../config/write-schema.js';
import { settingsProblems } from '../../config/settings.js';
import { homeAt, resolveHome } from '../../domain/home.js';
import { readGpuInventory } from '../../platform/gpu/inventory.js';
import type { Out } from '../output.js';

export function configValidate(file: string, out: Out): number {
  const abs = path.resolve(file);
  // The home's settings file is checked against its own schema.
  if (path.basename(abs) === 'llama-orch.json') {
    const problems = fs.existsSync(abs)
      ? settingsProblems(homeAt(path.dirname(abs)))
      : [{ file: abs, jsonPath: '$', message: 'file not found' }];
    for (const p of problems) out.error(formatProblem(p));
    if (problems.length === 0) out.log(`${file}: ok`);
    else out.error(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${file}`);
    return problems.length ? 1 : 0;
  }
  const name = path.basename(path.dirname(abs));
  const res = loadConfigFile(abs, name);
  if (res.ok) {
    out.log(`${file}: ok`);
    return 0;
  }
  for (const p of res.problems) out.error(formatProblem(p));
  out.error(`${res.problems.length} problem${res.problems.length === 1 ? '' : 's'} in ${file}`);
  return 1;
}

/** The instances lint counts as running together: those that run now and those the daemon autostarts. */
async function lintFit(homeOpt: string | undefined, report: LintReport): Promise<FitReport | undefined> {
  let ctx: Context | undefined;
  try {
    ctx = openContext(homeOpt);
  } catch {
    ctx = undefined; // no readable state: nothing is known to run
  }
  try {
    const running = ctx ? await runningFitInstances(ctx.deps, new Set()).catch(() => [] as FitInstance[]) : [];
    const runningNames = new Set(running.map((r) => r.inst.name));
    const starting: FitInstance[] = report.instances
      .filter((i) => i.config.autostart && !runningNames.has(i.name))
      .flatMap((inst) => {
        const model = report.models.get(inst.name);
        return model ? [{ inst, model, running: false }] : [];
      });
    if (running.length + starting.length === 0) return undefined;
    const sources: FitSources = ctx?.deps ?? {
      home: resolveHome(homeOpt),
      procs: realProcesses,
      env: process.env,
      now: Date.now,
    };
    return await fitReportFor(sources, [...running, ...starting]);
  } finally {
    ctx?.close();
  }
}

export async function configLint(homeOpt: string | undefined, out: Out, json: boolean): Promise<number> {
  const home = resolveHome(homeOpt);
  const report = await lintHome(home, { env: process.env, gpuInventory: (b) => readGpuInventory(b, process.env) });
  const fit = await lintFit(homeOpt, report);
  const misfits = fit?.devices.filter((d) => !d.fits) ?? [];
  const code = report.problems.length ? 1 : misfits.length ? ExitCode.doesNotFit : 0;
  if (json) {
    out.log(
      JSON.stringify(
        {
          checked: report.checked,
          problems: report.problems,
          warnings: report.warnings,
          memory_fit: fit ? fitJson(fit) : null,
        },
        null,
        2,
      ),
    );
    return code;
  }
  for (const p of report.problems) out.error(formatProblem(p));
  for (const w of report.warnings) out.error(`warning: ${formatProblem(w)}`);
  if (fit?.unchecked) out.error(`warning: GPU memory not checked: ${fit.unchecked}`);
  for (const d of misfits) out.error(`does not fit: ${d.message}; to fit: ${fitAdvice(d)}`);
  if (report.checked === 0) {
    out.log(`no instances under ${home.instancesDir}`);
    return code;
  }
  if (code === 0) {
    const w = report.warnings.length;
    out.log(
      `${report.checked} instance${report.checked === 1 ? '' : 's'} checked: no problems${w ? `, ${w} warning${w === 1 ? '' : 's'} (above)` : ''}${fit ? `; memory fit: ${fit.devices.map(fitSummary).join(', ')}` : ''}`,
    );
    return 0;
  }
  if (report.problems.length) {
    out.error(
      `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${report.checked} instance(s)`,
    );
  } else {
    out.error(
      `the running and autostart instances do not fit (exit ${ExitCode.doesNotFit}): lower context_size, parallel or n_gpu_layers, or autostart fewer`,
    );
  }
  return code;
}

function fitSummary(d: FitReport['devices'][number]): string {
  const u = unitFor(Math.max(d.all, d.total ?? 0));
  return `${d.label} ${u.fmt(d.all)} of ${d.total === null ? '?' : u.fmt(d.total)} ${u.name}`;
}

/** The fit report as `config lint --json` and `models info --json` publish it (bytes). */
export function fitJson(fit: FitReport): unknown[] {
  return fit.devices.map((d) => ({
    device: d.device,
    total_bytes: d.total,
    free_bytes: d.free,
    needed_bytes: d.needed,
    all_bytes: d.all,
    fits: d.fits,
    message: d.message,
    instances: d.shares.map((s) => ({
      name: s.name,
      running: s.running,
      weights_bytes: s.weights,
      kv_bytes: s.kv,
      compute_bytes: s.compute,
      margin_bytes: s.margin,
      total_bytes: s.total,
    })),
  }));
}

export function configSchema(homeOpt: string | undefined, out: Out): number {
  const home = resolveHome(homeOpt);
  const file = path.join(home.instancesDir, 'config.schema.json');
  writeInstanceJsonSchema(file);
  const settings = path.join(home.instancesDir, 'llama-orch.schema.json');
  writeSettingsJsonSchema(settings);
  out.log(`wrote ${file} and ${settings}`);
  return 0;
}
