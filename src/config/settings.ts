import path from 'node:path';
import { z } from 'zod';
import { ExitCode, UserError, errnoCode } from '../domain/errors.js';
import type { Home } from '../domain/home.js';
import { readFailure, readRegularText } from '../platform/regular-file.js';
import { formatProblem, parseWithSchema, type ConfigProblem } from './load.js';
import { DAY_S, ENV_NAME_RE, isLoopbackHost, seconds } from './schema.js';
import { FleetSettingsSchema, RigSettingsSchema, fleetIssues } from './fleet-settings.js';

/**
 * The home-level settings (llama-orch.json at the home root; README, "One endpoint for the rig"):
 * what the daemon's proxy listens on, its key, the defaults of on-demand start and idle unload, and
 * the fleet (config/fleet-settings.ts).
 * A missing file means every default.
 */

/** HOST:PORT, with an IPv6 host in brackets ("[::1]:8080"). */
export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListen(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F.]*:[0-9a-fA-F:.]*)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

export function formatListen(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export const ProxySettingsSchema = z.strictObject({
  listen: z
    .string()
    .refine((s) => parseListen(s) !== undefined, 'must be HOST:PORT such as 127.0.0.1:8080 (IPv6: [::1]:8080)')
    .default('127.0.0.1:8080')
    .describe('Where the daemon serves /v1, /api and /metrics (daemon --listen overrides it)'),
  api_key_env: z
    .string()
    .regex(ENV_NAME_RE, 'must be an environment variable name such as LLAMA_ORCH_KEY')
    .optional()
    .describe("Name of the daemon's env var holding the key every request must send as Authorization: Bearer"),
  on_demand: z
    .boolean()
    .default(true)
    .describe("Default of instances' on_demand: start a stopped instance when a request names its model"),
  idle_ttl: seconds(1, 30 * DAY_S)
    .optional()
    .describe("Default of instances' idle_ttl: stop after this many seconds without proxied requests [none]"),
  start_timeout: seconds(1, DAY_S)
    .default(300)
    .describe('Seconds a request waits for its instance to start and become healthy (1 to 86400)'),
  upstream_timeout: seconds(1, DAY_S)
    .default(600)
    .describe('Seconds an upstream may stay silent: before its response headers and between chunks (1 to 86400)'),
  max_body_bytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 ** 3)
    .default(64 * 1024 * 1024)
    .describe('Largest request body accepted, bytes (1 KiB to 1 GiB)'),
  max_bodies_bytes: z
    .number()
    .int()
    .min(1024 ** 2)
    .max(64 * 1024 ** 3)
    .default(256 * 1024 * 1024)
    .describe(
      'Most bytes of request bodies held in memory at once, all requests together (1 MiB to 64 GiB); beyond, 503 with Retry-After',
    ),
  body_timeout: seconds(1, DAY_S)
    .default(60)
    .describe('Seconds a client may take to send its request body (1 to 86400); slower is 408'),
  max_connections: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(512)
    .describe('Most client connections open at once (1 to 1000000); more are closed at once'),
});

export const SettingsSchema = z
  .strictObject({
    $schema: z.string().optional(),
    proxy: ProxySettingsSchema.prefault({}),
    rig: RigSettingsSchema.prefault({}),
    fleet: FleetSettingsSchema.prefault({}),
  })
  .superRefine((s, ctx) => {
    for (const issue of fleetIssues(s.fleet, s.rig.name)) ctx.addIssue({ code: 'custom', ...issue });
    const listen = parseListen(s.proxy.listen);
    if (s.proxy.max_bodies_bytes < s.proxy.max_body_bytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['proxy', 'max_bodies_bytes'],
        message: `must be at least proxy.max_body_bytes (${s.proxy.max_body_bytes}), or no body of the largest size could be read`,
      });
    }
    if (listen && !isLoopbackHost(listen.host) && !s.proxy.api_key_env) {
      ctx.addIssue({
        code: 'custom',
        path: ['proxy', 'api_key_env'],
        message: `listen address "${s.proxy.listen}" is not loopback: set proxy.api_key_env so every request needs a key`,
      });
    }
  });

export type Settings = z.output<typeof SettingsSchema>;
export type ProxySettings = Settings['proxy'];

export function settingsPath(home: Home): string {
  return path.join(home.root, 'llama-orch.json');
}

/** The problems of llama-orch.json (none when it is fine or absent), for `config lint`. */
export function settingsProblems(home: Home): ConfigProblem[] {
  const file = settingsPath(home);
  let text: string;
  try {
    text = readRegularText(file);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    return [{ file, jsonPath: '$', message: readFailure(e) }];
  }
  return parseWithSchema(SettingsSchema, text, file).problems;
}

/**
 * What the file cannot show: the key variables the fleet settings name, set in this environment,
 * and their CA files readable (`config lint`; a run that needs one says the same).
 */
export function settingsEnvironmentProblems(home: Home, env: NodeJS.ProcessEnv): ConfigProblem[] {
  if (settingsProblems(home).length > 0) return [];
  const file = settingsPath(home);
  const { fleet } = loadSettings(home);
  const problems: ConfigProblem[] = [];
  const keyed: Array<[string, string | undefined, string | undefined]> = fleet.peers.map((p, i) => [
    `$.fleet.peers[${i}]`,
    p.api_key_env,
    p.ca_file,
  ]);
  if (fleet.discover) keyed.push(['$.fleet.discover', fleet.discover.api_key_env, fleet.discover.ca_file]);
  for (const [where, keyEnv, caFile] of keyed) {
    if (keyEnv && !env[keyEnv]) {
      problems.push({ file, jsonPath: `${where}.api_key_env`, message: `${keyEnv} is not set in this environment` });
    }
    if (caFile) {
      const abs = path.resolve(home.root, caFile);
      try {
        readRegularText(abs);
      } catch (e) {
        problems.push({ file, jsonPath: `${where}.ca_file`, message: `cannot read ${abs}: ${readFailure(e)}` });
      }
    }
  }
  return problems;
}

/** Reads llama-orch.json (every default when there is none); a bad file is a UserError naming each problem. */
export function loadSettings(home: Home): Settings {
  const file = settingsPath(home);
  let text: string;
  try {
    // Never waits on a FIFO; strict UTF-8, a BOM accepted.
    text = readRegularText(file);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return SettingsSchema.parse({});
    throw new UserError(
      `cannot read ${file}: ${readFailure(e)}`,
      ExitCode.general,
      'llama-orch.json must be a regular UTF-8 JSON file (or absent, for every default)',
    );
  }
  const r = parseWithSchema(SettingsSchema, text, file);
  if (!r.value) {
    throw new UserError(
      `invalid settings in ${file}:\n` + r.problems.map((p) => '  ' + formatProblem(p)).join('\n'),
      ExitCode.general,
      'fix the file (instances/llama-orch.schema.json, written by "llama-orch config schema", describes it)',
    );
  }
  return r.value;
}
