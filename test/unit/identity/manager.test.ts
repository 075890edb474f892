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
  const ca = scriptedCa(4000);
  let renewed = 0;
  let failed = 0;
  // The outage starts right after the second leaf arrives, so that leaf has its whole life left
  // (4 s) when the next renewal (at 70 %, ~2.8 s later) fails: ~1.2 s of margin on a loaded machine.
  const m = new IdentityManager(ca, { nowMs: () => Date.now() }, () => 0, {
    renewed: () => {
      if (++renewed === 2) ca.down = true;
    },
    failed: () => failed++,
  });
  t.teardown(() => m.stop());
  t.same(m.notReady().length, 1, 'not ready before the first leaf');
  await m.start();
  t.equal(m.current?.identity, WEB);
  t.same(m.notReady(), [], 'ready');
  const until = async (cond: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await sleep(20);
  };
  await until(() => renewed >= 2, 8000);
  t.equal(renewed, 2, 'renewed at 70 % of the first leaf');
  const held = m.current!;
  await until(() => failed >= 1, 8000);
  t.ok(failed >= 1, 'a renewal failed');
  t.ok(m.current, 'the last leaf is still valid');
  t.same(m.notReady(), [], 'still ready while the leaf is valid');
  t.match(m.detail().renewalError, /ECONNREFUSED/, 'and readiness detail says why renewal fails');
  await sleep(Math.max(0, held.notAfterMs - Date.now() + 200));
  t.equal(m.current, undefined, 'an expired leaf is not used');
  t.match(m.notReady()[0], /certificate expired; renewal failing: certify failed/, 'unready with the reason');
  ca.down = false;
  await until(() => m.current !== undefined, 5000);
  t.equal(m.current?.identity, WEB, 'recovers once the control plane is back');
});
