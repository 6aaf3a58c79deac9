import fs from 'node:fs';
import type { Home } from '../domain/home.js';
import { acquirePidFile, readOwner } from '../platform/pidfile.js';
import type { Db } from '../store/db.js';
import type { Store } from '../store/store.js';
import type { Service } from './service.js';

export interface StateWatchDeps {
  home: Home;
  store: Store;
  /** state/daemon.pid: how `daemon status`, `stop` and `start` find this daemon. */
  pidFile: string;
  /** Opens (creating and migrating if need be) the database at home.dbPath. */
  open: () => Db;
  /** Called once the store points at the new file: what the daemon recorded there once is recorded again. */
  reopened: () => void;
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  log: (msg: string) => void;
  intervalMs?: number;
}

const fileId = (file: string): string | undefined => {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  return st ? `${st.dev}:${st.ino}` : undefined;
};

/**
 * The daemon's hold on its home (#26, "state deleted under a running daemon"). The state database
 * deleted or replaced (by device and inode) is reopened, so the daemon reads what keepers re-register
 * there and writes where every other command reads; its pid file, removed with state/, is written
 * again, so `daemon status`, `stop` and `start` still find it.
 */
export class StateWatchService implements Service {
  readonly name = 'state-watch';
  private opened: string | undefined;
  private trouble: string | undefined;

  constructor(private readonly deps: StateWatchDeps) {
    this.opened = fileId(deps.home.dbPath);
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.check();
      await this.deps.wait(this.deps.intervalMs ?? 1000, signal);
    }
  }

  check(): void {
    this.checkDatabase();
    try {
      // After the database: reopening it creates state/ again when it was removed whole.
      if (readOwner(this.deps.pidFile)?.pid !== process.pid && acquirePidFile(this.deps.pidFile))
        this.deps.log(`${this.deps.pidFile} was removed: written again`);
    } catch (e) {
      this.say(`cannot write ${this.deps.pidFile} yet: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private checkDatabase(): void {
    const { home, store, log } = this.deps;
    const now = fileId(home.dbPath);
    if (now !== undefined && now === this.opened) return;
    try {
      store.rebind(this.deps.open());
    } catch (e) {
      // Not creatable now (a full disk, a read-only file system): said once, tried again next round.
      this.say(`cannot reopen the state database ${home.dbPath} yet: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.opened = fileId(home.dbPath);
    this.trouble = undefined;
    const what = now === undefined ? 'deleted' : 'replaced';
    log(`state database ${home.dbPath} was ${what}: reopened`);
    try {
      store.addEvent(null, 'warn', 'state-db', `the state database ${home.dbPath} was ${what}; the daemon reopened it`);
      this.deps.reopened();
    } catch (e) {
      this.say(`cannot write to the reopened state database yet: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private say(msg: string): void {
    if (msg !== this.trouble) this.deps.log(msg);
    this.trouble = msg;
  }
}
