import type { ChildProcess } from 'node:child_process';
import { childProcess } from '../builtins.js';
import type { GpuProcessReading, GpuReading, GpuSample, GpuVendor, MigDeviceReading } from '../../domain/gpu.js';
import {
  nvidiaAppArgs,
  nvidiaFailure,
  nvidiaGpuArgs,
  parseAppLines,
  parseGpuLine,
  parseGpuLines,
  parseList,
} from './nvidia.js';
import { parseRocmGpus, parseRocmPidGpus, parseRocmPids, rocmGpuArgs, rocmPidArgs, rocmPidGpuArgs } from './rocm.js';
import { safeName } from '../../domain/sanitize.js';
import { plausibleProcess, plausibleReading } from './plausible.js';
import { abandon, findVendor, MAX_LINE, runTool, TOOL_NAME, type ToolResult } from './tool.js';

export interface SampleOptions {
  env: NodeJS.ProcessEnv;
  /** Each tool call is killed after this (a hung nvidia-smi never blocks the caller). */
  timeoutMs: number;
  now?: () => number;
}

function failure(vendor: GpuVendor, r: Extract<ToolResult, { ok: false }>): string {
  const raw = vendor === 'nvidia' ? nvidiaFailure(r.stdout, r.stderr) : (r.stderr || r.stdout).trim().split('\n')[0];
  // What a broken tool printed goes into events and daemon.log: no control codes, no raw binary.
  const said = raw === undefined ? raw : safeName(raw);
  return r.kind === 'failed' && said && said !== 'no output' ? `${r.message}: ${said}` : r.message;
}

async function readGpus(
  vendor: GpuVendor,
  tool: string,
  timeoutMs: number,
): Promise<{ gpus: GpuReading[]; error: string | null }> {
  const r = await runTool(tool, vendor === 'nvidia' ? nvidiaGpuArgs() : rocmGpuArgs(), timeoutMs);
  if (!r.ok) {
    // A GPU off the bus makes nvidia-smi exit non-zero while it still prints the other GPUs' rows:
    // those readings stay, and the lost one is a reading of its own (state "lost").
    const gpus = vendor === 'nvidia' && r.kind === 'failed' ? parseGpuLines(`${r.stdout}\n${r.stderr}`) : [];
    if (gpus.some((g) => g.state === 'lost')) return { gpus, error: null };
    return { gpus: [], error: failure(vendor, r) };
  }
  try {
    const gpus = vendor === 'nvidia' ? parseGpuLines(r.stdout) : parseRocmGpus(r.stdout);
    if (gpus.length === 0 && r.stdout.trim() !== '') {
      return {
        gpus,
        error: `${TOOL_NAME[vendor]} printed no GPU line: ${r.stdout.trim().split('\n')[0]?.slice(0, 200)}`,
      };
    }
    return { gpus, error: null };
  } catch (e) {
    return { gpus: [], error: `${TOOL_NAME[vendor]}'s output could not be read: ${(e as Error).message}` };
  }
}

async function readProcesses(
  vendor: GpuVendor,
  tool: string,
  timeoutMs: number,
  gpuCount: number,
): Promise<GpuProcessReading[] | null> {
  const r = await runTool(tool, vendor === 'nvidia' ? nvidiaAppArgs() : rocmPidArgs(), timeoutMs);
  if (!r.ok) return null;
  let procs: GpuProcessReading[];
  try {
    procs = vendor === 'nvidia' ? parseAppLines(r.stdout) : parseRocmPids(r.stdout, gpuCount);
  } catch {
    return null;
  }
  // Several AMD GPUs (a known count: sampleOnce places after it has read the GPUs).
  if (vendor === 'amd' && gpuCount > 1 && Number.isFinite(gpuCount) && procs.some((p) => p.gpu_index === null)) {
    procs = await placeRocmPids(tool, procs, timeoutMs);
  }
  return procs;
}

/**
 * The MIG devices (`nvidia-smi -L`), asked only when a GPU reads like one in MIG mode: its
 * utilisation is [N/A] (nvidia-smi cannot give it for a GPU carved into MIG devices). Null: not read.
 */
async function readMig(tool: string, gpus: GpuReading[], timeoutMs: number): Promise<MigDeviceReading[] | null> {
  if (!gpus.some((g) => g.utilization_pct === null && g.state === undefined)) return [];
  const r = await runTool(tool, ['-L'], timeoutMs);
  return r.ok ? parseList(r.stdout).mig : null;
}

/**
 * On a rig of several AMD GPUs, which GPU each process is on (--showpidgpus). A process on exactly
 * one GPU gets it; one on several keeps null (rocm-smi gives its VRAM as one total, not per GPU).
 * A failed call leaves the listing as it was.
 */
async function placeRocmPids(
  tool: string,
  procs: GpuProcessReading[],
  timeoutMs: number,
): Promise<GpuProcessReading[]> {
  const r = await runTool(tool, rocmPidGpuArgs(), timeoutMs);
  if (!r.ok) return procs;
  const gpus = parseRocmPidGpus(r.stdout);
  return procs.map((p) => {
    const on = gpus.get(p.pid);
    return p.gpu_index === null && on?.length === 1 ? { ...p, gpu_index: on[0] as number } : p;
  });
}

