import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fleetGpus, fleetInstances, type FleetSources } from '../../src/app/fleet.js';
import { SettingsSchema } from '../../src/config/settings.js';
import { homeAt } from '../../src/domain/home.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import { cli, makeHome } from '../helpers/home.js';

// The fleet's reading of other rigs, against daemons that misbehave in ways a real one cannot be
// made to on demand: an endless answer, a wrong certificate, a 500, a body that is not JSON. Real
// sockets and a real TLS server (a certificate made by openssl for the test).

const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

function tmpHome() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-fleet-src-'));
  closers.push(() => fs.rmSync(root, { recursive: true, force: true }));
  return homeAt(root);
}

const row = (name: string) => ({ name, state: 'running', health: 'ok', warnings: [] }) as unknown as InstanceSnapshot;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

async function serve(handler: Handler, tls?: { key: string; cert: string }): Promise<string> {
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function sources(home: ReturnType<typeof homeAt>, fleet: unknown, env: NodeJS.ProcessEnv = {}, deadlineMs = 500) {
  const warnings: string[] = [];
  const src: FleetSources = {
    home,
    settings: SettingsSchema.parse({ rig: { name: 'here' }, fleet }),
    env,
    local: {
      instances: () => Promise.resolve([row('mine')]),
      gpus: () => Promise.resolve({ gpus: [], error: null }),
      rig: () => Promise.reject(new Error('not used')),
      events: () => Promise.resolve([]),
    },
    warn: (m) => warnings.push(m),
    deadlineMs,
  };
  return { src, warnings };
}

describe('fleet sources', () => {
  it('asks with the key in the header; remembers the answer and shows it when the rig stops answering', async () => {
    const home = tmpHome();
    let auth: string | undefined;
    let mode: 'ok' | 'silent' | 'endless' | 'notjson' | 'fail' = 'ok';
    const url = await serve((req, res) => {
      auth = req.headers.authorization;
      if (mode === 'ok') res.end(JSON.stringify([row('far')]));
      else if (mode === 'endless') {
        res.write('[');
        const t = setInterval(() => res.write(' '.repeat(65536)), 1);
        res.on('close', () => clearInterval(t));
      } else if (mode === 'notjson') res.end('<html>login</html>');
      else if (mode === 'fail') {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: { message: 'disk on fire' } }));
      }
      // silent: never answers
    });
    const { src } = sources(home, { peers: [{ name: 'far', url, api_key_env: 'FAR_KEY' }] }, { FAR_KEY: 's3cret' });
    const first = await fleetInstances(src);
    expect(auth).toBe('Bearer s3cret');
    expect(first.rows.map((r) => [r.rig, r.name, r.rig_state])).toEqual([
      ['here', 'mine', 'ok'],
      ['far', 'far', 'ok'],
    ]);
    expect(fs.existsSync(path.join(home.stateDir, 'fleet', 'far.json'))).toBe(true);

    mode = 'silent';
    const t0 = Date.now();
    const silent = await fleetInstances(src);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(silent.rigs[1]).toMatchObject({ state: 'unreachable', error: 'no answer in 500 ms' });
    expect(silent.rows[1]).toMatchObject({
      name: 'far',
      rig_state: 'unreachable',
      rig_seen_at: first.rigs[1]?.seen_at,
    });

    mode = 'endless';
    const endless = await fleetInstances(src);
    expect(endless.rigs[1]?.state).toBe('unreachable');

    mode = 'notjson';
    expect((await fleetInstances(src)).rigs[1]).toMatchObject({ state: 'error', error: 'HTTP 200' });
    mode = 'fail';
    expect((await fleetInstances(src)).rigs[1]).toMatchObject({ state: 'error', error: 'HTTP 500: disk on fire' });
    for (const r of [silent, endless]) expect(JSON.stringify(r)).not.toContain('s3cret');
  });

  it('plain http to another machine: the key is not sent unless allowed, and then a warning names the rig', async () => {
    const home = tmpHome();
    const fleet = { peers: [{ name: 'lan', url: 'http://192.0.2.10:8080', api_key_env: 'LAN_KEY' }] };
    expect(() => SettingsSchema.parse({ fleet })).toThrow(/plain http to another machine/);
    const { src } = sources(home, { ...fleet, allow_plain_http_keys: true }, { LAN_KEY: 'k' }, 300);
    const strict = {
      ...src,
      settings: { ...src.settings, fleet: { ...src.settings.fleet, allow_plain_http_keys: false } },
    };
    const refused = await fleetInstances(strict);
    expect(refused.rigs[1]).toMatchObject({ state: 'refused' });
    expect(refused.rigs[1]?.error).toMatch(/its key would go over plain http to 192\.0\.2\.10:8080/);
    const allowed = sources(home, { ...fleet, allow_plain_http_keys: true }, { LAN_KEY: 'k' }, 300);
    await fleetInstances(allowed.src);
    expect(allowed.warnings).toEqual([
      'rig lan: its key goes over plain http to 192.0.2.10:8080 (fleet.allow_plain_http_keys is set)',
    ]);
  });

  it('https with the CA from ca_file; without it the certificate is refused as a TLS error', async (ctx) => {
    const home = tmpHome();
    const dir = path.join(home.root, 'tls');
    fs.mkdirSync(dir, { recursive: true });
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          path.join(dir, 'key.pem'),
          '-out',
          path.join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
    } catch {
      ctx.skip(); // no openssl on this machine: nothing to make a certificate with
      return;
    }
    const tls = {
      key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'),
      cert: fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8'),
    };
    const url = await serve((_req, res) => res.end(JSON.stringify([row('secure')])), tls);
    const trusted = sources(home, { peers: [{ name: 'tls', url, ca_file: 'tls/cert.pem' }] });
    expect((await fleetInstances(trusted.src)).rows.map((r) => [r.name, r.rig_state])).toEqual([
      ['mine', 'ok'],
      ['secure', 'ok'],
    ]);
    const untrusted = sources(home, { peers: [{ name: 'tls2', url }] });
    const r = await fleetInstances(untrusted.src);
    expect(r.rigs[1]?.state).toBe('error');
    expect(r.rigs[1]?.error).toMatch(/^TLS: /);
    const missing = sources(home, { peers: [{ name: 'tls3', url, ca_file: 'tls/none.pem' }] });
    expect((await fleetInstances(missing.src)).rigs[1]?.error).toMatch(/cannot read its CA file .*none\.pem/);
  });

  it('gpus: a daemon whose GPU tool fails is reachable, with the reason; settings problems are named', async () => {
    const home = tmpHome();
    const url = await serve((_req, res) => {
      res.statusCode = 503;
      res.end(JSON.stringify({ error: { message: 'cannot read the GPUs: nvidia-smi timed out' } }));
    });
    const { src } = sources(home, { peers: [{ name: 'gpu', url }] });
    const r = await fleetGpus(src);
    expect(r.rigs.map((x) => x.state)).toEqual(['ok', 'ok']);
    expect(r.gpu_errors).toEqual({ gpu: 'cannot read the GPUs: nvidia-smi timed out' });

    const bad = SettingsSchema.safeParse({
      rig: { name: 'a' },
      fleet: {
        peers: [
          { name: 'b', url: 'http://127.0.0.3:1' },
          { name: 'b', url: 'http://127.0.0.4:1', apikey: 'x' },
          { name: 'a', url: 'ftp://x/' },
          { name: 'c', url: 'http://127.0.0.3:1/v1' },
        ],
      },
    });
    expect(bad.success).toBe(false);
    const messages = bad.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n') ?? '';
    expect(messages).toContain('fleet.peers.1: Unrecognized key: "apikey"');
    expect(messages).toContain('fleet.peers.2.url: must be http:// or https:// (got ftp:)');
    expect(messages).toContain("fleet.peers.3.url: must be the daemon's base address, with no path or query");
    // Across peers (checked once each peer is well formed): names, this rig's own name, URLs.
    const dup = SettingsSchema.safeParse({
      rig: { name: 'a' },
      fleet: {
        peers: [
          { name: 'b', url: 'http://127.0.0.3:1' },
          { name: 'B', url: 'http://127.0.0.4:1' },
          { name: 'A', url: 'http://127.0.0.3:1/' },
        ],
      },
    });
    const dupMessages = dup.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(dupMessages).toEqual([
      'fleet.peers.1.name: "B" is also the name of fleet.peers[0]',
      `fleet.peers.2.name: "A" is this rig's own name (rig.name)`,
      'fleet.peers.2.url: http://127.0.0.3:1 is also the URL of fleet.peers[0]',
    ]);
  });

  it('config lint names a key variable that is not set and a CA file that cannot be read', async () => {
    const home = makeHome('llama-orch-fleet-lint-');
    closers.push(() => fs.rmSync(home.root, { recursive: true, force: true }));
    fs.writeFileSync(
      path.join(home.root, 'llama-orch.json'),
      JSON.stringify({
        fleet: { peers: [{ name: 'b', url: 'https://127.0.0.3:8080', api_key_env: 'NOPE_KEY', ca_file: 'none.pem' }] },
      }),
    );
    const r = await cli(home.root, ['config', 'lint'], { NOPE_KEY: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'llama-orch.json: $.fleet.peers[0].api_key_env: NOPE_KEY is not set in this environment',
    );
    expect(r.stderr).toMatch(/llama-orch\.json: \$\.fleet\.peers\[0\]\.ca_file: cannot read .*none\.pem/);
    const ok = await cli(home.root, ['config', 'lint'], { NOPE_KEY: 'set' });
    expect(ok.stderr).not.toContain('NOPE_KEY');
  });
});
