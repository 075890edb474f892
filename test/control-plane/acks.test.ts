// What a proxy posts to POST /v1/config/ack is checked before it is read: a malformed ACK is a 400
// and changes nothing (one with `problems: [{}]` ended the control plane), and NACK reasons count
// under a closed set of labels, so NACKs naming ever new fields (a proxy of another version, a
// bug, a workload holding a mesh identity) cannot grow the control plane's series. A real control
// plane process; a client speaking the stream protocol by hand with a leaf of the fixture's CA.
import t from 'tap';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { CONFIG_ACK_PATH, encodeParams } from '../../api/config-stream.ts';
import { importSecret, issueLeaf, parseSpiffeId } from '../../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../../proxy/identity/csr.ts';
import { metricValue } from '../fixtures/mesh.ts';
import { startControlPlane } from '../fixtures/control-plane.ts';

t.test('malformed ACKs are refused and the control plane stays up; NACK reasons stay a closed set', async (t) => {
  const cp = await startControlPlane();
  t.teardown(() => cp.stop());
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(JSON.parse(readFileSync(cp.caFile, 'utf8')) as Record<string, unknown>), { csrPem: makeCsr(keys), identity: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web'), now: Date.now() });
  const { hostname, port } = new URL(cp.url);
  const tls = { host: hostname, port, key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined, agent: false as const };

  // A stream, to ACK on.
  const streamReq = https.request({ ...tls, path: encodeParams({ workload: 'web', namespace: 'shop', pod: 'web-0', services: [], version: '' }) });
  const stream = await new Promise<string>((resolve, reject) => {
    streamReq.on('response', (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        const nl = buf.indexOf('\n');
        if (nl >= 0) resolve((JSON.parse(buf.slice(0, nl)) as { stream: string }).stream);
      });
    });
    streamReq.on('error', reject);
    streamReq.end();
  });
  t.teardown(() => void streamReq.destroy());
  const ack = (body: unknown) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const text = JSON.stringify(body);
      const r = https.request({ ...tls, path: CONFIG_ACK_PATH, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (out += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: out }));
      });
      r.on('error', reject);
      r.end(text);
    });

  for (const problems of [[{}], 'services', [{ path: 7, message: 'x' }], [null]]) {
    const r = await ack({ stream, version: 'v1', ok: false, problems });
    t.equal(r.status, 400, `problems ${JSON.stringify(problems)}: 400 (${r.text.trim()})`);
    t.match(r.text, /bad-ack.*problems/, 'the answer names the field');
  }
  t.equal(cp.proc.exitCode, null, 'the control plane is still running');
  t.equal((await fetch(`${cp.adminUrl}/ready`)).status, 200, 'and ready');

  const NACKS = 200;
  const statuses: number[] = [];
  for (let i = 0; i < NACKS; i++) statuses.push((await ack({ stream, version: `v${i}`, ok: false, problems: [{ path: `/field-${i}/x`, message: 'no' }] })).status);
  statuses.push((await ack({ stream, version: 'v-s', ok: false, problems: [{ path: '/services/0/name', message: 'no' }] })).status);
  t.ok(statuses.every((s) => s === 200), 'every well-formed NACK is taken');
  const metrics = await (await fetch(`${cp.adminUrl}/metrics`)).text();
  const series = metrics.split('\n').filter((l) => l.startsWith('meshlet_cp_nacks_total{'));
  t.ok(series.length <= 2, `${NACKS + 1} NACKs naming ${NACKS + 1} fields: ${series.length} series (before the fix: one per field)`);
  t.equal(metricValue(metrics, 'meshlet_cp_nacks_total', { reason: 'other' }), NACKS, 'fields outside the wire format count as "other"');
  t.equal(metricValue(metrics, 'meshlet_cp_nacks_total', { reason: 'services' }), 1, 'a field of the config keeps its name');
});