/**
 * One reading of the rig, GPUs and processes: what `gpus`, `ps` and `--once` do when no fresh
 * sample is recorded. No tool: a CPU-only sample (vendor null), and nothing was spawned.
 */
export async function sampleOnce(opts: SampleOptions): Promise<GpuSample> {
  const now = opts.now ?? Date.now;
  const found = findVendor(opts.env);
  if (!found) {
    return { at: now(), vendor: null, gpus: [], processes: [], processes_at: now(), error: null, interval_ms: 0 };
  }
  const { vendor, tool } = found;
  const [g, p] = await Promise.all([
    readGpus(vendor, tool, opts.timeoutMs),
    readProcesses(vendor, tool, opts.timeoutMs, Number.POSITIVE_INFINITY),
  ]);
  let processes =
    vendor === 'amd' && p && g.gpus.length === 1 ? p.map((x) => ({ ...x, gpu_index: 0 })) : g.error ? null : p;
  if (vendor === 'amd' && processes && g.gpus.length > 1 && processes.some((x) => x.gpu_index === null)) {
    processes = await placeRocmPids(tool, processes, opts.timeoutMs);
  }
  const mig = vendor === 'nvidia' && !g.error ? await readMig(tool, g.gpus, opts.timeoutMs) : [];
  return {
    at: now(),
    vendor,
    gpus: g.gpus.map(plausibleReading),
    processes: processes ? processes.map(plausibleProcess) : processes,
    processes_at: processes ? now() : null,
    mig,
    error: g.error,
    interval_ms: 0,
  };
}

export interface SamplerOptions {
  env: NodeJS.ProcessEnv;
  /** GPU readings every this (the daemon: 2 s). */
  intervalMs: number;
  /** Per-process memory at this slower cadence (a listing costs more than a reading). */
  processesMs: number;
  /** A one-shot call, or a loop that prints nothing for this long, is killed. */
  timeoutMs: number;
  onSample: (s: GpuSample) => void;
  log?: (msg: string) => void;
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  now?: () => number;
}

/** GPU readings every 2 s (like nvtop/nvitop: faster is pointless), processes every 10 s, 10 s deadline. */
export const DEFAULT_GPU_CADENCE = { intervalMs: 2000, processesMs: 10_000, timeoutMs: 10_000 } as const;

const NO_TOOL_RECHECK_MS = 30_000;
const MAX_PAUSE_MS = 60_000;

/**
 * Continuous sampling: ONE long-lived `nvidia-smi --query-gpu=... -lms N` whose stream is parsed
 * (a process per tick would cost 0.1-0.6 s of CPU each), plus the per-process listing as a one-shot
 * call every `processesMs`. rocm-smi has no loop mode: it is called once per interval. A loop that
 * goes silent (nvidia-smi hangs when a GPU falls off the bus) is killed after `timeoutMs`, an error
 * sample says so, and it is started again after a pause that doubles up to a minute.
 */
export class GpuSampler {
  private processes: GpuProcessReading[] | null = null;
  private processesAt: number | null = null;
  private mig: MigDeviceReading[] | null = [];
  private lastGpus: GpuReading[] = [];
  private gpuCount = 0;
  private listing = false;
  private lastListing = 0;

  constructor(private readonly opts: SamplerOptions) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private emit(vendor: GpuVendor | null, readings: GpuReading[], error: string | null): void {
    const gpus = readings.map(plausibleReading);
    if (gpus.length > 0) this.lastGpus = gpus;
    this.opts.onSample({
      at: this.now(),
      vendor,
      gpus,
      processes: vendor === null ? [] : this.processes,
      processes_at: vendor === null ? this.now() : this.processesAt,
      mig: vendor === 'nvidia' ? this.mig : [],
      error,
      interval_ms: this.opts.intervalMs,
    });
  }

  /**
   * The next reading lists the processes too, not waiting for `processesMs`: a server that just
   * started is not in a listing taken before it (seen on a real H200: `gpus` listed no process for
   * two servers loaded two seconds earlier).
   */
  listSoon(): void {
    this.lastListing = 0;
  }

