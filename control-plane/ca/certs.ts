// The certificate chain, trust anchor → issuer → workload leaf: what Certify signs with.
// Guarantees: a leaf names exactly the identity it is given (never the CSR's), within its issuer's life.

/*
 * Key algorithm: ECDSA P-256 for anchor, issuer and (by default) leaves.
 *
 * node-forge 1.x builds and signs X.509 only with RSA: `pki.certificateFromAsn1`,
 * `certificationRequestFromAsn1` and `publicKeyToAsn1` throw "OID is not RSA" for any EC key and
 * `cert.sign` knows only RSA digests. RSA-2048 everywhere would work, but every TLS 1.3 handshake
 * between proxies would then pay RSA signatures (≈1 ms to sign on this class of CPU, versus ≈0.05
 * ms for P-256), the leaf key generation a proxy does at start and at every renewal would take
 * ≈50–100 ms instead of <1 ms, and certificates and handshakes would be larger.
 * So forge does what it does well, ASN.1/DER (der.ts builds the TBSCertificate and parses the
 * CSR), and node:crypto (OpenSSL) does the key generation, the ECDSA-with-SHA-256 signatures and
 * the CSR proof-of-possession check. Leaves requested with an RSA key (2048–8192) are still signed
 * (by the P-256 issuer), with keyEncipherment added.
 */

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes as cryptoRandomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { inspect } from 'node:util';
import { parseCsr } from './csr.ts';
import { CertError } from './errors.ts';
import {
  OID, algorithm, bits, bool, children, decode, encode, explicit, extension, implicitPrim, isUniversal, keyIdentifier,
  name, octets, oid, oidOf, raw, seq, smallInt, time, unsignedInt, uriSans, bufferOf, bytesOf, isContext, TYPE,
  type Asn1,
} from './der.ts';
import { DEFAULT_TRUST_DOMAIN, isDnsSubdomain, spiffeId, type SpiffeId } from './spiffe.ts';

export const DAY_MS = 24 * 60 * 60 * 1000;
/** Leaf lifetime when none is asked for. */
export const DEFAULT_LEAF_TTL_MS = DAY_MS;
export const DEFAULT_ANCHOR_VALIDITY_DAYS = 365;
export const DEFAULT_ISSUER_VALIDITY_DAYS = 90;
/** notBefore is backdated this much so a peer whose clock is a little behind accepts the cert. */
export const CLOCK_SKEW_MS = 60 * 1000;

/** A leaf the capped lifetime would leave shorter than this is refused (the issuer is about to expire). */
export const MIN_LEAF_LIFETIME_MS = 60 * 1000;

/** Random bytes for serial numbers (node:crypto randomBytes in production). */
export type RandomBytes = (n: number) => Buffer;

export type AuthorityRole = 'anchor' | 'issuer';

export interface AuthoritySecret {
  certPem: string;
  keyPem: string;
}

/**
 * A CA certificate together with its private key. The key stays inside: JSON and util.inspect
 * show `[redacted]`; only `exportSecret()` (persistence) hands out the PEM.
 */
export class Authority {
  readonly role: AuthorityRole;
  readonly trustDomain: string;
  readonly certPem: string;
  /** One-line subject for messages, e.g. `O=meshlet, CN=meshlet issuer cluster.local 1a2b3c4d`. */
  readonly subject: string;
  readonly serialHex: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly x509: X509Certificate;
  #key: KeyObject;
  #subjectNameDer: Buffer;
  #keyId: Buffer;

