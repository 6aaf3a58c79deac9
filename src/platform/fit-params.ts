import { childProcess } from './builtins.js';
import fs from 'node:fs';
import path from 'node:path';

/**
 * llama.cpp's own memory projection: `llama-fit-params -fitp on` loads the model's metadata on the
 * real devices (not its weights) and prints, per device and for the host, the MiB of model,
 * context (KV) and compute buffers it would allocate (common/fit.cpp, common_fit_print). The set-up
 * script builds it next to llama-server.
 */
export interface FitProjectionDevice {
  /** The backend device name (CUDA0, Vulkan1, ROCm0) or "Host". */
  device: string;
  model: number;
  context: number;
  compute: number;
}

export type FitProjection = { ok: true; devices: FitProjectionDevice[]; ms: number } | { ok: false; error: string };

/** $LLAMA_FIT_PARAMS, else llama-fit-params next to the server binary, when it is there. */
export function fitParamsBinary(serverBinary: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const candidates = [env.LLAMA_FIT_PARAMS, serverBinary && path.join(path.dirname(serverBinary), 'llama-fit-params')];
  for (const c of candidates) {
    if (!c) continue;
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {
      // not there or not executable
    }
  }
  return undefined;
}

const MiB = 1024 * 1024;

/** Parses `NAME model context compute` lines (MiB); other lines (logs that reached stdout) are skipped. */
export function parseFitPrint(stdout: string): FitProjectionDevice[] {
  const out: FitProjectionDevice[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^(\S+) (\d+) (\d+) (\d+)\s*$/.exec(line.trim());
    if (m)
      out.push({
        device: m[1] as string,
        model: Number(m[2]) * MiB,
        context: Number(m[3]) * MiB,
        compute: Number(m[4]) * MiB,
      });
  }
  return out;
}

/** Runs it for a model and the server arguments that size memory (-c, -np, -ngl, -ctk, -ctv, -fa, -ub). */
export function runFitParams(
  binary: string,
  model: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<FitProjection> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    childProcess().execFile(
      binary,
      ['-m', model, ...args, '-fitp', 'on'],
      { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * MiB },
      (err, stdout, stderr) => {
        const devices = parseFitPrint(String(stdout));
        if (devices.some((d) => d.device === 'Host')) {
          resolve({ ok: true, devices, ms: Math.round(performance.now() - t0) });
          return;
        }
        const said = String(stderr).trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
        const why = err?.killed
          ? `did not answer within ${timeoutMs / 1000} s (killed)`
          : said || (err?.message ?? 'printed no projection');
        resolve({ ok: false, error: `${path.basename(binary)} ${why}` });
      },
    );
  });
}
