import type { Home } from '../domain/home.js';
import { allConfigsCached, cachedLoader, type ConfigCache, type ConfigLoader } from './cached.js';

/** For one-shot commands: loads the validator (zod) only when some config is not cached. */
export async function prepareLoader(home: Home, store: ConfigCache, extra: string[] = []): Promise<ConfigLoader> {
  const full = allConfigsCached(home, store, extra) ? undefined : (await import('./load.js')).loadConfigFile;
  return cachedLoader(store, full);
}