  /** Validates: a CA certificate with a `spiffe://<trust-domain>` URI SAN and the matching key. */
  constructor(certPem: string, privateKey: KeyObject | string) {
    let x509: X509Certificate;
    let key: KeyObject;
    try {
      x509 = new X509Certificate(certPem);
      key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
    } catch (e) {
      throw new CertError('bad-cert', `cannot read CA certificate or key: ${(e as Error).message}`, { cause: e });
    }
    if (key.type !== 'private') throw new CertError('bad-cert', 'CA key is not a private key');
    if (!x509.ca) throw new CertError('bad-cert', `certificate ${x509.subject?.replace(/\n/g, ', ') || '(no subject)'} is not a CA`);
    const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
    if (!fromKey.equals(x509.publicKey.export({ type: 'spki', format: 'der' }))) {
      throw new CertError('bad-cert', `private key does not match CA certificate ${x509.subject.replace(/\n/g, ', ')}`);
    }
    this.trustDomain = caTrustDomainOf(x509);
    this.role = x509.checkIssued(x509) && x509.verify(x509.publicKey) ? 'anchor' : 'issuer';
    this.x509 = x509;
    this.certPem = x509.toString();
    this.subject = x509.subject.replace(/\n/g, ', ');
    this.serialHex = x509.serialNumber.toLowerCase();
    this.notBeforeMs = x509.validFromDate.getTime();
    this.notAfterMs = x509.validToDate.getTime();
    this.#key = key;
    // Cached: every leaf repeats the issuer's exact subject Name and its key identifier.
    this.#subjectNameDer = encode(subjectNameOf(x509));
    this.#keyId = keyIdentifierOf(x509);
  }

  /** The exact DER of the subject Name (a child's issuer field must match it byte for byte). */
  get subjectNameDer(): Buffer {
    return Buffer.from(this.#subjectNameDer);
  }

  /** Subject key identifier (SHA-1 of the public key bits), the child's authorityKeyIdentifier. */
  get keyId(): Buffer {
    return Buffer.from(this.#keyId);
  }

  /** ECDSA-with-SHA-256 (or RSA PKCS#1 v1.5 SHA-256 for an imported RSA CA) over `data`. */
  sign(data: Buffer): Buffer {
    return sign('sha256', data, this.#key);
  }

  get signatureAlgorithmOid(): string {
    return this.#key.asymmetricKeyType === 'rsa' ? OID.sha256WithRsa : OID.ecdsaWithSha256;
  }

  validAt(nowMs: number): boolean {
    return this.notBeforeMs <= nowMs && nowMs < this.notAfterMs;
  }

  /** For persistence (a Kubernetes Secret or a 0600 file) only. */
  exportSecret(): AuthoritySecret {
    return { certPem: this.certPem, keyPem: this.#key.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }

  toJSON(): object {
    return { role: this.role, subject: this.subject, serial: this.serialHex, notAfter: new Date(this.notAfterMs).toISOString(), certPem: this.certPem, privateKey: '[redacted]' };
  }

  [inspect.custom](): string {
    return `Authority(${this.role} ${this.subject}, serial ${this.serialHex}, until ${new Date(this.notAfterMs).toISOString()}, key [redacted])`;
  }
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A fresh ECDSA P-256 key pair (node:crypto; well under a millisecond). */
export function generateKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

interface CaOptions {
  validityDays?: number;
  /** Wall-clock ms since the epoch (WallClock.nowMs()). */
  now: number;
  /** Bring your own key (tests, HSM-less imports); default: a fresh P-256 pair. */
  keyPair?: KeyPair;
  randomBytes?: RandomBytes;
}

/** A self-signed trust anchor for `trustDomain` (CA, no path-length limit beyond its issuer's 0). */
export function makeTrustAnchor(opts: CaOptions & { trustDomain?: string }): Authority {
  const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  if (!isDnsSubdomain(trustDomain)) throw new CertError('bad-options', `trust domain ${JSON.stringify(trustDomain)} is not a lower-case DNS name`);
  const now = checkNow(opts.now);
  const days = checkPositive('validityDays', opts.validityDays ?? DEFAULT_ANCHOR_VALIDITY_DAYS);
  const keys = opts.keyPair ?? generateKeyPair();
  const spki = keys.publicKey.export({ type: 'spki', format: 'der' });
  const serial = newSerial(opts.randomBytes);
  const subject = name([[OID.organization, 'meshlet'], [OID.commonName, `meshlet trust anchor ${trustDomain} ${serial.subarray(0, 4).toString('hex')}`]]);
  const kid = keyIdentifier(spki);
  const der = buildCertificate({
    serial, issuerName: subject, subjectName: subject,
    notBeforeMs: now - CLOCK_SKEW_MS, notAfterMs: now + days * DAY_MS, spkiDer: spki,
    extensions: [
      extension(OID.basicConstraints, true, seq(bool(true))),
      extension(OID.keyUsage, true, keyUsageBits({ keyCertSign: true, cRLSign: true })),
      extension(OID.subjectKeyIdentifier, false, octets(kid)),
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrim(0, kid))),
      extension(OID.subjectAltName, false, uriSans([`spiffe://${trustDomain}`])),
    ],
    sigAlgOid: keys.privateKey.asymmetricKeyType === 'rsa' ? OID.sha256WithRsa : OID.ecdsaWithSha256,
    sign: (tbs) => sign('sha256', tbs, keys.privateKey),
  });
  return new Authority(derToPem(der), keys.privateKey);
}

/** An intermediate (pathLen 0) signed by `anchor`, never outliving it. */
export function makeIssuer(anchor: Authority, opts: CaOptions): Authority {
  if (anchor.role !== 'anchor') throw new CertError('bad-options', 'makeIssuer needs a trust anchor (self-signed CA)');
  const now = checkNow(opts.now);
  if (!anchor.validAt(now)) throw new CertError('issuer-expired', `trust anchor ${anchor.subject} is not valid at ${iso(now)}`);
  const days = checkPositive('validityDays', opts.validityDays ?? DEFAULT_ISSUER_VALIDITY_DAYS);
  const keys = opts.keyPair ?? generateKeyPair();
  const spki = keys.publicKey.export({ type: 'spki', format: 'der' });
  const serial = newSerial(opts.randomBytes);
  const der = buildCertificate({
    serial, issuerName: raw(anchor.subjectNameDer),
    subjectName: name([[OID.organization, 'meshlet'], [OID.commonName, `meshlet issuer ${anchor.trustDomain} ${serial.subarray(0, 4).toString('hex')}`]]),
    notBeforeMs: Math.max(now - CLOCK_SKEW_MS, anchor.notBeforeMs), notAfterMs: Math.min(now + days * DAY_MS, anchor.notAfterMs),
    spkiDer: spki,
    extensions: [
      extension(OID.basicConstraints, true, seq(bool(true), smallInt(0))),
      extension(OID.keyUsage, true, keyUsageBits({ keyCertSign: true, cRLSign: true })),
      extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(spki))),
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrim(0, anchor.keyId))),
      extension(OID.subjectAltName, false, uriSans([`spiffe://${anchor.trustDomain}`])),
    ],
    sigAlgOid: anchor.signatureAlgorithmOid,
    sign: (tbs) => anchor.sign(tbs),
  });
  return new Authority(derToPem(der), keys.privateKey);
}

