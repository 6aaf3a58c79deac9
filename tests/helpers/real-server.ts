import { cachedServerBinary } from '../../src/config/binary.js';
import { TINY_MODEL } from './home.js';
import fs from 'node:fs';

/** The real llama-server built by the global set-up (scripts/setup-llama-server.sh). */
export function realServer(): string {
  const bin = process.env.LLAMA_SERVER ?? cachedServerBinary();
  if (!bin || !fs.existsSync(bin)) throw new Error('real llama-server missing: the global set-up should have built it');
  if (!fs.existsSync(TINY_MODEL)) throw new Error(`tiny model missing at ${TINY_MODEL}`);
  return bin;
}

export function realConfig(port: number, extra: Record<string, unknown> = {}) {
  const { server, ...rest } = extra as { server?: Record<string, unknown> };
  return {
    model: { path: 'models/tiny.gguf', alias: 'tiny', context_size: 256 },
    server: { binary: realServer(), port, parallel: 2, extra_args: ['--metrics'], ...server },
    healthcheck: { interval: 0.5, timeout: 2, start_period: 10 },
    restart: { initial_delay: 0.5, jitter: 0, max_retries: 5 },
    stop_timeout: 5,
    ...rest,
  };
}
