import fs from 'node:fs';
import path from 'node:path';
import React from 'react';
import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import {
  COMMANDS,
  FOOTER_ALWAYS,
  FOOTER_KEYS,
  KEY_HELP,
  KEYS,
  bindings,
  keyOf,
  matchKey,
  type KeySpec,
} from '../../components/keymap.js';
import { Help } from '../../components/Panes.js';
import { footerText } from '../../components/view.js';
import { REPO } from '../helpers/home.js';

// components/keymap.ts: one table gives the matcher, the help screen and the footer's key line.

/** A key as the help screen and the README write it. */
const SHOWN: Record<string, string> = {
  upArrow: '↑',
  downArrow: '↓',
  pageUp: 'PgUp',
  pageDown: 'PgDn',
  home: 'Home',
  end: 'End',
  return: 'Enter',
  escape: 'Esc',
};
function shown(k: KeySpec): string {
  const [kind, name] = keyOf(k);
  return kind === 'char' ? name : kind === 'named' ? (SHOWN[name] ?? name) : `Ctrl-${name.toUpperCase()}`;
}

/** Ink's report of a key. */
function press(k: KeySpec): [string, Record<string, boolean>] {
  const [kind, name] = keyOf(k);
  return kind === 'char' ? [name, {}] : kind === 'named' ? ['', { [name]: true }] : [name, { ctrl: true }];
}

describe('the key table', () => {
  it('gives every command a key, and the matcher gives each key its command', () => {
    const bound = new Set(bindings().map(([, c]) => c));
    expect(COMMANDS.filter((c) => !bound.has(c))).toEqual([]);
    for (const [k, cmd] of bindings()) expect(matchKey(...press(k)), shown(k)).toBe(cmd);
    // The keys as before the table (tests of the App press them).
    expect(matchKey('', { upArrow: true })).toBe('up');
    expect(matchKey('j', {})).toBe('down');
    expect(matchKey('X', {})).toBe('stopAll');
    expect(matchKey('l', {})).toBe('logs');
    expect(matchKey('d', { ctrl: true })).toBe('pageDown');
    expect(matchKey('d', {})).toBe('details');
    expect(matchKey('c', { ctrl: true })).toBe('quit');
    expect(matchKey('', { return: true })).toBe('fullLog');
    expect(matchKey('', { escape: true })).toBe('cancel');
    expect(matchKey('z', {})).toBeUndefined();
    expect(matchKey('x', { ctrl: true })).toBeUndefined();
  });

  it('help lists each row with the keys it binds (g, G and Ctrl-C are the README’s and the footer’s only)', () => {
    expect(KEY_HELP).toEqual(KEYS.flatMap((r) => (r.help ? [r.help] : [])));
    const unlisted = new Set(['g', 'G', 'Ctrl-C', 'Esc']);
    for (const row of KEYS) {
      const keys = Object.values(row.bind).flatMap((ks) => ks ?? []);
      if (!row.help) {
        expect(keys.map(shown)).toEqual(['Esc']);
        continue;
      }
      const text = `${row.help[0]} ${row.help[1]}`;
      const tokens = new Set(text.split(/[\s,;:()]+/).flatMap((t) => (/^[↑↓]+$/.test(t) ? [...t] : [t])));
      for (const k of keys.map(shown).filter((k) => !unlisted.has(k))) {
        expect(k.length > 1 ? text.includes(k) : tokens.has(k), `${k} in "${text}"`).toBe(true);
      }
    }
    const { lastFrame, unmount } = render(<Help />);
    const frame = lastFrame() ?? '';
    unmount();
    for (const [k, what] of KEY_HELP) expect(frame).toContain(`${k.padEnd(12)} ${what}`);
  });

  it('the footer names keys its row binds, by rank, and always ends with ? help and q quit', () => {
    for (const row of KEYS) {
      const keys = Object.values(row.bind)
        .flatMap((ks) => ks ?? [])
        .map(shown);
      for (const f of [...(row.footer ?? []).map((e) => e.keys), ...(row.always ? [row.always[0]] : [])]) {
        for (const k of [...f]) expect(keys, f).toContain(k);
      }
    }
    expect(FOOTER_ALWAYS).toEqual([
      ['?', 'help'],
      ['q', 'quit'],
    ]);
    expect(FOOTER_KEYS.map(([k]) => k)).toEqual(['↑↓', 's', 'x', 'r', 'l', 'L', 'e', 'd', '/', 'f', 'o', 'c']);
    expect(footerText(300)).toBe(
      '↑↓ select · s start · x stop · r restart · l logs · L full log · e events · d details · / search · f filter · o sort · c pane · ? help · q quit',
    );
  });

  it("README's dashboard key table names exactly the keys that are bound", () => {
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('| keys ')).split('\n\n')[0] ?? '';
    const cells = table
      .split('\n')
      .slice(2)
      .map((l) => l.split('|')[1]?.trim() ?? '');
    expect(cells.length).toBeGreaterThan(10);
    const words: Record<string, string[]> = {
      Enter: ['Enter'],
      PgUp: ['PgUp'],
      PgDn: ['PgDn'],
      Home: ['Home'],
      End: ['End'],
      'Ctrl-U': ['Ctrl-U'],
      D: ['Ctrl-D'],
    };
    const named = new Set<string>();
    for (const cell of cells) {
      for (const [, code] of cell.matchAll(/`([^`]+)`/g)) {
        for (const t of (code ?? '').split(/\s+/)) for (const k of /^[↑↓]+$/.test(t) ? [...t] : [t]) named.add(k);
      }
      // Ctrl-U/D: Ctrl-U and Ctrl-D.
      for (const w of cell.replace(/`[^`]*`/g, ' ').split(/[\s,()/]+/)) {
        if (w) for (const k of words[w] ?? [`unknown word ${w}`]) named.add(k);
      }
    }
    const bound = new Set(bindings().map(([k]) => shown(k)));
    expect([...named].filter((k) => !bound.has(k))).toEqual([]);
    // Esc and Ctrl-C are said in words elsewhere (Esc goes back, instances keep running).
    expect([...bound].filter((k) => !named.has(k)).sort()).toEqual(['Ctrl-C', 'Esc']);
  });
});
