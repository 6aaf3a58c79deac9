import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cli, fakeConfig, freePort, makeHome, waitFor, type TestHome } from '../helpers/home.js';

let home: TestHome | undefined;
afterEach(async () => {
  await home?.cleanup();
  home = undefined;
});

describe('logs', () => {
  it('-f follows the server output through many rotations, every line once and in order', async () => {
    home = makeHome();
    const N = 30_000;
    home.addInstance(
      'chatty',
      fakeConfig(freePort(), { FAKE_FLOOD_LINES: String(N) }, { logs: { max_bytes: 256 * 1024, backups: 40 } }),
    );
    const follower = execa('node', [CLI, 'logs', 'chatty', '-f', '--stdout', '-n', '0', '--home', home.root], {
      reject: false,
    });
    const seen: string[] = [];
    let buf = '';
    follower.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('line ')) seen.push(l);
    });
    await new Promise((r) => setTimeout(r, 700));
    expect((await cli(home.root, ['up', 'chatty'])).code).toBe(0);
    await waitFor(() => (seen.length >= N ? true : undefined), 20_000, `${N} lines (have ${seen.length})`);
    follower.kill('SIGTERM');
    await follower;
    expect(seen).toHaveLength(N);
    for (let i = 0; i < N; i++)
      if (!seen[i]?.startsWith(`line ${String(i + 1).padStart(8, '0')} `)) throw new Error(`line ${i + 1}: ${seen[i]}`);
  });

  it('prints the last lines across rotated files, stderr by default', async () => {
    home = makeHome();
    home.addInstance('quiet', fakeConfig(freePort(), { FAKE_STDERR: 'hello from stderr' }));
    await cli(home.root, ['up', 'quiet', '--wait', '10']);
    const r = await cli(home.root, ['logs', 'quiet', '-n', '5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('fake-llama-server: hello from stderr');
    const unknown = await cli(home.root, ['logs', 'nope']);
    expect(unknown.code).toBe(2);
  });
});
