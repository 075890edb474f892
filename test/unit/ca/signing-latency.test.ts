// Measures what Certify and a proxy pay: P-256 key generation, CSR build, leaf signing (CSR parse
// + proof-of-possession check + build + sign), and RSA-2048 for comparison. Reported, not gated.
import { generateKeyPairSync, sign } from 'node:crypto';
import t from 'tap';
import { initCa, issueLeaf } from '../../../control-plane/ca/bundle.ts';
import { generateKeyPair } from '../../../control-plane/ca/certs.ts';
import { makeCsr } from '../../../control-plane/ca/csr.ts';
import { id } from './fixtures/pki.ts';

const N = 100;

function stats(samples: number[]): string {
  const s = samples.toSorted((a, b) => a - b);
  const at = (q: number) => (s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0).toFixed(3);
  return `p50 ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms (n=${s.length})`;
}

function time<T>(fn: () => T): [T, number] {
  const start = performance.now();
  const out = fn();
  return [out, performance.now() - start];
}

t.test('signing latency and key generation', async (t) => {
  const now = Date.now();
  const [ca, initMs] = time(() => initCa({ now }));
  const identity = id('shop', 'cart');
  for (let i = 0; i < 10; i++) issueLeaf(ca, { csrPem: makeCsr({ privateKey: generateKeyPair().privateKey }), identity, now }); // warm up

  const keygen: number[] = [];
  const csrBuild: number[] = [];
  const signing: number[] = [];
  const serials = new Set<string>();
  for (let i = 0; i < N; i++) {
    const [keys, kMs] = time(() => generateKeyPair());
    const [csrPem, cMs] = time(() => makeCsr({ privateKey: keys.privateKey }));
    const [leaf, sMs] = time(() => issueLeaf(ca, { csrPem, identity, now }));
    keygen.push(kMs);
    csrBuild.push(cMs);
    signing.push(sMs);
    serials.add(leaf.serialHex);
  }
  t.equal(serials.size, N, 'every leaf has its own serial');

  const rsaKeygen: number[] = [];
  for (let i = 0; i < 5; i++) rsaKeygen.push(time(() => generateKeyPairSync('rsa', { modulusLength: 2048 }))[1]);
  const ec = generateKeyPair().privateKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const data = Buffer.alloc(64, 1);
  const ecSign: number[] = [];
  const rsaSign: number[] = [];
  for (let i = 0; i < 200; i++) {
    ecSign.push(time(() => sign('sha256', data, ec))[1]);
    rsaSign.push(time(() => sign('sha256', data, rsa))[1]);
  }

  t.comment(`CA init (P-256 anchor + issuer): ${initMs.toFixed(1)} ms`);
  t.comment(`P-256 key generation: ${stats(keygen)}`);
  t.comment(`CSR build + self-sign (proxy side): ${stats(csrBuild)}`);
  t.comment(`leaf signing, issueLeaf (parse + PoP verify + build + ECDSA sign): ${stats(signing)}`);
  t.comment(`for comparison, RSA-2048 key generation: ${stats(rsaKeygen)}`);
  t.comment(`raw signature, as a TLS 1.3 CertificateVerify costs: P-256 ${stats(ecSign)}; RSA-2048 ${stats(rsaSign)}`);
});
