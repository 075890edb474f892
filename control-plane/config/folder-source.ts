// control-plane/config/folder-source.ts: the folder config source. A directory tree of YAML/JSON resource files, watched.
// Guarantees: a save applies once two reads 100 ms apart agree (~200 ms); broken files keep their last good objects; emits only on content change.

/*
 * What is read: every `*.yaml`, `*.yml` and `*.json` file under `dir`, recursively. Entries whose
 * name starts with `.` are skipped (`.git`, editor swap and temp files, Kubernetes ConfigMap
 * `..data` internals: the visible symlinks into them are followed). Symlinks to files are
 * followed, symlinks to directories are not (no loops). `file` in problems is the path relative to
 * `dir`, with `/` separators.
 *
 * Watching: one non-recursive fs.watch per directory (Node's recursive mode is emulated on Linux
 * and misses fast create/delete races), re-synced with the tree on every pass; a directory replaced
 * under the same path gets a new watcher (inode check). Any event schedules a pass through a
 * bounded debounce: `quietMs` (100) after the last event, but never later than `maxWaitMs` (500)
 * after the first one, so a burst applies at most every 100 ms. A pass stats every file and reads
 * those whose (dev, inode, size, mtime, ctime) changed or that an event named; a file whose text
 * is unchanged is not re-parsed. Rename-based (atomic) saves are a new inode: picked up. A
 * periodic pass (`resyncMs`, 10 s) catches lost events (inotify overflow, network filesystems).
 *
 * Settling (the proxy's config file holds to the same rule, api/settle.ts): after the initial read,
 * a new text of a file counts only when a second read `quietMs` later agrees, so a file rewritten
 * in place (truncated, then written in parts) is never taken empty or as a valid first part; a file
 * that is really empty applies as any text does. Files settle side by side within a pass, with one
 * second read each: if it disagrees, the file keeps what it contributed and another pass follows
 * (so a file rewritten nonstop holds up neither the other files nor close()).
 *
 * Per file, what it contributes ("applied"):
 *  - no problems: exactly its resources;
 *  - problems: its valid documents, plus the last good version of every object of the file that a
 *    problem names (`object`, e.g. a weight typo in TrafficSplit/default/web keeps the previous
 *    web in force) and, when a problem names no object (a YAML syntax error that hides it, an
 *    unreadable file), every last good object of the file that its valid documents no longer give;
 *    so a file saved half-written or broken changes nothing it did not validly say. The problem's
 *    message says what was kept. A deleted file contributes nothing.
 * Duplicates (same kind/namespace/name) across files or within a file: the file whose definition
 * is in force keeps it (a stale copy saved beside it, `api-old.yaml`, does not take it over);
 * among new contenders the first file in sorted relative-path order (code-unit order), then the
 * first document, wins. Each other one is a problem on its own file. The snapshot's resources are
 * sorted by resourceKey; problems by file.
 *
 * Output: `start()` reads everything once (and rejects if `dir` is not a readable directory) and
 * resolves with snapshot revision 1; it does not call onChange. Afterwards onChange gets every
 * snapshot whose resources or problems differ by content (canonical JSON: key order, comments,
 * touches and no-op rewrites do not count), with revision + 1. If `dir` becomes unreadable later,
 * everything stays in force and that is reported as a problem with `file: '.'`.
 */

import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseYamlDocuments, type LoadProblem } from '../../api/load.ts';
import { resourceKey, type Resource } from '../../api/resources.ts';
import { systemClock, type Clock } from '../../api/runtime.ts';
import { settle } from '../../api/settle.ts';
import type { Log } from '../control-plane.ts';

export interface FolderSnapshot {
  readonly resources: readonly Resource[];
  readonly problems: readonly LoadProblem[];
  /** 0 before start(), 1 after the initial read, +1 per emitted change. */
  readonly revision: number;
}

