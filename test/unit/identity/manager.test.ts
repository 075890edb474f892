// The identity manager's behaviour with a scripted control plane (a stub transport; the real
// HTTPS path is covered in test/proxy/mtls.test.ts): first leaf, renewal, failed renewals that
// keep the valid leaf in force and say why, and an expired leaf that makes the proxy unready.
import t from 'tap';
import { IdentityManager, type CertifyResponse, type CertifyTransport } from '../../../proxy/identity/identity.ts';
import { initCa, issueLeaf, parseSpiffeId } from '../../../control-plane/ca/index.ts';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

/** A transport that signs with a real CA, or fails while `down` is set. */
function scriptedCa(ttlMs: number): CertifyTransport & { down: boolean; calls: number } {
  const ca = initCa({ now: Date.now(), leafTtlMs: 3_600_000 });
  const s = {
    down: false,
    calls: 0,
    async certify(csrPem: string): Promise<CertifyResponse> {
      s.calls++;
      if (s.down) throw new Error('certify failed: connect ECONNREFUSED');
      const leaf = issueLeaf(ca, { csrPem, identity: parseSpiffeId(WEB), now: Date.now(), ttlMs });
      return { certificate: leaf.certPem, chain: leaf.chainPems, trustBundle: leaf.bundlePems };
    },
  };
  return s;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

t.test('gets a leaf, renews it, and survives a control-plane outage while the leaf is valid', async (t) => {
  const ca = scriptedCa(3000);
  let renewed = 0;
  let failed = 0;
  const m = new IdentityManager(ca, { nowMs: () => Date.now() }, () => 0, { renewed: () => renewed++, failed: () => failed++ });
  t.teardown(() => m.stop());
  t.same(m.notReady().length, 1, 'not ready before the first leaf');
  await m.start();
  t.equal(m.current?.identity, WEB);
  t.same(m.notReady(), [], 'ready');
  // random() = 0 → renew at 70 % of ~3 s.
  await sleep(2600);
  t.ok(renewed >= 2, `renewed (${renewed} leaves)`);
  ca.down = true;
  const held = m.current!;
  await sleep(1500);
  t.ok(failed >= 1, 'a renewal failed');
  t.ok(m.current, 'the last leaf is still valid (renewed at 70 % of 3 s, checked ~1.5 s after the outage began)');
  t.same(m.notReady(), [], 'still ready while the leaf is valid');
  t.match(m.detail().renewalError, /ECONNREFUSED/, 'and readiness detail says why renewal fails');
  t.equal(m.current?.identity ?? held.identity, WEB);
  await sleep(Math.max(0, held.notAfterMs - Date.now() + 200));
  t.equal(m.current, undefined, 'an expired leaf is not used');
  t.match(m.notReady()[0], /certificate expired; renewal failing: certify failed/, 'unready with the reason');
  ca.down = false;
  for (let i = 0; i < 40 && !m.current; i++) await sleep(100);
  t.equal(m.current?.identity, WEB, 'recovers once the control plane is back');
});
