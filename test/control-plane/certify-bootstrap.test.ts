// Certify's one-machine path end to end, as a user runs it: `meshlet identity init`, `meshlet
// identity bootstrap-token`, the real control-plane process, POST /v1/certify over HTTPS; tampered,
// foreign, expired and missing tokens refused with nothing signed; issuer rotation picked up live.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { verifyChain } from '../../control-plane/ca/index.ts';
import {
  CONTROL_PLANE_ID, csrFor, meshlet, metric, postCertify, sansOf, startControlPlaneProcess, stats, type CpProcess,
} from './fixtures/control-plane.ts';
import { closedAfter } from '../fixtures/mesh.ts';

const ISSUED = 'meshlet_ca_certificates_issued_total';
const REFUSED = 'meshlet_ca_certificates_refused_total';

let dir = '';
let caFile = '';
let cp: CpProcess | undefined;
let anchors: string[] = [];
let token = '';
const c = (): CpProcess => {
  if (!cp) throw new Error('control plane not started');
  return cp;
};

async function cli(args: string[]): Promise<string> {
  const r = await meshlet(args);
  if (r.code !== 0) throw new Error(`meshlet ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

t.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-cp-bootstrap-'));
  caFile = path.join(dir, 'ca.json');
  await cli(['identity', 'init', '--ca-file', caFile]);
  token = (await cli(['identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', 'cart', '--ttl', '1h'])).trim();
  cp = await startControlPlaneProcess(['--ca-file', caFile, '--reload-interval', '200ms']);
  const state = JSON.parse(await readFile(caFile, 'utf8')) as { anchor: { certPem: string } };
  anchors = [state.anchor.certPem];
});

t.teardown(async () => {
  await cp?.stop();
  await rm(dir, { recursive: true, force: true });
});

t.test('/ready says ready, /live answers', async (t) => {
  const ready = await fetch(`${c().adminUrl}/ready`);
  t.equal(ready.status, 200);
  const body = (await ready.json()) as { ready: boolean; servingCertificate: { identity: string } };
  t.equal(body.ready, true);
  t.equal(body.servingCertificate.identity, CONTROL_PLANE_ID);
  t.equal((await fetch(`${c().adminUrl}/live`)).status, 200);
});

t.test('a bootstrap token gets a leaf for exactly its identity, from a server with the control-plane identity', async (t) => {
  const { csr } = csrFor();
  const r = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'bootstrap' });
  t.equal(r.status, 200, String(r.json.message ?? 'issued'));
  t.equal(r.serverId, CONTROL_PLANE_ID, 'the serving certificate names the control plane (and chains to the anchor, for 127.0.0.1)');
  const want = 'spiffe://cluster.local/ns/shop/sa/cart';
  t.equal(r.json.identity, want);
  t.same(sansOf(r.json.certificate as string), [`URI:${want}`], 'the only SAN is the token identity');
  const id = verifyChain(r.json.certificate as string, r.json.chain as string[], r.json.trustBundle as string[], Date.now());
  t.equal(id.uri, want, 'verifies against the returned bundle');
  t.same(r.json.trustBundle, anchors);
  const life = Date.parse(r.json.notAfter as string) - Date.parse(r.json.notBefore as string);
  t.ok(life > 23 * 3600e3 && life <= 24 * 3600e3 + 60e3, `24 h leaf (${life} ms)`);

  const viaHeader = await postCertify(c().certifyUrl, anchors, { csr, kind: 'bootstrap' }, { headers: { authorization: `Bearer ${token}` } });
  t.equal(viaHeader.status, 200, 'the token may come as Authorization: Bearer');
});

t.test('refusals: nothing is signed, each is counted by reason', async (t) => {
  const before = await metric(c().adminUrl, ISSUED);
  const { csr } = csrFor();
  const [prefix, payload = '', mac = ''] = token.split('.');
  // Tampered: the payload names another identity (the MAC no longer matches).
  const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'spiffe://cluster.local/ns/kube-system/sa/admin' })).toString('base64url');
  const tampered = `${prefix}.${forgedPayload}.${mac}`;
  // From another CA: a valid token, but signed with another state's key.
  const other = path.join(dir, 'other.json');
  await cli(['identity', 'init', '--ca-file', other]);
  const foreign = (await cli(['identity', 'bootstrap-token', '--ca-file', other, '--namespace', 'shop', '--service-account', 'cart'])).trim();
  // Expired: a 1 s token, used after 1.2 s.
  const shortLived = (await cli(['identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', 'cart', '--ttl', '1s'])).trim();
  await new Promise((r) => setTimeout(r, 1200));

  const cases: Array<[string, Record<string, unknown> | string, number, string, Record<string, string>?]> = [
    ['tampered token', { csr, token: tampered, kind: 'bootstrap' }, 401, 'token-bad-signature'],
    ["another CA's token", { csr, token: foreign, kind: 'bootstrap' }, 401, 'token-bad-signature'],
    ['expired token', { csr, token: shortLived, kind: 'bootstrap' }, 401, 'token-expired'],
    ['malformed token', { csr, token: 'not-a-token', kind: 'bootstrap' }, 401, 'token-malformed'],
    ['no token', { csr, kind: 'bootstrap' }, 401, 'no-token'],
    ['kubernetes proof without a Kubernetes API', { csr, token, kind: 'kubernetes' }, 401, 'proof-kind-disabled'],
    ['garbage CSR', { csr: 'hello', token, kind: 'bootstrap' }, 400, 'bad-csr'],
    ['not JSON', '{"csr":', 400, 'bad-body'],
    ['two different tokens', { csr, token, kind: 'bootstrap' }, 400, 'ambiguous-token', { authorization: `Bearer ${foreign}` }],
    ['oversized body', { csr, token, kind: 'bootstrap', pad: 'x'.repeat(70 * 1024) }, 413, 'body-too-large'],
  ];
  for (const [what, body, status, reason, headers] of cases) {
    const refusedBefore = await metric(c().adminUrl, REFUSED, { reason });
    const r = await postCertify(c().certifyUrl, anchors, body, { headers });
    t.equal(r.status, status, `${what}: ${status}`);
    t.equal(r.json.error, reason, `${what}: reason ${reason}`);
    t.notOk(r.json.certificate, `${what}: no certificate`);
    t.equal(await metric(c().adminUrl, REFUSED, { reason }), refusedBefore + 1, `${what}: counted`);
  }
  t.equal(await metric(c().adminUrl, ISSUED), before, 'nothing signed');
});

t.test('an issuer rotated with the CLI is picked up live; earlier leaves stay valid', async (t) => {
  const { csr } = csrFor();
  const first = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'bootstrap' });
  t.equal(first.status, 200);
  const out = await cli(['identity', 'rotate-issuer', '--ca-file', caFile]);
  t.match(out, /new issuer .* signs new leaves/);
  let second = first;
  const deadline = Date.now() + 5000;
  while ((second.json.chain as string[])[0] === (first.json.chain as string[])[0] && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    second = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'bootstrap' });
  }
  t.not((second.json.chain as string[])[0], (first.json.chain as string[])[0], 'new leaves come from the new issuer');
  t.same(second.json.trustBundle, first.json.trustBundle, 'the bundle is unchanged');
  t.equal(verifyChain(first.json.certificate as string, first.json.chain as string[], second.json.trustBundle as string[], Date.now()).uri, 'spiffe://cluster.local/ns/shop/sa/cart', 'a leaf of the old issuer still verifies');
  t.match(c().logs(), /CA state reloaded/);
  t.equal(second.serverId, CONTROL_PLANE_ID, 'the serving certificate was re-issued and still names the control plane');
});

t.test('latency: 100 sequential certify requests on one keep-alive connection', async (t) => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const { csr } = csrFor();
  const samples: number[] = [];
  for (let i = 0; i < 110; i++) {
    const t0 = performance.now();
    const r = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'bootstrap' }, { agent });
    if (i >= 10) samples.push(performance.now() - t0);
    if (r.status !== 200) t.fail(`request ${i}: ${r.status}`);
  }
  agent.destroy();
  const s = stats(samples);
  t.comment(`bootstrap certify round trip: p50 ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms, max ${s.max.toFixed(2)} ms (n=100)`);
  t.ok(s.p50 < 50, 'p50 well under 50 ms');
});

t.test('a bootstrap key made while the control plane runs works at once, not at its next reload', async (t) => {
  // As the refusal tells a user to do: run `meshlet identity bootstrap-token` against its CA state.
  const fresh = path.join(dir, 'fresh-ca.json');
  await cli(['identity', 'init', '--ca-file', fresh]);
  const late = await startControlPlaneProcess(['--ca-file', fresh, '--reload-interval', '1h']);
  t.teardown(() => late.stop());
  const bundle = [(JSON.parse(await readFile(fresh, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem];
  const { csr } = csrFor();
  const before = await postCertify(late.certifyUrl, bundle, { csr, token: 'not.a.token', kind: 'bootstrap' });
  t.equal(`${before.status} ${String(before.json.error)}`, '401 proof-kind-disabled', 'no key in the state: refused');
  const made = (await cli(['identity', 'bootstrap-token', '--ca-file', fresh, '--namespace', 'shop', '--service-account', 'late'])).trim();
  // Certify re-reads a keyless state at most once a second.
  await new Promise((r) => setTimeout(r, 1100));
  const after = await postCertify(late.certifyUrl, bundle, { csr, token: made, kind: 'bootstrap' });
  t.equal(after.status, 200, `issued with the new key, an hour before the next periodic reload (${String(after.json.message ?? after.json.identity)})`);
  t.equal(after.json.identity, 'spiffe://cluster.local/ns/shop/sa/late');
});

t.test('a connection that never finishes its handshake, or never sends a request, is closed after 10 s; Certify keeps serving', async (t) => {
  const { hostname, port } = new URL(c().certifyUrl);
  const silentTcp = net.connect(Number(port), hostname);
  const silentTls = tls.connect({ host: hostname, port: Number(port), ca: anchors, checkServerIdentity: () => undefined });
  const [tcpMs, tlsMs] = await Promise.all([closedAfter(silentTcp), closedAfter(silentTls)]);
  t.ok(tcpMs >= 9_000 && tcpMs < 13_000, `no ClientHello: closed after ~10 s (${tcpMs} ms)`);
  t.ok(tlsMs >= 9_000 && tlsMs < 13_000, `a TLS connection that sends no request: closed after ~10 s (${tlsMs} ms)`);
  const r = await postCertify(c().certifyUrl, anchors, { csr: csrFor().csr, token, kind: 'bootstrap' });
  t.equal(r.status, 200, 'and Certify still issues');
});

t.test('SIGTERM stops it cleanly (exit 0)', async (t) => {
  const code = await c().stop();
  t.equal(code, 0);
  t.match(c().logs(), /"msg":"stopped"/);
});
