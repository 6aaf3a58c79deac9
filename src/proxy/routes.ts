import type { LoadResult } from '../config/load.js';
import type { ProxySettings } from '../config/settings.js';

/** One routable instance (docs/ARCHITECTURE.md, "Proxy and REST API"). */
export interface Route {
  name: string;
  /** The model id /v1/models lists: model.alias, else the instance name. */
  id: string;
  /** Every id that routes here: the id, model.aliases and the instance name. */
  ids: string[];
  onDemand: boolean;
  /** Milliseconds without requests after which the instance is stopped; null: never. */
  idleTtlMs: number | null;
  group: string | null;
  /** The env var whose value the proxy sends upstream as the instance's key. */
  apiKeyEnv: string | null;
}

export interface RouteTable {
  routes: Route[];
  /** model id -> instance name (ids claimed by two instances are left out and named in `conflicts`). */
  byId: Map<string, string>;
  /** "id" claimed by more than one instance: the operator's message. */
  conflicts: Map<string, string>;
  /** Instances whose config does not load: name -> the first problem. */
  broken: Map<string, string>;
}

/** Builds the table from every instance's load result (invalid configs are not routable). */
export function buildRoutes(results: LoadResult[], settings: ProxySettings): RouteTable {
  const routes: Route[] = [];
  const broken = new Map<string, string>();
  const claims = new Map<string, Set<string>>();
  for (const r of results) {
    if (!r.ok) {
      broken.set(r.name, r.problems[0]?.message ?? 'invalid config');
      continue;
    }
    const { name, config } = r.instance;
    const id = config.model.alias ?? name;
    const ids = [...new Set([id, ...(config.model.aliases ?? []), name])];
    const ttl = config.idle_ttl ?? settings.idle_ttl;
    routes.push({
      name,
      id,
      ids,
      onDemand: config.on_demand ?? settings.on_demand,
      idleTtlMs: ttl === undefined ? null : ttl * 1000,
      group: config.group ?? null,
      apiKeyEnv: config.server.api_key_env ?? null,
    });
    for (const i of ids) {
      const set = claims.get(i) ?? new Set<string>();
      set.add(name);
      claims.set(i, set);
    }
  }
  const byId = new Map<string, string>();
  const conflicts = new Map<string, string>();
  for (const [id, names] of claims) {
    if (names.size === 1) byId.set(id, [...names][0] as string);
    else
      conflicts.set(
        id,
        `model "${id}" is claimed by instances ${[...names].sort().join(' and ')}: give each its own model.alias / model.aliases`,
      );
  }
  routes.sort((a, b) => a.name.localeCompare(b.name));
  return { routes, byId, conflicts, broken };
}

/**
 * The table as of now, rebuilt at most every `maxAgeMs` (configs are re-read through the caller's
 * loader, which revalidates only changed files): a request never waits for more than a readdir.
 */
export function routeSource(
  list: () => LoadResult[],
  settings: ProxySettings,
  now: () => number,
  maxAgeMs = 500,
  /** Told each table built (the daemon logs new conflicts). */
  onBuild?: (table: RouteTable) => void,
): { table: () => RouteTable; refresh: () => RouteTable } {
  let cached: { at: number; table: RouteTable } | undefined;
  const refresh = () => {
    const table = buildRoutes(list(), settings);
    onBuild?.(table);
    cached = { at: now(), table };
    return table;
  };
  return {
    table: () => (cached && now() - cached.at < maxAgeMs ? cached.table : refresh()),
    refresh,
  };
}

/** GET /v1/models: every routable instance, running or not, with its state (`view`: the scheduler's). */
export function modelsList(
  table: RouteTable,
  view: (name: string) => { status: string; health: string | null; startedAt: number | null },
): { object: 'list'; data: Array<Record<string, unknown>> } {
  return {
    object: 'list',
    data: table.routes.map((r) => {
      const v = view(r.name);
      return {
        id: r.id,
        object: 'model',
        created: Math.floor((v.startedAt ?? 0) / 1000),
        owned_by: 'llama-orch',
        instance: r.name,
        aliases: r.ids.filter((i) => i !== r.id),
        state: v.status,
        health: v.health,
        on_demand: r.onDemand,
      };
    }),
  };
}
