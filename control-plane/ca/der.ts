// ASN.1/DER building blocks for the CA, on node-forge's ASN.1 codec (forge's x509 layer is RSA-only).
// Guarantees: strict DER in (no trailing bytes, no BER re-encodings), canonical DER out.

import { createHash } from 'node:crypto';
import forge from 'node-forge';

const { asn1 } = forge;
export type Asn1 = forge.asn1.Asn1;

export const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ed25519: '1.3.101.112',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

const U = asn1.Class.UNIVERSAL;
const CTX = asn1.Class.CONTEXT_SPECIFIC;
const T = asn1.Type;

const toBin = (b: Buffer): string => b.toString('binary');
const fromBin = (s: string): Buffer => Buffer.from(s, 'binary');

export function encode(obj: Asn1): Buffer {
  return fromBin(asn1.toDer(obj).getBytes());
}

/** Parse DER strictly; throws on trailing bytes, bad lengths, or an encoding that is not canonical. */
export function decode(der: Buffer): Asn1 {
  // decodeBitStrings:false keeps signatures and keys as the raw bytes they are.
  const opts = { strict: true, parseAllBytes: true, decodeBitStrings: false };
  const obj = asn1.fromDer(forge.util.createBuffer(toBin(der)), opts as unknown as boolean);
  if (!encode(obj).equals(der)) throw new Error('not canonical DER');
  return obj;
}

export const seq = (...items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
export const set = (...items: Asn1[]): Asn1 => asn1.create(U, T.SET, true, items);
export const oid = (o: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(o).getBytes());
export const utf8 = (s: string): Asn1 => asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(s));
export const octets = (b: Buffer): Asn1 => asn1.create(U, T.OCTETSTRING, false, toBin(b));
export const bool = (v: boolean): Asn1 => asn1.create(U, T.BOOLEAN, false, String.fromCharCode(v ? 0xff : 0));
export const nul = (): Asn1 => asn1.create(U, T.NULL, false, '');
export const smallInt = (n: number): Asn1 => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());
/** BIT STRING with `unused` trailing bits in the last byte. */
export const bits = (b: Buffer, unused = 0): Asn1 => asn1.create(U, T.BITSTRING, false, String.fromCharCode(unused) + toBin(b));
/** [n] EXPLICIT wrapper. */
export const explicit = (n: number, inner: Asn1): Asn1 => asn1.create(CTX, n, true, [inner]);
/** [n] IMPLICIT primitive (e.g. GeneralName uniformResourceIdentifier is [6] IA5String). */
export const implicitPrim = (n: number, bytes: Buffer): Asn1 => asn1.create(CTX, n, false, toBin(bytes));
/** [n] IMPLICIT constructed (e.g. the CSR's attributes [0] SET). */
export const implicitCons = (n: number, items: Asn1[]): Asn1 => asn1.create(CTX, n, true, items);
/** Re-wrap DER produced elsewhere (an SPKI from node:crypto) as an ASN.1 node. */
export const raw = (der: Buffer): Asn1 => decode(der);

/** A positive INTEGER from big-endian magnitude bytes, minimally encoded. */
export function unsignedInt(magnitude: Buffer): Asn1 {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let b = magnitude.subarray(i);
  if (b.length === 0) b = Buffer.from([0]);
  if ((b[0] ?? 0) & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return asn1.create(U, T.INTEGER, false, toBin(b));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5); whole seconds. */
export function time(ms: number): Asn1 {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return d.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** Name from [oid, value] pairs, one attribute per RDN; [] is the empty Name. */
export function name(attrs: ReadonlyArray<readonly [string, string]>): Asn1 {
  return seq(...attrs.map(([o, v]) => set(seq(oid(o), utf8(v)))));
}

export function algorithm(o: string): Asn1 {
  // RFC 5758: ecdsa-with-SHA256 has absent parameters; RFC 4055: RSA PKCS#1 v1.5 has NULL.
  return o === OID.sha256WithRsa ? seq(oid(o), nul()) : seq(oid(o));
}

export function extension(o: string, critical: boolean, value: Asn1): Asn1 {
  const parts = [oid(o)];
  if (critical) parts.push(bool(true));
  parts.push(octets(encode(value)));
  return seq(...parts);
}

/** subjectAltName value holding URIs only. */
export function uriSans(uris: readonly string[]): Asn1 {
  return seq(...uris.map((u) => implicitPrim(6, Buffer.from(u, 'ascii'))));
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes. */
export function keyIdentifier(spkiDer: Buffer): Buffer {
  const spki = decode(spkiDer);
  const bitString = children(spki)[1];
  if (!bitString || bitString.type !== T.BITSTRING) throw new Error('not a SubjectPublicKeyInfo');
  return createHash('sha1').update(fromBin(bytesOf(bitString)).subarray(1)).digest();
}

// ---- reading ----

export function children(node: Asn1 | undefined): Asn1[] {
  return node && Array.isArray(node.value) ? node.value : [];
}
export function bytesOf(node: Asn1): string {
  if (typeof node.value !== 'string') throw new Error('expected a primitive value');
  return node.value;
}
export function bufferOf(node: Asn1): Buffer {
  return fromBin(bytesOf(node));
}
export function oidOf(node: Asn1 | undefined): string | undefined {
  if (!node || node.tagClass !== U || node.type !== T.OID || typeof node.value !== 'string') return undefined;
  return asn1.derToOid(node.value);
}
export function isUniversal(node: Asn1 | undefined, type: number, constructed: boolean): node is Asn1 {
  return !!node && node.tagClass === U && node.type === type && node.constructed === constructed;
}
export function isContext(node: Asn1 | undefined, n: number): node is Asn1 {
  return !!node && node.tagClass === CTX && node.type === n;
}
export const TYPE = T;

// ---- PEM ----

export function pemEncode(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Exactly one PEM block with one of `labels`, strict base64; undefined otherwise. */
export function pemDecode(pem: string, labels: readonly string[]): Buffer | undefined {
  const m = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END ([A-Z0-9 ]+)-----\s*$/.exec(pem);
  if (!m || m[1] !== m[3] || !labels.includes(m[1] ?? '')) return undefined;
  const body = (m[2] ?? '').replace(/\r?\n/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(body) || body.length === 0) return undefined;
  return Buffer.from(body, 'base64');
}
