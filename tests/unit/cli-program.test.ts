import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { buildProgram, main } from '../../src/cli/main.js';

// src/cli/main.ts defines the program without running it (src/entry.ts runs it), so it can be
// imported and driven in-process.

describe('the CLI program', () => {
  it('has the documented commands', () => {
    const names = buildProgram(async () => 0).commands.map((c) => c.name());
    expect(names).toEqual(
      expect.arrayContaining(['ps', 'up', 'restart', 'down', 'logs', 'describe', 'health', 'events']),
    );
    expect(names).toEqual(expect.arrayContaining(['config', 'daemon', 'service', 'init']));
    const daemon = buildProgram(async () => 0).commands.find((c) => c.name() === 'daemon');
    expect(daemon?.commands.map((c) => c.name())).toEqual(['run', 'start', 'stop', 'status']);
  });

  it('returns the documented exit code instead of exiting: an unknown instance is 2', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-program-'));
    fs.mkdirSync(path.join(home, 'instances'));
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['node', 'llama-orch', 'describe', 'nosuch', '--home', home], async () => 0)).toBe(2);
      expect(String(stderr.mock.calls[0]?.[0])).toContain('unknown instance "nosuch"');
    } finally {
      stderr.mockRestore();
    }
  });
});
