import { watch } from 'chokidar';
import type { Home } from '../domain/home.js';

/** Calls onChange when a config under instances/ is added, edited or removed. Returns the stop function. */
export function watchInstanceConfigs(home: Home, onChange: () => void): () => Promise<void> {
  const watcher = watch(home.instancesDir, { depth: 1, ignoreInitial: true });
  watcher.on('all', onChange);
  return () => watcher.close();
}
