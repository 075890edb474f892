// Reads the proxy config document from a file (JSON or YAML) and applies it on every change.
// A file that does not parse or validate is refused with every problem; the last good stays.
import { readFile, stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { ApplyResult, ConfigStore } from './store.ts';

/** JSON is parsed natively; the YAML parser is loaded only for YAML files (it costs memory). */
export async function parseDocument(text: string, file: string): Promise<unknown> {
  if (/\.json$/i.test(file)) return JSON.parse(text);
  const { parse } = await import('yaml');
  return parse(text);
}

export interface FileWatchOptions {
  /** Fallback poll: stat the file this often and re-read it when it changed (ms). Default 2000. */
  pollMs?: number;
}

/** What identifies a version of the file without reading it (a symlink swap changes the inode). */
async function signature(path: string): Promise<string> {
  try {
    const s = await stat(path);
    return `${s.ino}/${s.size}/${s.mtimeMs}/${s.ctimeMs}`;
  } catch (err) {
    return `error ${(err as NodeJS.ErrnoException).code ?? ''}`;
  }
}

export class FileConfigSource {
  readonly #file: string;
  readonly #store: ConfigStore;
  readonly #pollMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #lastText: string | undefined;
  /** The file's stat signature when it was last read. */
  #lastSignature: string | undefined;
  /** The text last refused, so unrelated events in the directory do not refuse (and log) it again. */
  #refusedText: string | undefined;

  constructor(file: string, store: ConfigStore, options: FileWatchOptions = {}) {
    this.#file = file;
    this.#store = store;
    this.#pollMs = options.pollMs ?? 2000;
  }

  async load(): Promise<ApplyResult> {
    let text: string;
    this.#lastSignature = await signature(this.#file);
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      return this.#store.refuse([{ path: '/', message: `cannot read: ${(err as Error).message}` }], this.#file);
    }
    if (text === this.#lastText) return { ok: true, version: this.#store.current?.version ?? '' };
    const refused = this.#store.lastError;
    if (text === this.#refusedText && refused) return { ok: false, version: this.#store.current?.version, problems: refused.problems };
    const r = await this.#apply(text);
    if (r.ok) this.#lastText = text;
    this.#refusedText = r.ok ? undefined : text;
    return r;
  }

  async #apply(text: string): Promise<ApplyResult> {
    let doc: unknown;
    try {
      doc = await parseDocument(text, this.#file);
    } catch (err) {
      return this.#store.refuse([{ path: '/', message: `does not parse: ${(err as Error).message}` }], this.#file);
    }
    return this.#store.apply(doc, this.#file);
  }

  /**
   * Re-read the file on any change in its directory, not only events for its own name: an update
   * may swap a symlink on the way to it (a Kubernetes ConfigMap volume renames `..data_tmp` over
   * `..data`; `proxy.json -> ..data/proxy.json` itself never changes). Reading is cheap and an
   * unchanged text stops at the last-text check. A slow poll of the file's stat covers what
   * fs.watch misses (a symlink target in another directory edited in place, lost events).
   */
  watch(onResult: (r: ApplyResult) => void): void {
    const schedule = () => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.load().then(onResult), 50);
    };
    // Resolved, so a bare name (`--config proxy.yaml`) watches the working directory.
    const dir = dirname(resolve(this.#file));
    this.#watcher = watch(dir, schedule);
    // The directory may go away (an unmounted volume): keep the config in force and keep polling.
    this.#watcher.on('error', () => this.#watcher?.close());
    this.#watcher.unref();
    this.#poll = setInterval(() => {
      void signature(this.#file).then((sig) => {
        if (sig !== this.#lastSignature) schedule();
      });
    }, this.#pollMs);
    this.#poll.unref();
  }

  close(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
    this.#watcher?.close();
  }
}
