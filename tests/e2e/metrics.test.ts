import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI, cli, freePort, homePerTest, psJson, waitFor } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';
import type { BenchResult } from '../../src/domain/metrics.js';

// Serving metrics and `bench` against the real llama-server (the tiny model generates tokens).

const homes = homePerTest();

async function complete(port: number, n: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/completion`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: `count ${Math.random()}`, n_predict: n, ignore_eos: true, cache_prompt: false }),
  });
  expect(res.status).toBe(200);
  await res.text();
}

const row = async (home: string, name: string) => (await psJson(home)).find((r) => r.name === name) ?? {};

describe('serving metrics from the real llama-server', () => {
  it('tokens/s, slots, queue and context reach ps; a restart gives no negative or absurd rate', async () => {
    const home = homes.make();
    const port = freePort();
    // No --metrics in extra_args: the builder passes it (metrics defaults to true).
    home.addInstance('m', realConfig(port, { server: { extra_args: [] }, healthcheck: { interval: 1, timeout: 2 } }));
    const up = await cli(home.root, ['up', 'm', '--wait', '30']);
    expect(up.code, up.stderr).toBe(0);
    const cmdline = fs.readFileSync(`/proc/${(await row(home.root, 'm')).pid as number}/cmdline`, 'utf8').split('\0');
    expect(cmdline.filter((a) => a === '--metrics')).toHaveLength(1);

    // Traffic for a few scrape intervals.
    let traffic = true;
    const load = (async () => {
      while (traffic) await complete(port, 32);
    })();
    const busy = await waitFor(
      async () => {
        const r = await row(home.root, 'm');
        return typeof r.tokens_per_s === 'number' && r.tokens_per_s > 0 ? r : undefined;
      },
      20_000,
      'tokens_per_s above 0 under traffic',
    );
    traffic = false;
    await load;
    expect(busy).toMatchObject({ slots_total: 2, ctx_size: 256, requests_deferred: 0 });
    expect(typeof busy.requests_processing).toBe('number');
    expect(Date.now() - Date.parse(busy.metrics_at as string)).toBeLessThan(10_000);
    const text = await cli(home.root, ['ps']);
    expect(text.stdout).toMatch(/TOK\/S\s+SLOTS\s+REQ/);

    // kill -9: a new run, counters from zero. Every rate recorded stays sane.
    const pid = busy.pid as number;
    process.kill(pid, 'SIGKILL');
    await waitFor(
      async () => {
        const r = await row(home.root, 'm');
        return r.pid !== pid && r.health === 'ok' && r.slots_total === 2 ? r : undefined;
      },
      30_000,
      'the restarted server with metrics',
    );
    await complete(port, 16);
    await new Promise((r) => setTimeout(r, 2500));
    const db = new Database(path.join(home.root, 'state', 'llama-orch.db'), { readonly: true });
    const rates = db
      .prepare(`SELECT tokens_per_s, prompt_tokens_per_s FROM metrics_history WHERE instance_name = 'm'`)
      .all() as Array<{ tokens_per_s: number | null; prompt_tokens_per_s: number | null }>;
    db.close();
    expect(rates.length).toBeGreaterThan(3);
    for (const r of rates) {
      for (const v of [r.tokens_per_s, r.prompt_tokens_per_s]) {
        if (v === null) continue;
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThan(1e6);
      }
    }
    const after = await row(home.root, 'm');
    expect(after.tokens_per_s === null || (after.tokens_per_s as number) >= 0).toBe(true);

    // describe shows the serving section with its sparklines.
    const d = await cli(home.root, ['describe', 'm']);
    expect(d.stdout).toContain('Serving (last 10 min):');
    expect(d.stdout).toMatch(/tokens\/s\s+[ ▁▂▃▄▅▆▇█]+\s+max/);
  }, 90_000);

  it('"metrics": false passes no --metrics and leaves the columns at "-"', async () => {
    const home = homes.make();
    home.addInstance('off', realConfig(freePort(), { server: { extra_args: [] }, metrics: false }));
    const up = await cli(home.root, ['up', 'off', '--wait', '30']);
    expect(up.code, up.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    const r = await row(home.root, 'off');
    const cmdline = fs.readFileSync(`/proc/${r.pid as number}/cmdline`, 'utf8').split('\0');
    expect(cmdline).not.toContain('--metrics');
    for (const k of ['tokens_per_s', 'slots_total', 'requests_processing', 'ctx_size', 'metrics_at'])
      expect(r[k]).toBeNull();
    const line = (await cli(home.root, ['ps'])).stdout.split('\n').find((l) => l.startsWith('off'));
    expect(line?.trimEnd()).toMatch(/-\s+-\s+-$/);
  }, 60_000);
});

describe('llama-orch bench with the real llama-server', () => {
  it("counts the streamed tokens as the server's timings do, keeps the result for describe", async () => {
    const home = homes.make();
    home.addInstance('b', realConfig(freePort()));
    const up = await cli(home.root, ['up', 'b', '--wait', '30']);
    expect(up.code, up.stderr).toBe(0);
    const r = await cli(home.root, [
      'bench',
      'b',
      '--requests',
      '6',
      '--concurrency',
      '2',
      '--prompt-tokens',
      '24',
      '--max-tokens',
      '40',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as BenchResult;
    expect(res).toMatchObject({ requests: 6, completed: 6, errors: 0, concurrency: 2, interrupted: false });
    // The tokens counted from the streams are the server's own predicted_n, request by request.
    expect(res.token_count_mismatches).toBe(0);
    expect(res.generated_tokens).toBe(6 * 40);
    expect(res.server.predicted_n).toBe(res.generated_tokens);
    // The prompt was sized with the server's tokenizer (plus the chat template's tokens).
    expect(res.server.prompt_n / 6).toBeGreaterThanOrEqual(24);
    expect(res.server.prompt_n / 6).toBeLessThan(24 + 32);
    expect(res.ttft_ms.p50).toBeGreaterThan(0);
    expect(res.ttft_ms.max).toBeGreaterThanOrEqual(res.ttft_ms.p95 as number);
    expect(res.tokens_per_s.p50).toBeGreaterThan(0);
    expect(res.tokens_per_s.aggregate).toBeGreaterThan(0);
    expect(res.prompt_tokens_per_s).toBeGreaterThan(0);

    const d = JSON.parse((await cli(home.root, ['describe', 'b', '--json'])).stdout) as { last_bench: unknown };
    expect(d.last_bench).toEqual(res);
    expect((await cli(home.root, ['describe', 'b'])).stdout).toMatch(/Last bench:\s+\S+: 6\/6 ok, concurrency 2/);

    // Too long for a slot (256 tokens here, as /props says): refused before anything is sent.
    const big = await cli(home.root, ['bench', 'b', '--prompt-tokens', '200', '--max-tokens', '100']);
    expect(big.code).toBe(1);
    expect(big.stderr).toContain('do not fit the 256-token context of one slot of b');

    // Ctrl-C: the run stops and prints what completed.
    const child = execa(
      'node',
      [CLI, 'bench', 'b', '--requests', '100000', '--max-tokens', '40', '--json', '--home', home.root],
      {
        reject: false,
      },
    );
    await new Promise((r) => setTimeout(r, 2500));
    child.kill('SIGINT');
    const int = await child;
    expect(int.exitCode).toBe(130);
    const partial = JSON.parse(String(int.stdout)) as BenchResult;
    expect(partial.interrupted).toBe(true);
    expect(partial.completed).toBeGreaterThan(0);
    expect(partial.completed).toBeLessThan(100000);
    expect(partial.errors).toBe(0);
  }, 90_000);

  it('a stopped or unknown instance is a clear error, not a hang', async () => {
    const home = homes.make();
    home.addInstance('idle', realConfig(freePort()));
    const stopped = await cli(home.root, ['bench', 'idle']);
    expect(stopped.code).toBe(7);
    expect(stopped.stderr).toContain('idle is not running (state: stopped)');
    // The hint can be pasted as it is: this shell's home is another one.
    expect(stopped.stderr).toContain(`llama-orch up idle --wait --home ${home.root}`);
    const bad = await cli(home.root, ['bench', 'idle', '--requests', '0x10']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--requests expects a whole number from 1 to 1000000, got "0x10"');
    const unknown = await cli(home.root, ['bench', 'nope']);
    expect(unknown.code).toBe(2);
  }, 30_000);
});
