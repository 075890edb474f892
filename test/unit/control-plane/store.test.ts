// The CA document format and the file store: round trips, atomic 0600 writes, refusing to
// overwrite, optimistic concurrency, and clear errors for missing or broken state.

import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import t from 'tap';
import { initCa, rotateIssuer } from '../../../control-plane/ca/index.ts';
import { generateBootstrapKey } from '../../../control-plane/identity/bootstrap-token.ts';
import { CaStoreError, decodeCaDocument, encodeCaDocument } from '../../../control-plane/store/ca-document.ts';
import { updateCa } from '../../../control-plane/store/ca-store.ts';
import { FileCaStore } from '../../../control-plane/store/file-store.ts';
import { caSecretObject, parseSecretRef } from '../../../control-plane/store/secret-store.ts';

const now = Date.now();
const state = initCa({ now, trustDomain: 'example.org' });
let dir = '';
t.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-store-'));
});
t.teardown(() => rm(dir, { recursive: true, force: true }));

const code = async (p: Promise<unknown>): Promise<string> => p.then(() => 'resolved', (e: unknown) => (e instanceof CaStoreError ? e.code : `other: ${(e as Error).message}`));

const bad = (j: unknown): string => {
  try {
    decodeCaDocument(typeof j === 'string' ? j : JSON.stringify(j), 'file x');
    return 'accepted';
  } catch (e) {
    return (e as CaStoreError).code + ': ' + (e as Error).message;
  }
};

t.test('document round trip, with and without the bootstrap key', async (t) => {
  const key = generateBootstrapKey();
  const text = encodeCaDocument({ state, bootstrapKey: key });
  const back = decodeCaDocument(text, 'test');
  t.equal(back.state.issuer.certPem, state.issuer.certPem);
  t.ok(back.bootstrapKey?.equals(key));
  t.equal(decodeCaDocument(encodeCaDocument({ state }), 'test').bootstrapKey, undefined);
  t.match(bad('{'), /^bad-state: file x is not JSON/);
  t.match(bad([]), /^bad-state: file x is not a JSON object/);
  t.match(bad({ version: 2 }), /^bad-state: file x does not hold a valid CA state: import: unknown version 2/);
  t.match(bad({ ...JSON.parse(text), bootstrapTokenKey: 'c2hvcnQ=' }), /bootstrapTokenKey must be base64 of at least 32 bytes/);
  t.notMatch(inspect(back.state), /PRIVATE KEY/, 'keys stay out of inspect()');
});

t.test('file store: create, load, replace, conflict, never overwrite', async (t) => {
  const file = path.join(dir, 'ca.json');
  const store = new FileCaStore(file);
  t.equal(await code(store.load()), 'not-found');
  const created = await store.create({ state });
  t.equal((await stat(file)).mode & 0o777, 0o600, '0600');
  t.equal(await code(store.create({ state })), 'exists', 'create never overwrites');
  const loaded = await store.load();
  t.equal(loaded.version, created.version);
  const rotated = await updateCa(store, (d) => ({ ...d, state: rotateIssuer(d.state, { now }) }));
  t.not(rotated.version, created.version);
  t.equal((await store.load()).doc.state.previousIssuerPem, state.issuer.certPem);
  t.equal(await code(store.replace({ state }, created.version)), 'conflict', 'a stale version is refused');
  t.equal((await stat(file)).mode & 0o777, 0o600, 'still 0600 after replace');
  t.same((await readdir(dir)).filter((f) => f.includes('.tmp')), [], 'no temp files left behind');
  await writeFile(file, '{"version":1}');
  t.equal(await code(store.load()), 'bad-state');
});

t.test('file store: I/O errors say what failed', async (t) => {
  const ro = path.join(dir, 'ro');
  await mkdir(ro);
  await chmod(ro, 0o500);
  const store = new FileCaStore(path.join(ro, 'ca.json'));
  const got = await code(store.create({ state }));
  // root ignores directory permissions; everyone else gets io.
  t.ok(got === 'io' || (process.getuid?.() === 0 && got === 'resolved'), got);
  await chmod(ro, 0o700);
  t.equal(await code(new FileCaStore(dir).load()), 'io', 'a directory is not a CA file');
});

t.test('Secret object and references', async (t) => {
  const obj = caSecretObject({ state }, { namespace: 'meshlet-system', name: 'meshlet-ca' }, '42');
  t.equal(obj.metadata?.resourceVersion, '42');
  t.equal(Buffer.from(obj.data?.['ca.crt'] ?? '', 'base64').toString(), state.anchor.certPem);
  t.equal(decodeCaDocument(Buffer.from(obj.data?.['ca.json'] ?? '', 'base64').toString(), 's').state.trustDomain, 'example.org');
  t.same(parseSecretRef('meshlet-system/meshlet-ca'), { namespace: 'meshlet-system', name: 'meshlet-ca' });
  for (const bad of ['meshlet-ca', 'a/b/c', 'A/b', '/b', 'a/']) t.throws(() => parseSecretRef(bad), /is not NAMESPACE\/NAME/, bad);
});
