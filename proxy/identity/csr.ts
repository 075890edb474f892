// The proxy's certificate request: a fresh ECDSA P-256 key pair that never leaves the process
// and a PKCS#10 CSR proving possession of it. Hand-written DER (a few bytes of structure) so the
// sidecar does not load a crypto library for one message.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}

const SEQUENCE = 0x30;
/** ecdsa-with-SHA256 (1.2.840.10045.4.3.2) */
const ECDSA_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function newKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** A CSR with an empty subject: the control plane issues the identity the proof names, not one the CSR asks for. */
export function makeCsr(keys: KeyPair): string {
  const spki = keys.publicKey.export({ type: 'spki', format: 'der' });
  const info = tlv(SEQUENCE, Buffer.from([0x02, 0x01, 0x00]) /* version 0 */, tlv(SEQUENCE) /* empty Name */, spki, Buffer.from([0xa0, 0x00]) /* no attributes */);
  const signature = sign('sha256', info, keys.privateKey); // DER-encoded ECDSA signature
  const der = tlv(SEQUENCE, info, tlv(SEQUENCE, ECDSA_SHA256), tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd();
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
