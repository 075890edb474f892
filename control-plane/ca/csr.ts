// PKCS#10 requests: Certify's intake (parseCsr) and the proxy's outgoing request (makeCsr).
// Guarantees: a parsed CSR's self-signature verified (proof of possession); only its key is used.

import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { CertError } from './errors.ts';
import {
  OID, algorithm, bits, bufferOf, children, decode, encode, extension, implicitCons, isContext, isUniversal,
  name, oid, oidOf, pemDecode, pemEncode, raw, seq, set, smallInt, uriSans, TYPE,
} from './der.ts';

/** Requests larger than this are refused before parsing. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;

export type LeafKeyKind = 'ec-p256' | 'rsa';

export interface ParsedCsr {
  /** The requester's public key, canonical SPKI. The only thing a leaf takes from the CSR. */
  readonly publicKey: KeyObject;
  readonly spkiDer: Buffer;
  readonly keyKind: LeafKeyKind;
}

/**
 * Parse and check a PEM CSR. Refuses with CertError:
 * `bad-csr` (not one strict-DER PKCS#10 block), `unsupported-key` (not EC P-256 or RSA 2048–8192
 * bits, or a signature algorithm that does not fit the key), `csr-signature` (self-signature fails).
 * The subject and every requested attribute/extension are deliberately ignored.
 */
export function parseCsr(csrPem: string): ParsedCsr {
  if (typeof csrPem !== 'string' || csrPem.length === 0) throw new CertError('bad-csr', 'CSR is empty');
  if (csrPem.length > MAX_CSR_PEM_BYTES) throw new CertError('bad-csr', `CSR is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  const der = pemDecode(csrPem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (!der) throw new CertError('bad-csr', 'CSR is not one PEM "CERTIFICATE REQUEST" block');
  let root;
  try {
    root = decode(der);
  } catch (e) {
    throw new CertError('bad-csr', `CSR is not strict DER: ${(e as Error).message}`, { cause: e });
  }
  const [info, sigAlg, sigBits, ...extra] = children(root);
  if (!isUniversal(root, TYPE.SEQUENCE, true) || extra.length > 0 || !isUniversal(info, TYPE.SEQUENCE, true) ||
      !isUniversal(sigAlg, TYPE.SEQUENCE, true) || !isUniversal(sigBits, TYPE.BITSTRING, false)) {
    throw new CertError('bad-csr', 'CSR is not a PKCS#10 CertificationRequest');
  }
  const [version, subject, spki, attributes, ...infoExtra] = children(info);
  if (!isUniversal(version, TYPE.INTEGER, false) || bufferOf(version).toString('hex') !== '00' ||
      !isUniversal(subject, TYPE.SEQUENCE, true) || !isUniversal(spki, TYPE.SEQUENCE, true) ||
      !isContext(attributes, 0) || infoExtra.length > 0) {
    throw new CertError('bad-csr', 'CSR CertificationRequestInfo is malformed (want version 0, subject, key, attributes)');
  }

  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: encode(spki), format: 'der', type: 'spki' });
  } catch (e) {
    throw new CertError('unsupported-key', `CSR public key cannot be read: ${(e as Error).message}`, { cause: e });
  }
  const keyKind = acceptedKey(publicKey);

  const [algOid, algParams, ...algExtra] = children(sigAlg);
  const sigOid = oidOf(algOid);
  const wantOid = keyKind === 'rsa' ? OID.sha256WithRsa : OID.ecdsaWithSha256;
  if (sigOid !== wantOid) {
    throw new CertError('unsupported-key', `CSR signature algorithm ${sigOid ?? '?'} is not accepted for a ${keyKind} key (want ${wantOid})`);
  }
  const paramsOk = keyKind === 'rsa' ? algParams === undefined || isUniversal(algParams, TYPE.NULL, false) : algParams === undefined;
  if (!paramsOk || algExtra.length > 0) throw new CertError('bad-csr', 'CSR signature algorithm parameters are malformed');

  const sigWithUnused = bufferOf(sigBits);
  if (sigWithUnused[0] !== 0) throw new CertError('bad-csr', 'CSR signature BIT STRING has unused bits');
  let ok = false;
  try {
    ok = verify('sha256', encode(info), publicKey, sigWithUnused.subarray(1));
  } catch {
    ok = false;
  }
  if (!ok) throw new CertError('csr-signature', 'CSR self-signature does not verify (no proof of possession of the private key)');
  return Object.freeze({ publicKey, spkiDer: publicKey.export({ type: 'spki', format: 'der' }), keyKind });
}

function acceptedKey(key: KeyObject): LeafKeyKind {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return 'ec-p256';
  const bitsLen = details.modulusLength ?? 0;
  if (key.asymmetricKeyType === 'rsa' && bitsLen >= 2048 && bitsLen <= 8192) return 'rsa';
  const what = key.asymmetricKeyType === 'ec' ? `ec ${details.namedCurve ?? '?'}` : `${key.asymmetricKeyType ?? '?'}${bitsLen ? ` ${bitsLen} bits` : ''}`;
  throw new CertError('unsupported-key', `CSR key ${what} is not accepted (want EC P-256, or RSA 2048–8192 bits)`);
}

export interface MakeCsrOptions {
  /** EC P-256 (preferred) or RSA private key; it signs the request and never leaves the caller. */
  privateKey: KeyObject;
  /** Optional subject CN. Certify ignores it; tests use it to prove that. */
  commonName?: string;
  /** Optional requested URI SANs. Certify ignores them too. */
  uriSans?: readonly string[];
}

/** Build and self-sign a PKCS#10 request (what a proxy sends to Certify). */
export function makeCsr(opts: MakeCsrOptions): string {
  const publicKey = createPublicKey(opts.privateKey);
  const type = publicKey.asymmetricKeyType;
  const attrs = opts.uriSans && opts.uriSans.length > 0
    ? [seq(oid(OID.extensionRequest), set(seq(extension(OID.subjectAltName, false, uriSans(opts.uriSans)))))]
    : [];
  const info = seq(
    smallInt(0),
    name(opts.commonName === undefined ? [] : [[OID.commonName, opts.commonName]]),
    raw(publicKey.export({ type: 'spki', format: 'der' })),
    implicitCons(0, attrs),
  );
  // Ed25519 is accepted here only so tests can show Certify refusing it.
  const sigAlg = type === 'rsa' ? OID.sha256WithRsa : type === 'ed25519' ? OID.ed25519 : OID.ecdsaWithSha256;
  const signature = sign(type === 'ed25519' ? null : 'sha256', encode(info), opts.privateKey);
  return pemEncode('CERTIFICATE REQUEST', encode(seq(info, algorithm(sigAlg), bits(signature))));
}
