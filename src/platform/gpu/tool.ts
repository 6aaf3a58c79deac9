import type { ChildProcess } from 'node:child_process';
import { childProcess } from '../builtins.js';
import fs from 'node:fs';
import path from 'node:path';
import type { GpuVendor } from '../../domain/gpu.js';

/**
 * Where the vendor tools are: `LLAMA_ORCH_NVIDIA_SMI` / `LLAMA_ORCH_ROCM_SMI` (a path, or "none" to
 * turn one off), else `nvidia-smi` / `rocm-smi` on PATH. Found by looking at PATH's directories, so
 * a rig without the tools spawns nothing to learn that.
 */
export const TOOL_ENV: Record<GpuVendor, string> = { nvidia: 'LLAMA_ORCH_NVIDIA_SMI', amd: 'LLAMA_ORCH_ROCM_SMI' };
export const TOOL_NAME: Record<GpuVendor, string> = { nvidia: 'nvidia-smi', amd: 'rocm-smi' };

/**
 * Why no vendor tool was found, in words: turned off (LLAMA_ORCH_NVIDIA_SMI=none) is not the same
 * as a CPU-only rig. Null when neither was turned off (none on PATH).
 */
export function toolsTurnedOff(env: NodeJS.ProcessEnv): string | null {
  const vendors: GpuVendor[] = ['nvidia', 'amd'];
  const off = vendors.filter((v) => env[TOOL_ENV[v]] === 'none');
  if (off.length === 0) return null;
  const said = off.map((v) => `${TOOL_ENV[v]}=none`).join(', ');
  const rest = vendors.filter((v) => !off.includes(v)).map((v) => `no ${TOOL_NAME[v]} on PATH`);
  return `GPU reading turned off (${said}${rest.length ? `; ${rest.join(', ')}` : ''})`;
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function findTool(vendor: GpuVendor, env: NodeJS.ProcessEnv): string | undefined {
  const override = env[TOOL_ENV[vendor]];
  if (override !== undefined && override !== '') return override === 'none' ? undefined : override;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, TOOL_NAME[vendor]);
    if (executable(file)) return file;
  }
  return undefined;
}

/** The first vendor whose tool is present (NVIDIA first: a box with both is rare). */
export function findVendor(env: NodeJS.ProcessEnv): { vendor: GpuVendor; tool: string } | undefined {
  for (const vendor of ['nvidia', 'amd'] as const) {
    const tool = findTool(vendor, env);
    if (tool) return { vendor, tool };
  }
  return undefined;
}

export type ToolResult =
  | { ok: true; stdout: string; ms: number }
  | { ok: false; kind: 'missing' | 'failed' | 'timeout'; message: string; stdout: string; stderr: string };

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const MAX_OUTPUT = MAX_OUTPUT_BYTES;

/** The longest output line a tool may print (a loop that prints without newlines is a tool fault). */
export const MAX_LINE = MAX_OUTPUT_BYTES;

/**
 * Kills a tool with everything it started (it runs in a process group of its own: a child that holds
 * its stdout would otherwise outlive it) and lets go of it: a process stuck in the kernel (a GPU off
 * the bus) may never exit.
 */
export function abandon(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
  try {
    child.kill('SIGKILL');
  } catch {
    // already gone
  }
  child.stdout?.destroy();
  child.stderr?.destroy();
  child.unref();
}

/**
 * Runs a vendor tool once. Never waits past `timeoutMs`: at the deadline the tool is killed and
 * abandoned, and the result says so; a missing tool and a non-zero exit are results too, never throws.
 */
export function runTool(file: string, args: string[], timeoutMs: number): Promise<ToolResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const finish = (r: ToolResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    let child: ChildProcess;
    try {
      child = childProcess().spawn(file, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LC_ALL: 'C' },
        detached: true,
      });
    } catch (e) {
      resolve({ ok: false, kind: 'missing', message: `${file}: ${(e as Error).message}`, stdout, stderr });
      return;
    }
    const timer = setTimeout(() => {
      abandon(child);
      finish({
        ok: false,
        kind: 'timeout',
        message: `${path.basename(file)} did not answer within ${timeoutMs / 1000} s (killed)`,
        stdout,
        stderr,
      });
    }, timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += c;
    });
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += c;
    });
    child.once('error', (e: NodeJS.ErrnoException) => {
      const kind = e.code === 'ENOENT' || e.code === 'EACCES' ? 'missing' : 'failed';
      finish({ ok: false, kind, message: `${file}: ${e.code === 'ENOENT' ? 'not found' : e.message}`, stdout, stderr });
    });
    // The tool exited but its output is still held open (a child of its own kept the pipe): that
    // child is a stray; once the tool is gone, its group goes too, and the result is what was read.
    child.once('exit', () => {
      setTimeout(() => {
        if (!settled) abandon(child);
      }, 200).unref();
    });
    child.once('close', (code, signal) => {
      if (code === 0) finish({ ok: true, stdout, ms: Date.now() - started });
      else
        finish({
          ok: false,
          kind: 'failed',
          message: `${path.basename(file)} exited with ${code !== null ? `code ${code}` : `signal ${signal}`}`,
          stdout,
          stderr,
        });
    });
  });
}
