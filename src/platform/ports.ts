import fs from 'node:fs';
import { listPids, readCmdline } from './proc.js';

export interface PortHolder {
  inode: number;
  pid?: number;
  command?: string;
}

/** The address of a /proc/net/tcp{,6} local address field ("0100007F" is 127.0.0.1), as text. */
export function procAddress(hex: string): string {
  const word = (h: string) => (h.match(/../g) ?? []).reverse().join('');
  if (hex.length === 8) {
    return (word(hex).match(/../g) ?? []).map((b) => parseInt(b, 16)).join('.');
  }
  const bytes = (hex.match(/.{8}/g) ?? []).map(word).join('');
  if (/^0{20}ffff/i.test(bytes)) {
    return (bytes.slice(24).match(/../g) ?? []).map((b) => parseInt(b, 16)).join('.');
  }
  const groups = (bytes.match(/.{4}/g) ?? []).map((g) => parseInt(g, 16).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/**
 * Whether a listener on `listener` keeps a bind to `host` on the same port from working: the same
 * address, or either one a wildcard. A host that is a name, not an address, conflicts with anything.
 */
export function addressesConflict(listener: string, host: string): boolean {
  const h = host
    .replace(/^\[|\]$/g, '')
    .replace(/^::ffff:/i, '')
    .toLowerCase();
  if (WILDCARD.has(listener) || WILDCARD.has(h)) return true;
  if (!/^[0-9.]+$/.test(h) && !h.includes(':')) return true;
  return listener.toLowerCase() === h;
}

/**
 * Listening sockets on a TCP port, read from /proc/net/tcp{,6} (state 0A = LISTEN); with `host`, only
 * those a bind to that address would collide with (another address's listener on the same port
 * does not: rigs on 127.0.0.3 and 127.0.0.4 may share a port number).
 */
export function listeningInodes(port: number, host?: string): number[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes: number[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (!local || cols[3] !== '0A') continue;
      if (local.slice(local.lastIndexOf(':') + 1) !== hexPort) continue;
      if (host !== undefined && !addressesConflict(procAddress(local.slice(0, local.lastIndexOf(':'))), host)) continue;
      const inode = Number(cols[9]);
      if (inode > 0) inodes.push(inode);
    }
  }
  return inodes;
}

/** Who holds a listening socket on the port, when it can be read (pid and command). */
export function findPortHolder(port: number, host?: string): PortHolder | undefined {
  const inodes = listeningInodes(port, host);
  if (inodes.length === 0) return undefined;
  const wanted = new Set(inodes.map((i) => `socket:[${i}]`));
  for (const pid of listPids()) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (wanted.has(target)) {
        const cmd = readCmdline(pid)?.join(' ');
        return { inode: inodes[0] as number, pid, command: cmd };
      }
    }
  }
  return { inode: inodes[0] as number };
}
