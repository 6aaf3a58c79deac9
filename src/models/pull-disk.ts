import type { Hash } from 'node:crypto';
import fs from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { MiB } from '../domain/units.js';

/** The disk side of `models pull`: the body into DEST.part, hashing what is there, fsync, free space. */

const SYNC_EVERY = 64 * MiB;
const HIGH_WATER = 16 * MiB;
const LOW_WATER = 4 * MiB;

/**
 * The body into the part (open as fd), each chunk handed to onChunk (hash, count, progress) as it
 * comes; backpressure from the disk holds the socket. Every SYNC_EVERY bytes an fdatasync starts in
 * the background, so the final fsync before the rename has little left to write (the disk works
 * while the network does). Resolves once the writes are done (fd stays open): `cut` is why the body
 * ended early, `writeError` the first write's failure.
 */
export async function writeBody(
  body: Dispatcher.ResponseData['body'],
  fd: number,
  part: string,
  onChunk: (chunk: Buffer) => void,
): Promise<{ cut: unknown; writeError: unknown }> {
  const ws = fs.createWriteStream(part, { fd, autoClose: false, highWaterMark: HIGH_WATER });
  let writeError: unknown;
  let received = 0;
  const sync = { pending: null as Promise<void> | null, at: 0 };
  const startSync = () =>
    new Promise<void>((resolve) =>
      fs.fdatasync(fd, (e) => {
        if (e) writeError ??= e;
        sync.pending = null;
        resolve();
      }),
    );
  // Flowing mode: each chunk goes on as it came (an async iterator would read() the buffered
  // chunks concatenated: one more copy of every byte). The socket is paused above HIGH bytes
  // queued for the disk and resumed below LOW ('drain' would wait for an empty queue, leaving the
  // disk idle while the socket refills).
  let paused = false;
  const written = () => {
    if (paused && ws.writableLength <= LOW_WATER) {
      paused = false;
      body.resume();
    }
  };
  let cut: unknown;
  try {
    await new Promise<void>((resolve, reject) => {
      body.on('data', (chunk: Buffer) => {
        onChunk(chunk);
        received += chunk.length;
        ws.write(chunk, written);
        if (!paused && ws.writableLength >= HIGH_WATER) {
          paused = true;
          body.pause();
        }
        if (received - sync.at >= SYNC_EVERY && !sync.pending) {
          sync.at = received;
          sync.pending = startSync();
        }
      });
      ws.on('error', (e) => {
        writeError ??= e;
        body.destroy(e);
      });
      body.once('end', resolve);
      body.once('error', reject);
      body.once('close', () => reject(new Error('the response ended early')));
    });
  } catch (e) {
    cut = e;
  }
  ws.end();
  await finished(ws).catch((e: unknown) => (writeError ??= e));
  await sync.pending;
  return { cut, writeError };
}

export async function hashInto(hash: Hash, file: string, bytes: number, signal?: AbortSignal): Promise<Hash> {
  if (bytes <= 0) return hash;
  const rs = fs.createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: 4 * MiB });
  for await (const chunk of rs as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (signal?.aborted) {
      rs.destroy();
      break;
    }
  }
  return hash;
}

/** The size of a regular file there (0 for none, and for a link: it is never followed). */
export function regularFileSize(file: string): number {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  return st?.isFile() ? st.size : 0;
}

export function statfsFree(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

export function syncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The rename itself made durable; some file systems cannot fsync a directory, which is not fatal. */
export function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // best effort
  }
}
