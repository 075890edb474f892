// Renewal timing, pure: ~70 % of the remaining life, jittered down by at most 10 %, and
// failed renewals back off with full jitter up to 30 s.
import t from 'tap';
import { renewAt, retryDelay, spiffeIdOfCert } from '../../../proxy/identity/identity.ts';
import { seededRandom } from '../../../api/runtime.ts';

t.test('renewAt: 60–70 % of the remaining life, from receipt', async (t) => {
  const day = 86_400_000;
  t.equal(renewAt(1000, 1000 + day, () => 0), 1000 + 0.7 * day, 'no jitter: 70 %');
  t.equal(renewAt(1000, 1000 + day, () => 0.999999), 1000 + day * (0.7 - 0.0999999), 'max jitter: ~60 %');
  const r = seededRandom(7);
  for (let i = 0; i < 1000; i++) {
    const at = renewAt(0, 10_000, r);
    if (at < 6000 || at > 7000) t.fail(`out of range: ${at}`);
  }
  t.equal(renewAt(5000, 4000, () => 0.5), 5000, 'an already expired leaf renews now');
});

t.test('retryDelay: jittered, 0.5 s doubling, capped at 30 s, never a hot loop', async (t) => {
  t.equal(retryDelay(1, () => 1), 1000);
  t.equal(retryDelay(3, () => 1), 4000);
  t.equal(retryDelay(50, () => 1), 30_000, 'capped, no overflow');
  t.equal(retryDelay(4, () => 0), 250, 'at least 250 ms');
});

t.test('spiffeIdOfCert: no certificate, no ID', async (t) => {
  t.equal(spiffeIdOfCert(undefined), '');
});
