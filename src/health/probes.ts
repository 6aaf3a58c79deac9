import net from 'node:net';
import { childProcess } from '../platform/builtins.js';
import type { InstanceConfig } from '../config/schema.js';
import type { ProbeOutcome } from './machine.js';
import { connectHost, httpRequest, type HttpResult, type HttpTarget } from '../platform/http.js';

/** Where a probe goes. */
export type ProbeTarget = HttpTarget;

/**
 * Health probes. Each has its own deadline and never blocks the keeper.
 */

function errorOutcome(e: unknown, timeoutS: number, what: string): ProbeOutcome {
  const err = e as NodeJS.ErrnoException & { name?: string };
  if (err?.name === 'AbortError' || err?.name === 'TimeoutError' || err?.code === 'ABORT_ERR') {
    return { kind: 'failure', detail: `${what} timed out after ${timeoutS} s` };
  }
  if (err?.code === 'ECONNREFUSED') return { kind: 'unreachable', detail: 'connection refused' };
  if (err?.code === 'ECONNRESET') return { kind: 'failure', detail: `${what} connection reset` };
  return { kind: 'failure', detail: `${what} failed: ${err?.code ?? err?.message ?? String(e)}` };
}

export function classifyHealthResponse(res: HttpResult, path: string): ProbeOutcome {
  if (res.status === 200) {
    try {
      const json = JSON.parse(res.body) as { status?: string };
      if (json.status === undefined || json.status === 'ok') return { kind: 'ok', latencyMs: res.latencyMs };
      return { kind: 'failure', detail: `${path} said status "${json.status}"`, latencyMs: res.latencyMs };
    } catch {
      return { kind: 'ok', latencyMs: res.latencyMs };
    }
  }
  if (res.status === 503 && /loading model/i.test(res.body)) return { kind: 'loading', latencyMs: res.latencyMs };
  if (res.status === 401 || res.status === 403)
    return { kind: 'unauthorized', detail: `${path} answered ${res.status}` };
  return { kind: 'failure', detail: `${path} answered ${res.status}`, latencyMs: res.latencyMs };
}

export async function probeHttp(target: ProbeTarget, path: string, timeoutS: number): Promise<ProbeOutcome> {
  try {
    const res = await httpRequest(target, 'GET', path, timeoutS * 1000);
    if (res.status === 404 && path === '/health') {
      const alt = await httpRequest(target, 'GET', '/v1/health', timeoutS * 1000);
      return classifyHealthResponse(alt, '/v1/health');
    }
    return classifyHealthResponse(res, path);
  } catch (e) {
    return errorOutcome(e, timeoutS, path);
  }
}

export function probeTcp(target: ProbeTarget, timeoutS: number): Promise<ProbeOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const sock = net.connect({ host: connectHost(target.host), port: target.port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ kind: 'failure', detail: `tcp connect timed out after ${timeoutS} s` });
    }, timeoutS * 1000);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ kind: 'ok', latencyMs: performance.now() - started });
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      resolve(errorOutcome(e, timeoutS, 'tcp'));
    });
  });
}

export function probeExec(argv: string[], timeoutS: number, env: NodeJS.ProcessEnv): Promise<ProbeOutcome> {
  const started = performance.now();
  const [file, ...args] = argv;
  return new Promise((resolve) => {
    childProcess().execFile(
      file as string,
      args,
      { timeout: timeoutS * 1000, env, killSignal: 'SIGKILL' },
      (err, _out, stderr) => {
        if (!err) return resolve({ kind: 'ok', latencyMs: performance.now() - started });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
        if (e.killed) return resolve({ kind: 'failure', detail: `exec probe timed out after ${timeoutS} s` });
        const tail = String(stderr).trim().split('\n').pop() ?? '';
        resolve({ kind: 'failure', detail: `exec probe exited ${String(e.code)}${tail ? `: ${tail}` : ''}` });
      },
    );
  });
}

/** A 1-token completion with a deadline: proves the server can still generate (llama.cpp #13281). */
export async function probeInference(target: ProbeTarget, timeoutS: number): Promise<ProbeOutcome> {
  try {
    const res = await httpRequest(
      target,
      'POST',
      '/completion',
      timeoutS * 1000,
      JSON.stringify({ prompt: 'ok', n_predict: 1, cache_prompt: false }),
    );
    if (res.status === 200) return { kind: 'ok', latencyMs: res.latencyMs };
    return classifyHealthResponse(res, '/completion');
  } catch (e) {
    return errorOutcome(e, timeoutS, 'inference');
  }
}

export function runProbe(
  hc: InstanceConfig['healthcheck'],
  target: ProbeTarget,
  env: NodeJS.ProcessEnv,
): Promise<ProbeOutcome> {
  switch (hc.type) {
    case 'http':
      return probeHttp(target, hc.path, hc.timeout);
    case 'tcp':
      return probeTcp(target, hc.timeout);
    case 'exec':
      return probeExec(hc.command ?? ['false'], hc.timeout, env);
    case 'inference':
      return probeInference(target, hc.timeout);
  }
}
