import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverInstanceNames, parseConfigText, validateName, formatProblem } from '../../src/config/load.js';
import { lintHome } from '../../src/config/lint.js';
import { homeAt } from '../../src/domain/home.js';
import { writeFakeModel } from '../helpers/home.js';
import { instanceJsonSchema, settingsJsonSchema } from '../../src/config/write-schema.js';

const base = { model: { path: 'm.gguf' }, server: { port: 8080 } };
const parse = (obj: unknown) => parseConfigText(JSON.stringify(obj), '/h/instances/x/config.json');

describe('config schema', () => {
  it('fills every documented default', () => {
    const { config, problems } = parse(base);
    expect(problems).toEqual([]);
    expect(config?.server.host).toBe('127.0.0.1');
    expect(config?.server.extra_args).toEqual([]);
    expect(config?.gpu).toEqual({ backend: 'cpu', devices: [] });
    expect(config?.healthcheck).toMatchObject({
      type: 'http',
      path: '/health',
      interval: 5,
      timeout: 3,
      retries: 3,
      start_period: 30,
      startup_timeout: 600,
    });
    expect(config?.restart).toEqual({
      enabled: true,
      initial_delay: 1,
      multiplier: 2,
      max_delay: 60,
      jitter: 0.2,
      max_retries: 5,
      min_uptime: 30,
      reset_after: 300,
    });
    expect(config?.stop_timeout).toBe(10);
    expect(config?.logs).toEqual({ max_bytes: 10 * 1024 * 1024, backups: 3 });
    expect(config?.autostart).toBe(false);
  });

  it('rejects unknown keys with their JSON path', () => {
    const { problems } = parse({ ...base, server: { port: 1, prot: 2 } });
    expect(problems).toHaveLength(1);
    expect(problems[0]?.jsonPath).toBe('$.server');
    expect(problems[0]?.message).toContain('"prot"');
  });

  it('requires the port and reports a missing one clearly', () => {
    const { problems } = parse({ model: { path: 'm' }, server: {} });
    expect(problems[0]).toMatchObject({ jsonPath: '$.server.port', message: 'required number is missing' });
  });

  it('rejects a non-loopback host without api_key_env, accepts it with one', () => {
    expect(parse({ ...base, server: { port: 1, host: '0.0.0.0' } }).problems[0]?.jsonPath).toBe('$.server.api_key_env');
    expect(parse({ ...base, server: { port: 1, host: '0.0.0.0', api_key_env: 'K' } }).problems).toEqual([]);
    expect(parse({ ...base, server: { port: 1, host: '127.0.0.2' } }).problems).toEqual([]);
  });

  it('rejects malformed GPU device ids and devices on the cpu backend', () => {
    const bad = parse({ ...base, gpu: { backend: 'cuda', devices: ['zero', -1] } });
    expect(bad.problems.map((p) => p.jsonPath)).toEqual(['$.gpu.devices[0]', '$.gpu.devices[1]']);
    expect(parse({ ...base, gpu: { backend: 'cuda', devices: [0, 'GPU-5f9c2a1e-0000-1111'] } }).problems).toEqual([]);
    expect(parse({ ...base, gpu: { devices: [0] } }).problems[0]?.jsonPath).toBe('$.gpu.devices');
  });

  it('reports invalid JSON with line and column', () => {
    const r = parseConfigText('{\n  "model": {,\n}', '/x/config.json');
    expect(r.problems[0]?.message).toMatch(/invalid JSON \(line 2, column \d+\)/);
  });

  it('validates instance names', () => {
    expect(validateName('demo-a')).toBeUndefined();
    for (const bad of ['../x', 'a b', 'Upper', '-x', '', 'x'.repeat(64)]) expect(validateName(bad)).toBeDefined();
  });

  it('generates a JSON schema that forbids unknown keys', () => {
    const s = instanceJsonSchema() as { properties: { server: { additionalProperties: boolean; required: string[] } } };
    expect(s.properties.server.additionalProperties).toBe(false);
    expect(s.properties.server.required).toContain('port');
  });
});