/** setTimeout/clearTimeout, injectable (tests drive the debounce with a manual clock). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real timers, unref'd: a pending debounce or resync does not keep the process alive. */
export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface FolderSourceOptions {
  dir: string;
  /** Called after start() for every change of the effective resources or problems. Must not throw (a throw is logged). */
  onChange?: (snapshot: FolderSnapshot) => void;
  /** Quiet time after the last event before a pass, and between the two reads of a new text that must agree (default 100 ms). */
  quietMs?: number;
  /** Longest wait from the first event of a burst to its pass (default 500 ms). */
  maxWaitMs?: number;
  /** Full pass even without events (default 10 s; 0: never). */
  resyncMs?: number;
  /** Bigger files are refused (problem; their last good objects stay). Default 4 MiB. */
  maxFileBytes?: number;
  clock?: Clock;
  timers?: Timers;
  log?: Log;
}

export const CONFIG_FILE = /\.(ya?ml|json)$/i;
const DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * Trailing debounce with a deadline: `fire` runs `quietMs` after the last trigger, or `maxWaitMs`
 * after the first trigger since the last fire, whichever is earlier. Consecutive fires are thus at
 * least `quietMs` apart, and no trigger waits longer than `maxWaitMs`.
 */
export class Debouncer {
  readonly #fire: () => void;
  readonly #quietMs: number;
  readonly #maxWaitMs: number;
  readonly #clock: Clock;
  readonly #timers: Timers;
  #handle: unknown;
  #armedAt: number | undefined;
  #closed = false;

  constructor(fire: () => void, opts: { quietMs: number; maxWaitMs: number; clock: Clock; timers: Timers }) {
    if (!(opts.quietMs >= 0) || !(opts.maxWaitMs >= opts.quietMs)) throw new RangeError('need 0 <= quietMs <= maxWaitMs');
    this.#fire = fire;
    this.#quietMs = opts.quietMs;
    this.#maxWaitMs = opts.maxWaitMs;
    this.#clock = opts.clock;
    this.#timers = opts.timers;
  }

