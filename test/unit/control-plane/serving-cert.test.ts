// The control plane's serving certificate: its identity, the host names clients check, renewal
// time; and the signLeaf extension it needs (DNS and IP SANs, never for workload leaves).

import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { CertError, generateKeyPair, initCa, makeCsr, parseSpiffeId, signLeaf, spiffeIdOf, verifyChain } from '../../../control-plane/ca/index.ts';
import { DEFAULT_SERVING_NAMES, makeServingCredentials, servingDnsNames, servingRenewAtMs } from '../../../control-plane/certify/serving-cert.ts';
import { formatDuration, parseDuration } from '../../../control-plane/duration.ts';

const now = Date.now();
const state = initCa({ now });

t.test('serving certificate', async (t) => {
  const c = makeServingCredentials(state, DEFAULT_SERVING_NAMES, { now });
  const leaf = new X509Certificate(c.certChainPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
  t.equal(spiffeIdOf(leaf).uri, 'spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane');
  t.equal(verifyChain(leaf, [state.issuer.certPem], [state.anchor.certPem], now).uri, c.identity.uri);
  for (const host of ['meshlet-control-plane', 'meshlet-control-plane.meshlet-system.svc', 'meshlet-control-plane.meshlet-system.svc.cluster.local', 'localhost']) {
    t.equal(leaf.checkHost(host), host, host);
  }
  t.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(leaf.checkIP('::1'), '::1');
  t.equal(leaf.checkHost('evil.example'), undefined);
  t.same(servingDnsNames({ ...DEFAULT_SERVING_NAMES, namespace: 'mesh', extraDns: [] }), ['meshlet-control-plane', 'meshlet-control-plane.mesh', 'meshlet-control-plane.mesh.svc', 'meshlet-control-plane.mesh.svc.cluster.local']);
  t.equal(servingRenewAtMs({ notBeforeMs: 0, notAfterMs: 1000 }), 700);
  const other = makeServingCredentials(state, DEFAULT_SERVING_NAMES, { now });
  t.not(other.keyPem, c.keyPem, 'a fresh key each time');
});

t.test('signLeaf DNS/IP SANs: validated, after the one URI SAN', async (t) => {
  const csrPem = makeCsr({ privateKey: generateKeyPair().privateKey });
  const identity = parseSpiffeId('spiffe://cluster.local/ns/a/sa/b');
  const leaf = signLeaf({ issuer: state.issuer, csrPem, identity, now, dnsSans: ['x.y'], ipSans: ['10.0.0.1', '2001:db8::1', '::ffff:1.2.3.4'] });
  const x = new X509Certificate(leaf.certPem);
  t.equal(x.subjectAltName, 'URI:spiffe://cluster.local/ns/a/sa/b, DNS:x.y, IP Address:10.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:102:304');
  t.equal(spiffeIdOf(x).uri, identity.uri, 'still exactly one URI SAN');
  t.throws(() => signLeaf({ issuer: state.issuer, csrPem, identity, now, dnsSans: ['Bad_Name'] }), CertError);
  t.throws(() => signLeaf({ issuer: state.issuer, csrPem, identity, now, ipSans: ['300.1.1.1'] }), /not an IPv4 or IPv6 address/);
  t.equal(new X509Certificate(signLeaf({ issuer: state.issuer, csrPem, identity, now }).certPem).subjectAltName, `URI:${identity.uri}`, 'workload leaves unchanged');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('24h', 'x'), 86_400_000);
  t.equal(parseDuration('1h30m', 'x'), 5_400_000);
  t.equal(parseDuration('1500ms', 'x'), 1500);
  t.equal(parseDuration('7d', 'x'), 7 * 86_400_000);
  for (const bad of ['', '0s', '10', 'h', '-1s', '1.5h', '1 h']) t.throws(() => parseDuration(bad, '--ttl'), /--ttl: .* is not a duration/, bad);
  t.equal(formatDuration(86_400_000), '1d');
  t.equal(formatDuration(5_400_500), '1h30m500ms');
});
