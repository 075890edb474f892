// Tests for control-plane/identity/bootstrap-token.ts: accepted, expired, tampered, wrong key,
// malformed. Deterministic: fixed keys and injected wall-clock times.
import { createHmac } from 'node:crypto';
import t from 'tap';
import { generateBootstrapKey, issueBootstrapToken, verifyBootstrapToken } from '../../../control-plane/identity/bootstrap-token.ts';
import { id } from './fixtures/pki.ts';

const KEY = Buffer.alloc(32, 7);
const OTHER_KEY = Buffer.alloc(32, 8);
const T0 = Date.UTC(2030, 0, 1);
const X = id('shop', 'cart');
const token = issueBootstrapToken(X, { ttlMs: 60_000, now: T0, key: KEY });

t.test('accepted: names exactly its identity until expiry', async (t) => {
  t.match(token, /^mbt1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
  const v = verifyBootstrapToken(token, KEY, T0 + 59_999);
  t.ok(v.ok);
  if (v.ok) {
    t.equal(v.identity.uri, X.uri);
    t.equal(v.expiresAtMs, T0 + 60_000);
  }
  t.equal(generateBootstrapKey().length, 32);
  t.not(issueBootstrapToken(id('shop', 'other'), { ttlMs: 60_000, now: T0, key: KEY }), token);
});

t.test('expired at exp', async (t) => {
  t.same(verifyBootstrapToken(token, KEY, T0 + 60_000), { ok: false, reason: 'expired', message: `token expired at ${new Date(T0 + 60_000).toISOString()}` });
});

t.test('wrong key and tampering are bad-signature', async (t) => {
  t.match(verifyBootstrapToken(token, OTHER_KEY, T0), { ok: false, reason: 'bad-signature' });
  const [p, payload, mac] = token.split('.') as [string, string, string];
  // Re-target the token at another identity, keeping the MAC.
  const forged = Buffer.from(JSON.stringify({ sub: 'spiffe://cluster.local/ns/kube-system/sa/admin', iat: T0, exp: T0 + 60_000 })).toString('base64url');
  t.match(verifyBootstrapToken(`${p}.${forged}.${mac}`, KEY, T0), { ok: false, reason: 'bad-signature' });
  // Extend the expiry.
  const longer = Buffer.from(JSON.stringify({ sub: X.uri, iat: T0, exp: T0 + 10 * 60_000 })).toString('base64url');
  t.match(verifyBootstrapToken(`${p}.${longer}.${mac}`, KEY, T0 + 120_000), { ok: false, reason: 'bad-signature' });
  // Flip one MAC character (keeping it canonical base64url).
  const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
  t.match(verifyBootstrapToken(`${p}.${payload}.${flipped}`, KEY, T0), { ok: false, reason: 'bad-signature' });
});

t.test('malformed tokens are refused without throwing', async (t) => {
  const [, payload, mac] = token.split('.') as [string, string, string];
  const cases: string[] = [
    '', 'x', 'a.b', 'a.b.c.d', `mbt2.${payload}.${mac}`, `mbt1.${payload}.${mac}=`, `mbt1.${payload}!.${mac}`,
    `mbt1.${payload}.${mac.slice(0, -1)}`, `mbt1.${payload}.${mac}AA`, 'x'.repeat(5000), `mbt1..${mac}`,
    undefined as unknown as string,
  ];
  for (const c of cases) t.match(verifyBootstrapToken(c, KEY, T0), { ok: false, reason: 'malformed' }, JSON.stringify(c)?.slice(0, 40));
  // Correctly signed but with a payload we never issue: still refused (as malformed).
  const sign = (claims: unknown) => {
    const enc = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `mbt1.${enc}.${createHmac('sha256', KEY).update(`mbt1.${enc}`).digest('base64url')}`;
  };
  t.match(verifyBootstrapToken(sign({ sub: X.uri, iat: T0, exp: T0 + 1000, extra: 1 }), KEY, T0), { ok: false, reason: 'malformed' }, 'extra claim');
  t.match(verifyBootstrapToken(sign({ sub: 'spiffe://cluster.local/ns/a/sa/b/c', iat: T0, exp: T0 + 1000 }), KEY, T0), { ok: false, reason: 'malformed' }, 'bad SPIFFE ID');
  t.match(verifyBootstrapToken(sign({ sub: [X.uri, X.uri], iat: T0, exp: T0 + 1000 }), KEY, T0), { ok: false, reason: 'malformed' }, 'two identities');
  t.match(verifyBootstrapToken(sign({ sub: X.uri, iat: T0, exp: 'never' }), KEY, T0), { ok: false, reason: 'malformed' }, 'exp not a number');
  t.match(verifyBootstrapToken(sign('just a string'), KEY, T0), { ok: false, reason: 'malformed' }, 'not an object');
  t.ok(verifyBootstrapToken(sign({ sub: X.uri, iat: T0, exp: T0 + 1000 }), KEY, T0).ok, 'the same construction with valid claims is accepted');
});

t.test('issuing refuses weak keys and nonsense options', async (t) => {
  t.throws(() => issueBootstrapToken(X, { ttlMs: 1000, now: T0, key: Buffer.alloc(16) }), /at least 32 bytes/);
  t.throws(() => verifyBootstrapToken(token, Buffer.alloc(8), T0), /at least 32 bytes/);
  t.throws(() => issueBootstrapToken(X, { ttlMs: 0, now: T0, key: KEY }), /ttlMs/);
  t.throws(() => issueBootstrapToken(X, { ttlMs: 1000, now: Number.NaN, key: KEY }), /now/);
  t.throws(() => issueBootstrapToken({ ...X, uri: 'spiffe://cluster.local/ns/x/sa/y/z' }, { ttlMs: 1000, now: T0, key: KEY }), /not exactly/);
});