export interface SignLeafOptions {
  issuer: Authority;
  csrPem: string;
  /** From the proof (TokenReview / bootstrap token), never from the CSR. */
  identity: SpiffeId;
  /** Default 24 h; capped at the issuer's notAfter. */
  ttlMs?: number;
  now: number;
  randomBytes?: RandomBytes;
  /**
   * For a serving certificate only (the control plane's own, so ordinary HTTPS clients can check
   * the host name): DNS names and IP addresses added after the URI SAN. Never taken from a CSR.
   */
  dnsSans?: readonly string[];
  ipSans?: readonly string[];
}

export interface SignedLeaf {
  certPem: string;
  serialHex: string;
  notBeforeMs: number;
  notAfterMs: number;
}

/**
 * Sign a workload leaf: the CSR contributes only its (verified) public key. Subject is empty,
 * the only URI SAN is the identity (SAN critical, as RFC 5280 requires for an empty subject; a serving
 * certificate adds dnsSans/ipSans),
 * CA:false, digitalSignature (+keyEncipherment for RSA keys), serverAuth+clientAuth,
 * notBefore = now − 1 min, notAfter = min(now + ttl, issuer notAfter), 128-bit random serial.
 * Refused (issuer-expired) when the issuer is not valid now or has under a minute left.
 */
