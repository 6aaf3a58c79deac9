import dns from 'node:dns';

/**
 * Every A and AAAA record of a name (fleet.discover.dns): how a Kubernetes headless Service lists its
 * pods. `server` (IP or IP:PORT) asks that DNS server instead of the system's resolvers. A name with
 * records of neither kind is an error naming it; one kind missing is not.
 */
export async function discoverRigs(name: string, server?: string, timeoutMs = 2000): Promise<string[]> {
  const resolver = new dns.promises.Resolver({ timeout: timeoutMs, tries: 1 });
  if (server) resolver.setServers([server]);
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const found = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  if (found.length === 0) {
    const e = (v4.status === 'rejected' ? v4.reason : v6.status === 'rejected' ? v6.reason : undefined) as
      NodeJS.ErrnoException | undefined;
    throw new Error(
      `${name} has no A or AAAA record${e?.code ? ` (${e.code}${server ? ` from ${server}` : ''})` : ''}`,
    );
  }
  return [...new Set(found)].sort();
}
