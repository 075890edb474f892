// api/pod-labels.ts: the kubelet's downward-API labels file, the hello's `labels` (both checked
// against Kubernetes' label syntax and bounded), and Service selector matching.
import t from 'tap';
import { MAX_POD_LABELS, MAX_POD_LABELS_BYTES, checkLabels, decodeLabels, encodeLabels, isLabelKey, isLabelValue, parseDownwardLabels, selects } from '../../../api/pod-labels.ts';
import { decodeParams, encodeParams } from '../../../api/config-stream.ts';

t.test('the downward-API file as the kubelet writes it: key="value" a line, sorted, no trailing newline', async (t) => {
  const r = parseDownwardLabels('app="billing"\napp.kubernetes.io/name="billing"\npod-template-hash="5d8f7c9b4"\nversion=""');
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.labels, { app: 'billing', 'app.kubernetes.io/name': 'billing', 'pod-template-hash': '5d8f7c9b4', version: '' });
  t.ok(Object.isFrozen(r.labels));
  t.same(parseDownwardLabels(''), { ok: true, labels: {} }, 'a Pod without labels: an empty file');
  t.same(parseDownwardLabels('a="1"\n'), { ok: true, labels: { a: '1' } }, 'a trailing newline is fine');
});

/** Why a file is refused ('accepted' if it is not). */
const bad = (text: string) => {
  const r = parseDownwardLabels(text);
  return r.ok ? 'accepted' : r.problem;
};

t.test('a malformed file is refused with the line and what is wrong, never read in part', async (t) => {
  t.match(bad('app=billing'), /line 1: expected key="value"/, 'an unquoted value');
  t.match(bad('app="a"\ngarbage'), /line 2: expected key="value"/);
  t.match(bad('app="a\\"b"'), /expected key="value"/, 'an escape (no label value needs one)');
  t.match(bad('app="a"\napp="b"'), /line 2: label app is listed twice/);
  t.match(bad('-app="a"'), /"-app" is not a label key/);
  t.match(bad('__proto__="x"'), /"__proto__" is not a label key/, 'not swallowed by the object prototype');
  t.match(bad('app="a b"'), /label app: "a b" is not a label value/);
  t.match(bad('Example.com/app="a"'), /not a label key/, 'an upper-case prefix');
  t.match(bad(`app="${'a'.repeat(64)}"`), /not a label value/, '64 characters');
});

t.test('label syntax: Kubernetes qualified names and values', async (t) => {
  for (const k of ['app', 'a', 'A_b.c-d', 'app.kubernetes.io/name', 'x/y', `${'a'.repeat(63)}`]) t.ok(isLabelKey(k), k);
  for (const k of ['', '/a', 'a/', 'a/b/c', '_a', 'a_', `${'a'.repeat(64)}`, 'a=b', 'a,b', 'UP.example/a', `${'a'.repeat(254)}/b`]) t.notOk(isLabelKey(k), k);
  for (const v of ['', 'v1', 'a.b_c-d']) t.ok(isLabelValue(v), v);
  for (const v of ['-a', 'a,b', 'a=b', 'a b', '"']) t.notOk(isLabelValue(v), v);
});

t.test('bounds: count and wire size are refused, never truncated (a dropped label could drop a policy)', async (t) => {
  const many = Object.fromEntries(Array.from({ length: MAX_POD_LABELS + 1 }, (_, i) => [`l${i}`, 'v']));
  t.match(checkLabels(many), { ok: false, problem: `${MAX_POD_LABELS + 1} labels: at most ${MAX_POD_LABELS}` });
  const big = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`${'p'.repeat(150)}.example/${'k'.repeat(60)}${i}`, 'v'.repeat(63)]));
  const r = checkLabels(big);
  t.equal(r.ok, false);
  t.match(r.ok ? '' : r.problem, new RegExp(`bytes of labels: at most ${MAX_POD_LABELS_BYTES}`));
  t.match(decodeLabels('a'.repeat(MAX_POD_LABELS_BYTES + 1)), { ok: false, problem: /at most 8192/ });
});

t.test('the hello carries labels as k=v,k=v; the control plane decodes and checks them', async (t) => {
  t.equal(encodeLabels({ b: '2', a: '1', 'x.io/y': '' }), 'a=1,b=2,x.io/y=');
  t.same(decodeLabels('a=1,b=2,x.io/y='), { ok: true, labels: { a: '1', b: '2', 'x.io/y': '' } });
  t.same(decodeLabels(''), { ok: true, labels: {} }, 'sent, and empty: a Pod without labels');
  t.match(decodeLabels('a=1,b'), { ok: false, problem: '"b" is not key=value' });
  t.match(decodeLabels('a=1,a=2'), { ok: false, problem: 'label a is listed twice' });
  t.match(decodeLabels('a=1=2'), { ok: false, problem: /not a label value/ });
  t.match(decodeLabels('__proto__=x'), { ok: false, problem: /not a label key/ });

  const self = { workload: 'billing', namespace: 'shop', pod: 'billing-1', services: ['billing'], version: 'v1' };
  const withLabels = decodeParams(encodeParams({ ...self, labels: { app: 'billing', 'app.kubernetes.io/part-of': 'shop' } }));
  t.same(withLabels, { ok: true, params: { ...self, labels: { app: 'billing', 'app.kubernetes.io/part-of': 'shop' } } }, 'round trip');
  const old = decodeParams(encodeParams(self));
  t.same(old, { ok: true, params: self }, 'an older proxy sends no labels: none, not empty ones');
  t.same(decodeParams('/v1/config/stream?workload=w&labels=app%3D%20x'), { ok: false, problem: 'labels: label app: " x" is not a label value' });
});

t.test('selector matching: non-empty and every pair present', async (t) => {
  const labels = { app: 'billing', tier: 'backend', 'pod-template-hash': 'abc' };
  t.ok(selects({ app: 'billing' }, labels));
  t.ok(selects({ app: 'billing', tier: 'backend' }, labels));
  t.notOk(selects({ app: 'billing', tier: 'frontend' }, labels), 'one pair differs');
  t.notOk(selects({ app: 'billing', version: 'v1' }, labels), 'one key missing');
  t.notOk(selects({ version: '' }, labels), 'an empty value matches only a label with that empty value');
  t.ok(selects({ version: '' }, { version: '' }));
  t.notOk(selects({}, labels), 'an empty selector selects nothing (a Service without selector)');
  t.notOk(selects(undefined, labels));
  t.notOk(selects({ app: 'billing' }, undefined), 'no labels reported: nothing selected');
  t.notOk(selects({ toString: 'x' } as Record<string, string>, {}), 'only own labels count');
});