export function signLeaf(opts: SignLeafOptions): SignedLeaf {
  const now = checkNow(opts.now);
  const ttl = checkPositive('ttlMs', opts.ttlMs ?? DEFAULT_LEAF_TTL_MS);
  const issuer = opts.issuer;
  if (issuer.role !== 'issuer') throw new CertError('bad-options', 'signLeaf needs an issuer (intermediate CA), not a trust anchor');
  const identity = spiffeId(opts.identity); // re-validate: a hand-built object cannot smuggle junk
  if (identity.trustDomain !== issuer.trustDomain) {
    throw new CertError('bad-identity', `identity ${identity.uri} is not in the issuer's trust domain ${issuer.trustDomain}`);
  }
  const hostSans = hostNameSans(opts.dnsSans ?? [], opts.ipSans ?? []);
  const csr = parseCsr(opts.csrPem);
  if (!issuer.validAt(now)) throw new CertError('issuer-expired', `issuer ${issuer.subject} is not valid at ${iso(now)} (valid ${iso(issuer.notBeforeMs)} to ${iso(issuer.notAfterMs)})`);
  const notBeforeMs = Math.max(now - CLOCK_SKEW_MS, issuer.notBeforeMs);
  const notAfterMs = Math.min(now + ttl, issuer.notAfterMs);
  if (notAfterMs - now < Math.min(MIN_LEAF_LIFETIME_MS, ttl)) {
    throw new CertError('issuer-expired', `issuer ${issuer.subject} expires at ${iso(issuer.notAfterMs)}: less than ${MIN_LEAF_LIFETIME_MS / 1000} s left for a leaf`);
  }
  const serial = newSerial(opts.randomBytes);
  const der = buildCertificate({
    serial, issuerName: raw(issuer.subjectNameDer), subjectName: name([]),
    notBeforeMs, notAfterMs, spkiDer: csr.spkiDer,
    extensions: [
      extension(OID.basicConstraints, true, seq()),
      extension(OID.keyUsage, true, keyUsageBits({ digitalSignature: true, keyEncipherment: csr.keyKind === 'rsa' })),
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
      extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(csr.spkiDer))),
      extension(OID.authorityKeyIdentifier, false, seq(implicitPrim(0, issuer.keyId))),
      extension(OID.subjectAltName, true, hostSans.length === 0 ? uriSans([identity.uri]) : seq(...children(uriSans([identity.uri])), ...hostSans)),
    ],
    sigAlgOid: issuer.signatureAlgorithmOid,
    sign: (tbs) => issuer.sign(tbs),
  });
  const x = new X509Certificate(der);
  return { certPem: x.toString(), serialHex: x.serialNumber.toLowerCase(), notBeforeMs: x.validFromDate.getTime(), notAfterMs: x.validToDate.getTime() };
}

// ---- building blocks ----

/** GeneralNames dNSName [2] and iPAddress [7] for a serving certificate; refuses anything malformed. */
function hostNameSans(dns: readonly string[], ips: readonly string[]): Asn1[] {
  const out: Asn1[] = [];
  for (const d of dns) {
    if (typeof d !== 'string' || !isDnsSubdomain(d)) throw new CertError('bad-options', `DNS SAN ${JSON.stringify(d)} is not a lower-case DNS name`);
    out.push(implicitPrim(2, Buffer.from(d, 'ascii')));
  }
  for (const ip of ips) out.push(implicitPrim(7, ipBytes(ip)));
  return out;
}

const ipv6Groups = (s: string): string[] => (s === '' ? [] : s.split(':'));