  /** Refreshes the per-process listing in the background when it is due (never two at once). */
  private maybeList(vendor: GpuVendor, tool: string): void {
    if (this.listing || this.now() - this.lastListing < this.opts.processesMs) return;
    this.listing = true;
    this.lastListing = this.now();
    void Promise.all([
      readProcesses(vendor, tool, this.opts.timeoutMs, this.gpuCount),
      vendor === 'nvidia' ? readMig(tool, this.lastGpus, this.opts.timeoutMs) : Promise.resolve([]),
    ]).then(([p, mig]) => {
      this.listing = false;
      this.processes = p ? p.map(plausibleProcess) : p;
      this.processesAt = p ? this.now() : null;
      this.mig = mig;
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    let pause = this.opts.intervalMs;
    while (!signal.aborted) {
      const found = findVendor(this.opts.env);
      if (!found) {
        this.emit(null, [], null);
        await this.opts.wait(NO_TOOL_RECHECK_MS, signal);
        continue;
      }
      const started = this.now();
      const error =
        found.vendor === 'nvidia' ? await this.runNvidiaLoop(found.tool, signal) : await this.runPolling(found, signal);
      if (signal.aborted) break;
      if (error) {
        this.opts.log?.(`gpu sampler: ${error}; again in ${Math.round(pause / 1000)} s`);
        this.emit(found.vendor, [], error);
      }
      if (this.now() - started > MAX_PAUSE_MS) pause = this.opts.intervalMs;
      await this.opts.wait(pause, signal);
      pause = Math.min(MAX_PAUSE_MS, pause * 2);
    }
  }

  /** rocm-smi (no loop mode): one call per interval; returns the error that ended it. */
  private async runPolling(found: { vendor: GpuVendor; tool: string }, signal: AbortSignal): Promise<string> {
    while (!signal.aborted) {
      this.maybeList(found.vendor, found.tool);
      const g = await readGpus(found.vendor, found.tool, this.opts.timeoutMs);
      if (g.error) return g.error;
      this.gpuCount = g.gpus.length;
      this.emit(found.vendor, g.gpus, null);
      // nvidia-smi polled for a lost GPU: back to the loop once none is lost.
      if (found.vendor === 'nvidia' && !g.gpus.some((x) => x.state === 'lost')) return '';
      await this.opts.wait(this.opts.intervalMs, signal);
    }
    return '';
  }

  /** The loop-mode nvidia-smi, until it fails, goes silent or `signal` aborts; returns why it ended. */
  private async runNvidiaLoop(tool: string, signal: AbortSignal): Promise<string> {
    // A one-shot reading first: it tells how many lines make one sample and whether the driver answers.
    const first = await readGpus('nvidia', tool, this.opts.timeoutMs);
    if (first.error) return first.error;
    this.gpuCount = first.gpus.length;
    this.emit('nvidia', first.gpus, null);
    this.maybeList('nvidia', tool);
    if (signal.aborted) return '';
    // A lost GPU makes the loop exit non-zero (as the one-shot call does): read one-shot at the
    // interval instead, each reading with the lost GPU in its place, until the rig is whole again.
    if (first.gpus.some((g) => g.state === 'lost')) return this.runPolling({ vendor: 'nvidia', tool }, signal);
    const rows = this.gpuCount;
    return new Promise<string>((resolve) => {
      let child: ChildProcess;
      try {
        child = childProcess().spawn(tool, nvidiaGpuArgs(this.opts.intervalMs), {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, LC_ALL: 'C' },
          detached: true, // a group of its own: abandon() ends whatever it started too
        });
      } catch (e) {
        resolve(`nvidia-smi could not be started: ${(e as Error).message}`);
        return;
      }
      let pending: GpuReading[] = [];
      let partial = '';
      let said = '';
      let lastLine = this.now();
      let done = false;
      const end = (why: string) => {
        if (done) return;
        done = true;
        clearInterval(watchdog);
        signal.removeEventListener('abort', onAbort);
        abandon(child);
        resolve(why);
      };
      const onAbort = () => end('');
      signal.addEventListener('abort', onAbort, { once: true });
      const silentMs = Math.max(this.opts.timeoutMs, 3 * this.opts.intervalMs);
      const watchdog = setInterval(
        () => {
          if (this.now() - lastLine > silentMs) {
            end(`nvidia-smi printed nothing for ${Math.round(silentMs / 1000)} s (hung; killed)`);
          }
        },
        Math.min(1000, silentMs),
      );
      const flush = () => {
        if (pending.length) this.emit('nvidia', pending, null);
        pending = [];
        this.maybeList('nvidia', tool);
      };
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        lastLine = this.now();
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        // Output without newlines would grow this buffer without bound (and keep the watchdog quiet).
        if (partial.length > MAX_LINE) {
          end(
            `nvidia-smi printed a line of over ${MAX_LINE / (1024 * 1024)} MiB without a newline (a tool fault; restarted)`,
          );
          return;
        }
        for (const line of lines) {
          const g = parseGpuLine(line.trim());
          if (!g) {
            if (line.trim()) said = line.trim();
            continue;
          }
          // A new round starts with an index not above the last one's.
          const last = pending.at(-1);
          if (last && g.index <= last.index) flush();
          pending.push(g);
          if (pending.length >= rows) flush();
        }
      });
      child.stderr?.setEncoding('utf8').on('data', (c: string) => {
        said = c.trim().split('\n')[0] ?? said;
      });
      child.once('error', (e) => end(`nvidia-smi: ${e.message}`));
      child.once('close', (code, sig) => {
        end(
          `nvidia-smi (loop) exited with ${code !== null ? `code ${code}` : `signal ${sig}`}${said ? `: ${said}` : ''}`,
        );
      });
    });
  }
}