describe('config lint', () => {
  it("checks the home's llama-orch.json (the daemon's proxy settings) with the instances", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lint-settings-'));
    fs.mkdirSync(path.join(root, 'instances'));
    fs.writeFileSync(
      path.join(root, 'llama-orch.json'),
      JSON.stringify({ proxy: { listen: '0.0.0.0:8080', idle_ttl: 0 } }),
    );
    const report = await lintHome(homeAt(root), { env: {}, gpuInventory: () => undefined });
    expect(report.problems.map((p) => formatProblem(p, root))).toEqual([
      'llama-orch.json: $.proxy.idle_ttl: must be at least 1 (got 0)',
      'llama-orch.json: $.proxy.api_key_env: listen address "0.0.0.0:8080" is not loopback: set proxy.api_key_env so every request needs a key',
    ]);
    fs.writeFileSync(path.join(root, 'llama-orch.json'), JSON.stringify({ proxy: { listen: '0.0.0.0:8080' } }));
    const open = await lintHome(homeAt(root), { env: {}, gpuInventory: () => undefined });
    expect(open.problems.map((p) => formatProblem(p, root))).toEqual([
      'llama-orch.json: $.proxy.api_key_env: listen address "0.0.0.0:8080" is not loopback: set proxy.api_key_env so every request needs a key',
    ]);
    fs.rmSync(root, { recursive: true });
  });

  it('reports every problem of a broken home, one line each with file and JSON path', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lint-'));
    const add = (name: string, cfg: unknown) => {
      fs.mkdirSync(path.join(root, 'instances', name), { recursive: true });
      fs.writeFileSync(path.join(root, 'instances', name, 'config.json'), JSON.stringify(cfg));
    };
    writeFakeModel(path.join(root, 'm.gguf'));
    const bin = path.join(root, 'llama-server');
    fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
    add('a', { model: { path: 'm.gguf' }, server: { port: 9000, binary: bin } });
    add('b', { model: { path: 'm.gguf' }, server: { port: 9000, binary: bin } });
    add('c', { model: { path: 'm.gguf' }, server: { port: 9001, binary: bin, colour: 'red' } });
    add('d', { model: { path: 'missing.gguf' }, server: { port: 9002, binary: bin } });
    add('e', { model: { path: 'm.gguf' }, server: { port: 9003, binary: bin, host: '0.0.0.0' } });
    add('Bad Name', { model: { path: 'm.gguf' }, server: { port: 9004, binary: bin } });
    add('f', { model: { path: 'm.gguf' }, server: { port: 9005, binary: path.join(root, 'nope') } });
    add('g', {
      model: { path: 'm.gguf' },
      server: { port: 9006, binary: bin },
      gpu: { backend: 'cuda', devices: [0, 3] },
    });
    // The proxy routes by model id: "a" is instance a's name and h's alias; "shared" is claimed twice.
    add('h', { model: { path: 'm.gguf', alias: 'a', aliases: ['shared'] }, server: { port: 9007, binary: bin } });
    add('i', { model: { path: 'm.gguf', aliases: ['shared'] }, server: { port: 9008, binary: bin } });
    const report = await lintHome(homeAt(root), {
      env: {},
      gpuInventory: (b) =>
        b === 'cuda' ? { ok: true, vendor: 'nvidia', tool: '/bin/nvidia-smi', indices: [0, 1], uuids: [] } : undefined,
    });
    const lines = report.problems.map((p) => formatProblem(p, root));
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^instances\/a\/config.json: \$\.server\.port: port 9000 is also used by b/),
        expect.stringMatching(/^instances\/b\/config.json: \$\.server\.port: port 9000 is also used by a/),
        expect.stringMatching(/^instances\/c\/config.json: \$\.server: unknown key "colour"/),
        expect.stringMatching(/^instances\/d\/config.json: \$\.model\.path: model file .*missing\.gguf does not exist/),
        expect.stringMatching(/^instances\/e\/config.json: \$\.server\.api_key_env: host "0\.0\.0\.0" is not loopback/),
        expect.stringMatching(
          /^instances\/Bad Name\/config.json: \(directory name\): invalid instance name "Bad Name"/,
        ),
        expect.stringMatching(/^instances\/f\/config.json: \$\.server\.binary: llama-server not found/),
        expect.stringMatching(/^instances\/g\/config.json: \$\.gpu\.devices\[1\]: GPU 3 does not exist/),
        'instances/a/config.json: (directory name): model id "a" is also routed to h: the proxy needs each id to name one instance',
        'instances/h/config.json: $.model.alias: model id "a" is also routed to a: the proxy needs each id to name one instance',
        'instances/h/config.json: $.model.aliases[0]: model id "shared" is also routed to i: the proxy needs each id to name one instance',
        'instances/i/config.json: $.model.aliases[0]: model id "shared" is also routed to h: the proxy needs each id to name one instance',
      ]),
    );
    expect(report.problems).toHaveLength(12);
    fs.rmSync(root, { recursive: true });
  });
});

