import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { addressesConflict, findPortHolder, procAddress } from '../../src/platform/ports.js';

describe('ports: who holds a port, for an address', () => {
  it('reads /proc/net/tcp addresses', () => {
    expect(procAddress('0100007F')).toBe('127.0.0.1');
    expect(procAddress('0300007F')).toBe('127.0.0.3');
    expect(procAddress('00000000')).toBe('0.0.0.0');
    expect(procAddress('00000000000000000000000000000000')).toBe('::');
    expect(procAddress('00000000000000000000000001000000')).toBe('::1');
    expect(procAddress('0000000000000000FFFF00000400007F')).toBe('127.0.0.4');
  });

  it('another address on the same port is no collision; a wildcard or a name is', () => {
    expect(addressesConflict('127.0.0.3', '127.0.0.4')).toBe(false);
    expect(addressesConflict('127.0.0.3', '127.0.0.3')).toBe(true);
    expect(addressesConflict('0.0.0.0', '127.0.0.4')).toBe(true);
    expect(addressesConflict('127.0.0.3', '0.0.0.0')).toBe(true);
    expect(addressesConflict('::', '127.0.0.4')).toBe(true);
    expect(addressesConflict('::1', '[::1]')).toBe(true);
    expect(addressesConflict('127.0.0.3', 'localhost')).toBe(true);
  });

  it('a real listener on 127.0.0.3 holds the port for that address and for the wildcard, not for 127.0.0.4', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.3', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      expect(findPortHolder(port, '127.0.0.4')).toBeUndefined();
      expect(findPortHolder(port, '127.0.0.3')?.pid).toBe(process.pid);
      expect(findPortHolder(port, '0.0.0.0')?.pid).toBe(process.pid);
      expect(findPortHolder(port)?.pid).toBe(process.pid);
    } finally {
      server.close();
    }
  });
});
