import type Http from 'node:http';
import { ProxyError } from './errors.js';
import { FleetRouter, HOP_HEADER, RIG_HEADER, type RemoteModel } from './fleet-router.js';
import type { RouteTable } from './routes.js';
import type { Scheduler } from './scheduler.js';
import { forward } from './upstream.js';

/**
 * The fleet endpoint's choice for one request (README, "Several rigs": one endpoint), in this order:
 * 1. a rig where the model runs and is healthy, the least busy (requests in flight plus queued; this
 *    rig counts like the others, and wins a tie);
 * 2. else this rig, when the model is configured here (on-demand start and eviction as always);
 * 3. else another rig where it is configured for on-demand start;
 * 4. else 503 naming each rig and why (404 when no rig knows the model).
 * A request another rig forwarded (HOP_HEADER) never comes here: it is served locally or refused.
 * A rig that refuses the connection is left out and the request goes to the next choice (its body
 * never reached it); a rig that failed after receiving the body is not sent the request again.
 */

export interface FleetLocal {
  table: RouteTable;
  scheduler: Scheduler;
  upstreamTimeoutMs: number;
  localName: string;
}

/** Serves the request on another rig and resolves true, or resolves false: this rig serves it. */
export async function routeInFleet(
  fleet: FleetRouter,
  local: FleetLocal,
  model: string,
  req: Http.IncomingMessage,
  res: Http.ServerResponse,
  path: string,
  body: Buffer,
): Promise<boolean> {
  const name = local.table.byId.get(model);
  const route = name === undefined ? undefined : local.table.routes.find((r) => r.name === name);
  const tried = new Set<string>();
  for (;;) {
    const choice = choose(fleet, local, route?.name, model, tried);
    if (choice === 'local') return false;
    if (choice === undefined) {
      const why = fleet.refusals(model);
      if (route) return false; // never seen elsewhere: here, as without a fleet
      const known = why.some((w) => !w.endsWith('not configured there'));
      throw new ProxyError(
        known ? 503 : 404,
        `model "${model}" cannot be served by any rig of the fleet: ${why.join('; ') || 'no other rig'}`,
        known ? 'server_error' : 'invalid_request_error',
        known ? 'no_rig' : 'model_not_found',
      );
    }
    tried.add(choice.rig);
    const served = await sendTo(fleet, local, choice, req, res, path, body);
    if (served) return true;
  }
}

function choose(
  fleet: FleetRouter,
  local: FleetLocal,
  localName: string | undefined,
  model: string,
  tried: ReadonlySet<string>,
): 'local' | RemoteModel | undefined {
  const remote = fleet.running(model, tried);
  if (localName) {
    const v = local.scheduler.view(localName);
    const c = local.scheduler.snapshot().get(localName);
    const here = (c?.inFlight ?? 0) + (c?.queued ?? 0);
    if (v.status === 'running' && v.health === 'ok' && (!remote[0] || here <= fleet.loadOf(remote[0]))) return 'local';
    if (remote[0]) return remote[0];
    return 'local';
  }
  return remote[0] ?? fleet.startable(model, tried)[0];
}

/** Forwards to one rig; false when it refused the connection (left out; the caller picks again). */
async function sendTo(
  fleet: FleetRouter,
  local: FleetLocal,
  m: RemoteModel,
  req: Http.IncomingMessage,
  res: Http.ServerResponse,
  path: string,
  body: Buffer,
): Promise<boolean> {
  const rig = fleet.target(m.rig);
  if (!rig) return false;
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);
  const end = fleet.begin(rig.name);
  let status = 502;
  try {
    res.setHeader(RIG_HEADER, rig.name);
    const r = await forward(
      fleet.pool(rig),
      {
        method: req.method ?? 'POST',
        path,
        headers: { ...req.headers, [HOP_HEADER]: local.localName },
        body,
        apiKey: rig.apiKey ?? null,
        signal: abort.signal,
      },
      res,
      `rig ${rig.name}`,
      local.upstreamTimeoutMs,
    );
    status = r.status;
    return true;
  } catch (e) {
    if (e instanceof ProxyError && (e as ProxyError & { refused?: boolean }).refused) {
      fleet.markDown(rig.name, 'refused the connection');
      res.removeHeader(RIG_HEADER);
      return false;
    }
    if (e instanceof ProxyError) status = e.status;
    throw e;
  } finally {
    res.off('close', onClose);
    end(status);
  }
}

/** GET /v1/models with a fleet: this rig's models, then those only other rigs have, each with its rigs. */
export function fleetModels(local: { data: Array<Record<string, unknown>> }, fleet: FleetRouter, localName: string) {
  const remote = fleet.models();
  const byId = new Map<string, RemoteModel[]>();
  for (const m of remote) byId.set(m.id, [...(byId.get(m.id) ?? []), m]);
  const where = (m: RemoteModel) => ({ rig: m.rig, instance: m.instance, state: m.state, health: m.health });
  const data: Array<Record<string, unknown>> = local.data.map((d) => ({
    ...d,
    rigs: [
      { rig: localName, instance: d.instance, state: d.state, health: d.health },
      ...(byId.get(String(d.id)) ?? []).map(where),
    ],
  }));
  const localIds = new Set(local.data.map((d) => String(d.id)));
  for (const [id, list] of byId) {
    if (localIds.has(id)) continue;
    const first = list[0] as RemoteModel;
    const running = list.find((m) => m.state === 'running');
    data.push({
      id,
      object: 'model',
      created: 0,
      owned_by: 'llama-orch',
      instance: first.instance,
      aliases: first.aliases,
      state: running ? 'running' : first.state,
      health: running ? running.health : first.health,
      on_demand: list.some((m) => m.on_demand),
      rigs: list.map(where),
    });
  }
  return { object: 'list', data };
}