  trigger(): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    this.#armedAt ??= now;
    const due = Math.min(now + this.#quietMs, this.#armedAt + this.#maxWaitMs);
    if (this.#handle !== undefined) this.#timers.clearTimeout(this.#handle);
    this.#handle = this.#timers.setTimeout(() => this.#onTimer(), Math.max(0, due - now));
  }

  get pending(): boolean {
    return this.#handle !== undefined;
  }

  close(): void {
    this.#closed = true;
    if (this.#handle !== undefined) this.#timers.clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  #onTimer(): void {
    this.#handle = undefined;
    this.#armedAt = undefined;
    if (!this.#closed) this.#fire();
  }
}

interface FileState {
  /** dev:ino:size:mtime:ctime of the last stat (followed symlink). */
  sig: string;
  /** Text last parsed; undefined when the file could not be read (re-read next time). */
  text: string | undefined;
  applied: readonly Resource[];
  problems: readonly LoadProblem[];
}

interface DirWatch {
  watcher: FSWatcher;
  id: string;
}

interface Walk {
  /** relative path → absolute path of every config file found. */
  files: Map<string, string>;
  /** Directories (relative) that could not be listed: the state of files under them is kept. */
  unreadable: string[];
  problems: LoadProblem[];
}

export class FolderSource {
  readonly #dir: string;
  readonly #onChange: ((s: FolderSnapshot) => void) | undefined;
  readonly #resyncMs: number;
  readonly #maxFileBytes: number;
  readonly #quietMs: number;
  readonly #timers: Timers;
  readonly #log: Log;
  readonly #debounce: Debouncer;
  readonly #files = new Map<string, FileState>();
  readonly #watchers = new Map<string, DirWatch>();
  /** Relative paths named by watch events since the last pass (always re-read). */
  #named = new Set<string>();
  /** Problems of the directory walk itself (unreadable root or subdirectory, watch failures). */
  #walkProblems: LoadProblem[] = [];
  #snapshot: FolderSnapshot = freezeSnapshot([], [], 0);
  #lastContent: string | undefined;
  /** Which file each object came from in the last snapshot: it keeps the object against a later duplicate. */
  #owners = new Map<string, string>();
  #running: Promise<void> | undefined;
  #again = false;
  /** The first pass (start()) takes every file as read: nothing is writing them yet. */
  #initialRead = true;
  #started = false;
  #closed = false;
  #resyncHandle: unknown;

  constructor(opts: FolderSourceOptions) {
    this.#dir = path.resolve(opts.dir);
    this.#onChange = opts.onChange;
    this.#resyncMs = opts.resyncMs ?? 10_000;
    this.#maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.#quietMs = opts.quietMs ?? 100;
    this.#timers = opts.timers ?? systemTimers;
    this.#log = opts.log ?? (() => {});
    this.#debounce = new Debouncer(() => void this.#run(), {
      quietMs: this.#quietMs,
      maxWaitMs: opts.maxWaitMs ?? 500,
      clock: opts.clock ?? systemClock,
      timers: this.#timers,
    });
  }

  get dir(): string {
    return this.#dir;
  }

  /** Reads the whole folder and starts watching. Rejects (and stops) if `dir` is not a readable directory. */
  async start(): Promise<FolderSnapshot> {
    if (this.#started || this.#closed || this.#running) throw new Error('FolderSource: start() once, before close()');
    try {
      const st = await stat(this.#dir);
      if (!st.isDirectory()) throw new Error(`config folder ${this.#dir} is not a directory`);
      await this.#run();
      const rootProblem = this.#walkProblems.find((p) => p.file === '.');
      if (rootProblem) throw new Error(`config folder ${this.#dir}: ${rootProblem.message}`);
    } catch (err) {
      await this.close();
      throw err;
    }
    this.#started = true;
    this.#scheduleResync();
    return this.#snapshot;
  }

  current(): FolderSnapshot {
    return this.#snapshot;
  }

  /** A pass now (serialized with watcher-driven ones); resolves with the snapshot after it. */
  async sync(): Promise<FolderSnapshot> {
    if (!this.#closed) await this.#run();
    return this.#snapshot;
  }

  /** Stops watching; resolves once an in-flight pass has finished. No onChange after this. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#debounce.close();
    if (this.#resyncHandle !== undefined) this.#timers.clearTimeout(this.#resyncHandle);
    this.#resyncHandle = undefined;
    for (const w of this.#watchers.values()) w.watcher.close();
    this.#watchers.clear();
    await this.#running;
  }

  #scheduleResync(): void {
    if (this.#resyncMs <= 0 || this.#closed) return;
    this.#resyncHandle = this.#timers.setTimeout(() => {
      this.#resyncHandle = undefined;
      void this.#run().then(() => this.#scheduleResync());
    }, this.#resyncMs);
  }

  /** One pass at a time; a request during a pass runs another right after it. */
  #run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const loop = async () => {
      try {
        do {
          this.#again = false;
          try {
            await this.#pass();
          } catch (err) {
            this.#log('error', 'config folder: pass failed', { dir: this.#dir, error: (err as Error).message });
          }
        } while (this.#again && !this.#closed);
      } finally {
        this.#running = undefined;
      }
    };
    this.#running = loop();
    return this.#running;
  }

  async #pass(): Promise<void> {
    const named = this.#named;
    this.#named = new Set();
    const walk = await this.#walk();
    if (this.#closed) return;
    this.#walkProblems = walk.problems;
    if (walk.unreadable.includes('')) {
      this.#publish(); // the root is gone or unreadable: keep every file's state, report it
      return;
    }
    const under = (rel: string) => walk.unreadable.some((d) => rel.startsWith(`${d}/`));
    for (const rel of this.#files.keys()) {
      if (!walk.files.has(rel) && !under(rel)) this.#files.delete(rel);
    }
    const settling = !this.#initialRead;
    this.#initialRead = false;
    const results = await Promise.all([...walk.files].map(async ([rel, abs]) => [rel, await this.#readFile(rel, abs, named.has(rel), settling)] as const));
    if (this.#closed) return;
    let unsettled = false;
    for (const [rel, next] of results) {
      if (next === 'gone') this.#files.delete(rel);
      else if (next === 'unsettled') unsettled = true;
      else if (next !== 'same') this.#files.set(rel, next);
    }
    this.#publish();
    if (unsettled) this.#debounce.trigger();
  }

  /**
   * The file's new state, 'same' if unchanged, 'gone' if it vanished or is not a file, 'unsettled'
   * if `settling` and a second read `quietMs` later did not agree with a new text (it keeps its
   * state, with the old signature: the next pass reads it again).
   */
  async #readFile(rel: string, abs: string, named: boolean, settling: boolean): Promise<FileState | 'same' | 'gone' | 'unsettled'> {
    const prev = this.#files.get(rel);
    let sig: string;
    let size: bigint;
    try {
      const st = await stat(abs, { bigint: true });
      if (!st.isFile()) return 'gone';
      sig = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      size = st.size;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return 'gone'; // deleted since the walk, or a dangling symlink
      return keepLastGood(rel, prev, '', `cannot stat: ${describeError(err)}`);
    }
    if (prev && prev.sig === sig && prev.text !== undefined && !named) return 'same';
    if (size > BigInt(this.#maxFileBytes)) return keepLastGood(rel, prev, sig, `file is ${size} bytes, more than the ${this.#maxFileBytes} allowed`);
    let text: string;
    try {
      text = await readFile(abs, 'utf8');
    } catch (err) {
      if (isCode(err, 'ENOENT')) return 'gone';
      return keepLastGood(rel, prev, sig, `cannot read: ${describeError(err)}`);
    }
    if (prev && prev.text === text) return prev.sig === sig ? 'same' : { ...prev, sig };
    if (settling) {
      const reread = () => readFile(abs, 'utf8').catch((): undefined => undefined);
      const sleep = (ms: number) => new Promise<void>((resolve) => this.#timers.setTimeout(resolve, ms));
      const agreed = await settle<string | undefined>(text, reread, (a, b) => a !== undefined && a === b, { quietMs: this.#quietMs, maxRereads: 1, sleep, stale: () => this.#closed });
      if (agreed === undefined) return 'unsettled';
    }
    return { sig, text, ...applyFile(rel, text, prev?.applied ?? []) };
  }

  async #walk(): Promise<Walk> {
    const walk: Walk = { files: new Map(), unreadable: [], problems: [] };
    const seen = new Set<string>();
    const visit = async (abs: string, rel: string): Promise<void> => {
      let entries;
      try {
        const st = await stat(abs, { bigint: true });
        if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
        // Watch before listing, so nothing created after the listing goes unseen.
        this.#ensureWatch(abs, rel, `${st.dev}:${st.ino}`, walk.problems);
        seen.add(abs);
        entries = await readdir(abs, { withFileTypes: true });
      } catch (err) {
        if (rel !== '' && isCode(err, 'ENOENT')) return; // removed while walking: its files are gone
        walk.unreadable.push(rel);
        walk.problems.push({ file: rel || '.', path: '/', message: `cannot read the directory: ${describeError(err)}${rel ? '' : ` (${abs})`}; its last good config stays in force` });
        return;
      }
      entries.sort((a, b) => compare(a.name, b.name));
      for (const e of entries) {
        if (e.name.startsWith('.') || this.#closed) continue;
        const childAbs = path.join(abs, e.name);
        const childRel = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await visit(childAbs, childRel);
        else if ((e.isFile() || e.isSymbolicLink()) && CONFIG_FILE.test(e.name)) walk.files.set(childRel, childAbs);
      }
    };
    await visit(this.#dir, '');
    // Stop watching directories that are gone (not those merely unreadable right now).
    const unreadable = walk.unreadable.map((d) => path.join(this.#dir, d));
    for (const [abs, w] of this.#watchers) {
      if (seen.has(abs) || unreadable.some((d) => abs === d || abs.startsWith(d + path.sep))) continue;
      w.watcher.close();
      this.#watchers.delete(abs);
    }
    return walk;
  }

  #ensureWatch(abs: string, rel: string, id: string, problems: LoadProblem[]): void {
    if (this.#closed) return;
    const existing = this.#watchers.get(abs);
    if (existing?.id === id) return;
    existing?.watcher.close(); // the directory was replaced under the same path
    this.#watchers.delete(abs);
    try {
      const watcher = watch(abs, { persistent: false }, (_event, name) => this.#onEvent(rel, name));
      watcher.on('error', (err) => {
        this.#log('warn', 'config folder: watch error', { dir: abs, error: err.message });
        watcher.close();
        if (this.#watchers.get(abs)?.watcher === watcher) this.#watchers.delete(abs);
        this.#debounce.trigger(); // the next pass re-creates it if the directory is still there
      });
      this.#watchers.set(abs, { watcher, id });
    } catch (err) {
      problems.push({ file: rel || '.', path: '/', message: `cannot watch the directory: ${describeError(err)}; changes there are seen only by the periodic rescan` });
    }
  }

  #onEvent(dirRel: string, name: string | Buffer | null): void {
    if (this.#closed) return;
    if (typeof name === 'string' && CONFIG_FILE.test(name)) this.#named.add(dirRel ? `${dirRel}/${name}` : name);
    this.#debounce.trigger();
  }

  #publish(): void {
    const contenders = new Map<string, Array<{ rel: string; r: Resource }>>();
    const resources: Resource[] = [];
    const problems: LoadProblem[] = [...this.#walkProblems];
    for (const rel of [...this.#files.keys()].toSorted(compare)) {
      const f = this.#files.get(rel);
      if (!f) continue;
      problems.push(...f.problems);
      for (const r of f.applied) {
        const key = resourceKey(r);
        const list = contenders.get(key);
        if (list) list.push({ rel, r });
        else contenders.set(key, [{ rel, r }]);
      }
    }
    const owners = new Map<string, string>();
    for (const [key, list] of contenders) {
      const previous = this.#owners.get(key);
      const win = list.find((c) => c.rel === previous) ?? list[0]!;
      owners.set(key, win.rel);
      resources.push(win.r);
      for (const c of list) {
        if (c === win) continue;
        const where = c.rel === win.rel ? 'an earlier document of this file' : win.rel;
        problems.push({ file: c.rel, object: key, path: '/metadata/name', message: `duplicate: ${key} is also defined in ${where}, which wins; this one is ignored` });
      }
    }
    this.#owners = owners;
    resources.sort((a, b) => compare(resourceKey(a), resourceKey(b)));
    problems.sort((a, b) => compare(a.file, b.file)); // stable: keeps each file's own order
    const content = canonicalJson({ resources, problems });
    if (content === this.#lastContent) return;
    this.#lastContent = content;
    this.#snapshot = freezeSnapshot(resources, problems, this.#snapshot.revision + 1);
    if (!this.#started || this.#closed || !this.#onChange) return;
    try {
      this.#onChange(this.#snapshot);
    } catch (err) {
      this.#log('error', 'config folder: onChange threw', { error: (err as Error).message });
    }
  }
}

/** What one file's text contributes, given what it contributed before (see the header). */
export function applyFile(rel: string, text: string, lastApplied: readonly Resource[]): { applied: readonly Resource[]; problems: readonly LoadProblem[] } {
  const loaded = parseYamlDocuments(text, rel);
  if (loaded.problems.length === 0) return { applied: loaded.resources, problems: [] };
  const fresh = new Set(loaded.resources.map(resourceKey));
  const named = new Set(loaded.problems.flatMap((p) => (p.object === undefined ? [] : [p.object])));
  const anonymous = loaded.problems.some((p) => p.object === undefined);
  const kept = lastApplied.filter((r) => !fresh.has(resourceKey(r)) && (anonymous || named.has(resourceKey(r))));
  const keptKeys = new Set(kept.map(resourceKey));
  const keptUnnamed = [...keptKeys].filter((k) => !named.has(k));
  const problems = loaded.problems.map((p): LoadProblem => {
    if (p.object !== undefined) return keptKeys.has(p.object) ? { ...p, message: `${p.message} (its last good version stays in force)` } : p;
    return keptUnnamed.length > 0 ? { ...p, message: `${p.message} (last good ${keptUnnamed.join(', ')} stays in force)` } : p;
  });
  return { applied: [...loaded.resources, ...kept], problems };
}

function keepLastGood(rel: string, prev: FileState | undefined, sig: string, message: string): FileState {
  const applied = prev?.applied ?? [];
  const note = applied.length > 0 ? `; its last good ${applied.map(resourceKey).join(', ')} stays in force` : '';
  return { sig, text: undefined, applied, problems: [{ file: rel, path: '/', message: `${message}${note}` }] };
}

function freezeSnapshot(resources: Resource[], problems: LoadProblem[], revision: number): FolderSnapshot {
  return Object.freeze({ resources: Object.freeze(resources), problems: Object.freeze(problems.map((p) => Object.freeze(p))), revision });
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** JSON with object keys sorted: equal content, equal string, whatever the key order in the files. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).toSorted().map((k) => [k, (v as Record<string, unknown>)[k]])) : v,
  );
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function describeError(err: unknown): string {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : (err as Error).message;
}
