// Reads the proxy config document from a file (JSON or YAML) and applies it on every change.
// A file that does not parse or validate is refused with every problem; the last good stays.
import { open, stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApplyResult, ConfigStore } from './store.ts';
import { MAX_CONFIG_BYTES } from '../../api/proxy-config.ts';
import { settle } from '../../api/settle.ts';
import { yamlNestingProblem } from '../../api/yaml-nesting.ts';

/** JSON is parsed natively; the YAML parser is loaded only for YAML files (it costs memory). */
export async function parseDocument(text: string, file: string): Promise<unknown> {
  if (/\.json$/i.test(file)) return JSON.parse(text);
  const yaml = await import('yaml');
  // Before composing, which fails past some depth with only "Maximum call stack size exceeded".
  const deep = yamlNestingProblem(yaml, text);
  if (deep) throw new Error(`line ${deep.line}: ${deep.message}`);
  return yaml.parse(text);
}

export interface FileWatchOptions {
  /** Fallback poll: stat the file this often and re-read it when it changed (ms). Default 2000. */
  pollMs?: number;
  /** Quiet time after the last change before reading, and between the two reads that must agree (ms). Default 100. */
  quietMs?: number;
  /** A bigger file is refused (the last good config stays). Default MAX_CONFIG_BYTES (16 MiB). */
  maxBytes?: number;
}

/** Reads that disagree before settling gives up until the next change (a file rewritten nonstop). */
const MAX_SETTLE_READS = 50;

/** One read of the file: its stat signature (a symlink swap changes the inode) and text, or why not. */
type Read = { signature: string; text: string; error?: undefined } | { signature: string; error: Error };

/** What identifies a version of the file without reading it (a symlink swap changes the inode). */
async function signatureOf(path: string): Promise<string> {
  try {
    const s = await stat(path);
    return `${s.ino}/${s.size}/${s.mtimeMs}/${s.ctimeMs}`;
  } catch (err) {
    return `error ${(err as NodeJS.ErrnoException).code ?? ''}`;
  }
}

async function readConfigFile(path: string, maxBytes: number): Promise<Read> {
  const signature = await signatureOf(path);
  try {
    return { signature, text: await readBounded(path, maxBytes) };
  } catch (err) {
    return { signature, error: err as Error };
  }
}

/**
 * The file's text, or an error once it is over `maxBytes`: read in chunks up to the bound, so a
 * file that grows while it is read (or a device that never ends) costs no more than the bound.
 */
async function readBounded(path: string, maxBytes: number): Promise<string> {
  const tooBig = (size: string) => new Error(`the file is ${size} bytes, more than the ${maxBytes} a proxy config may have (as on the config stream); make it smaller`);
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size > maxBytes) throw tooBig(String(size));
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead, buffer } = await fh.read(Buffer.alloc(64 * 1024), 0, 64 * 1024, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooBig(`over ${maxBytes}`);
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Two reads agree when they saw the same text (or failed the same way). */
function agree(a: Read, b: Read): boolean {
  if (a.error || b.error) return a.error !== undefined && b.error !== undefined && a.signature === b.signature;
  return a.text === b.text;
}

export class FileConfigSource {
  readonly #file: string;
  readonly #store: ConfigStore;
  readonly #pollMs: number;
  readonly #quietMs: number;
  readonly #maxBytes: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  /** Bumped by every change (and by close): a settling read that sees it bumped stops. */
  #generation = 0;
  #lastText: string | undefined;
  /** The file's stat signature when it was last read. */
  #lastSignature: string | undefined;
  /** The text last refused, so unrelated events in the directory do not refuse (and log) it again. */
  #refusedText: string | undefined;

  constructor(file: string, store: ConfigStore, options: FileWatchOptions = {}) {
    this.#file = file;
    this.#store = store;
    this.#pollMs = options.pollMs ?? 2000;
    this.#quietMs = options.quietMs ?? 100;
    this.#maxBytes = options.maxBytes ?? MAX_CONFIG_BYTES;
  }

  /** Read the file once and apply it (at startup: nothing is writing it yet). */
  async load(): Promise<ApplyResult> {
    return this.#consider(await this.#read());
  }

  async #read(): Promise<Read> {
    const r = await readConfigFile(this.#file, this.#maxBytes);
    this.#lastSignature = r.signature;
    return r;
  }

  async #consider(read: Read): Promise<ApplyResult> {
    if (read.error) return this.#store.refuse([{ path: '/', message: `cannot read: ${read.error.message}` }], this.#file);
    const text = read.text;
    if (text === this.#lastText) {
      // Back to the config in force after a refused text: nothing to apply, but the refusal is over.
      this.#refusedText = undefined;
      this.#store.restore(this.#file);
      return { ok: true, version: this.#store.current?.version ?? '' };
    }
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
   * Re-read after `quietMs` without changes and apply only when two reads `quietMs` apart agree
   * (api/settle.ts), so a file written in parts is not applied half-written (a valid YAML prefix
   * would be). A change while settling starts over; reads that keep disagreeing give up until the
   * next change.
   */
  async #settle(generation: number, onResult: (r: ApplyResult) => void): Promise<void> {
    const stale = () => generation !== this.#generation;
    const first = await this.#read();
    // The config in force again: nothing to wait for.
    if (!first.error && first.text === this.#lastText) return onResult(await this.#consider(first));
    const settled = await settle(first, () => this.#read(), agree, { quietMs: this.#quietMs, maxRereads: MAX_SETTLE_READS, sleep, stale });
    if (settled) onResult(await this.#consider(settled));
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
      const generation = ++this.#generation;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.#settle(generation, onResult), this.#quietMs);
    };
    // Resolved, so a bare name (`--config proxy.yaml`) watches the working directory.
    const dir = dirname(resolve(this.#file));
    this.#watcher = watch(dir, schedule);
    // The directory may go away (an unmounted volume): keep the config in force and keep polling.
    this.#watcher.on('error', () => this.#watcher?.close());
    this.#watcher.unref();
    this.#poll = setInterval(() => {
      void signatureOf(this.#file).then((sig) => {
        if (sig !== this.#lastSignature) schedule();
      });
    }, this.#pollMs);
    this.#poll.unref();
  }

  close(): void {
    this.#generation++;
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
    this.#watcher?.close();
  }
}