describe('the committed JSON schema', () => {
  it('matches the zod schema (regenerate with "llama-orch config schema")', () => {
    const committed = JSON.parse(
      fs.readFileSync(path.resolve(import.meta.dirname, '../../instances/config.schema.json'), 'utf8'),
    ) as unknown;
    expect(committed).toEqual(instanceJsonSchema());
    const settings = JSON.parse(
      fs.readFileSync(path.resolve(import.meta.dirname, '../../instances/llama-orch.schema.json'), 'utf8'),
    ) as unknown;
    expect(settings).toEqual(settingsJsonSchema());
  });
});

describe('config bounds and owned flags (hardening)', () => {
  it('every duration has a range: an overflowing or zero delay is a config error naming the field', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ restart: { initial_delay: 0 } }, '$.restart.initial_delay', /must be at least 0.1 \(got 0\)/],
      [{ restart: { max_delay: 3452108 } }, '$.restart.max_delay', /must be at most 86400 \(got 3452108\)/],
      [{ healthcheck: { interval: 2147484 } }, '$.healthcheck.interval', /must be at most 86400/],
      [{ healthcheck: { timeout: 0.01 } }, '$.healthcheck.timeout', /must be at least 0.1/],
      [{ stop_timeout: 99999 }, '$.stop_timeout', /must be at most 3600/],
      [{ restart: { initial_delay: 10, max_delay: 5 } }, '$.restart.max_delay', /shorter than initial_delay/],
      [{ logs: { max_bytes: 10 } }, '$.logs.max_bytes', /must be at least 1024/],
    ];
    for (const [extra, jsonPath, message] of cases) {
      const { problems } = parse({ ...base, ...(extra as object) });
      expect(problems, JSON.stringify(extra)).toHaveLength(1);
      expect(problems[0]?.jsonPath).toBe(jsonPath);
      expect(problems[0]?.message).toMatch(message);
    }
  });

  it('a wrong type says what was expected and what was given, not "missing"', () => {
    const { problems } = parse({ model: { path: 'm' }, server: { port: '8080' } });
    expect(problems[0]).toMatchObject({ jsonPath: '$.server.port', message: 'expected number, got string' });
  });

  it('an unknown key suggests the closest known key', () => {
    const { problems } = parse({ ...base, healthcheck: { intervall: 5 }, restrat: {} });
    const text = problems.map((p) => `${p.jsonPath}: ${p.message}`);
    expect(text).toContain('$.healthcheck: unknown key "intervall" (did you mean "interval"?)');
    expect(text).toContain('$: unknown key "restrat" (did you mean "restart"?)');
  });

  it('a flag the command builder owns in extra_args is an error naming the field to use instead', () => {
    const { problems } = parse({ ...base, server: { port: 1, extra_args: ['--host', '0.0.0.0', '--port=9', '-v'] } });
    expect(problems.map((p) => [p.jsonPath, p.message])).toEqual([
      [
        '$.server.extra_args[0]',
        '"--host" is set by llama-orch from server.host: use server.host instead of passing it in extra_args',
      ],
      [
        '$.server.extra_args[2]',
        '"--port=9" is set by llama-orch from server.port: use server.port instead of passing it in extra_args',
      ],
    ]);
    expect(parse({ ...base, server: { port: 1, extra_args: ['--api-key', 'secret'] } }).problems[0]?.message).toContain(
      'use server.api_key_env',
    );
  });
});

describe('instance discovery', () => {
  it('counts a symbolic link to a directory under instances/ (an instance kept elsewhere)', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'discover-'));
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'elsewhere-'));
    fs.mkdirSync(path.join(root, 'instances', 'real'), { recursive: true });
    fs.symlinkSync(elsewhere, path.join(root, 'instances', 'linked'));
    fs.symlinkSync(path.join(root, 'nowhere'), path.join(root, 'instances', 'dangling'));
    fs.writeFileSync(path.join(root, 'instances', 'notes.txt'), 'x');
    expect(discoverInstanceNames(homeAt(root))).toEqual(['linked', 'real']);
  });
});
