import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAKE_SERVER, cli, fakeConfig, freePort, homePerTest, waitForRow } from '../helpers/home.js';

// restart checks the new config before it stops anything, and up checks it again when it starts
// (the file may change meanwhile): each warning is still said once per command.

const homes = homePerTest();
const count = (text: string, re: RegExp) => text.match(re)?.length ?? 0;

describe('warnings of restart', () => {
  it('each warning prints once: a metal backend off macOS, a --help that does not answer', async () => {
    if (process.platform === 'darwin') return; // metal is no warning there
    const home = homes.make();
    const bin = path.join(home.root, 'llama-server');
    fs.copyFileSync(FAKE_SERVER, bin);
    fs.chmodSync(bin, 0o755);
    home.addInstance(
      'w1',
      fakeConfig(
        freePort(),
        {},
        { gpu: { backend: 'metal', devices: [] }, server: { binary: bin, extra_args: ['--metrics'] } },
      ),
    );
    const metal = /warning: w1: \S+: \$\.gpu\.backend: "metal"/g;
    const up = await cli(home.root, ['up', 'w1']);
    expect(up.code, up.stderr).toBe(0);
    expect(count(up.stderr, metal), up.stderr).toBe(1);
    await waitForRow(home.root, 'w1', (r) => r.state === 'running', 10_000, 'running');
    // A new build that does not answer --help in time: asked again by each command, once.
    fs.utimesSync(bin, new Date(), new Date(Date.now() + 10_000));
    const r = await cli(home.root, ['restart', 'w1'], { FAKE_HELP: 'hang' });
    expect(r.code, r.stderr).toBe(0);
    expect(count(r.stderr, metal), r.stderr).toBe(1);
    expect(count(r.stderr, /warning: w1: server\.extra_args not checked: .* did not exit within 5 s/g), r.stderr).toBe(
      1,
    );
    expect(count(r.stderr, /warning: /g), r.stderr).toBe(2);
  });
});
