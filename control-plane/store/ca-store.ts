// Where the CA state lives between processes: the seam the control plane and the CLI share.
// Guarantees: a write names the version it read, so a concurrent change is refused, never overwritten.

import type { CaDocument } from './ca-document.ts';

export interface StoredCa {
  readonly doc: CaDocument;
  /** Opaque: a content hash (file) or the Secret's resourceVersion. */
  readonly version: string;
}

/**
 * Implementations: FileCaStore (a 0600 JSON file, written atomically) and SecretCaStore (a
 * Kubernetes Secret, replaced with its resourceVersion). Errors are CaStoreError:
 * `not-found`, `exists` (create over an existing state), `conflict` (changed since it was read),
 * `bad-state` (stored but invalid), `io` (anything else, with the cause).
 */
export interface CaStore {
  /** For messages: `file /etc/meshlet/ca.json`, `Secret meshlet-system/meshlet-ca`. */
  readonly where: string;
  load(): Promise<StoredCa>;
  /** Store a new CA; refused with `exists` when one is there. */
  create(doc: CaDocument): Promise<StoredCa>;
  /** Replace the state read as `version`; refused with `conflict` when it changed since. */
  replace(doc: CaDocument, version: string): Promise<StoredCa>;
}

/** Read, change, write back with the version read (no retry: a conflict is reported). */
export async function updateCa(store: CaStore, change: (doc: CaDocument) => CaDocument): Promise<StoredCa> {
  const cur = await store.load();
  return store.replace(change(cur.doc), cur.version);
}
