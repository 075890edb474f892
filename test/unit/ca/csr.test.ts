// Tests for control-plane/ca/csr.ts: garbage and forged requests are refused with their codes,
// and nothing is signed for them; accepted keys are P-256 and RSA 2048+.
import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { generateKeyPair, makeIssuer, makeTrustAnchor, signLeaf } from '../../../control-plane/ca/certs.ts';
import { MAX_CSR_PEM_BYTES, makeCsr, parseCsr } from '../../../control-plane/ca/csr.ts';
import { CertError } from '../../../control-plane/ca/errors.ts';
import { id } from './fixtures/pki.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof CertError ? e.code : `not a CertError: ${String(e)}`;
  }
  return undefined;
}

const toPem = (der: Buffer, label = 'CERTIFICATE REQUEST') =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
const derOf = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');

const { privateKey, publicKey } = generateKeyPair();
const good = makeCsr({ privateKey, commonName: 'me', uriSans: ['spiffe://cluster.local/ns/a/sa/b'] });

t.test('a good CSR: its verified key, nothing else', async (t) => {
  const csr = parseCsr(good);
  t.equal(csr.keyKind, 'ec-p256');
  t.ok(csr.spkiDer.equals(publicKey.export({ type: 'spki', format: 'der' })));
  t.same(Object.keys(csr).toSorted(), ['keyKind', 'publicKey', 'spkiDer'], 'subject and SANs are not even surfaced');
  t.equal(parseCsr(good.replace(/\n/g, '\r\n')).keyKind, 'ec-p256', 'CRLF PEM is fine');
  t.equal(parseCsr(makeCsr({ privateKey })).keyKind, 'ec-p256', 'no subject, no attributes');
});

t.test('garbage is bad-csr', async (t) => {
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    ['hello', 'not PEM'],
    ['-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n', 'bad base64'],
    ['-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 'base64 of nonsense'],
    ['-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n', 'empty SEQUENCE'],
    [toPem(derOf(good), 'CERTIFICATE'), 'wrong PEM label'],
    [good + good, 'two PEM blocks'],
    [toPem(Buffer.concat([derOf(good), Buffer.from([0])])), 'trailing byte'],
    [toPem(derOf(good).subarray(0, 40)), 'truncated'],
    ['x'.repeat(MAX_CSR_PEM_BYTES + 1), 'too large'],
  ];
  for (const [pem, why] of cases) t.equal(code(() => parseCsr(pem)), 'bad-csr', why);
  t.equal(code(() => parseCsr(undefined as unknown as string)), 'bad-csr', 'undefined');

  // A certificate's DER under a CSR label: well-formed DER, wrong structure.
  const anchor = makeTrustAnchor({ now: Date.now() });
  t.equal(code(() => parseCsr(toPem(derOf(anchor.certPem)))), 'bad-csr', 'a certificate is not a CSR');

  // Non-canonical DER (long-form length where short form is required) is refused, not re-encoded.
  const der = derOf(good);
  t.equal(der[0], 0x30);
  const longForm = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, der[1] as number]), der.subarray(2)]);
  t.equal(code(() => parseCsr(toPem(longForm))), 'bad-csr', 'BER length');
});

t.test('a broken self-signature is csr-signature (no proof of possession)', async (t) => {
  const der = derOf(good);
  // Change one letter of the subject CN: still perfect DER, signature no longer matches.
  const i = der.indexOf(Buffer.from('me'));
  t.ok(i > 0);
  const tampered = Buffer.from(der);
  tampered[i] = 'y'.charCodeAt(0);
  t.equal(code(() => parseCsr(toPem(tampered))), 'csr-signature', 'signed content changed');
  // Flip the last byte of the signature value.
  const sigFlip = Buffer.from(der);
  sigFlip[sigFlip.length - 1] = (sigFlip[sigFlip.length - 1] as number) ^ 0x01;
  t.equal(code(() => parseCsr(toPem(sigFlip))), 'csr-signature', 'signature changed');
  // Someone else's key in a request signed by ours: the classic identity grab.
  const other = generateKeyPair();
  const victimSpki = other.publicKey.export({ type: 'spki', format: 'der' });
  const ourSpki = publicKey.export({ type: 'spki', format: 'der' });
  const swapped = Buffer.from(der);
  const at = swapped.indexOf(ourSpki);
  t.ok(at > 0 && ourSpki.length === victimSpki.length);
  victimSpki.copy(swapped, at);
  t.equal(code(() => parseCsr(toPem(swapped))), 'csr-signature', 'public key swapped');

  const anchor = makeTrustAnchor({ now: Date.now() });
  const issuer = makeIssuer(anchor, { now: Date.now() });
  t.equal(code(() => signLeaf({ issuer, csrPem: toPem(swapped), identity: id('a', 'b'), now: Date.now() })), 'csr-signature', 'and nothing is signed');
});

t.test('keys: P-256 and RSA 2048+ accepted; others unsupported-key', async (t) => {
  const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  t.equal(parseCsr(makeCsr({ privateKey: rsa2048 })).keyKind, 'rsa');
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  t.equal(code(() => parseCsr(makeCsr({ privateKey: rsa1024 }))), 'unsupported-key', 'RSA 1024');
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  t.equal(code(() => parseCsr(makeCsr({ privateKey: p384 }))), 'unsupported-key', 'P-384');
  const ed = generateKeyPairSync('ed25519').privateKey;
  t.equal(code(() => parseCsr(makeCsr({ privateKey: ed }))), 'unsupported-key', 'Ed25519');
  const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey;
  t.equal(code(() => parseCsr(makeCsr({ privateKey: k1 }))), 'unsupported-key', 'secp256k1');
});
