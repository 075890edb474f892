// The CA state as a Kubernetes Secret (default meshlet-system/meshlet-ca), for the cluster.
// Guarantees: replace carries the resourceVersion read (optimistic concurrency); key material never in messages.

import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { trustBundle } from '../ca/index.ts';
import { CaStoreError, decodeCaDocument, encodeCaDocument, type CaDocument } from './ca-document.ts';
import type { CaStore, StoredCa } from './ca-store.ts';

/*
 * Secret layout (type Opaque):
 *   data["ca.json"]  the CA document (ca-document.ts): anchors, issuer, keys, rotation phase
 *   data["ca.crt"]   the trust bundle, PEM (public; for tools that want the anchors alone)
 * The control plane only reads it (RBAC: get on this one name); the CLI, with an operator's
 * credentials, creates and replaces it.
 */

export const DEFAULT_CA_SECRET = { namespace: 'meshlet-system', name: 'meshlet-ca' } as const;
export const CA_JSON_KEY = 'ca.json';
export const CA_BUNDLE_KEY = 'ca.crt';

/** `ns/name` → its parts; throws with what a valid value looks like. */
export function parseSecretRef(ref: string): { namespace: string; name: string } {
  const m = /^([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\/([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)$/.exec(ref);
  if (!m) throw new Error(`secret reference ${JSON.stringify(ref)} is not NAMESPACE/NAME (e.g. ${DEFAULT_CA_SECRET.namespace}/${DEFAULT_CA_SECRET.name})`);
  return { namespace: m[1] ?? '', name: m[2] ?? '' };
}

/** The Secret object for a CA document (also what `meshlet install --dry-run` prints). */
export function caSecretObject(doc: CaDocument, ref: { namespace: string; name: string }, resourceVersion?: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: ref.name,
      namespace: ref.namespace,
      labels: { 'app.kubernetes.io/name': 'meshlet-ca', 'app.kubernetes.io/part-of': 'meshlet' },
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    },
    data: { [CA_JSON_KEY]: b64(encodeCaDocument(doc)), [CA_BUNDLE_KEY]: b64(trustBundle(doc.state).join('')) },
  };
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

function statusOf(e: unknown): number | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export class SecretCaStore implements CaStore {
  readonly where: string;
  readonly #core: CoreV1Api;
  readonly #ref: { namespace: string; name: string };

  constructor(core: CoreV1Api, ref: { namespace: string; name: string } = DEFAULT_CA_SECRET) {
    this.#core = core;
    this.#ref = { namespace: ref.namespace, name: ref.name };
    this.where = `Secret ${ref.namespace}/${ref.name}`;
  }

  #fail(e: unknown, doing: string): never {
    const status = statusOf(e);
    // Only the status and the API's reason: the error body could echo the object we sent.
    const reason = (e as { body?: unknown }).body;
    const detail = typeof reason === 'string' ? (/"message":\s*"([^"]{0,300})/.exec(reason)?.[1] ?? '') : '';
    if (status === 404) throw new CaStoreError('not-found', `${this.where} does not exist (create it with: meshlet install --kubeconfig FILE, or meshlet identity init --ca-secret ${this.#ref.namespace}/${this.#ref.name})`);
    if (status === 409 && doing === 'create') throw new CaStoreError('exists', `${this.where} already exists; refusing to overwrite the CA (every workload would need new certificates)`);
    if (status === 409) throw new CaStoreError('conflict', `${this.where} changed since it was read (another writer); run the command again`);
    throw new CaStoreError('io', `cannot ${doing} ${this.where}: ${status === undefined ? (e as Error).message : `HTTP ${status}`}${detail ? ` (${detail})` : ''}`, { cause: status === undefined ? e : undefined });
  }

  async load(): Promise<StoredCa> {
    let secret: V1Secret;
    try {
      secret = await this.#core.readNamespacedSecret({ name: this.#ref.name, namespace: this.#ref.namespace });
    } catch (e) {
      return this.#fail(e, 'read');
    }
    const data = secret.data?.[CA_JSON_KEY];
    if (data === undefined) throw new CaStoreError('bad-state', `${this.where} has no data["${CA_JSON_KEY}"]`);
    const version = secret.metadata?.resourceVersion;
    if (!version) throw new CaStoreError('io', `${this.where} came back without a resourceVersion`);
    return { doc: decodeCaDocument(Buffer.from(data, 'base64').toString('utf8'), this.where), version };
  }

  async create(doc: CaDocument): Promise<StoredCa> {
    try {
      const out = await this.#core.createNamespacedSecret({ namespace: this.#ref.namespace, body: caSecretObject(doc, this.#ref) });
      return { doc, version: out.metadata?.resourceVersion ?? '' };
    } catch (e) {
      return this.#fail(e, 'create');
    }
  }

  async replace(doc: CaDocument, version: string): Promise<StoredCa> {
    try {
      const out = await this.#core.replaceNamespacedSecret({ name: this.#ref.name, namespace: this.#ref.namespace, body: caSecretObject(doc, this.#ref, version) });
      return { doc, version: out.metadata?.resourceVersion ?? '' };
    } catch (e) {
      return this.#fail(e, 'replace');
    }
  }
}
