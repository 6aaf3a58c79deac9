import { EventEmitter } from 'node:events';

/** An in-memory terminal for Ink's `render`: a size, and each write handed to `onWrite`. */
export class FakeTerminal extends EventEmitter {
  isTTY = true;
  constructor(
    public columns: number,
    public rows: number,
    private readonly onWrite: (s: string) => void,
  ) {
    super();
  }
  write(s: string): boolean {
    this.onWrite(s);
    return true;
  }
}

/** A stdin Ink accepts (raw mode and all) that never sends a key. */
export function fakeStdin(): NodeJS.ReadStream {
  return Object.assign(new EventEmitter(), {
    isTTY: true,
    setRawMode: () => {},
    setEncoding: () => {},
    ref: () => {},
    unref: () => {},
    read: () => null,
  }) as unknown as NodeJS.ReadStream;
}
