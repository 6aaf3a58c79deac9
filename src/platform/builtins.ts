/**
 * Node's own modules whose ESM import costs more than it gives; the lint sends value imports here.
 * `process.getBuiltinModule` hands out the module as CommonJS's `require` does, in both bundles (the
 * ESM main and keeper bundles, the CommonJS fast path), and only when first called: `ps`, which
 * scripts poll, needs neither (each brings net and the streams with it, ~10 ms).
 */

/**
 * node:http. Since Node 22.5 the http module has lazy getters (WebSocket, CloseEvent, MessageEvent)
 * that load Node's bundled undici with tls, http2, zlib, crypto and worker_threads behind it. An ESM
 * `import ... from 'node:http'` builds the module's namespace by reading every export, getters
 * included, so it pays for all of that: measured on Node 22.23, 10.6 MiB more RSS and about 60 ms
 * more start-up (bench/BENCHMARKS.md, "The front door"); it was most of the keeper's growth on
 * Node 22. Type-only imports cost nothing and stay allowed.
 */
export const http = (): typeof import('node:http') => process.getBuiltinModule('node:http');

/**
 * node:child_process, loaded when first needed: it brings net, dgram and the streams with it (~5 ms
 * of start-up), and `ps`, which scripts poll, never spawns (bench/BENCHMARKS.md).
 */
export const childProcess = (): typeof import('node:child_process') => process.getBuiltinModule('node:child_process');

/** node:https, for the same reason as node:http, and it brings tls with it: only the fleet calls it. */
export const https = (): typeof import('node:https') => process.getBuiltinModule('node:https');
