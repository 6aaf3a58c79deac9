import type { InstanceConfig } from '../config/schema.js';
import type { StoreBase } from '../store/base.js';

/**
 * The validated config `up` recorded, which the keeper runs (the file may have changed since).
 * Stored as JSON by claimStart; trusted as validated, so the keeper never loads the validator.
 */
export function startedConfig(store: StoreBase, name: string): InstanceConfig | undefined {
  const json = store.startedConfigJson(name);
  return json ? (JSON.parse(json) as InstanceConfig) : undefined;
}
