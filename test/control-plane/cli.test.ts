// The `meshlet` CLI as scripts use it: every identity step in order through the real binary, each
// out-of-order step refused with exit 1 and the state machine's message (state unchanged), help
// exits 0, bad usage exits 2; the control plane's own entry point the same way.

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { decodeCaDocument } from '../../control-plane/store/ca-document.ts';
import { MAIN, meshlet, runNode } from './fixtures/control-plane.ts';

let dir = '';
t.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-cli-'));
});
t.teardown(() => rm(dir, { recursive: true, force: true }));

interface Status {
  phase: string;
  trustDomain: string;
  leafTtl: string;
  anchors: Array<{ role: string; serial: string; notAfter: string }>;
  issuer: { serial: string; notBefore: string; notAfter: string };
  previousIssuer?: { serial: string };
  removeAnchorAllowedFrom?: string;
  bootstrapTokens: boolean;
}

async function status(file: string): Promise<Status> {
  const r = await meshlet(['identity', 'status', '--ca-file', file, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Status;
}

t.test('help exits 0 everywhere; bad usage exits 2', async (t) => {
  const helps = [['--help'], ['help'], ['identity', '--help'], ['install', '--help'],
    ...['init', 'bootstrap-token', 'status', 'rotate-issuer', 'add-anchor', 'use-anchor', 'remove-anchor'].map((s) => ['identity', s, '--help'])];
  // Independent processes: run them side by side.
  for (const [args, r] of await Promise.all(helps.map(async (args) => [args, await meshlet(args)] as const))) {
    t.equal(r.code, 0, `meshlet ${args.join(' ')}`);
    t.match(r.stdout, /^usage: meshlet/, `meshlet ${args.join(' ')} prints usage`);
  }
  const usage: Array<[string[], RegExp]> = [
    [[], /usage: meshlet <command>/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['identity'], /usage: meshlet identity <subcommand>/],
    [['identity', 'frobnicate'], /unknown subcommand "frobnicate"/],
    [['identity', 'status'], /where is the CA\? pass --ca-file FILE or --ca-secret NS\/NAME/],
    [['identity', 'status', '--ca-file', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['identity', 'status', '--ca-file', 'x', '-o', 'yaml'], /-o yaml: want table or json/],
    [['identity', 'init', '--ca-file', path.join(dir, 'u.json'), '--trust-domain', 'Not A Domain'], /trust domain/],
    [['identity', 'init', '--ca-file', path.join(dir, 'u.json'), '--leaf-ttl', 'soon'], /--leaf-ttl: "soon" is not a duration/],
    [['identity', 'bootstrap-token', '--ca-file', path.join(dir, 'u.json')], /--namespace and --service-account are required/],
  ];
  for (const [[args, message], r] of await Promise.all(usage.map(async (u) => [u, await meshlet(u[0])] as const))) {
    t.equal(r.code, 2, `meshlet ${args.join(' ')} exits 2`);
    t.match(r.stderr, message);
  }
});

t.test('every identity step in order; every step out of order refused with exit 1, state unchanged', async (t) => {
  const file = path.join(dir, 'ca.json');
  const refused = async (step: string, message: RegExp): Promise<void> => {
    const before = await readFile(file, 'utf8');
    const r = await meshlet(['identity', step, '--ca-file', file]);
    t.equal(r.code, 1, `${step} refused with exit 1`);
    t.match(r.stderr, message, `${step}: ${r.stderr.trim().split('\n')[0]}`);
    t.equal(await readFile(file, 'utf8'), before, `${step}: the CA state is unchanged`);
  };
  const ok = async (step: string, out: RegExp): Promise<void> => {
    const r = await meshlet(['identity', step, '--ca-file', file]);
    t.equal(r.code, 0, `${step}: ${r.stderr}`);
    t.match(r.stdout, out);
  };

  const missing = await meshlet(['identity', 'status', '--ca-file', file]);
  t.equal(missing.code, 1, 'status of a CA that does not exist fails');
  t.match(missing.stderr, /does not exist \(create it with: meshlet identity init --ca-file/);

  // A 3 s leaf TTL, so remove-anchor's wait (one leaf TTL after use-anchor) fits in a test.
  const init = await meshlet(['identity', 'init', '--ca-file', file, '--trust-domain', 'example.org', '--leaf-ttl', '3s']);
  t.equal(init.code, 0, init.stderr);
  t.match(init.stdout, /created a CA for trust domain example\.org/);
  t.equal((await stat(file)).mode & 0o777, 0o600, 'the CA file is 0600');
  const again = await meshlet(['identity', 'init', '--ca-file', file]);
  t.equal(again.code, 1, 'init refuses to overwrite');
  t.match(again.stderr, /already holds a CA; refusing to overwrite/);

  const s0 = await status(file);
  t.equal(s0.phase, 'steady');
  t.equal(s0.trustDomain, 'example.org');
  t.equal(s0.leafTtl, '3s');
  t.equal(s0.anchors.length, 1);
  await refused('use-anchor', /use-anchor: no new anchor in the bundle; run add-anchor first/);
  await refused('remove-anchor', /remove-anchor: there is no previous anchor to remove/);

  await ok('rotate-issuer', /rotate-issuer: new issuer .* the trust bundle is unchanged/);
  const s1 = await status(file);
  t.not(s1.issuer.serial, s0.issuer.serial, 'a new issuer');
  t.equal(s1.previousIssuer?.serial, s0.issuer.serial, 'the previous issuer is on record');
  t.same(s1.anchors, s0.anchors, 'same anchor');

  await ok('add-anchor', /add-anchor: new anchor .* added to the bundle, not used yet/);
  const s2 = await status(file);
  t.equal(s2.phase, 'anchor-added');
  t.same(s2.anchors.map((a) => a.role), ['current', 'next']);
  await refused('add-anchor', /add-anchor: a new anchor .* is already in the bundle; push the bundle, then run use-anchor/);
  await refused('remove-anchor', /remove-anchor: the new anchor is not in use yet; run use-anchor first/);

  await ok('use-anchor', /use-anchor: anchor .* is now in use/);
  const s3 = await status(file);
  t.equal(s3.phase, 'anchor-switched');
  t.same(s3.anchors.map((a) => a.role), ['current', 'previous']);
  t.equal(s3.anchors[0]?.serial, s2.anchors[1]?.serial, 'the added anchor is now current');
  t.ok(s3.removeAnchorAllowedFrom, 'status says when remove-anchor is allowed');
  await refused('use-anchor', /use-anchor: the new anchor is already in use; the next step is remove-anchor/);
  await refused('add-anchor', /add-anchor: the previous anchor is still in the bundle; run remove-anchor first/);
  await refused('remove-anchor', /remove-anchor: leaves signed under the old anchor may be valid until .*; wait \d+ more minute/);

  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(s3.removeAnchorAllowedFrom ?? '') - Date.now()) + 100));
  await ok('remove-anchor', /remove-anchor: the old anchor left the bundle/);
  const s4 = await status(file);
  t.equal(s4.phase, 'steady');
  t.same(s4.anchors.map((a) => a.serial), [s2.anchors[1]?.serial], 'only the new anchor is left');
  await refused('remove-anchor', /remove-anchor: there is no previous anchor to remove/);

  const table = await meshlet(['identity', 'status', '--ca-file', file]);
  t.equal(table.code, 0);
  t.match(table.stdout, /phase:\s+steady/);
  t.match(table.stdout, /anchor \(current\)/);
  t.match(table.stdout, /issuer \(active\)/);
});

t.test('bootstrap-token adds the HMAC key to a state that has none, then reuses it', async (t) => {
  const file = path.join(dir, 'tokens.json');
  t.equal((await meshlet(['identity', 'init', '--ca-file', file])).code, 0);
  t.equal((await status(file)).bootstrapTokens, false);
  const first = await meshlet(['identity', 'bootstrap-token', '--ca-file', file, '--namespace', 'shop', '--service-account', 'cart']);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /^mbt1\.[\w-]+\.[\w-]+\n$/, 'stdout is the token alone');
  t.match(first.stderr, /added a bootstrap-token key/);
  t.equal((await status(file)).bootstrapTokens, true);
  const key = (JSON.parse(await readFile(file, 'utf8')) as { bootstrapTokenKey: string }).bootstrapTokenKey;
  const second = await meshlet(['identity', 'bootstrap-token', '--ca-file', file, '-n', 'shop', '--service-account', 'cart']);
  t.equal(second.code, 0);
  t.notMatch(second.stderr, /added/, 'the key is reused');
  t.equal((JSON.parse(await readFile(file, 'utf8')) as { bootstrapTokenKey: string }).bootstrapTokenKey, key);
  const bad = await meshlet(['identity', 'bootstrap-token', '--ca-file', file, '-n', 'Shop!', '--service-account', 'cart']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /namespace "Shop!" is not a DNS-1123 label/);
});

