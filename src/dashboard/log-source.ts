import path from 'node:path';
import fs from 'node:fs';
import { watch } from 'chokidar';
import type { Home } from '../home.js';
import { instanceLogDir } from '../home.js';
import { LogFollower, lastLines, logFile, type LogStream } from '../logs/tail.js';

export interface LogSource {
  /** Sends the last `initial` lines, then new ones as they are written (across rotation). Returns a stop function. */
  follow(name: string, stream: LogStream, initial: number, onLines: (lines: string[]) => void): () => void;
}

export function fileLogSource(home: Home, pollMs = 500): LogSource {
  return {
    follow(name, stream, initial, onLines) {
      const dir = instanceLogDir(home, name);
      const first = lastLines(dir, stream, initial);
      if (first.length) onLines(first);
      const follower = new LogFollower(logFile(dir, stream), onLines);
      follower.start(false);
      fs.mkdirSync(dir, { recursive: true });
      const watcher = watch(dir, {
        depth: 0,
        ignoreInitial: true,
        ignored: (p) => p !== dir && !path.basename(p).startsWith(stream),
      });
      watcher.on('all', () => follower.poll());
      // Backs the watcher up: events can coalesce across a rotation.
      const timer = setInterval(() => follower.poll(), pollMs);
      return () => {
        clearInterval(timer);
        void watcher.close();
        follower.close();
      };
    },
  };
}
