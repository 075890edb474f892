// Reading and checking workload certificates: the same rules the TLS handshake applies, as a pure
// function of an injected time. Guarantees: an identity is returned only for a leaf that chains to the bundle.

import { X509Certificate } from 'node:crypto';
import { uriSansOf } from './certs.ts';
import { CertError } from './errors.ts';
import { OID, bufferOf, children, decode, isContext, isUniversal, oidOf, TYPE } from './der.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe.ts';

function load(pem: string | X509Certificate, what: string): X509Certificate {
  if (pem instanceof X509Certificate) return pem;
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new CertError('bad-cert', `${what} is not a certificate: ${(e as Error).message}`, { cause: e });
  }
}

/** The SPIFFE ID of a workload certificate: its one URI SAN, parsed strictly. */
export function spiffeIdOf(cert: string | X509Certificate): SpiffeId {
  const x = load(cert, 'leaf');
  const uris = uriSansOf(x);
  if (uris.length !== 1) throw new CertError('bad-identity', `certificate has ${uris.length} URI SANs; a workload certificate has exactly one`);
  try {
    return parseSpiffeId(uris[0] ?? '');
  } catch (e) {
    throw new CertError('bad-identity', `certificate URI SAN is not a workload SPIFFE ID: ${(e as Error).message}`, { cause: e });
  }
}

/** One-line subject for messages (leaves have none). */
function nameOf(x: X509Certificate): string {
  return (x.subject ?? '').replace(/\n/g, ', ') || '(no subject)';
}

function checkTime(x: X509Certificate, nowMs: number, what: string): void {
  if (nowMs < x.validFromDate.getTime()) throw new CertError('not-yet-valid', `${what} ${nameOf(x)} is not valid before ${x.validFromDate.toISOString()}`);
  if (nowMs >= x.validToDate.getTime()) throw new CertError('expired', `${what} ${nameOf(x)} expired at ${x.validToDate.toISOString()}`);
}

/** basicConstraints pathLenConstraint, or undefined when absent/unlimited. */
function pathLenOf(x: X509Certificate): number | undefined {
  const tbs = children(children(decode(x.raw))[0]);
  const exts = children(children(tbs.find((n) => isContext(n, 3)))[0]);
  for (const ext of exts) {
    const parts = children(ext);
    if (oidOf(parts[0]) !== OID.basicConstraints) continue;
    const value = parts[parts.length - 1];
    if (!isUniversal(value, TYPE.OCTETSTRING, false)) return undefined;
    const pathLen = children(decode(bufferOf(value))).find((n) => isUniversal(n, TYPE.INTEGER, false));
    return pathLen ? bufferOf(pathLen).readUIntBE(0, Math.min(6, bufferOf(pathLen).length)) : undefined;
  }
  return undefined;
}

function issues(parent: X509Certificate, child: X509Certificate): boolean {
  // checkIssued: names, key identifiers and the parent's keyCertSign usage; verify: the signature.
  return parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Check that `leaf` chains through `chain` (intermediates, any order) to an anchor of `bundle`,
 * every certificate valid at `nowMs` (wall clock), CA flags and path lengths respected, and the
 * leaf is not a CA and names one workload SPIFFE ID in the anchor's trust domain. Returns that ID;
 * throws CertError `untrusted`, `expired`, `not-yet-valid`, `bad-identity` or `bad-cert`.
 */
export function verifyChain(
  leafPem: string | X509Certificate,
  chainPems: ReadonlyArray<string | X509Certificate>,
  bundlePems: ReadonlyArray<string | X509Certificate>,
  nowMs: number,
): SpiffeId {
  const leaf = load(leafPem, 'leaf');
  const chain = chainPems.map((p, i) => load(p, `chain[${i}]`));
  // Like OpenSSL without PARTIAL_CHAIN: only self-signed CAs in the bundle end a path.
  const anchors = bundlePems.map((p, i) => load(p, `bundle[${i}]`)).filter((a) => a.ca && a.checkIssued(a) && a.verify(a.publicKey));
  if (leaf.ca) throw new CertError('bad-identity', 'leaf is a CA certificate');
  const id = spiffeIdOf(leaf);
  checkTime(leaf, nowMs, 'leaf');
  const path: X509Certificate[] = [leaf];
  const used = new Set<number>();
  let cur = leaf;
  for (;;) {
    const anchor = anchors.find((a) => issues(a, cur));
    if (anchor) {
      checkTime(anchor, nowMs, 'trust anchor');
      path.push(anchor);
      break;
    }
    const i = chain.findIndex((c, j) => !used.has(j) && issues(c, cur));
    const next = chain[i];
    if (i < 0 || !next) throw new CertError('untrusted', `no path from ${cur === leaf ? 'the leaf' : nameOf(cur)} to an anchor of the trust bundle`);
    used.add(i);
    checkTime(next, nowMs, 'intermediate');
    path.push(next);
    cur = next;
  }
  // path = [leaf, intermediates..., anchor]; a CA at index k has k-1 intermediates below it.
  for (let k = 1; k < path.length; k++) {
    const limit = pathLenOf(path[k] as X509Certificate);
    if (limit !== undefined && k - 1 > limit) throw new CertError('untrusted', `${nameOf(path[k] as X509Certificate)} allows ${limit} intermediates below it, the path has ${k - 1}`);
  }
  const anchorTd = uriSansOf(path[path.length - 1] as X509Certificate).find((u) => u.startsWith('spiffe://'));
  if (anchorTd !== undefined && anchorTd !== `spiffe://${id.trustDomain}`) {
    throw new CertError('untrusted', `leaf identity ${id.uri} is outside the anchor's trust domain ${anchorTd}`);
  }
  return id;
}