t.test('install --dry-run prints the CA Secret', async (t) => {
  const r = await meshlet(['install', '--dry-run', '--trust-domain', 'mesh.example']);
  t.equal(r.code, 0, r.stderr);
  const secret = parse(r.stdout) as { kind: string; type: string; metadata: { name: string; namespace: string }; data: Record<string, string> };
  t.equal(secret.kind, 'Secret');
  t.equal(secret.type, 'Opaque');
  t.same([secret.metadata.namespace, secret.metadata.name], ['meshlet-system', 'meshlet-ca']);
  const doc = decodeCaDocument(Buffer.from(secret.data['ca.json'] ?? '', 'base64').toString(), 'the printed Secret');
  t.equal(doc.state.trustDomain, 'mesh.example');
  t.equal(Buffer.from(secret.data['ca.crt'] ?? '', 'base64').toString(), doc.state.anchor.certPem, 'ca.crt is the trust bundle');
});

t.test('control-plane/main.ts: --help 0, bad flags 2, a CA that is not there 1', async (t) => {
  const help = await runNode(MAIN, ['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--ca-file FILE/);
  const bad = await runNode(MAIN, ['--bogus']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /Unknown option '--bogus'/);
  const none = await runNode(MAIN, [], { KUBERNETES_SERVICE_HOST: '' });
  t.equal(none.code, 2);
  t.match(none.stderr, /where is the CA\?/);
  const missing = await runNode(MAIN, ['--ca-file', path.join(dir, 'nope.json'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /does not exist \(create it with: meshlet identity init/);
  const file = path.join(dir, 'td.json');
  t.equal((await meshlet(['identity', 'init', '--ca-file', file, '--trust-domain', 'other.example'])).code, 0);
  const mismatch = await runNode(MAIN, ['--ca-file', file, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
  t.equal(mismatch.code, 1);
  t.match(mismatch.stderr, /is for trust domain other\.example, but this control plane serves cluster\.local \(pass --trust-domain other\.example\)/);
  const tooLong = await runNode(MAIN, ['--ca-file', file, '--trust-domain', 'other.example', '--leaf-ttl', '48h', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
  t.equal(tooLong.code, 1);
  t.match(tooLong.stderr, /--leaf-ttl 172800000 ms is longer than the CA's leaf TTL 86400000 ms/);
});
