// The composition root in-process with a scripted store: not ready until the CA loads, ready
// after; a new stored version is put in force (serving certificate re-issued); a bad one is refused
// and the last good state kept; close() releases both ports.

import net from 'node:net';
import t from 'tap';
import { systemClock } from '../../../api/runtime.ts';
import { initCa, rotateIssuer, systemWallClock } from '../../../control-plane/ca/index.ts';
import { startControlPlane, type Log } from '../../../control-plane/control-plane.ts';
import { CaStoreError, type CaDocument } from '../../../control-plane/store/ca-document.ts';
import type { CaStore, StoredCa } from '../../../control-plane/store/ca-store.ts';

class ScriptedStore implements CaStore {
  readonly where = 'scripted store';
  current: StoredCa | Error;
  constructor(first: StoredCa | Error) {
    this.current = first;
  }
  async load(): Promise<StoredCa> {
    if (this.current instanceof Error) throw this.current;
    return this.current;
  }
  async create(): Promise<StoredCa> {
    throw new Error('not used');
  }
  async replace(): Promise<StoredCa> {
    throw new Error('not used');
  }
}

const state = initCa({ now: Date.now() });
const logs: string[] = [];
const log: Log = (level, msg, fields) => logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);

async function ready(adminPort: number): Promise<{ status: number; body: { ready: boolean; reasons: string[]; servingCertificate?: { serial: string }; lastLoadError: string | null } }> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/ready`);
  return { status: r.status, body: (await r.json()) as never };
}

t.test('waits for the CA, serves, reloads, refuses a bad state, closes', async (t) => {
  const store = new ScriptedStore(new CaStoreError('not-found', 'Secret x/y does not exist'));
  const cp = await startControlPlane({
    store, trustDomain: 'cluster.local', listen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 },
    waitForCa: true, loadRetryMs: 20, reloadIntervalMs: 3_600_000, wallClock: systemWallClock, clock: systemClock, log,
  });
  const before = await ready(cp.admin.port);
  t.equal(before.status, 503);
  t.match(before.body.reasons.join('\n'), /CA state not loaded from scripted store: Secret x\/y does not exist/);
  t.equal((await fetch(`http://127.0.0.1:${cp.admin.port}/live`)).status, 200, 'live while waiting');

  store.current = { doc: { state }, version: '1' };
  const addr = await cp.started;
  const up = await ready(cp.admin.port);
  t.equal(up.status, 200, up.body.reasons.join());
  const serial = up.body.servingCertificate?.serial;

  t.equal(await cp.reload(), false, 'same version: nothing to do');
  const rotated: CaDocument = { state: rotateIssuer(state, { now: Date.now() }) };
  store.current = { doc: rotated, version: '2' };
  t.equal(await cp.reload(), true, 'a new version is put in force');
  t.equal(cp.current()?.state.issuer.serialHex, rotated.state.issuer.serialHex);
  t.not((await ready(cp.admin.port)).body.servingCertificate?.serial, serial, 'serving certificate re-issued');

  store.current = { doc: { state: initCa({ now: Date.now(), trustDomain: 'other.example' }) }, version: '3' };
  t.equal(await cp.reload(), false, 'a state for another trust domain is refused');
  t.equal(cp.current()?.state.issuer.serialHex, rotated.state.issuer.serialHex, 'the last good state stays');
  const after = await ready(cp.admin.port);
  t.equal(after.status, 200, 'still ready: it serves the last good state');
  t.match(after.body.lastLoadError, /trust domain other\.example/);
  store.current = new Error('etcd down');
  t.equal(await cp.reload(), false);
  t.match(logs.join('\n'), /CA state reload failed; keeping the state in force/);

  const metrics = await (await fetch(`http://127.0.0.1:${cp.admin.port}/metrics`)).text();
  t.match(metrics, new RegExp(`meshlet_ca_issuer_expiry_timestamp_seconds\\{serial="${rotated.state.issuer.serialHex}"\\} \\d+`));
  t.match(metrics, /meshlet_ca_anchor_expiry_timestamp_seconds\{role="current",serial="[0-9a-f]+"\} \d+/);
  t.match(metrics, /meshlet_ca_certificates_refused_total\{reason="body-too-large"\} 0/, 'every reason exported from 0');
  t.match(metrics, /^meshlet_control_plane_nodejs_eventloop_busy_seconds_total \d/m, 'the event loop busy time, as in the proxy (api/process-metrics.ts)');
  t.notMatch(metrics, /eventloop_lag/, 'and no lag gauges (their 10 ms sampler is parked)');

  await cp.close();
  for (const port of [addr.port, cp.admin.port]) {
    await t.rejects(new Promise((resolve, reject) => net.connect(port, '127.0.0.1').once('connect', resolve).once('error', reject)), { code: 'ECONNREFUSED' }, `port ${port} closed`);
  }
});

t.test('a missing CA is fatal unless waiting for it; close() during the wait ends start-up', async (t) => {
  const base = { trustDomain: 'cluster.local', listen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, wallClock: systemWallClock, clock: systemClock, log };
  const fatal = await startControlPlane({ ...base, store: new ScriptedStore(new CaStoreError('not-found', 'file x does not exist')) });
  await t.rejects(fatal.started, /file x does not exist/);
  await fatal.close();
  const waiting = await startControlPlane({ ...base, store: new ScriptedStore(new CaStoreError('not-found', 'nope')), waitForCa: true, loadRetryMs: 10_000 });
  await waiting.close();
  await t.rejects(waiting.started, /closed before the CA was loaded/);
});
