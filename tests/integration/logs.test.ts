import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, cli, fakeConfig, freePort, waitFor, homePerTest } from '../helpers/home.js';

const homes = homePerTest();

describe('logs', () => {
  it('-f follows the server output through many rotations, every line once and in order', async () => {
    const home = homes.make();
    const N = 30_000;
    const port = freePort();
    home.addInstance('chatty', fakeConfig(port, {}, { logs: { max_bytes: 256 * 1024, backups: 40 } }));
    expect((await cli(home.root, ['up', 'chatty', '--wait', '10'])).code).toBe(0);
    const follower = execa('node', [CLI, 'logs', 'chatty', '-f', '--stdout', '-n', '0', '--home', home.root], {
      reject: false,
    });
    const seen: string[] = [];
    let buf = '';
    let ready = false;
    follower.stderr?.on('data', (c: Buffer) => (ready ||= c.toString().includes('following ')));
    follower.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('line ')) seen.push(l);
    });
    await waitFor(() => ready || undefined, 10_000, 'logs -f ready');
    // The server writes the lines only now, so the follower sees them arrive and rotate.
    const res = await fetch(`http://127.0.0.1:${port}/flood?n=${N}`);
    expect(res.status).toBe(200);
    await waitFor(() => (seen.length >= N ? true : undefined), 20_000, `${N} lines (have ${seen.length})`);
    follower.kill('SIGTERM');
    await follower;
    expect(seen).toHaveLength(N);
    for (let i = 0; i < N; i++)
      if (!seen[i]?.startsWith(`line ${String(i + 1).padStart(8, '0')} `)) throw new Error(`line ${i + 1}: ${seen[i]}`);
  });

  it('prints the last lines across rotated files, stderr by default', async () => {
    const home = homes.make();
    home.addInstance('quiet', fakeConfig(freePort(), { FAKE_STDERR: 'hello from stderr' }));
    await cli(home.root, ['up', 'quiet', '--wait', '10']);
    const r = await cli(home.root, ['logs', 'quiet', '-n', '5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('fake-llama-server: hello from stderr');
    const unknown = await cli(home.root, ['logs', 'nope']);
    expect(unknown.code).toBe(2);
  });
});
