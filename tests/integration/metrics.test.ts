import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, psJson, waitFor } from '../helpers/home.js';

// What the real llama-server cannot do on demand: a /metrics that never answers. (The fake serves the
// real names and kinds; tests/e2e/metrics.test.ts covers the real server.)

const homes = homePerTest();

describe('the metrics scrape with a fake server', () => {
  it('a /metrics that never answers leaves the instance healthy, the figures unknown, one line in keeper.log', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance(
      'slow',
      fakeConfig(port, { FAKE_HANG_METRICS: '1' }, { healthcheck: { interval: 0.5, timeout: 0.5 } }),
    );
    const up = await cli(home.root, ['up', 'slow', '--wait', '10']);
    expect(up.code, up.stderr).toBe(0);
    const keeperLog = path.join(home.root, 'logs', 'slow', 'keeper.log');
    await waitFor(
      () => (fs.readFileSync(keeperLog, 'utf8').includes('cannot read the metrics') ? true : undefined),
      10_000,
      'the scrape failure in keeper.log',
    );
    await new Promise((r) => setTimeout(r, 3000)); // several more scrapes time out
    const row = (await psJson(home.root)).find((r) => r.name === 'slow');
    expect(row).toMatchObject({
      state: 'running',
      health: 'ok',
      tokens_per_s: null,
      slots_total: null,
      metrics_at: null,
    });
    const lines = fs
      .readFileSync(keeperLog, 'utf8')
      .split('\n')
      .filter((l) => l.includes('cannot read the metrics'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('/metrics: no answer within 0.5 s');
    const events = await cli(home.root, ['events', 'slow', '--json']);
    expect(events.stdout).not.toContain('unhealthy');
  }, 30_000);

  it('rates follow the traffic and fall to 0 when it stops', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('f', fakeConfig(port, {}, { healthcheck: { interval: 1, timeout: 0.5 } }));
    expect((await cli(home.root, ['up', 'f', '--wait', '10'])).code).toBe(0);
    const until = Date.now() + 4000;
    let sent = 0;
    while (Date.now() < until) {
      await fetch(`http://127.0.0.1:${port}/completion`, { method: 'POST', body: '{}' }).then((r) => r.text());
      sent++;
    }
    const busy = await waitFor(
      async () => {
        const r = (await psJson(home.root)).find((x) => x.name === 'f');
        return typeof r?.tokens_per_s === 'number' && r.tokens_per_s > 0 ? r : undefined;
      },
      5000,
      'a rate',
    );
    // The fake counts one generated and four prompt tokens per completion.
    expect(busy.prompt_tokens_per_s).toBeCloseTo((busy.tokens_per_s as number) * 4, 0);
    expect(busy.tokens_per_s as number).toBeLessThanOrEqual(sent);
    await waitFor(
      async () => ((await psJson(home.root)).find((x) => x.name === 'f')?.tokens_per_s === 0 ? true : undefined),
      6000,
      'tokens_per_s back to 0',
    );
  }, 30_000);

  it('config lint warns when "metrics": false meets --metrics in extra_args', async () => {
    const home = homes.make();
    const file = home.addInstance(
      'both',
      fakeConfig(freePort(), {}, { metrics: false, server: { extra_args: ['--metrics'] } }),
    );
    const lint = await cli(home.root, ['config', 'lint', '--json']);
    expect(lint.code, lint.stderr).toBe(0);
    const report = JSON.parse(lint.stdout) as { warnings: Array<{ file: string; jsonPath: string; message: string }> };
    expect(report.warnings).toEqual([
      expect.objectContaining({
        file,
        jsonPath: '$.server.extra_args[0]',
        message: expect.stringContaining('"metrics": false means llama-orch never reads it'),
      }),
    ]);
  });
});
