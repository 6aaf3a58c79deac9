import path from 'node:path';
import { formatProblem, loadConfigFile } from '../../config/load.js';
import { lintHome } from '../../config/lint.js';
import { writeInstanceJsonSchema } from '../../config/write-schema.js';
import { resolveHome } from '../../domain/home.js';
import { readGpuInventory } from '../../platform/gpu/inventory.js';
import type { Out } from '../output.js';

export function configValidate(file: string, out: Out): number {
  const abs = path.resolve(file);
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

export function configLint(homeOpt: string | undefined, out: Out, json: boolean): number {
  const home = resolveHome(homeOpt);
  const report = lintHome(home, { env: process.env, gpuInventory: (b) => readGpuInventory(b, process.env) });
  if (json) {
    out.log(JSON.stringify({ checked: report.checked, problems: report.problems, warnings: report.warnings }, null, 2));
    return report.problems.length ? 1 : 0;
  }
  for (const p of report.problems) out.error(formatProblem(p));
  for (const w of report.warnings) out.error(`warning: ${formatProblem(w)}`);
  if (report.checked === 0) {
    out.log(`no instances under ${home.instancesDir}`);
    return 0;
  }
  if (report.problems.length === 0) {
    const w = report.warnings.length;
    out.log(
      `${report.checked} instance${report.checked === 1 ? '' : 's'} checked: no problems${w ? `, ${w} warning${w === 1 ? '' : 's'} (above)` : ''}`,
    );
    return 0;
  }
  out.error(
    `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${report.checked} instance(s)`,
  );
  return 1;
}

export function configSchema(homeOpt: string | undefined, out: Out): number {
  const home = resolveHome(homeOpt);
  const file = path.join(home.instancesDir, 'config.schema.json');
  writeInstanceJsonSchema(file);
  out.log(`wrote ${file}`);
  return 0;
}
