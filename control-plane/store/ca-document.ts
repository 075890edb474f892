// What a CA store holds: the CA state (anchors, issuer, rotation phase) plus the bootstrap-token
// HMAC key, as one JSON document. Guarantees: decoding checks everything (importSecret); keys never in messages.

import { exportSecret, importSecret, type CaState } from '../ca/index.ts';
import { MIN_KEY_BYTES } from '../identity/bootstrap-token.ts';

/*
 * Layout: the CA core's CaSecret (version 1) with one more field beside it,
 *   "bootstrapTokenKey": "<base64 of ≥ 32 random bytes>"
 * present once `meshlet identity bootstrap-token` has run (it adds the key when missing). The
 * field is removed before the rest is handed to importSecret, so the CA core's format is unchanged.
 */

export interface CaDocument {
  readonly state: CaState;
  /** HMAC key for bootstrap tokens (one-machine proof of identity); absent until first needed. */
  readonly bootstrapKey?: Buffer;
}

export type CaStoreErrorCode = 'not-found' | 'exists' | 'conflict' | 'bad-state' | 'io';

export class CaStoreError extends Error {
  readonly code: CaStoreErrorCode;
  constructor(code: CaStoreErrorCode, message: string, opts?: { cause?: unknown }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CaStoreError';
    this.code = code;
  }
}

const KEY_FIELD = 'bootstrapTokenKey';

export function encodeCaDocument(doc: CaDocument): string {
  const json: Record<string, unknown> = { ...exportSecret(doc.state) };
  if (doc.bootstrapKey) json[KEY_FIELD] = doc.bootstrapKey.toString('base64');
  return JSON.stringify(json, null, 2) + '\n';
}

/** Parse and check a stored document; `where` names the source in messages ("file ./ca.json"). */
export function decodeCaDocument(text: string, where: string): CaDocument {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CaStoreError('bad-state', `${where} is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CaStoreError('bad-state', `${where} is not a JSON object`);
  const { [KEY_FIELD]: rawKey, ...secret } = json as Record<string, unknown>;
  let state: CaState;
  try {
    state = importSecret(secret);
  } catch (e) {
    throw new CaStoreError('bad-state', `${where} does not hold a valid CA state: ${(e as Error).message}`, { cause: e });
  }
  if (rawKey === undefined) return Object.freeze({ state });
  const key = typeof rawKey === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(rawKey) ? Buffer.from(rawKey, 'base64') : undefined;
  if (!key || key.length < MIN_KEY_BYTES) throw new CaStoreError('bad-state', `${where}: ${KEY_FIELD} must be base64 of at least ${MIN_KEY_BYTES} bytes`);
  return Object.freeze({ state, bootstrapKey: key });
}