/** 4 or 16 network-order bytes of an IPv4 / IPv6 literal (RFC 5280 §4.2.1.6). */
function ipBytes(ip: string): Buffer {
  const kind = typeof ip === 'string' ? isIP(ip) : 0;
  if (kind === 4) return Buffer.from(ip.split('.').map(Number));
  if (kind !== 6) throw new CertError('bad-options', `IP SAN ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  let text = ip.toLowerCase();
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = (v4[2] ?? '').split('.').map(Number) as [number, number, number, number];
    text = `${v4[1]}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = ipv6Groups(head);
  const t = tail === undefined ? [] : ipv6Groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function buildCertificate(o: {
  serial: Buffer; issuerName: Asn1; subjectName: Asn1;
  notBeforeMs: number; notAfterMs: number; spkiDer: Buffer; extensions: Asn1[];
  sigAlgOid: string; sign: (tbs: Buffer) => Buffer;
}): Buffer {
  const tbs = seq(
    explicit(0, smallInt(2)), // v3
    unsignedInt(o.serial),
    algorithm(o.sigAlgOid),
    o.issuerName,
    seq(time(o.notBeforeMs), time(o.notAfterMs)),
    o.subjectName,
    raw(o.spkiDer),
    explicit(3, seq(...o.extensions)),
  );
  const tbsDer = encode(tbs);
  return encode(seq(tbs, algorithm(o.sigAlgOid), bits(o.sign(tbsDer))));
}

function keyUsageBits(ku: { digitalSignature?: boolean; keyEncipherment?: boolean; keyCertSign?: boolean; cRLSign?: boolean }): Asn1 {
  // Named bits (RFC 5280 §4.2.1.3): digitalSignature 0, keyEncipherment 2, keyCertSign 5, cRLSign 6.
  let v = 0;
  if (ku.digitalSignature) v |= 0x80;
  if (ku.keyEncipherment) v |= 0x20;
  if (ku.keyCertSign) v |= 0x04;
  if (ku.cRLSign) v |= 0x02;
  let unused = 0;
  while (unused < 7 && ((v >> unused) & 1) === 0) unused++; // DER drops trailing zero bits
  return bits(Buffer.from([v]), unused);
}

/** 128 random bits as a positive, minimally encoded INTEGER (≤ 17 octets, RFC 5280 allows 20). */
function newSerial(randomBytes: RandomBytes = cryptoRandomBytes): Buffer {
  const b = Buffer.from(randomBytes(16)); // a copy: never write into the caller's buffer
  if (b.length !== 16) throw new CertError('bad-options', 'randomBytes returned the wrong length');
  if (b.every((x) => x === 0)) b[15] = 1;
  return b;
}

function tbsOf(x509: X509Certificate): Asn1[] {
  const cert = decode(x509.raw);
  return children(children(cert)[0]);
}

/** The exact subject Name node of a certificate (so a child's issuer field matches byte for byte). */
function subjectNameOf(x509: X509Certificate): Asn1 {
  const tbs = tbsOf(x509);
  const subject = isContext(tbs[0], 0) ? tbs[5] : tbs[4];
  if (!subject) throw new CertError('bad-cert', 'certificate has no subject');
  return subject;
}

function keyIdentifierOf(x509: X509Certificate): Buffer {
  return keyIdentifier(x509.publicKey.export({ type: 'spki', format: 'der' }));
}

/** The `spiffe://<trust-domain>` URI SAN a meshlet CA certificate carries. */
function caTrustDomainOf(x509: X509Certificate): string {
  const uris = uriSansOf(x509);
  const tds = uris.filter((u) => u.startsWith('spiffe://') && isDnsSubdomain(u.slice('spiffe://'.length)));
  if (tds.length !== 1 || uris.length !== 1) throw new CertError('bad-cert', `CA certificate ${x509.subject.replace(/\n/g, ', ')} does not carry exactly one spiffe://<trust-domain> URI SAN`);
  return (tds[0] ?? '').slice('spiffe://'.length);
}

/** Every URI (GeneralName [6]) in the subjectAltName extension, read from the DER. */
export function uriSansOf(x509: X509Certificate): string[] {
  let tbs;
  try {
    tbs = tbsOf(x509);
  } catch (e) {
    throw new CertError('bad-cert', `certificate is not strict DER: ${(e as Error).message}`, { cause: e });
  }
  const extsWrapper = tbs.find((n) => isContext(n, 3));
  const exts = children(children(extsWrapper)[0]);
  const out: string[] = [];
  for (const ext of exts) {
    const parts = children(ext);
    if (oidOf(parts[0]) !== OID.subjectAltName) continue;
    const value = parts[parts.length - 1];
    if (!isUniversal(value, TYPE.OCTETSTRING, false)) throw new CertError('bad-cert', 'subjectAltName is malformed');
    for (const gn of children(decode(bufferOf(value)))) {
      if (isContext(gn, 6) && !gn.constructed) out.push(Buffer.from(bytesOf(gn), 'binary').toString('latin1'));
    }
  }
  return out;
}

function derToPem(der: Buffer): string {
  return new X509Certificate(der).toString();
}

function checkNow(now: number): number {
  if (!Number.isFinite(now) || now <= 0) throw new CertError('bad-options', `now must be wall-clock milliseconds since the epoch, got ${now}`);
  return now;
}

function checkPositive(what: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new CertError('bad-options', `${what} must be a finite number > 0, got ${v}`);
  return v;
}

const iso = (ms: number): string => new Date(ms).toISOString();
