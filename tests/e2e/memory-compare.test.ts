import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { cli, freePort, homePerTest, waitFor } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

// The estimate against what the real llama-server (the CPU build) allocated: its buffers are all
// host buffers, so there is no GPU figure to compare or keep for the preflight (the GPU path is
// tested with the H200 run's recordings: tests/unit/memory-calibration.test.ts and
// tests/integration/memory-calibration.test.ts); describe shows the host's share.

const homes = homePerTest();

describe('the estimate against the real CPU llama-server', () => {
  it("describe shows the host's estimate and buffers; nothing differs on a GPU, no event, nothing kept", async () => {
    const home = homes.make();
    home.addInstance('cpu1', realConfig(freePort()));
    const up = await cli(home.root, ['up', 'cpu1', '--wait', '30']);
    expect(up.code, up.stderr).toBe(0);
    type Described = {
      memory: {
        estimated_bytes: number | null;
        loaded_bytes: number | null;
        measured_bytes: number | null;
        per_device: unknown[];
        differs: boolean;
        host: { estimated_bytes: number; loaded_bytes: number } | null;
        preflight_bytes: number | null;
      } | null;
      load: { buffers: Array<{ device: string; bytes: number }> } | null;
      recent_events: Array<{ type: string }>;
    };
    const d = await waitFor(
      async () => {
        const r = JSON.parse((await cli(home.root, ['describe', 'cpu1', '--json'])).stdout) as Described;
        return r.memory ? r : undefined;
      },
      10_000,
      "the keeper's comparison",
    );
    const buffers = d.load?.buffers.reduce((a, b) => a + b.bytes, 0) ?? 0;
    expect(d.memory).toMatchObject({
      estimated_bytes: null,
      loaded_bytes: null,
      measured_bytes: null,
      per_device: [],
      differs: false,
      preflight_bytes: null,
    });
    expect(d.memory?.host?.loaded_bytes).toBe(buffers);
    // The estimator is calibrated against this server: its host share is within 10 %.
    const host = d.memory?.host ?? { estimated_bytes: 0, loaded_bytes: 1 };
    expect(Math.abs(host.estimated_bytes - host.loaded_bytes) / host.loaded_bytes).toBeLessThan(0.1);
    expect(d.recent_events.some((e) => e.type === 'memory')).toBe(false);
    const text = await cli(home.root, ['describe', 'cpu1']);
    expect(text.stdout).toMatch(
      /Memory \(estimate \/ server buffers \/ GPU tool\):\n {2}host +estimated \d+(\.\d)? MiB, loaded \d+(\.\d)? MiB\n/,
    );
    expect(text.stdout).not.toContain('Memory fit:');
    const store = new Store(openDatabase(path.join(home.root, 'state', 'llama-orch.db')).db);
    expect(store.listMemoryMeasurements()).toEqual([]);
    store.close();
  });
});
