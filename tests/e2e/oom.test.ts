// Out of memory on the real (CPU) llama-server: a KV cache no host can hold. The same path as a GPU's
// "cudaMalloc failed: out of memory" at load (tests/unit/oom.test.ts has the recorded GPU logs).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';
import { cli, freePort, homePerTest, waitForRow } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

const homes = homePerTest();

describe('out of memory at load, on the real llama-server', () => {
  it('an impossible context is a start failure with its reason, the host memory named, and no retry', async () => {
    const home = homes.make();
    // Wide K/V rows (4096 per layer and token) over 16M tokens: a KV cache of about 512 GiB.
    const m = llamaModel({ vocab: 300, embd: 4096, ff: 64, layers: 2, heads: 32, type: 'F16', byteTokens: true });
    writeGguf(path.join(home.root, 'models', 'wide.gguf'), m.metadata, m.tensors);
    home.addInstance(
      'wide',
      realConfig(freePort(), {
        model: { path: 'models/wide.gguf', context_size: 16_777_216 },
        server: { parallel: 1 },
      }),
    );
    // The memory preflight would refuse it (rightly): --force lets the server itself fail.
    const up = await cli(home.root, ['up', 'wide', '--force', '--wait', '60']);
    expect(up.code).not.toBe(0);
    const r = await waitForRow(home.root, 'wide', (r) => r.state === 'failed', 30_000, 'failed');
    expect(r.last_error).toMatch(
      /^out of host memory \(tried to allocate \d+ MiB for the KV cache\); the host has \d+ MiB available; to fit: lower model.context_size or server.parallel, or quantize the KV cache/,
    );
    expect(r.restarts).toBe(0);
    const events = await cli(home.root, ['events', 'wide', '--json']);
    const list = JSON.parse(events.stdout) as Array<{ kind?: string; message: string }>;
    expect(list.some((e) => /exited with code \d+ .*: out of host memory \(tried to allocate/.test(e.message))).toBe(
      true,
    );
    expect(list.some((e) => /out of host memory .*; the host has \d+ MiB available/.test(e.message))).toBe(true);
  });
});
