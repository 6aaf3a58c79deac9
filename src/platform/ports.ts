import fs from 'node:fs';
import { listPids, readCmdline } from './proc.js';

export interface PortHolder {
  inode: number;
  pid?: number;
  command?: string;
}

/** Listening sockets on a TCP port, read from /proc/net/tcp{,6} (state 0A = LISTEN). */
export function listeningInodes(port: number): number[] {
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
      const inode = Number(cols[9]);
      if (inode > 0) inodes.push(inode);
    }
  }
  return inodes;
}

/** Who holds a listening socket on the port, when it can be read (pid and command). */
export function findPortHolder(port: number): PortHolder | undefined {
  const inodes = listeningInodes(port);
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
