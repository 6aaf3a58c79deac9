import { describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, psJson, waitFor, waitForRow, type TestHome, homePerTest } from '../helpers/home.js';

const homes = homePerTest();

type Ev = { event_type: string; message: string; ts: string; meta: Record<string, unknown> | null };
const events = async (h: TestHome, name: string): Promise<Ev[]> =>
  JSON.parse((await cli(h.root, ['events', name, '--json', '-n', '500'])).stdout) as Ev[];
const get = async (h: TestHome, name: string) =>
  (await psJson(h.root)).find((r) => r.name === name) as Record<string, unknown>;

describe('health-driven supervision (fake server)', () => {
  it('shows loading and does not restart before startup_timeout', async () => {
    const home = homes.make();
    home.addInstance(
      'slow',
      fakeConfig(freePort(), { FAKE_LOAD_MS: '3000' }, { healthcheck: { startup_timeout: 10 } }),
    );
    const up = await cli(home.root, ['up', 'slow']);
    expect(up.code, up.stderr).toBe(0);
    const loading = await waitForRow(home.root, 'slow', (r) => r.health === 'loading', 5000, 'loading');
    expect(loading.health_detail).toMatch(/^loading \d+ s$/);
    expect((await cli(home.root, ['ps'])).stdout).toMatch(/slow\s+running\s+loading \d+ s/);
    await waitFor(async () => ((await get(home, 'slow')).health === 'ok' ? true : undefined), 8000, 'ok');
    expect((await events(home, 'slow')).filter((e) => e.event_type === 'spawn')).toHaveLength(1);
  });

  it('restarts a server still loading after startup_timeout, with the reason', async () => {
    const home = homes.make();
    home.addInstance(
      'stuck',
      fakeConfig(freePort(), { FAKE_LOAD_MS: '20000' }, { healthcheck: { startup_timeout: 1.5 } }),
    );
    await cli(home.root, ['up', 'stuck']);
    const ev = await waitFor(
      async () => (await events(home, 'stuck')).find((e) => e.event_type === 'health-restart'),
      8000,
      'health restart',
    );
    expect(ev.message).toMatch(/still loading after \d+ s \(startup_timeout 1.5 s\)/);
  });

  it('during the stop grace of a health restart the state is stopping, then backoff; restarts counts the restart', async () => {
    const home = homes.make();
    home.addInstance(
      'grace',
      fakeConfig(
        freePort(),
        { FAKE_HANG_HEALTH: '1', FAKE_IGNORE_TERM: '1' },
        { healthcheck: { timeout: 0.3, interval: 0.2, retries: 2, start_period: 0 }, stop_timeout: 3 },
      ),
    );
    await cli(home.root, ['up', 'grace']);
    const stopping = await waitForRow(home.root, 'grace', (r) => r.state === 'stopping', 8000, 'stopping');
    expect(stopping.pid).not.toBeNull();
    const states = (await events(home, 'grace')).filter((e) => e.event_type === 'state').map((e) => e.message);
    expect(states.at(-1)).toMatch(/^running -> stopping: restarting: unhealthy/);
    const again = await waitForRow(home.root, 'grace', (r) => r.restarts === 1, 10_000, 'the restart');
    expect(['starting', 'running', 'stopping']).toContain(again.state);
    const after = (await events(home, 'grace')).filter((e) => e.event_type === 'state').map((e) => e.message);
    expect(after.some((m) => /^stopping -> backoff: /.test(m))).toBe(true);
    expect((await cli(home.root, ['down', 'grace'])).code).toBe(0);
  });

  it('a hanging /health: each probe ends at its timeout, then unhealthy -> restart; describe says why', async () => {
    const home = homes.make();
    home.addInstance(
      'hang',
      fakeConfig(
        freePort(),
        { FAKE_HANG_HEALTH: '1' },
        { healthcheck: { timeout: 0.3, interval: 0.2, retries: 3, start_period: 0 } },
      ),
    );
    const t0 = Date.now();
    await cli(home.root, ['up', 'hang']);
    const ev = await waitFor(
      async () => (await events(home, 'hang')).find((e) => e.event_type === 'health-restart'),
      8000,
      'restart',
    );
    expect(ev.message).toContain('unhealthy: /health timed out after 0.3 s 3/3');
    // 3 probes of 0.3 s + 2 intervals of 0.2 s, plus start-up: well under 3 s.
    expect(Date.parse(ev.ts) - t0).toBeLessThan(3000);
    const d = JSON.parse((await cli(home.root, ['describe', 'hang', '--json'])).stdout) as {
      recent_events: Array<{ message: string }>;
      recent_health: Array<{ result: string; detail: string }>;
    };
    expect(d.recent_events.map((e) => e.message).join('\n')).toContain('/health timed out');
    expect(d.recent_health.some((h) => h.result === 'failure' && h.detail.includes('timed out after 0.3 s'))).toBe(
      true,
    );
  });

  it('the inference probe restarts a server that answers /health but never generates', async () => {
    const home = homes.make();
    home.addInstance(
      'mute',
      fakeConfig(
        freePort(),
        { FAKE_HANG_COMPLETION: '1' },
        // start_period: a loaded machine can take over 0.4 s to start the fake server, whose refused
        // connections would otherwise be the restart's reason instead of the silent generation.
        { healthcheck: { type: 'inference', timeout: 0.4, interval: 0.2, retries: 2, start_period: 3 } },
      ),
    );
    await cli(home.root, ['up', 'mute']);
    const ev = await waitFor(
      async () => (await events(home, 'mute')).find((e) => e.event_type === 'health-restart'),
      12000,
      'restart',
    );
    expect(ev.message).toContain('inference timed out after 0.4 s 2/2');
  });

  it('a rejected API key is reported as unauthorized, not a crash loop', async () => {
    const home = homes.make();
    home.addInstance(
      'auth',
      fakeConfig(freePort(), { FAKE_REQUIRE_KEY: 'server-side' }, { server: { api_key_env: 'TEST_KEY_WRONG' } }),
    );
    await cli(home.root, ['up', 'auth'], { TEST_KEY_WRONG: 'client-side-wrong' });
    const r = await waitForRow(home.root, 'auth', (r) => r.health === 'unauthorized', 6000, 'unauthorized');
    expect(r.health_detail).toContain('API key rejected');
    await new Promise((res) => setTimeout(res, 1000));
    expect((await events(home, 'auth')).filter((e) => e.event_type === 'spawn')).toHaveLength(1);
  });

  it('a flapping server: one restart in flight at a time, following the backoff delays', async () => {
    const home = homes.make();
    home.addInstance(
      'flap',
      fakeConfig(
        freePort(),
        { FAKE_FLAP: '600,5000' },
        {
          healthcheck: { timeout: 0.25, interval: 0.15, retries: 2, start_period: 0 },
          restart: { initial_delay: 0.3, multiplier: 2, max_delay: 5, jitter: 0, max_retries: 10 },
        },
      ),
    );
    await cli(home.root, ['up', 'flap']);
    await waitFor(
      async () => ((await events(home, 'flap')).filter((e) => e.event_type === 'spawn').length >= 4 ? true : undefined),
      20_000,
      '4 spawns',
    );
    const evs = (await events(home, 'flap')).filter((e) => ['spawn', 'exit', 'state'].includes(e.event_type));
    // spawn and exit strictly alternate: never two servers at once.
    const seq = evs.filter((e) => e.event_type !== 'state').map((e) => e.event_type);
    for (let i = 1; i < seq.length; i++) expect(seq[i]).not.toBe(seq[i - 1]);
    // each backoff waited at least its announced delay, and delays grow by the multiplier.
    const backoffs = evs.filter((e) => e.event_type === 'state' && e.meta?.to === 'backoff');
    const delays = backoffs.map((b) => b.meta?.delay_ms as number);
    expect(delays.slice(0, 3)).toEqual([300, 600, 1200]);
    for (const b of backoffs) {
      const next = evs.find((e) => e.event_type === 'spawn' && Date.parse(e.ts) > Date.parse(b.ts));
      if (next) expect(Date.parse(next.ts) - Date.parse(b.ts)).toBeGreaterThanOrEqual((b.meta?.delay_ms as number) - 5);
    }
  });

  it('health exits 0 only when every instance asked about is healthy', async () => {
    const home = homes.make();
    home.addInstance('h1', fakeConfig(freePort()));
    home.addInstance('h2', fakeConfig(freePort()));
    await cli(home.root, ['up', 'h1', '--wait', '10']);
    const one = await cli(home.root, ['health', 'h1', '--json']);
    expect(one.code).toBe(0);
    const rows = JSON.parse(one.stdout) as Array<{ name: string; ok: boolean; latency_ms: number; last_ok_at: string }>;
    expect(rows[0]).toMatchObject({ name: 'h1', ok: true });
    expect(rows[0]?.latency_ms).toBeGreaterThan(0);
    const all = await cli(home.root, ['health', '--all']);
    expect(all.code).toBe(1);
    expect(all.stdout).toMatch(/h2\s+- \(stopped\)/);
    // Only documented values in JSON: no health without a server.
    const h2 = JSON.parse((await cli(home.root, ['health', 'h2', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(h2[0]).toMatchObject({ name: 'h2', state: 'stopped', health: null, ok: false, reason: 'not running' });
  });
});
