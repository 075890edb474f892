// The CA state as a local JSON file (one machine, tests, `meshlet identity --ca-file`).
// Guarantees: written 0600 through a temp file and rename (never half-written); create never overwrites.

import { createHash, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { CaStoreError, decodeCaDocument, encodeCaDocument, type CaDocument } from './ca-document.ts';
import type { CaStore, StoredCa } from './ca-store.ts';

const versionOf = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 32);

export class FileCaStore implements CaStore {
  readonly file: string;
  readonly where: string;

  constructor(file: string) {
    this.file = path.resolve(file);
    this.where = `file ${file}`;
  }

  async #read(): Promise<string> {
    try {
      return await readFile(this.file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new CaStoreError('not-found', `${this.where} does not exist (create it with: meshlet identity init --ca-file ${this.file})`);
      throw new CaStoreError('io', `cannot read ${this.where}: ${(e as Error).message}`, { cause: e });
    }
  }

  async load(): Promise<StoredCa> {
    const text = await this.#read();
    return { doc: decodeCaDocument(text, this.where), version: versionOf(text) };
  }

  /** Write `text` to a new 0600 temp file beside the target, flushed to disk. */
  async #temp(text: string): Promise<string> {
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${randomBytes(6).toString('hex')}.tmp`);
    let fh;
    try {
      fh = await open(tmp, 'wx', 0o600);
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } catch (e) {
      await fh?.close();
      await unlink(tmp).catch(() => {});
      throw new CaStoreError('io', `cannot write ${this.where}: ${(e as Error).message}`, { cause: e });
    }
    await fh.close();
    return tmp;
  }

  async create(doc: CaDocument): Promise<StoredCa> {
    const text = encodeCaDocument(doc);
    const tmp = await this.#temp(text);
    try {
      // link() fails with EEXIST instead of replacing: an existing CA is never overwritten.
      await link(tmp, this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new CaStoreError('exists', `${this.where} already holds a CA; refusing to overwrite it (every workload would need new certificates). Remove the file first if that is really what you want.`);
      }
      throw new CaStoreError('io', `cannot create ${this.where}: ${(e as Error).message}`, { cause: e });
    } finally {
      await unlink(tmp).catch(() => {});
    }
    return { doc, version: versionOf(text) };
  }

  async replace(doc: CaDocument, version: string): Promise<StoredCa> {
    const text = encodeCaDocument(doc);
    // Compare-then-rename: a change between the two is not caught (no file locking); the window is
    // one rename, and the CA file has one writer (the operator's CLI) in practice.
    if (versionOf(await this.#read()) !== version) {
      throw new CaStoreError('conflict', `${this.where} changed since it was read (another meshlet command ran at the same time); run the command again`);
    }
    const tmp = await this.#temp(text);
    try {
      await rename(tmp, this.file);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw new CaStoreError('io', `cannot replace ${this.where}: ${(e as Error).message}`, { cause: e });
    }
    return { doc, version: versionOf(text) };
  }
}
