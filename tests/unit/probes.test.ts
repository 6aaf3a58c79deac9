import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { probeExec, probeHttp, probeInference, probeTcp } from '../../src/health/probes.js';

let server: http.Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
});

function serve(handler: http.RequestListener): Promise<number> {
  server = http.createServer(handler);
  return new Promise((resolve) =>
    server?.listen(0, '127.0.0.1', () => resolve((server?.address() as AddressInfo).port)),
  );
}

const json = (res: http.ServerResponse, code: number, body: unknown) => {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('http probe (llama.cpp semantics)', () => {
  it('200 {"status":"ok"} is ok, with latency', async () => {
    const port = await serve((_req, res) => json(res, 200, { status: 'ok' }));
    const r = await probeHttp({ host: '127.0.0.1', port }, '/health', 1);
    expect(r.kind).toBe('ok');
    if (r.kind === 'ok') expect(r.latencyMs).toBeGreaterThan(0);
  });

  it('503 Loading model is loading, other 503s are failures', async () => {
    const port = await serve((req, res) =>
      req.url === '/health'
        ? json(res, 503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } })
        : json(res, 503, { error: 'busy' }),
    );
    expect((await probeHttp({ host: '127.0.0.1', port }, '/health', 1)).kind).toBe('loading');
    expect(await probeHttp({ host: '127.0.0.1', port }, '/other', 1)).toMatchObject({
      kind: 'failure',
      detail: '/other answered 503',
    });
  });

  it('401 is unauthorized; the key goes as a Bearer token', async () => {
    let auth: string | undefined;
    const port = await serve((req, res) => {
      auth = req.headers.authorization;
      json(res, auth === 'Bearer right' ? 200 : 401, { status: 'ok' });
    });
    expect((await probeHttp({ host: '127.0.0.1', port, apiKey: 'wrong' }, '/health', 1)).kind).toBe('unauthorized');
    expect((await probeHttp({ host: '127.0.0.1', port, apiKey: 'right' }, '/health', 1)).kind).toBe('ok');
    expect(auth).toBe('Bearer right');
  });

  it('falls back to /v1/health when /health is 404', async () => {
    const port = await serve((req, res) =>
      req.url === '/v1/health' ? json(res, 200, { status: 'ok' }) : json(res, 404, {}),
    );
    expect((await probeHttp({ host: '127.0.0.1', port }, '/health', 1)).kind).toBe('ok');
  });

  it('a hanging server ends at the timeout; a closed port is unreachable', async () => {
    const port = await serve(() => undefined);
    const t0 = Date.now();
    expect(await probeHttp({ host: '127.0.0.1', port }, '/health', 0.3)).toEqual({
      kind: 'failure',
      detail: '/health timed out after 0.3 s',
    });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await probeHttp({ host: '127.0.0.1', port: await closedPort() }, '/health', 1)).kind).toBe('unreachable');
  });
});

describe('tcp, exec and inference probes', () => {
  it('tcp: a listener is ok, a closed port is unreachable', async () => {
    const port = await serve(() => undefined);
    expect((await probeTcp({ host: '127.0.0.1', port }, 1)).kind).toBe('ok');
    expect((await probeTcp({ host: '127.0.0.1', port: await closedPort() }, 1)).kind).toBe('unreachable');
  });

  it('exec: exit 0 is ok, non-zero says why, a hang ends at the timeout', async () => {
    expect((await probeExec(['true'], 1, process.env)).kind).toBe('ok');
    expect(await probeExec(['sh', '-c', 'echo broken >&2; exit 3'], 1, process.env)).toEqual({
      kind: 'failure',
      detail: 'exec probe exited 3: broken',
    });
    const t0 = Date.now();
    expect(await probeExec(['sleep', '5'], 0.3, process.env)).toEqual({
      kind: 'failure',
      detail: 'exec probe timed out after 0.3 s',
    });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('inference: a completion is ok; one that never comes fails at the deadline', async () => {
    let body = '';
    const port = await serve((req, res) => {
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () =>
        req.url === '/completion' && !body.includes('"hang"') ? json(res, 200, { content: 'x' }) : undefined,
      );
    });
    expect((await probeInference({ host: '127.0.0.1', port }, 1)).kind).toBe('ok');
    expect(JSON.parse(body)).toMatchObject({ n_predict: 1 });
    server?.removeAllListeners('request');
    server?.on('request', () => undefined);
    expect(await probeInference({ host: '127.0.0.1', port }, 0.3)).toEqual({
      kind: 'failure',
      detail: 'inference timed out after 0.3 s',
    });
  });
});
