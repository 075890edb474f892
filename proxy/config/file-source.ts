// Reads the proxy config document from a file (JSON or YAML) and applies it on every change.
// A file that does not parse or validate is refused with every problem; the last good stays.
import { readFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { ApplyResult, ConfigStore } from './store.ts';

/** JSON is parsed natively; the YAML parser is loaded only for YAML files (it costs memory). */
export async function parseDocument(text: string, file: string): Promise<unknown> {
  if (/\.json$/i.test(file)) return JSON.parse(text);
  const { parse } = await import('yaml');
  return parse(text);
}

export class FileConfigSource {
  readonly #file: string;
  readonly #store: ConfigStore;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastText: string | undefined;

  constructor(file: string, store: ConfigStore) {
    this.#file = file;
    this.#store = store;
  }

  async load(): Promise<ApplyResult> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      return this.#store.refuse([{ path: '/', message: `cannot read: ${(err as Error).message}` }], this.#file);
    }
    if (text === this.#lastText) return { ok: true, version: this.#store.current?.version ?? '' };
    let doc: unknown;
    try {
      doc = await parseDocument(text, this.#file);
    } catch (err) {
      return this.#store.refuse([{ path: '/', message: `does not parse: ${(err as Error).message}` }], this.#file);
    }
    const r = this.#store.apply(doc, this.#file);
    if (r.ok) this.#lastText = text;
    return r;
  }

  /** Watch the file (and its directory, to survive editors that replace the file). */
  watch(onResult: (r: ApplyResult) => void): void {
    const schedule = () => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.load().then(onResult), 50);
    };
    // Resolved, so a bare name (`--config proxy.yaml`) watches the working directory for "proxy.yaml".
    const path = resolve(this.#file);
    const dir = dirname(path);
    const base = basename(path);
    this.#watcher = watch(dir, (_event, name) => {
      if (name === null || name === base) schedule();
    });
    this.#watcher.unref();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#watcher?.close();
  }
}
