// Untrusted text reaching the operator's terminal (#26, item 5): one sanitiser for terminal text and
// one for /metrics labels, used where names, logs and tool output are shown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hasControl, labelSafe, safeName, terminalSafe } from '../../src/domain/sanitize.js';
import { attributeGpus } from '../../src/engine/gpus.js';
import { exposition, ProxyCounters } from '../../src/proxy/exposition.js';
import { sampleOnce } from '../../src/platform/gpu/sampler.js';

const ESC = '\u001b';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('terminalSafe', () => {
  it('removes OSC (title, clipboard, hyperlinks), CSI and C1; shows other control characters as text', () => {
    expect(terminalSafe(`a${ESC}]52;c;ZXZpbA==\u0007b`)).toBe('ab'); // OSC 52 clipboard, BEL-terminated
    expect(terminalSafe(`${ESC}]0;TITLE${ESC}\\x`)).toBe('x'); // OSC 0 title, ST-terminated
    expect(terminalSafe(`${ESC}]8;;https://evil${ESC}\\click${ESC}]8;;${ESC}\\`)).toBe('click'); // OSC 8
    expect(terminalSafe(`${ESC}[2Jcleared${ESC}[H`)).toBe('cleared');
    expect(terminalSafe('c1\u009b2Jcsi')).toBe('c1\\x9b2Jcsi');
    expect(terminalSafe('bell\u0007 cr\r bs\b tab\tok')).toBe('bell\\x07 cr\\x0d bs\\x08 tab\tok');
    expect(terminalSafe('plain text 第1回 🚀')).toBe('plain text 第1回 🚀');
  });

  it('a log line keeps its colours, nothing else', () => {
    const line = `${ESC}[33mwarn${ESC}[39m slot 1 ${ESC}]0;pwned\u0007done`;
    expect(terminalSafe(line, true)).toBe(`${ESC}[33mwarn${ESC}[39m slot 1 done`);
  });

  it('names: one line, no control character at all; remote names with one are recognised', () => {
    expect(safeName('python3\nrm -rf /')).toBe('python3\\x0arm -rf /');
    expect(safeName(`${ESC}x`)).not.toContain(ESC);
    expect(hasControl(`${ESC}]0;TITLE\u0007${ESC}[2Jevil-Q4_K_M.gguf`)).toBe(true);
    expect(hasControl('Qwen2.5-7B-Instruct-Q4_K_M.gguf')).toBe(false);
  });

  it('label values: the exposition escapes, no raw control character', () => {
    expect(labelSafe('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    // eslint-disable-next-line no-control-regex
    expect(labelSafe(`x${ESC}]52;c;e\u0007`)).not.toMatch(/[\u0000-\u001f]/);
  });
});

describe('where it is used', () => {
  it("a GPU process named with an OSC 52: nothing of it reaches gpus, the panel's users or /metrics", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-osc-'));
    dirs.push(dir);
    // The real format, with a process (any local user's) named to write the clipboard.
    const apps = `4242, python3 ${ESC}]52;c;ZXZpbA==\u0007, 12345, GPU-aaaaaaaa-0000`;
    const row = `0, GPU-aaaaaaaa-0000, NVIDIA H200 ${ESC}]0;title\u0007, 40, 4569, 143771, 40, 121.75, 700.00`;
    fs.writeFileSync(path.join(dir, 'apps.txt'), `${apps}\n`);
    fs.writeFileSync(path.join(dir, 'row.txt'), `${row}\n`);
    fs.writeFileSync(
      path.join(dir, 'nvidia-smi'),
      `#!/bin/sh\ncase "$*" in *query-gpu*) cat '${dir}/row.txt';; *compute-apps*) cat '${dir}/apps.txt';; esac\n`,
      { mode: 0o755 },
    );
    const s = await sampleOnce({ env: { PATH: `${dir}:/usr/bin:/bin` }, timeoutMs: 3000 });
    const view = attributeGpus(s, [], { procs: { stat: () => undefined, cmdline: () => undefined }, nsPids: () => [] });
    const text = JSON.stringify(view.gpus);
    expect(text).not.toContain('\\u001b');
    expect(view.gpus[0]?.processes[0]?.command).toBe('python3 ');
    expect(view.gpus[0]?.name).toBe('NVIDIA H200 ');
    const page = exposition({ instances: [], gpus: view.gpus, counts: new Map(), counters: new ProxyCounters() });
    // eslint-disable-next-line no-control-regex
    expect(page).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
  });
});
