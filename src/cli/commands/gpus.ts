import type { ConfigLoader } from '../../config/cached.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { currentGpuSample } from '../../app/gpu-source.js';
import { rigSnapshot } from '../../app/snapshot.js';
import { gpuLines } from '../../format/gpu.js';
import { formatBytes } from '../../domain/units.js';
import { TOOL_ENV, toolsTurnedOff } from '../../platform/gpu/tool.js';
import type { Context } from '../../app/context.js';
import type { Out } from '../output.js';

/**
 * `gpus [--json]`: each GPU with its load, memory, temperature, power and the processes on it
 * (instances by name, others as foreign). A CPU-only rig is an empty list and exit 0; a vendor
 * tool that failed or did not answer is exit 1 with its reason.
 */
export async function gpusCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const now = Date.now();
  const sample = await currentGpuSample(ctx.store, process.env, now, 5000);
  if (sample.error) {
    throw new UserError(
      `cannot read the GPUs: ${sample.error}`,
      ExitCode.general,
      sample.vendor === 'nvidia'
        ? `check the NVIDIA driver ("nvidia-smi" by hand); ${TOOL_ENV.nvidia}=none turns GPU reading off`
        : `check the ROCm driver ("rocm-smi" by hand); ${TOOL_ENV.amd}=none turns GPU reading off`,
    );
  }
  const { gpus } = rigSnapshot(ctx.sources(loader, sample), now);
  if (json) {
    out.log(JSON.stringify(gpus, null, 2));
    return 0;
  }
  if (sample.vendor === null) {
    const off = toolsTurnedOff(process.env);
    out.log(
      off ? `GPUs not read: ${off}` : 'no GPU found: this rig is CPU-only (neither nvidia-smi nor rocm-smi is on PATH)',
    );
    return 0;
  }
  if (gpus.length === 0) {
    out.log(`no GPU found: ${sample.vendor === 'nvidia' ? 'nvidia-smi' : 'rocm-smi'} lists none`);
    return 0;
  }
  const width = process.stdout.columns || 120;
  const lines = gpuLines(gpus, width);
  gpus.forEach((g, i) => {
    out.log(`${lines[i] ?? ''}${g.name && !lines[i]?.includes(g.name) ? `  ${g.name}` : ''}`);
    for (const m of g.mig_devices) {
      out.log(
        `    MIG ${m.profile.padEnd(12)} device ${m.device}  ${m.uuid}${m.memory_gb !== null ? `  ${m.memory_gb} GB` : ''}`,
      );
    }
    for (const p of g.processes) {
      out.log(
        `    pid ${String(p.pid).padEnd(8)} ${(p.instance ?? '(other)').padEnd(20)} ${formatBytes(p.memory_bytes).padStart(6)}  ${p.command ?? ''}`,
      );
    }
  });
  if (sample.processes === null) out.log('(per-process memory not read yet)');
  return 0;
}
