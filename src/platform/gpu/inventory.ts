import { childProcess } from '../builtins.js';
import fs from 'node:fs';
import type { GpuVendor } from '../../domain/gpu.js';
import { parseList } from './nvidia.js';
import { parseRocmGpus } from './rocm.js';
import { findTool, TOOL_ENV, TOOL_NAME } from './tool.js';

/** The GPUs a backend can select on this machine, for `config lint`, `init` and `up`. */
export type GpuInventory =
  | { ok: true; vendor: GpuVendor; tool: string; indices: number[]; uuids: string[] }
  /** No vendor tool: `device` says whether the driver's device node is there anyway. */
  | { ok: false; kind: 'no-tool'; vendor: GpuVendor; device: boolean; message: string }
  | { ok: false; kind: 'failed'; vendor: GpuVendor; message: string };

export type GpuInventoryReader = (backend: string) => GpuInventory | undefined;

const VENDOR_OF: Record<string, GpuVendor | undefined> = { cuda: 'nvidia', rocm: 'amd' };
const DEVICE_NODE: Record<GpuVendor, string> = { nvidia: '/dev/nvidiactl', amd: '/dev/kfd' };

/**
 * Asks the backend's vendor tool which devices exist (`nvidia-smi -L`; `rocm-smi --json`). Undefined
 * for backends no tool describes (cpu, metal, vulkan: Vulkan numbers devices its own way).
 * Synchronous with a short deadline: lint and `up` are one-shot commands.
 */
export function readGpuInventory(backend: string, env: NodeJS.ProcessEnv, timeoutMs = 5000): GpuInventory | undefined {
  const vendor = VENDOR_OF[backend];
  if (!vendor) return undefined;
  const tool = findTool(vendor, env);
  if (!tool) {
    const device = fs.existsSync(DEVICE_NODE[vendor]);
    return {
      ok: false,
      kind: 'no-tool',
      vendor,
      device,
      message: `${TOOL_NAME[vendor]} is not on PATH (nor set in ${TOOL_ENV[vendor]})${device ? '' : ` and there is no ${DEVICE_NODE[vendor]}`}`,
    };
  }
  try {
    const out = childProcess().execFileSync(
      tool,
      vendor === 'nvidia' ? ['-L'] : ['--showuniqueid', '--showproductname', '--json'],
      {
        encoding: 'utf8',
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...env, LC_ALL: 'C' },
      },
    );
    if (vendor === 'nvidia') {
      const list = parseList(out);
      if (list.gpus.length === 0) throw new Error(out.trim().split('\n')[0] || 'no GPU listed');
      return {
        ok: true,
        vendor,
        tool,
        indices: list.gpus.map((g) => g.index),
        uuids: [...list.gpus.flatMap((g) => (g.uuid ? [g.uuid] : [])), ...list.mig.map((m) => m.uuid)],
      };
    }
    const gpus = parseRocmGpus(out);
    return {
      ok: true,
      vendor,
      tool,
      indices: gpus.map((g) => g.index),
      uuids: gpus.flatMap((g) => (g.uuid ? [g.uuid] : [])),
    };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; signal?: string };
    const said = (err.stdout ?? '').trim().split('\n')[0];
    const message =
      err.code === 'ETIMEDOUT' || err.signal === 'SIGKILL'
        ? `${TOOL_NAME[vendor]} did not answer within ${timeoutMs / 1000} s`
        : `${TOOL_NAME[vendor]} failed: ${said || err.message.split('\n')[0]}`;
    return { ok: false, kind: 'failed', vendor, message };
  }
}
