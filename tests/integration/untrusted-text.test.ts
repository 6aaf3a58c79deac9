// Untrusted text printed by the CLI (#26, item 5): a server's log and stderr tail, and model file
// names, reach the terminal without escape or control codes (the log keeps its colours; the files
// keep every byte).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, makeHome, writeFakeModel, type TestHome } from '../helpers/home.js';

const ESC = '\u001b';
const made: TestHome[] = [];
afterEach(() => {
  for (const h of made.splice(0)) fs.rmSync(h.root, { recursive: true, force: true });
});

describe('text we did not write, printed by the CLI', () => {
  it('logs: OSC 52 (clipboard), OSC 0 (title), a screen clear and C1 go; the colours stay; the file is untouched', async () => {
    const h = makeHome('llama-orch-untrusted-');
    made.push(h);
    h.addInstance('srv', fakeConfig(40100));
    const dir = path.join(h.root, 'logs', 'srv');
    fs.mkdirSync(dir, { recursive: true });
    const line = `${ESC}[33mwarn${ESC}[39m ${ESC}]52;c;ZXZpbA==\u0007${ESC}]0;pwned${ESC}\\${ESC}[2Jslot 0 \u009b2J done\u0007`;
    fs.writeFileSync(path.join(dir, 'stderr.log'), `${line}\n`);
    const r = await cli(h.root, ['logs', 'srv']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${ESC}[33mwarn${ESC}[39m slot 0 \\x9b2J done\\x07`);
    // --json carries the line as it was (JSON escapes it), for scripts; the file keeps every byte.
    const json = await cli(h.root, ['logs', 'srv', '--json']);
    expect((JSON.parse(json.stdout.trim()) as { line: string }).line).toBe(line);
    expect(fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8')).toBe(`${line}\n`);
  });

  it('models list: a model file named to set the title and clear the screen is listed harmlessly', async () => {
    const h = makeHome('llama-orch-untrusted-');
    made.push(h);
    const name = `${ESC}]0;TITLE\u0007${ESC}[2Jevil-Q4_K_M.gguf`;
    fs.mkdirSync(path.join(h.root, 'models'), { recursive: true });
    writeFakeModel(path.join(h.root, 'models', name));
    const r = await cli(h.root, ['models', 'list']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('evil-Q4_K_M.gguf');
    expect(r.stdout).not.toContain(ESC);
    expect(r.stdout).not.toContain('\u0007');
  });
});
