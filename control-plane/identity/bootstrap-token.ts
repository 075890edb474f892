// One-machine proof of identity: a token the control plane's CLI issues and Certify checks.
// Guarantees: a token names exactly one SPIFFE ID, is HMAC-SHA256 bound, expires, compared in constant time.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseSpiffeId, type SpiffeId } from '../ca/spiffe.ts';

/*
 * Format: `mbt1.<payload>.<mac>`, both parts base64url without padding.
 *   payload = JSON {"sub": "<spiffe id>", "iat": <ms>, "exp": <ms>}
 *   mac     = HMAC-SHA256(key, "mbt1.<payload>")
 * The version prefix is inside the MAC, so a token cannot be replayed under another format.
 */

const PREFIX = 'mbt1';
const MAX_TOKEN_LENGTH = 4096;
export const MIN_KEY_BYTES = 32;

export type BootstrapRefusal = 'malformed' | 'bad-signature' | 'expired';

export type BootstrapVerdict =
  | { readonly ok: true; readonly identity: SpiffeId; readonly expiresAtMs: number }
  | { readonly ok: false; readonly reason: BootstrapRefusal; readonly message: string };

/** A fresh 256-bit signing key (keep it with the CA state, never log it). */
export function generateBootstrapKey(): Buffer {
  return randomBytes(MIN_KEY_BYTES);
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length < MIN_KEY_BYTES) throw new Error(`bootstrap token key must be at least ${MIN_KEY_BYTES} bytes`);
}

function mac(key: Buffer, signed: string): Buffer {
  return createHmac('sha256', key).update(signed, 'ascii').digest();
}

/** A token for `identity`, valid from `now` (wall ms) for `ttlMs`. */
export function issueBootstrapToken(identity: SpiffeId, opts: { ttlMs: number; now: number; key: Buffer }): string {
  checkKey(opts.key);
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new Error(`ttlMs must be a finite number > 0, got ${opts.ttlMs}`);
  if (!Number.isFinite(opts.now) || opts.now <= 0) throw new Error(`now must be wall-clock ms, got ${opts.now}`);
  const sub = parseSpiffeId(identity.uri).uri; // re-validated
  const payload = Buffer.from(JSON.stringify({ sub, iat: Math.floor(opts.now), exp: Math.floor(opts.now + opts.ttlMs) })).toString('base64url');
  const signed = `${PREFIX}.${payload}`;
  return `${signed}.${mac(opts.key, signed).toString('base64url')}`;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

function refuse(reason: BootstrapRefusal, message: string): BootstrapVerdict {
  return { ok: false, reason, message };
}

/** Check a token: the identity it names, or why not. Never throws on token content. */
export function verifyBootstrapToken(token: string, key: Buffer, now: number): BootstrapVerdict {
  checkKey(key);
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return refuse('malformed', 'token is empty or too long');
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return refuse('malformed', `token is not ${PREFIX}.<payload>.<mac>`);
  const [, payload = '', given = ''] = parts;
  if (!B64URL.test(payload) || !B64URL.test(given)) return refuse('malformed', 'token parts are not base64url');
  const givenMac = Buffer.from(given, 'base64url');
  if (givenMac.length !== 32 || givenMac.toString('base64url') !== given) return refuse('malformed', 'token MAC is not 32 bytes of canonical base64url');
  const expected = mac(key, `${PREFIX}.${payload}`);
  if (!timingSafeEqual(expected, givenMac)) return refuse('bad-signature', 'token MAC does not match (tampered, or signed with another key)');
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return refuse('malformed', 'token payload is not JSON');
  }
  const c = claims as { sub?: unknown; iat?: unknown; exp?: unknown };
  if (typeof c !== 'object' || c === null || Object.keys(c).toSorted().join() !== 'exp,iat,sub' ||
      typeof c.sub !== 'string' || !Number.isSafeInteger(c.exp) || !Number.isSafeInteger(c.iat)) {
    return refuse('malformed', 'token payload must be exactly {sub, iat, exp}');
  }
  let identity: SpiffeId;
  try {
    identity = parseSpiffeId(c.sub);
  } catch (e) {
    return refuse('malformed', `token subject: ${(e as Error).message}`);
  }
  const exp = c.exp as number;
  if (now >= exp) return refuse('expired', `token expired at ${new Date(exp).toISOString()}`);
  return { ok: true, identity, expiresAtMs: exp };
}
