import { z } from 'zod';
import { DAY_S, ENV_NAME_RE, isLoopbackHost, seconds } from './schema.js';

/**
 * The fleet part of llama-orch.json (README, "Several rigs"): this rig's name, the other rigs' daemons
 * (`fleet.peers`), and rigs found in DNS (`fleet.discover`). Keys are named by environment variable,
 * never written in the file; they travel only in headers.
 */

/** A rig's name: a host name's letters, digits, dots, dashes and underscores, at most 63. */
export const RIG_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const RIG_NAME_MESSAGE = 'must be 1 to 63 letters, digits, ".", "-" or "_", starting with a letter or digit';

/** Why a peer URL is not a daemon's base address, or undefined when it is. */
export function peerUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be an http:// or https:// URL such as https://rig-b:8080';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `must be http:// or https:// (got ${url.protocol})`;
  if (url.username || url.password) return 'must not carry credentials: name the key with api_key_env';
  if (url.pathname !== '/' || url.search || url.hash) return "must be the daemon's base address, with no path or query";
  return undefined;
}

export const PeerSchema = z.strictObject({
  name: z.string().regex(RIG_NAME_RE, RIG_NAME_MESSAGE).describe('The rig as the fleet view shows it'),
  url: z
    .string()
    .refine((s) => peerUrlProblem(s) === undefined, { error: (i) => peerUrlProblem(String(i.input)) ?? 'bad URL' })
    .describe("That rig's daemon (its proxy address), http:// or https://"),
  api_key_env: z
    .string()
    .regex(ENV_NAME_RE, 'must be an environment variable name such as RIG_B_KEY')
    .optional()
    .describe("Env var holding that daemon's key (its proxy.api_key_env value), sent as Authorization: Bearer"),
  ca_file: z
    .string()
    .min(1)
    .optional()
    .describe('PEM file of the certificate authority that signed its https certificate [the system CAs]'),
});

export const DiscoverSchema = z.strictObject({
  dns: z.string().min(1).describe('A DNS name whose every A and AAAA record is a rig (a headless Service)'),
  port: z.number().int().min(1).max(65535).default(8080).describe("The rigs' daemon port"),
  interval: seconds(1, DAY_S).default(30).describe('Seconds between resolutions (1 to 86400)'),
  scheme: z.enum(['http', 'https']).default('http').describe('How to reach the rigs found'),
  api_key_env: z
    .string()
    .regex(ENV_NAME_RE, 'must be an environment variable name such as FLEET_KEY')
    .optional()
    .describe("Env var holding the rigs' key"),
  ca_file: z.string().min(1).optional().describe('PEM file of the CA of their https certificates'),
  server: z
    .string()
    .regex(/^[0-9a-fA-F.:[\]]+$/, 'must be an IP address with an optional port, such as 10.96.0.10 or 127.0.0.1:5353')
    .optional()
    .describe("DNS server to ask, IP[:PORT] [the system's resolvers]"),
});

export const FleetSettingsSchema = z.strictObject({
  peers: z.array(PeerSchema).default([]).describe("Other rigs' daemons"),
  discover: DiscoverSchema.optional(),
  allow_plain_http_keys: z
    .boolean()
    .default(false)
    .describe('Send keys over plain http:// to addresses that are not loopback (each use is warned about)'),
});

export const RigSettingsSchema = z.strictObject({
  name: z.string().regex(RIG_NAME_RE, RIG_NAME_MESSAGE).optional().describe("This rig's name [the host name]"),
});

export type FleetSettings = z.output<typeof FleetSettingsSchema>;
export type PeerSettings = z.output<typeof PeerSchema>;

/** True when a URL's host is this machine (keys may go there over plain http). */
export function loopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return isLoopbackHost(host) || host === 'localhost';
}

/** The checks across peers: names unique (and not this rig's), URLs distinct, keys not sent in clear. */
export function fleetIssues(
  fleet: FleetSettings,
  rigName: string | undefined,
): Array<{ path: (string | number)[]; message: string }> {
  const out: Array<{ path: (string | number)[]; message: string }> = [];
  const names = new Map<string, number>();
  const urls = new Map<string, number>();
  fleet.peers.forEach((p, i) => {
    const first = names.get(p.name.toLowerCase());
    if (first !== undefined) {
      out.push({
        path: ['fleet', 'peers', i, 'name'],
        message: `"${p.name}" is also the name of fleet.peers[${first}]`,
      });
    } else names.set(p.name.toLowerCase(), i);
    if (rigName && p.name.toLowerCase() === rigName.toLowerCase()) {
      out.push({ path: ['fleet', 'peers', i, 'name'], message: `"${p.name}" is this rig's own name (rig.name)` });
    }
    const key = peerUrlProblem(p.url) === undefined ? new URL(p.url).origin : p.url;
    const sameUrl = urls.get(key);
    if (sameUrl !== undefined) {
      out.push({ path: ['fleet', 'peers', i, 'url'], message: `${key} is also the URL of fleet.peers[${sameUrl}]` });
    } else urls.set(key, i);
    if (peerUrlProblem(p.url) === undefined) {
      const url = new URL(p.url);
      if (p.ca_file && url.protocol !== 'https:') {
        out.push({ path: ['fleet', 'peers', i, 'ca_file'], message: 'is only used with an https:// url' });
      }
      if (p.api_key_env && url.protocol === 'http:' && !loopbackUrl(url) && !fleet.allow_plain_http_keys) {
        out.push({
          path: ['fleet', 'peers', i, 'url'],
          message: `${p.url} is plain http to another machine: its key (${p.api_key_env}) would cross the network in clear; use https://, or set fleet.allow_plain_http_keys to accept that`,
        });
      }
    }
  });
  return out;
}
