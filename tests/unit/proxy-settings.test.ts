import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatListen, loadSettings, parseListen, settingsPath, SettingsSchema } from '../../src/config/settings.js';
import { ExitCode, UserError } from '../../src/domain/errors.js';
import { homeAt, type Home } from '../../src/domain/home.js';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function home(settings?: string | Record<string, unknown>): Home {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-settings-'));
  made.push(root);
  const h = homeAt(root);
  if (settings !== undefined) {
    fs.writeFileSync(settingsPath(h), typeof settings === 'string' ? settings : JSON.stringify(settings, null, 2));
  }
  return h;
}

function failure(h: Home): UserError {
  try {
    loadSettings(h);
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error('expected loadSettings to throw');
}

describe('loadSettings', () => {
  it('the file lives at the root of the home', () => {
    const h = home();
    expect(settingsPath(h)).toBe(path.join(h.root, 'llama-orch.json'));
  });

  it('no file: every default', () => {
    const s = loadSettings(home());
    expect(s.proxy).toEqual({
      listen: '127.0.0.1:8080',
      on_demand: true,
      start_timeout: 300,
      upstream_timeout: 600,
      max_body_bytes: 64 * 1024 * 1024,
      max_bodies_bytes: 256 * 1024 * 1024,
      body_timeout: 60,
      max_connections: 512,
    });
    expect(s.proxy.api_key_env).toBeUndefined();
    expect(s.proxy.idle_ttl).toBeUndefined();
  });

  it('an empty object and an empty proxy object are every default too', () => {
    const defaults = loadSettings(home()).proxy;
    expect(loadSettings(home({})).proxy).toEqual(defaults);
    expect(loadSettings(home({ proxy: {} })).proxy).toEqual(defaults);
  });

  it('reads what is set and keeps the defaults of the rest', () => {
    const s = loadSettings(
      home({
        $schema: './instances/llama-orch.schema.json',
        proxy: { listen: '127.0.0.1:9000', on_demand: false, idle_ttl: 900, api_key_env: 'ORCH_KEY' },
      }),
    );
    expect(s.proxy).toMatchObject({
      listen: '127.0.0.1:9000',
      on_demand: false,
      idle_ttl: 900,
      api_key_env: 'ORCH_KEY',
      start_timeout: 300,
      max_body_bytes: 64 * 1024 * 1024,
    });
  });

  it('invalid JSON: a UserError naming the file and where the text breaks', () => {
    const h = home('{\n  "proxy": {\n    "listen": "127.0.0.1:8080",\n  }\n}\n');
    const e = failure(h);
    expect(e.exitCode).toBe(ExitCode.general);
    expect(e.message).toContain(settingsPath(h));
    expect(e.message).toContain('invalid JSON');
    expect(e.message).toMatch(/line 4/);
    expect(e.hint).toContain('llama-orch config schema');
  });

  it('an unknown key in proxy: the JSON path and "did you mean"', () => {
    const h = home({ proxy: { listn: '127.0.0.1:8080' } });
    const e = failure(h);
    expect(e.message).toContain(settingsPath(h));
    expect(e.message).toContain('$.proxy');
    expect(e.message).toContain('unknown key "listn"');
    expect(e.message).toContain('did you mean "listen"?');
  });

  it('an unknown top-level key: "did you mean" against the top-level keys', () => {
    const e = failure(home({ proxi: {} }));
    expect(e.message).toContain('unknown key "proxi"');
    expect(e.message).toContain('did you mean "proxy"?');
  });

  it('a key far from any: lists the known keys instead', () => {
    const e = failure(home({ proxy: { zzzzzzzzzzzz: 1 } }));
    expect(e.message).toContain('unknown key "zzzzzzzzzzzz"');
    expect(e.message).toContain('known keys here:');
    expect(e.message).toContain('max_body_bytes');
  });

  it('each problem is named with its JSON path', () => {
    const e = failure(
      home({ proxy: { start_timeout: 0, upstream_timeout: 'soon', max_body_bytes: 10, on_demand: 'yes' } }),
    );
    expect(e.message).toContain('$.proxy.start_timeout: must be at least 1 (got 0)');
    expect(e.message).toContain('$.proxy.upstream_timeout: expected number, got string');
    expect(e.message).toContain('$.proxy.max_body_bytes: must be at least 1024 (got 10)');
    expect(e.message).toContain('$.proxy.on_demand: expected boolean, got string');
  });

  it('a listen address that is not loopback needs api_key_env', () => {
    const e = failure(home({ proxy: { listen: '0.0.0.0:8080' } }));
    expect(e.message).toContain('$.proxy.api_key_env');
    expect(e.message).toContain('not loopback');
    expect(loadSettings(home({ proxy: { listen: '0.0.0.0:8080', api_key_env: 'ORCH_KEY' } })).proxy.listen).toBe(
      '0.0.0.0:8080',
    );
  });

  it.each(['127.0.0.1:8080', '127.1.2.3:8080', 'localhost:8080', '[::1]:8080'])(
    'loopback %s needs no key',
    (listen) => {
      expect(loadSettings(home({ proxy: { listen } })).proxy.listen).toBe(listen);
    },
  );

  it.each(['[::]:8080', '192.168.1.10:8080', 'my-host.lan:8080'])('%s is not loopback', (listen) => {
    expect(failure(home({ proxy: { listen } })).message).toContain('not loopback');
  });

  it.each(['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', ':8080', '::1:8080', 'host:port', '127.0.0.1:80808'])(
    'listen %s is refused as an address',
    (listen) => {
      const e = failure(home({ proxy: { listen } }));
      expect(e.message).toContain('$.proxy.listen');
      expect(e.message).toContain('HOST:PORT');
    },
  );

  it('api_key_env must be an env var name', () => {
    const e = failure(home({ proxy: { api_key_env: 'MY-KEY' } }));
    expect(e.message).toContain('$.proxy.api_key_env');
  });

  it('idle_ttl is at least 1 s and at most 30 days', () => {
    expect(failure(home({ proxy: { idle_ttl: 0.5 } })).message).toContain('$.proxy.idle_ttl');
    expect(failure(home({ proxy: { idle_ttl: 31 * 86_400 } })).message).toContain('$.proxy.idle_ttl');
    expect(loadSettings(home({ proxy: { idle_ttl: 30 * 86_400 } })).proxy.idle_ttl).toBe(30 * 86_400);
  });

  it('a path that cannot be read as a file is a UserError naming it', () => {
    const h = home();
    fs.mkdirSync(settingsPath(h));
    const e = failure(h);
    expect(e.message).toContain(`cannot read ${settingsPath(h)}`);
  });
});

describe('SettingsSchema', () => {
  it('parses {} to the defaults (the daemon with no file)', () => {
    const s = SettingsSchema.parse({});
    expect(s.proxy.listen).toBe('127.0.0.1:8080');
    expect(s.proxy.on_demand).toBe(true);
  });
});

describe('parseListen and formatListen', () => {
  it.each([
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['localhost:1', 'localhost', 1],
    ['0.0.0.0:65535', '0.0.0.0', 65535],
    ['[::1]:8080', '::1', 8080],
    ['[::]:9000', '::', 9000],
    ['[fe80::1:2]:443', 'fe80::1:2', 443],
    ['  127.0.0.1:8080  ', '127.0.0.1', 8080],
  ])('%s is host %s port %i', (text, host, port) => {
    expect(parseListen(text)).toEqual({ host, port });
  });

  it.each([
    '',
    '8080',
    ':8080',
    '127.0.0.1',
    '127.0.0.1:',
    '127.0.0.1:0',
    '127.0.0.1:65536',
    '127.0.0.1:99999',
    '127.0.0.1:123456',
    '127.0.0.1:-1',
    '127.0.0.1:80a',
    '::1:8080',
    '[::1]8080',
    '[::1]',
    '[not-ipv6]:80',
    'a b:80',
    'http://127.0.0.1:8080',
  ])('%j is refused', (text) => {
    expect(parseListen(text)).toBeUndefined();
  });

  it('formats IPv6 in brackets, and reads back what it wrote', () => {
    expect(formatListen({ host: '::1', port: 8080 })).toBe('[::1]:8080');
    expect(formatListen({ host: '127.0.0.1', port: 80 })).toBe('127.0.0.1:80');
    for (const a of [
      { host: '::1', port: 8080 },
      { host: 'fe80::1', port: 1 },
      { host: 'localhost', port: 65535 },
    ]) {
      expect(parseListen(formatListen(a))).toEqual(a);
    }
  });
});
