import type { Home } from '../home.js';
import type { Store } from '../store/store.js';
import { allConfigsCached, cachedLoader, type ConfigLoader } from './cached.js';

/** For one-shot commands: loads the validator (zod) only when some config is not cached. */
export async function prepareLoader(home: Home, store: Store, extra: string[] = []): Promise<ConfigLoader> {
  const full = allConfigsCached(home, store, extra) ? undefined : (await import('./load.js')).loadConfigFile;
  return cachedLoader(store, full);
}
