import { describe, expect, it } from 'vitest';
import { matchSnapshotArgs } from '../../src/cli/fast-path.js';

describe('matchSnapshotArgs (the snapshot fast path takes exact forms only)', () => {
  it('recognises ps and --once with --json and --home in the forms the full CLI accepts', () => {
    expect(matchSnapshotArgs(['ps'])).toEqual({ command: 'ps', json: false, home: undefined });
    expect(matchSnapshotArgs(['ps', '--json'])).toEqual({ command: 'ps', json: true, home: undefined });
    expect(matchSnapshotArgs(['--home', '/h', 'ps', '--json'])).toEqual({ command: 'ps', json: true, home: '/h' });
    expect(matchSnapshotArgs(['ps', '--home=/h'])).toEqual({ command: 'ps', json: false, home: '/h' });
    expect(matchSnapshotArgs(['--once'])).toEqual({ command: 'once', json: false, home: undefined });
    expect(matchSnapshotArgs(['--json', '--once', '--home', 'x'])).toEqual({ command: 'once', json: true, home: 'x' });
    // --json alone means --once --json in the full CLI too.
    expect(matchSnapshotArgs(['--json'])).toEqual({ command: 'once', json: true, home: undefined });
  });

  it('leaves everything else to the full CLI', () => {
    for (const args of [
      [],
      ['ps', '--help'],
      ['ps', '-h'],
      ['ps', 'extra'],
      ['ps', '--json', '--json'],
      ['ps', '--home', 'a', '--home', 'b'],
      ['ps', '--home'],
      ['ps', '--home', '--json'],
      ['ps', '--home='],
      ['ps', '--once'],
      ['--json', 'ps'], // program-level --json before ps is not ps's --json
      ['--once', 'ps'],
      ['--once', '--once'],
      ['up', 'demo-a'],
      ['describe', 'ps'],
      ['-V'],
      ['--version'],
    ])
      expect(matchSnapshotArgs(args), args.join(' ')).toBeUndefined();
  });
});
